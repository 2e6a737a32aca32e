// SoI on the CPU: forward, and backward for features and segment coordinates.
// Parallel over segments (forward, segment gradient) and over channels (feature gradient, so
// each thread owns whole rows of the gradient and needs no atomics).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "segment_interp_checks.h"
#include "segment_interp_common.h"

namespace rcl_kernels {
namespace {

struct Problem {
  int64_t B, C, T, K, N, S;
};

// Taps of the M = N*S sub-samples of one segment.
template <typename acc_t>
void segment_taps(const acc_t* seg, acc_t context, const Problem& p, Padding padding, Tap<acc_t>* taps) {
  acc_t a, b;
  window(seg[0], seg[1], context, a, b);
  const int64_t M = p.N * p.S;
  for (int64_t m = 0; m < M; ++m) {
    taps[m] = make_tap<acc_t>(sample_position(a, b, sample_fraction<acc_t>(m, M)), p.T, padding);
  }
}

template <typename scalar_t, typename acc_t>
void forward_impl(const scalar_t* features, const acc_t* segments, scalar_t* out, const Problem& p,
                  acc_t context, Padding padding) {
  const int64_t M = p.N * p.S;
  const acc_t inv_s = acc_t(1) / static_cast<acc_t>(p.S);
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  at::parallel_for(0, p.B * p.K, 16, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps(M);
    std::vector<char> point_nan(p.N);
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t b = bk / p.K;
      segment_taps(segments + bk * 2, context, p, padding, taps.data());
      for (int64_t n = 0; n < p.N; ++n) {
        bool any = false;
        for (int64_t s = 0; s < p.S; ++s) any = any || taps[n * p.S + s].is_nan;
        point_nan[n] = any;
      }
      const scalar_t* fb = features + b * p.C * p.T;
      scalar_t* ob = out + bk * p.C * p.N;
      for (int64_t c = 0; c < p.C; ++c) {
        const scalar_t* row = fb + c * p.T;
        for (int64_t n = 0; n < p.N; ++n) {
          acc_t v = 0;
          for (int64_t s = 0; s < p.S; ++s) {
            const Tap<acc_t>& t = taps[n * p.S + s];
            v += t.w0 * static_cast<acc_t>(row[t.i0]) + t.w1 * static_cast<acc_t>(row[t.i1]);
          }
          ob[c * p.N + n] = static_cast<scalar_t>(point_nan[n] ? nan : v * inv_s);
        }
      }
    }
  });
}

// d loss / d features, accumulated in acc_t. Segments are processed in chunks whose taps are
// computed once (in parallel) and then reused by every channel.
template <typename scalar_t, typename acc_t>
void features_backward_impl(const scalar_t* grad_out, const acc_t* segments, acc_t* grad_features,
                            const Problem& p, acc_t context, Padding padding) {
  const int64_t M = p.N * p.S;
  const acc_t inv_s = acc_t(1) / static_cast<acc_t>(p.S);
  const int64_t chunk = std::max<int64_t>(1, (int64_t(1) << 16) / M);
  std::vector<Tap<acc_t>> taps(std::min(chunk, std::max<int64_t>(p.K, 1)) * M);
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t k0 = 0; k0 < p.K; k0 += chunk) {
      const int64_t k1 = std::min(p.K, k0 + chunk);
      at::parallel_for(k0, k1, 64, [&](int64_t begin, int64_t end) {
        for (int64_t k = begin; k < end; ++k) {
          segment_taps(segments + (b * p.K + k) * 2, context, p, padding, taps.data() + (k - k0) * M);
        }
      });
      at::parallel_for(0, p.C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          acc_t* grow = grad_features + (b * p.C + c) * p.T;
          for (int64_t k = k0; k < k1; ++k) {
            const scalar_t* g = grad_out + ((b * p.K + k) * p.C + c) * p.N;
            const Tap<acc_t>* tk = taps.data() + (k - k0) * M;
            for (int64_t n = 0; n < p.N; ++n) {
              const acc_t gn = static_cast<acc_t>(g[n]) * inv_s;
              for (int64_t s = 0; s < p.S; ++s) {
                const Tap<acc_t>& t = tk[n * p.S + s];
                grow[t.i0] += t.w0 * gn;
                grow[t.i1] += t.w1 * gn;
              }
            }
          }
        }
      });
    }
  }
}

// d loss / d (start, end) of every segment: sum over channels and sub-samples of
// grad * dvalue/dx * dx/d(start or end). NaN positions contribute nothing.
template <typename scalar_t, typename acc_t>
void segments_backward_impl(const scalar_t* grad_out, const scalar_t* features, const acc_t* segments,
                            acc_t* grad_segments, const Problem& p, acc_t context, Padding padding) {
  const int64_t M = p.N * p.S;
  const acc_t inv_s = acc_t(1) / static_cast<acc_t>(p.S);
  at::parallel_for(0, p.B * p.K, 16, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps(M);
    std::vector<acc_t> dvdx(M);
    for (int64_t bk = begin; bk < end; ++bk) {
      const int64_t b = bk / p.K;
      segment_taps(segments + bk * 2, context, p, padding, taps.data());
      std::fill(dvdx.begin(), dvdx.end(), acc_t(0));
      const scalar_t* fb = features + b * p.C * p.T;
      const scalar_t* gb = grad_out + bk * p.C * p.N;
      for (int64_t c = 0; c < p.C; ++c) {
        const scalar_t* row = fb + c * p.T;
        for (int64_t n = 0; n < p.N; ++n) {
          const acc_t gn = static_cast<acc_t>(gb[c * p.N + n]);
          for (int64_t s = 0; s < p.S; ++s) {
            const Tap<acc_t>& t = taps[n * p.S + s];
            dvdx[n * p.S + s] += gn * (t.g0 * static_cast<acc_t>(row[t.i0]) + t.g1 * static_cast<acc_t>(row[t.i1]));
          }
        }
      }
      acc_t ds = 0, de = 0;
      for (int64_t m = 0; m < M; ++m) {
        if (taps[m].is_nan) continue;
        const acc_t t = sample_fraction<acc_t>(m, M);
        ds += dvdx[m] * dposition_dstart(context, t);
        de += dvdx[m] * dposition_dend(context, t);
      }
      grad_segments[bk * 2] = ds * inv_s;
      grad_segments[bk * 2 + 1] = de * inv_s;
    }
  });
}

Problem make_problem(const at::Tensor& features, const at::Tensor& segments, int64_t num_samples,
                     int64_t samples_per_point) {
  return Problem{features.size(0), features.size(1), features.size(2), segments.size(1), num_samples,
                 samples_per_point};
}

at::Tensor segment_interp_cpu(const at::Tensor& features, const at::Tensor& segments, int64_t num_samples,
                              int64_t samples_per_point, double context, c10::string_view padding) {
  const Padding pad = check_segment_interp_args(features, segments, num_samples, samples_per_point, context,
                                                std::string_view(padding.data(), padding.size()));
  TORCH_CHECK(features.device().is_cpu(), "segment_interp (cpu kernel): features must be a CPU tensor");
  const Problem p = make_problem(features, segments, num_samples, samples_per_point);
  at::Tensor out = at::empty({p.B, p.K, p.C, p.N}, features.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor f = features.contiguous();
  const at::Tensor seg = segments.to(segment_interp_acc_type(features)).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "segment_interp_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_impl<scalar_t, acc_t>(f.const_data_ptr<scalar_t>(), seg.const_data_ptr<acc_t>(),
                                  out.mutable_data_ptr<scalar_t>(), p, static_cast<acc_t>(context), pad);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> segment_interp_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& features, const at::Tensor& segments, int64_t num_samples,
    int64_t samples_per_point, double context, c10::string_view padding, bool need_features_grad,
    bool need_segments_grad) {
  const Padding pad = check_segment_interp_args(features, segments, num_samples, samples_per_point, context,
                                                std::string_view(padding.data(), padding.size()));
  const Problem p = make_problem(features, segments, num_samples, samples_per_point);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({p.B, p.K, p.C, p.N}),
              "segment_interp_backward: grad_output must have shape (B, K, C, N) = (", p.B, ", ", p.K, ", ",
              p.C, ", ", p.N, "), got ", grad_output.sizes());
  const at::ScalarType acc_type = segment_interp_acc_type(features);
  at::Tensor grad_features_acc = at::zeros({p.B, p.C, p.T}, features.options().dtype(acc_type));
  at::Tensor grad_segments_acc = at::zeros({p.B, p.K, 2}, segments.options().dtype(acc_type));
  if (grad_output.numel() > 0 && (need_features_grad || need_segments_grad)) {
    const at::Tensor g = grad_output.to(features.scalar_type()).contiguous();
    const at::Tensor f = features.contiguous();
    const at::Tensor seg = segments.to(acc_type).contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "segment_interp_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      if (need_features_grad) {
        features_backward_impl<scalar_t, acc_t>(g.const_data_ptr<scalar_t>(), seg.const_data_ptr<acc_t>(),
                                                grad_features_acc.mutable_data_ptr<acc_t>(), p,
                                                static_cast<acc_t>(context), pad);
      }
      if (need_segments_grad) {
        segments_backward_impl<scalar_t, acc_t>(g.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(),
                                                seg.const_data_ptr<acc_t>(),
                                                grad_segments_acc.mutable_data_ptr<acc_t>(), p,
                                                static_cast<acc_t>(context), pad);
      }
    });
  }
  return {grad_features_acc.to(features.scalar_type()), grad_segments_acc.to(segments.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(rcl_kernels, CPU, m) {
  m.impl("segment_interp", &segment_interp_cpu);
  m.impl("segment_interp_backward", &segment_interp_backward_cpu);
}

}  // namespace rcl_kernels
