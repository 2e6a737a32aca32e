// The one schema file: every operator of the rcl_kernels namespace is declared here.
// Kernels live per backend in cpu/ and cuda/ (TORCH_LIBRARY_IMPL); fake (meta) kernels and
// autograd formulas are registered from Python (rcl_kernels/ops/*.py).
#include <torch/library.h>

TORCH_LIBRARY(rcl_kernels, m) {
  // SoI: continuous segment feature interpolation (see rcl_kernels/ops/segment_interp.py).
  m.def(
      "segment_interp(Tensor features, Tensor segments, int num_samples, int samples_per_point, "
      "float context, str padding) -> Tensor");
  m.def(
      "segment_interp_backward(Tensor grad_output, Tensor features, Tensor segments, int num_samples, "
      "int samples_per_point, float context, str padding, bool need_features_grad, "
      "bool need_segments_grad) -> (Tensor, Tensor)");

  // Batched Soft-NMS (see rcl_kernels/ops/soft_nms.py): returns (segments, scores, labels,
  // indices, counts); labels is an empty (0,) tensor when no labels are given. The width gate
  // applies only when width_gate is true.
  m.def(
      "soft_nms(Tensor segments, Tensor scores, Tensor? labels, Tensor? lengths, str method, float sigma, "
      "float iou_threshold, float min_score, int top_k, bool width_gate, float gate_t1, float gate_t2) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");

  // 1D RoIAlign (see rcl_kernels/ops/roi_align_1d.py): input (B, C, T), rois (R, 3) = (batch index,
  // start, end) -> (R, C, output_size). The backward op returns (grad_input, grad_rois).
  m.def(
      "roi_align_1d(Tensor input, Tensor rois, int output_size, float spatial_scale, int sampling_ratio, "
      "bool aligned) -> Tensor");
  m.def(
      "roi_align_1d_backward(Tensor grad_output, Tensor input, Tensor rois, int output_size, "
      "float spatial_scale, int sampling_ratio, bool aligned, bool need_input_grad, bool need_rois_grad) "
      "-> (Tensor, Tensor)");
}
