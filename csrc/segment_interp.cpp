// Schema of SoI, rcl_kernels::segment_interp and its backward (specification: the docstring of
// rcl_kernels/ops/segment_interp.py). Kernels: cpu/segment_interp_cpu.cpp and
// cuda/segment_interp_cuda.cu (TORCH_LIBRARY_IMPL); the fake kernel and the autograd formula are
// registered by rcl_kernels/ops/segment_interp.py (from _segment_interp_registration.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(rcl_kernels, m) {
  m.def(
      "segment_interp(Tensor features, Tensor segments, int num_samples, int samples_per_point, "
      "float context, str padding) -> Tensor");
  m.def(
      "segment_interp_backward(Tensor grad_output, Tensor features, Tensor segments, int num_samples, "
      "int samples_per_point, float context, str padding, bool need_features_grad, "
      "bool need_segments_grad) -> (Tensor, Tensor)");
}
