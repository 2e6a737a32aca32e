// 1D RoIAlign on CUDA: forward, and backward for input and roi coordinates. The kernels and their
// launch plans are in roi_align_1d_kernels.cuh (also compiled for the CPU by tests/cuda_emulation).
//
// Design
//   * forward: one thread per output element (roi, channel, bin), as Align1D does; coalesced
//     writes, gathers along one (batch, channel) row of the input.
//   * input gradient (default): the forward's threads again, each adding its bin's 2 G taps into
//     the gradient with atomicAdd, as torchvision's roi_align backward does. R C P threads, the
//     work the problem needs, and not deterministic in the last bits (the order of the adds
//     varies), so it calls alertNotDeterministic.
//   * input gradient under torch.use_deterministic_algorithms(True): one thread per (batch,
//     channel) row walks every roi, bin and sub-sample in the CPU kernel's order: bitwise the CPU
//     kernel's result, without atomics, but only B C threads, each walking all R rois.
//   * roi gradient: one block per roi, threads over its (channel, bin) pairs (coalesced reads of
//     grad_output), a fixed-order tree sum over the block: deterministic.
// Every product and sum is separately rounded (rounding.h), so nvcc's -fmad=true contracts none of
// them: the forward and the deterministic input gradient equal the CPU kernel bit for bit.
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "cuda/roi_align_1d_kernels.cuh"
#include "roi_align_1d_checks.h"

namespace rcl_kernels {
namespace {

using roi_align_1d::Launch;
using Problem = RoiAlign1dProblem;

dim3 grid_of(const Launch& l) { return dim3(static_cast<unsigned>(l.blocks)); }

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
    const Launch l = roi_align_1d::plan_forward(p);
    roi_align_1d::forward_kernel<scalar_t, acc_t><<<grid_of(l), l.threads, 0, stream>>>(
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
      if (need_input_grad && p.B * p.C > 0 && at::globalContext().deterministicAlgorithms()) {
        const Launch l = roi_align_1d::plan_input_grad_rows(p);
        roi_align_1d::input_grad_rows_kernel<acc_t><<<grid_of(l), l.threads, 0, stream>>>(
            g.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(), grad_f.mutable_data_ptr<acc_t>(), p, scale);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      } else if (need_input_grad && p.B * p.C > 0) {
        // Never raises here (deterministic mode took the branch above); it keeps this kernel
        // listed with torch's other non-deterministic ones.
        at::globalContext().alertNotDeterministic("roi_align_1d_backward_cuda");
        const Launch l = roi_align_1d::plan_input_grad_atomic(p);
        roi_align_1d::input_grad_atomic_kernel<acc_t><<<grid_of(l), l.threads, 0, stream>>>(
            g.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(), grad_f.mutable_data_ptr<acc_t>(), p, scale);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      if (need_rois_grad) {
        const at::Tensor f = input.to(acc_type).contiguous();
        const Launch l = roi_align_1d::plan_rois_grad(p);
        roi_align_1d::rois_grad_kernel<acc_t><<<grid_of(l), l.threads, 0, stream>>>(
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
