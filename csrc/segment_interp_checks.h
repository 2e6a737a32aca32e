// Argument checks of the SoI op shared by the CPU and CUDA entry points. The Python wrapper
// checks the same things first with friendlier context; these guard direct torch.ops callers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string_view>

#include "segment_interp_common.h"

namespace rcl_kernels {

inline Padding check_segment_interp_args(const at::Tensor& features, const at::Tensor& segments,
                                         int64_t num_samples, int64_t samples_per_point, double context,
                                         std::string_view padding) {
  TORCH_CHECK(features.dim() == 3, "segment_interp: features must have shape (B, C, T), got ",
              features.sizes());
  TORCH_CHECK(segments.dim() == 3 && segments.size(2) == 2,
              "segment_interp: segments must have shape (B, K, 2), got ", segments.sizes());
  TORCH_CHECK(features.size(0) == segments.size(0), "segment_interp: features has batch ",
              features.size(0), " but segments has batch ", segments.size(0));
  TORCH_CHECK(features.is_floating_point(), "segment_interp: features must be floating point, got ",
              features.scalar_type());
  TORCH_CHECK(segments.scalar_type() == at::kFloat || segments.scalar_type() == at::kDouble,
              "segment_interp: segments must be float32 or float64, got ", segments.scalar_type());
  TORCH_CHECK(features.device() == segments.device(), "segment_interp: features is on ", features.device(),
              " but segments is on ", segments.device());
  TORCH_CHECK(num_samples >= 1, "segment_interp: num_samples must be >= 1, got ", num_samples);
  TORCH_CHECK(samples_per_point >= 1, "segment_interp: samples_per_point must be >= 1, got ",
              samples_per_point);
  TORCH_CHECK(std::isfinite(context) && context >= 0, "segment_interp: context must be finite and >= 0, got ",
              context);
  const int code = parse_padding(padding);
  TORCH_CHECK(code >= 0, "segment_interp: padding must be 'zeros', 'border' or 'bmn', got '", padding, "'");
  TORCH_CHECK(features.size(2) >= 1 || segments.size(1) == 0 || features.size(1) == 0,
              "segment_interp: features must have at least one time step (T >= 1)");
  return static_cast<Padding>(code);
}

// Positions are computed in float64 for float64 features, else in float32.
inline at::ScalarType segment_interp_acc_type(const at::Tensor& features) {
  return features.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace rcl_kernels
