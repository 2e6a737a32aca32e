// SoI on the CPU: forward, and backward for features and segment coordinates.
//
// Two implementations, chosen at run time (cpu_capability.h): the AVX-512 kernels of
// segment_interp_cpu_avx512.h, and the portable ones below for every other CPU.
//
// Portable layout: the features are transposed once to (B, T, C) in the accumulation type, so
// every tap reads a contiguous channel vector and the innermost loops run over channels
// (vectorised by the compiler). Each segment's (C, N) block of the output or of its gradient is
// staged through a small (N, C) buffer. Forward and the segment gradient are parallel over
// segments; the feature gradient is accumulated by each thread into its own (T, C) buffer over a
// range of segments, then the buffers are summed: no atomics, no races.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "cpu_capability.h"
#include "heap_reusing_allocation.h"
#include "segment_interp_cpu_avx512.h"
#include "segment_interp_cpu_taps.h"
#include "segment_interp_checks.h"
#include "segment_interp_common.h"

namespace rcl_kernels {
namespace {

using Problem = SegmentInterpProblem;

// dst[n * C + c] = src[c * N + n] * scale: one segment's (C, N) block into (N, C).
template <typename scalar_t, typename acc_t>
void transpose_block(const scalar_t* src, acc_t* dst, int64_t C, int64_t N, acc_t scale) {
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t n = 0; n < N; ++n) dst[n * C + c] = static_cast<acc_t>(src[c * N + n]) * scale;
  }
}

// ft: features as (B, T, C) in acc_t.
template <typename scalar_t, typename acc_t>
void forward_impl(const acc_t* ft, const acc_t* segments, scalar_t* out, const Problem& p, acc_t context,
                  Padding padding) {
  const int64_t M = p.N * p.S, C = p.C;
  const acc_t inv_s = acc_t(1) / static_cast<acc_t>(p.S);
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  at::parallel_for(0, p.B * p.K, 16, [&](int64_t begin, int64_t end) {
    std::vector<Tap<acc_t>> taps(M);
    std::vector<acc_t> acc(p.N * C);
    for (int64_t bk = begin; bk < end; ++bk) {
      const acc_t* fb = ft + (bk / p.K) * p.T * C;
      segment_taps(segments + bk * 2, context, p, padding, taps.data());
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t n = 0; n < p.N; ++n) {
        acc_t* an = acc.data() + n * C;
        for (int64_t s = 0; s < p.S; ++s) {
          const Tap<acc_t>& t = taps[n * p.S + s];
          const acc_t w0 = t.is_nan ? nan : t.w0;
          const acc_t* r0 = fb + t.i0 * C;
          const acc_t* r1 = fb + t.i1 * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) an[c] += w0 * r0[c] + t.w1 * r1[c];
        }
      }
      scalar_t* ob = out + bk * C * p.N;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t n = 0; n < p.N; ++n) ob[c * p.N + n] = static_cast<scalar_t>(acc[n * C + c] * inv_s);
      }
    }
  });
}

// Both gradients in one pass over the segments. grad_ft: (B, T, C) accumulator.
template <typename scalar_t, typename acc_t>
void backward_impl(const scalar_t* grad_out, const acc_t* ft, const acc_t* segments, acc_t* grad_ft,
                   acc_t* grad_segments, const Problem& p, acc_t context, Padding padding, bool need_features,
                   bool need_segments) {
  const int64_t M = p.N * p.S, C = p.C, TC = p.T * C;
  const acc_t inv_s = acc_t(1) / static_cast<acc_t>(p.S);
  std::mutex merge;
  for (int64_t b = 0; b < p.B; ++b) {
    // One range of segments per thread, so each thread fills one private (T, C) buffer.
    const int64_t grain = std::max<int64_t>(1, (p.K + at::get_num_threads() - 1) / at::get_num_threads());
    at::parallel_for(0, p.K, grain, [&](int64_t begin, int64_t end) {
      std::vector<Tap<acc_t>> taps(M);
      std::vector<acc_t> g(p.N * C);
      std::vector<acc_t> local(need_features ? TC : 0, acc_t(0));
      const acc_t* fb = ft + b * TC;
      for (int64_t k = begin; k < end; ++k) {
        const int64_t bk = b * p.K + k;
        segment_taps(segments + bk * 2, context, p, padding, taps.data());
        transpose_block(grad_out + bk * C * p.N, g.data(), C, p.N, inv_s);
        acc_t ds = 0, de = 0;
        for (int64_t m = 0; m < M; ++m) {
          const Tap<acc_t>& t = taps[m];
          if (t.is_nan) continue;  // NaN positions produce NaN values and no gradient
          const acc_t* gn = g.data() + (m / p.S) * C;
          if (need_features) {
            acc_t* l0 = local.data() + t.i0 * C;
            acc_t* l1 = local.data() + t.i1 * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) l0[c] += t.w0 * gn[c];
#pragma omp simd
            for (int64_t c = 0; c < C; ++c) l1[c] += t.w1 * gn[c];
          }
          if (need_segments && (t.g0 != acc_t(0) || t.g1 != acc_t(0))) {
            const acc_t* r0 = fb + t.i0 * C;
            const acc_t* r1 = fb + t.i1 * C;
            acc_t dvdx = 0;
#pragma omp simd reduction(+ : dvdx)
            for (int64_t c = 0; c < C; ++c) dvdx += gn[c] * (t.g0 * r0[c] + t.g1 * r1[c]);
            const acc_t frac = sample_fraction<acc_t>(m, M);
            ds += dvdx * dposition_dstart(context, frac);
            de += dvdx * dposition_dend(context, frac);
          }
        }
        if (need_segments) {
          grad_segments[bk * 2] = ds;
          grad_segments[bk * 2 + 1] = de;
        }
      }
      if (need_features) {
        std::lock_guard<std::mutex> lock(merge);
        acc_t* gb = grad_ft + b * TC;
        for (int64_t i = 0; i < TC; ++i) gb[i] += local[i];
      }
    });
  }
}

// Features as (B, T, Cp) in acc_t, the channels zero-padded to Cp (whole AVX-512 vectors).
at::Tensor padded_time_major(const at::Tensor& features, at::ScalarType acc_type, int64_t Cp) {
  at::Tensor ft = at::zeros({features.size(0), features.size(2), Cp}, features.options().dtype(acc_type));
  ft.narrow(2, 0, features.size(1)).copy_(features.transpose(1, 2));
  return ft;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename scalar_t, typename acc_t>
void forward_avx512(const at::Tensor& features, const at::Tensor& seg, at::Tensor& out, const Problem& p,
                    acc_t context, Padding padding) {
  const int64_t Cp = round_up(p.C, avx512::Vec<acc_t>::kWidth);
  const at::Tensor ft = padded_time_major(features, seg.scalar_type(), Cp);
  const acc_t* ftp = ft.const_data_ptr<acc_t>();
  const acc_t* segp = seg.const_data_ptr<acc_t>();
  scalar_t* outp = out.mutable_data_ptr<scalar_t>();
  const std::vector<acc_t> frac = sample_fractions<acc_t>(p.N * p.S);
  at::parallel_for(0, p.B * p.K, 16, [&](int64_t begin, int64_t end) {
    avx512::TapArrays<acc_t> taps(p.N * p.S);
    avx512::forward_segments<scalar_t, acc_t>(ftp, Cp, segp, frac.data(), outp, p, context, padding, begin, end,
                                              taps);
  });
}

template <typename scalar_t, typename acc_t>
void backward_avx512(const at::Tensor& grad_out, const at::Tensor& features, const at::Tensor& seg,
                     at::Tensor& grad_ft, at::Tensor& grad_segments, const Problem& p, acc_t context,
                     Padding padding, bool need_features, bool need_segments) {
  const int64_t M = p.N * p.S, Cp = round_up(p.C, avx512::Vec<acc_t>::kWidth);
  const at::Tensor ft = padded_time_major(features, seg.scalar_type(), Cp);
  const std::vector<acc_t> frac = sample_fractions<acc_t>(M);
  std::vector<int32_t> points(M);
  for (int64_t m = 0; m < M; ++m) points[m] = static_cast<int32_t>(m / p.S);
  std::vector<acc_t> dstart(M), dend(M);
  sample_position_derivatives(context, M, dstart.data(), dend.data());
  std::mutex merge;
  for (int64_t b = 0; b < p.B; ++b) {
    // One range of segments per thread, so each thread fills one private (T, Cp) buffer.
    const int64_t grain = std::max<int64_t>(1, (p.K + at::get_num_threads() - 1) / at::get_num_threads());
    at::parallel_for(0, p.K, grain, [&](int64_t begin, int64_t end) {
      avx512::TapArrays<acc_t> taps(M);
      avx512::LineAlignedBuffer<acc_t> local(need_features ? p.T * Cp : Cp);
      avx512::LineAlignedBuffer<acc_t> gbuf(p.N * avx512::Vec<acc_t>::kWidth);
      std::vector<int32_t> starts(M + 17);
      avx512::backward_segments<scalar_t, acc_t>(
          grad_out.const_data_ptr<scalar_t>(), ft.const_data_ptr<acc_t>(), Cp, seg.const_data_ptr<acc_t>(),
          frac.data(), points.data(), local.data(), grad_segments.mutable_data_ptr<acc_t>(), p, context, padding,
          b, begin, end, taps, gbuf.data(), starts.data(), dstart.data(), dend.data(), need_features,
          need_segments);
      if (need_features) {
        std::lock_guard<std::mutex> lock(merge);
        acc_t* gb = grad_ft.mutable_data_ptr<acc_t>() + b * p.T * p.C;
        for (int64_t t = 0; t < p.T; ++t) {
          for (int64_t c = 0; c < p.C; ++c) gb[t * p.C + c] += local.data()[t * Cp + c];
        }
      }
    });
  }
}

// The AVX-512 kernels keep row offsets in 32 bits.
bool avx512_applies(const Problem& p) {
  return use_avx512_kernels() && p.T * round_up(p.C, 16) < (int64_t(1) << 31);
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
  // The output is far larger than the caches and written once; a loop that calls the op again
  // gets the same pages back (heap_reusing_allocation.h), so its page faults are paid once.
  at::Tensor out = empty_reusing_heap({p.B, p.K, p.C, p.N}, features.options());
  if (out.numel() == 0) return out;
  const at::ScalarType acc_type = segment_interp_acc_type(features);
  const at::Tensor seg = segments.to(acc_type).contiguous();
  if (avx512_applies(p)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "segment_interp_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      forward_avx512<scalar_t, acc_t>(features, seg, out, p, static_cast<acc_t>(context), pad);
    });
    return out;
  }
  const at::Tensor ft = features.to(acc_type).transpose(1, 2).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "segment_interp_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_impl<scalar_t, acc_t>(ft.const_data_ptr<acc_t>(), seg.const_data_ptr<acc_t>(),
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
  at::Tensor grad_ft = at::zeros({p.B, p.T, p.C}, features.options().dtype(acc_type));
  at::Tensor grad_segments_acc = at::zeros({p.B, p.K, 2}, segments.options().dtype(acc_type));
  if (grad_output.numel() > 0 && (need_features_grad || need_segments_grad)) {
    const at::Tensor g = grad_output.to(features.scalar_type()).contiguous();
    const at::Tensor seg = segments.to(acc_type).contiguous();
    if (avx512_applies(p)) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "segment_interp_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        backward_avx512<scalar_t, acc_t>(g, features, seg, grad_ft, grad_segments_acc, p, static_cast<acc_t>(context),
                                         pad, need_features_grad, need_segments_grad);
      });
      return {grad_ft.transpose(1, 2).to(features.scalar_type()).contiguous(),
              grad_segments_acc.to(segments.scalar_type())};
    }
    const at::Tensor ft = features.to(acc_type).transpose(1, 2).contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "segment_interp_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      backward_impl<scalar_t, acc_t>(g.const_data_ptr<scalar_t>(), ft.const_data_ptr<acc_t>(),
                                     seg.const_data_ptr<acc_t>(), grad_ft.mutable_data_ptr<acc_t>(),
                                     grad_segments_acc.mutable_data_ptr<acc_t>(), p, static_cast<acc_t>(context),
                                     pad, need_features_grad, need_segments_grad);
    });
  }
  return {grad_ft.transpose(1, 2).to(features.scalar_type()).contiguous(),
          grad_segments_acc.to(segments.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(rcl_kernels, CPU, m) {
  m.impl("segment_interp", &segment_interp_cpu);
  m.impl("segment_interp_backward", &segment_interp_backward_cpu);
}

}  // namespace rcl_kernels
