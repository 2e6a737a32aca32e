// Schema of 1D RoIAlign, rcl_kernels::roi_align_1d and its backward (specification: the docstring
// of rcl_kernels/ops/roi_align_1d.py): input (B, C, T), rois (R, 3) = (batch index, start, end)
// -> (R, C, output_size); the backward returns (grad_input, grad_rois). Kernels:
// cpu/roi_align_1d_cpu.cpp and cuda/roi_align_1d_cuda.cu (TORCH_LIBRARY_IMPL); the fake kernel and
// autograd formula are registered by rcl_kernels/ops/roi_align_1d.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(rcl_kernels, m) {
  m.def(
      "roi_align_1d(Tensor input, Tensor rois, int output_size, float spatial_scale, int sampling_ratio, "
      "bool aligned) -> Tensor");
  m.def(
      "roi_align_1d_backward(Tensor grad_output, Tensor input, Tensor rois, int output_size, "
      "float spatial_scale, int sampling_ratio, bool aligned, bool need_input_grad, bool need_rois_grad) "
      "-> (Tensor, Tensor)");
}
