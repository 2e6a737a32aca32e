// 1D RoIAlign on CUDA: forward, and a deterministic backward for input and roi coordinates.
//
// Deliberately the CPU kernel's loops (csrc/cpu/roi_align_1d_cpu.cpp), one thread per loop body:
//   * forward: one thread per output element (roi, channel, bin), as Align1D does;
//   * input gradient: one thread per (batch, channel) row of the gradient, walking every roi,
//     bin and sub-sample in order, so each gradient element is a sum in one fixed order:
//     bitwise deterministic without atomics (Align1D's atomicAdd is not, which is why OpenTAD
//     rounds its inputs to half and computes in double);
//   * roi gradient: one thread per roi, channels, bins and sub-samples in order.
// The Triton backend is the tuned GPU path; this one is the simple, checkable one.
// Positions use the rounding rules of roi_align_1d_common.h (no FMA contraction under
// --use_fast_math), so they equal the CPU kernel's.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>

#include "roi_align_1d_checks.h"
#include "roi_align_1d_common.h"

namespace rcl_kernels {
namespace {

constexpr int kThreads = 256;

using Problem = RoiAlign1dProblem;

int blocks_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 16));
}

template <typename acc_t>
__device__ __forceinline__ RoiGeometry<acc_t> geometry_of(const acc_t* roi, const Problem& p, acc_t scale) {
  return roi_geometry<acc_t>(roi[0], roi[1], roi[2], p.B, p.P, scale, p.sampling_ratio, p.aligned);
}

template <typename acc_t>
__device__ __forceinline__ acc_t inverse_count(const RoiGeometry<acc_t>& g) {
  return div_rn(acc_t(1), static_cast<acc_t>(g.grid > 1 ? g.grid : 1));
}

// f: input (B, C, T) contiguous in acc_t; out: (R, C, P).
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const acc_t* __restrict__ f, const acc_t* __restrict__ rois, scalar_t* __restrict__ out,
                               Problem p, acc_t scale) {
  const int64_t total = p.R * p.C * p.P;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t bin = index % p.P;
    const int64_t c = (index / p.P) % p.C;
    const int64_t r = index / (p.P * p.C);
    const RoiGeometry<acc_t> g = geometry_of(rois + r * 3, p, scale);
    if (!g.valid) {
      out[index] = static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
      continue;
    }
    const acc_t* row = f + (g.batch * p.C + c) * p.T;
    acc_t sum = 0;
    for (int64_t i = 0; i < g.grid; ++i) {
      const RoiTap<acc_t> tap = roi_tap(roi_sample_position(g, bin, i), p.T);
      if (tap.live) sum += tap.w_low * row[tap.low] + tap.w_high * row[tap.high];
    }
    out[index] = static_cast<scalar_t>(sum * inverse_count(g));
  }
}

// g: grad_output (R, C, P) contiguous in acc_t; grad_f: (B, C, T) zeros.
template <typename acc_t>
__global__ void input_grad_kernel(const acc_t* __restrict__ g, const acc_t* __restrict__ rois,
                                  acc_t* __restrict__ grad_f, Problem p, acc_t scale) {
  const int64_t total = p.B * p.C;
  for (int64_t row_index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row_index < total;
       row_index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = row_index / p.C, c = row_index % p.C;
    acc_t* row = grad_f + row_index * p.T;
    for (int64_t r = 0; r < p.R; ++r) {
      const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
      if (!geo.valid || geo.batch != b) continue;
      const acc_t inv = inverse_count(geo);
      const acc_t* gr = g + (r * p.C + c) * p.P;
      for (int64_t bin = 0; bin < p.P; ++bin) {
        const acc_t gv = gr[bin] * inv;
        for (int64_t i = 0; i < geo.grid; ++i) {
          const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
          if (!tap.live) continue;
          row[tap.low] += tap.w_low * gv;
          row[tap.high] += tap.w_high * gv;
        }
      }
    }
  }
}

// grad_rois: (R, 3); column 0 (the batch index) gets no gradient.
template <typename acc_t>
__global__ void rois_grad_kernel(const acc_t* __restrict__ g, const acc_t* __restrict__ f,
                                 const acc_t* __restrict__ rois, acc_t* __restrict__ grad_rois, Problem p,
                                 acc_t scale) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < p.R; r += int64_t(blockDim.x) * gridDim.x) {
    const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
    acc_t d1 = 0, d2 = 0;
    if (geo.valid) {
      const acc_t inv = inverse_count(geo);
      for (int64_t bin = 0; bin < p.P; ++bin) {
        for (int64_t i = 0; i < geo.grid; ++i) {
          const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
          if (!tap.sloped) continue;
          acc_t dvdt = 0;
          for (int64_t c = 0; c < p.C; ++c) {
            const acc_t* row = f + (geo.batch * p.C + c) * p.T;
            dvdt += g[(r * p.C + c) * p.P + bin] * (row[tap.high] - row[tap.low]);
          }
          dvdt *= inv;
          const acc_t u = roi_sample_dposition_dbin(geo, bin, i);
          d1 += dvdt * (scale + mul_rn(geo.dbin_dx1, u));
          d2 += dvdt * mul_rn(geo.dbin_dx2, u);
        }
      }
    }
    grad_rois[r * 3] = 0;
    grad_rois[r * 3 + 1] = d1;
    grad_rois[r * 3 + 2] = d2;
  }
}

at::Tensor roi_align_1d_cuda(const at::Tensor& input, const at::Tensor& rois, int64_t output_size,
                             double spatial_scale, int64_t sampling_ratio, bool aligned) {
  check_roi_align_1d_args(input, rois, output_size, spatial_scale);
  TORCH_CHECK(input.is_cuda(), "roi_align_1d (cuda kernel): input must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(input.device());
  const Problem p = make_roi_align_1d_problem(input, rois, output_size, sampling_ratio, aligned);
  at::Tensor out = at::empty({p.R, p.C, p.P}, input.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::ScalarType acc_type = roi_align_1d_acc_type(input);
  const at::Tensor f = input.to(acc_type).contiguous();
  const at::Tensor r = rois.to(acc_type).contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_1d_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    forward_kernel<scalar_t, acc_t><<<blocks_for(out.numel()), kThreads, 0, stream>>>(
        f.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(), out.mutable_data_ptr<scalar_t>(), p,
        static_cast<acc_t>(spatial_scale));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> roi_align_1d_backward_cuda(const at::Tensor& grad_output, const at::Tensor& input,
                                                              const at::Tensor& rois, int64_t output_size,
                                                              double spatial_scale, int64_t sampling_ratio,
                                                              bool aligned, bool need_input_grad,
                                                              bool need_rois_grad) {
  check_roi_align_1d_args(input, rois, output_size, spatial_scale);
  const c10::cuda::CUDAGuard guard(input.device());
  const Problem p = make_roi_align_1d_problem(input, rois, output_size, sampling_ratio, aligned);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({p.R, p.C, p.P}),
              "roi_align_1d_backward: grad_output must have shape (R, C, output_size) = (", p.R, ", ", p.C, ", ",
              p.P, "), got ", grad_output.sizes());
  const at::ScalarType acc_type = roi_align_1d_acc_type(input);
  at::Tensor grad_f = at::zeros({p.B, p.C, p.T}, input.options().dtype(acc_type));
  at::Tensor grad_rois = at::zeros({p.R, 3}, rois.options().dtype(acc_type));
  if (grad_output.numel() > 0 && (need_input_grad || need_rois_grad)) {
    const at::Tensor g = grad_output.to(input.scalar_type()).to(acc_type).contiguous();
    const at::Tensor r = rois.to(acc_type).contiguous();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(acc_type, "roi_align_1d_backward_cuda", [&] {
      using acc_t = scalar_t;
      const acc_t scale = static_cast<acc_t>(spatial_scale);
      if (need_input_grad && p.B * p.C > 0) {
        input_grad_kernel<acc_t><<<blocks_for(p.B * p.C), kThreads, 0, stream>>>(
            g.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(), grad_f.mutable_data_ptr<acc_t>(), p, scale);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (need_rois_grad) {
        const at::Tensor f = input.to(acc_type).contiguous();
        rois_grad_kernel<acc_t><<<blocks_for(p.R), kThreads, 0, stream>>>(
            g.const_data_ptr<acc_t>(), f.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(),
            grad_rois.mutable_data_ptr<acc_t>(), p, scale);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
    });
  }
  return {grad_f.to(input.scalar_type()), grad_rois.to(rois.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(rcl_kernels, CUDA, m) {
  m.impl("roi_align_1d", &roi_align_1d_cuda);
  m.impl("roi_align_1d_backward", &roi_align_1d_backward_cuda);
}

}  // namespace rcl_kernels
