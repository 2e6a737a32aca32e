// 1D RoIAlign on the CPU: forward, and a deterministic backward for input and roi coordinates.
//
// Layout: the input is transposed once to (B, T, C) in the accumulation type, so every tap reads
// a contiguous channel vector and the innermost loops run over channels. The forward pass is
// parallel over rois; each roi's (C, P) block is staged through a (P, C) buffer.
//
// Backward, bitwise deterministic from run to run and for any thread count, without atomics:
//   * input gradient: the channels are split between threads; each thread walks every roi, bin
//     and sub-sample in order and adds into its own channels of the (B, T, C) gradient, so every
//     gradient element is a sum in one fixed order (rois ascending, then bins, then sub-samples).
//   * roi gradient: parallel over rois; each roi's sum runs in a fixed order.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "heap_reusing_allocation.h"
#include "roi_align_1d_checks.h"
#include "roi_align_1d_common.h"

namespace rcl_kernels {
namespace {

using Problem = RoiAlign1dProblem;

template <typename acc_t>
RoiGeometry<acc_t> geometry_of(const acc_t* roi, const Problem& p, acc_t scale) {
  return roi_geometry<acc_t>(roi[0], roi[1], roi[2], p.B, p.P, scale, p.sampling_ratio, p.aligned);
}

template <typename acc_t>
acc_t inverse_count(const RoiGeometry<acc_t>& g) {
  return acc_t(1) / static_cast<acc_t>(std::max<int64_t>(g.grid, 1));
}

// ft: input as (B, T, C) in acc_t; out: (R, C, P).
template <typename scalar_t, typename acc_t>
void forward_impl(const acc_t* ft, const acc_t* rois, scalar_t* out, const Problem& p, acc_t scale) {
  const int64_t C = p.C, P = p.P;
  at::parallel_for(0, p.R, 8, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(P * C);
    for (int64_t r = begin; r < end; ++r) {
      const RoiGeometry<acc_t> g = geometry_of(rois + r * 3, p, scale);
      scalar_t* o = out + r * C * P;
      if (!g.valid) {
        std::fill(o, o + C * P, static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN()));
        continue;
      }
      const acc_t* fb = ft + g.batch * p.T * C;
      const acc_t inv = inverse_count(g);
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t bin = 0; bin < P; ++bin) {
        acc_t* a = acc.data() + bin * C;
        for (int64_t i = 0; i < g.grid; ++i) {
          const RoiTap<acc_t> tap = roi_tap(roi_sample_position(g, bin, i), p.T);
          if (!tap.live) continue;
          const acc_t* lo = fb + tap.low * C;
          const acc_t* hi = fb + tap.high * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) a[c] += tap.w_low * lo[c] + tap.w_high * hi[c];
        }
      }
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t bin = 0; bin < P; ++bin) o[c * P + bin] = static_cast<scalar_t>(acc[bin * C + c] * inv);
      }
    }
  });
}

// g: grad_output as (R, P, C) in acc_t; grad_ft: (B, T, C) zeros.
template <typename acc_t>
void input_grad_impl(const acc_t* g, const acc_t* rois, acc_t* grad_ft, const Problem& p, acc_t scale) {
  const int64_t C = p.C, P = p.P;
  const int64_t grain = std::max<int64_t>(16, (C + at::get_num_threads() - 1) / at::get_num_threads());
  at::parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < p.R; ++r) {
      const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
      if (!geo.valid) continue;
      const acc_t inv = inverse_count(geo);
      acc_t* gb = grad_ft + geo.batch * p.T * C;
      for (int64_t bin = 0; bin < P; ++bin) {
        const acc_t* gr = g + (r * P + bin) * C;
        for (int64_t i = 0; i < geo.grid; ++i) {
          const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
          if (!tap.live) continue;
          const acc_t wl = tap.w_low * inv, wh = tap.w_high * inv;
          acc_t* lo = gb + tap.low * C;
          acc_t* hi = gb + tap.high * C;
          // low == high at the last step: two separate passes keep that case right.
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) lo[c] += wl * gr[c];
#pragma omp simd
          for (int64_t c = c0; c < c1; ++c) hi[c] += wh * gr[c];
        }
      }
    }
  });
}

// grad_rois: (R, 3); column 0 (the batch index) gets no gradient.
template <typename acc_t>
void rois_grad_impl(const acc_t* g, const acc_t* ft, const acc_t* rois, acc_t* grad_rois, const Problem& p,
                    acc_t scale) {
  const int64_t C = p.C, P = p.P;
  at::parallel_for(0, p.R, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
      acc_t d1 = 0, d2 = 0;
      if (geo.valid) {
        const acc_t inv = inverse_count(geo);
        const acc_t* fb = ft + geo.batch * p.T * C;
        for (int64_t bin = 0; bin < P; ++bin) {
          const acc_t* gr = g + (r * P + bin) * C;
          for (int64_t i = 0; i < geo.grid; ++i) {
            const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
            if (!tap.sloped) continue;
            const acc_t* lo = fb + tap.low * C;
            const acc_t* hi = fb + tap.high * C;
            acc_t dvdt = 0;
#pragma omp simd reduction(+ : dvdt)
            for (int64_t c = 0; c < C; ++c) dvdt += gr[c] * (hi[c] - lo[c]);
            dvdt *= inv;
            const acc_t u = roi_sample_dposition_dbin(geo, bin, i);
            d1 += dvdt * (scale + geo.dbin_dx1 * u);
            d2 += dvdt * (geo.dbin_dx2 * u);
          }
        }
      }
      grad_rois[r * 3] = 0;
      grad_rois[r * 3 + 1] = d1;
      grad_rois[r * 3 + 2] = d2;
    }
  });
}

at::Tensor roi_align_1d_cpu(const at::Tensor& input, const at::Tensor& rois, int64_t output_size,
                            double spatial_scale, int64_t sampling_ratio, bool aligned) {
  check_roi_align_1d_args(input, rois, output_size, spatial_scale);
  TORCH_CHECK(input.device().is_cpu(), "roi_align_1d (cpu kernel): input must be a CPU tensor");
  const Problem p = make_roi_align_1d_problem(input, rois, output_size, sampling_ratio, aligned);
  at::Tensor out = empty_reusing_heap({p.R, p.C, p.P}, input.options());
  if (out.numel() == 0) return out;
  const at::ScalarType acc_type = roi_align_1d_acc_type(input);
  const at::Tensor ft = input.to(acc_type).transpose(1, 2).contiguous();
  const at::Tensor r = rois.to(acc_type).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_1d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_impl<scalar_t, acc_t>(ft.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(),
                                  out.mutable_data_ptr<scalar_t>(), p, static_cast<acc_t>(spatial_scale));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> roi_align_1d_backward_cpu(const at::Tensor& grad_output, const at::Tensor& input,
                                                             const at::Tensor& rois, int64_t output_size,
                                                             double spatial_scale, int64_t sampling_ratio,
                                                             bool aligned, bool need_input_grad,
                                                             bool need_rois_grad) {
  check_roi_align_1d_args(input, rois, output_size, spatial_scale);
  const Problem p = make_roi_align_1d_problem(input, rois, output_size, sampling_ratio, aligned);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({p.R, p.C, p.P}),
              "roi_align_1d_backward: grad_output must have shape (R, C, output_size) = (", p.R, ", ", p.C, ", ",
              p.P, "), got ", grad_output.sizes());
  const at::ScalarType acc_type = roi_align_1d_acc_type(input);
  at::Tensor grad_ft = at::zeros({p.B, p.T, p.C}, input.options().dtype(acc_type));
  at::Tensor grad_rois = at::zeros({p.R, 3}, rois.options().dtype(acc_type));
  if (grad_output.numel() > 0 && (need_input_grad || need_rois_grad)) {
    // Rounded to the input's dtype first, as the other backends see it.
    const at::Tensor g = grad_output.to(input.scalar_type()).to(acc_type).transpose(1, 2).contiguous();
    const at::Tensor r = rois.to(acc_type).contiguous();
    AT_DISPATCH_FLOATING_TYPES(acc_type, "roi_align_1d_backward_cpu", [&] {
      using acc_t = scalar_t;
      const acc_t scale = static_cast<acc_t>(spatial_scale);
      if (need_input_grad) {
        input_grad_impl<acc_t>(g.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(), grad_ft.mutable_data_ptr<acc_t>(),
                               p, scale);
      }
      if (need_rois_grad) {
        const at::Tensor ft = input.to(acc_type).transpose(1, 2).contiguous();
        rois_grad_impl<acc_t>(g.const_data_ptr<acc_t>(), ft.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(),
                              grad_rois.mutable_data_ptr<acc_t>(), p, scale);
      }
    });
  }
  return {grad_ft.transpose(1, 2).to(input.scalar_type()).contiguous(), grad_rois.to(rois.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(rcl_kernels, CPU, m) {
  m.impl("roi_align_1d", &roi_align_1d_cpu);
  m.impl("roi_align_1d_backward", &roi_align_1d_backward_cpu);
}

}  // namespace rcl_kernels
