// Argument checks of the 1D RoIAlign op shared by the CPU and CUDA entry points. The Python
// wrapper (rcl_kernels/ops/roi_align_1d.py) checks the same things first with friendlier
// context; these guard direct torch.ops callers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>

#include "roi_align_1d_common.h"

namespace rcl_kernels {

inline void check_roi_align_1d_args(const at::Tensor& input, const at::Tensor& rois, int64_t output_size,
                                    double spatial_scale) {
  TORCH_CHECK(input.dim() == 3, "roi_align_1d: input must have shape (B, C, T), got ", input.sizes());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 3, "roi_align_1d: rois must have shape (R, 3), got ",
              rois.sizes());
  TORCH_CHECK(input.is_floating_point(), "roi_align_1d: input must be floating point, got ", input.scalar_type());
  TORCH_CHECK(rois.is_floating_point(), "roi_align_1d: rois must be floating point, got ", rois.scalar_type());
  TORCH_CHECK(input.device() == rois.device(), "roi_align_1d: input is on ", input.device(), " but rois is on ",
              rois.device());
  TORCH_CHECK(output_size >= 1, "roi_align_1d: output_size must be >= 1, got ", output_size);
  TORCH_CHECK(std::isfinite(spatial_scale) && spatial_scale > 0,
              "roi_align_1d: spatial_scale must be finite and > 0, got ", spatial_scale);
  TORCH_CHECK(input.size(2) >= 1 || rois.size(0) == 0 || input.size(1) == 0,
              "roi_align_1d: input must have at least one time step (T >= 1)");
}

inline RoiAlign1dProblem make_roi_align_1d_problem(const at::Tensor& input, const at::Tensor& rois,
                                                   int64_t output_size, int64_t sampling_ratio, bool aligned) {
  return RoiAlign1dProblem{input.size(0), input.size(1), input.size(2), rois.size(0), output_size, sampling_ratio,
                           aligned};
}

// Positions and sums run in float64 for float64 input, else in float32.
inline at::ScalarType roi_align_1d_acc_type(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace rcl_kernels
