// Schema of batched Soft-NMS, rcl_kernels::soft_nms (specification: the docstring of
// rcl_kernels/ops/soft_nms.py). Kernels: cpu/soft_nms_cpu.cpp and cuda/soft_nms_cuda.cu
// (TORCH_LIBRARY_IMPL); the fake kernel is registered from Python (rcl_kernels/ops/soft_nms.py).
// Returns (segments, scores, labels, indices, counts); labels is an empty (0,) tensor when no
// labels are given. The width gate applies only when width_gate is true.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(rcl_kernels, m) {
  m.def(
      "soft_nms(Tensor segments, Tensor scores, Tensor? labels, Tensor? lengths, str method, float sigma, "
      "float iou_threshold, float min_score, int top_k, bool width_gate, float gate_t1, float gate_t2) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}
