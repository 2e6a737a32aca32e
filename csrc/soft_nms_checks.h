// Argument checks and output allocation of the Soft-NMS op, shared by the CPU and CUDA entry
// points. The Python wrapper checks the same things first with friendlier context; these guard
// direct torch.ops callers. Nothing here looks at tensor values (no host synchronisation).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <string_view>
#include <tuple>

#include "soft_nms_common.h"

namespace rcl_kernels {
namespace soft_nms {

inline Params check_args(const at::Tensor& segments, const at::Tensor& scores,
                         const std::optional<at::Tensor>& labels, const std::optional<at::Tensor>& lengths,
                         std::string_view method, double sigma, double iou_threshold, double min_score,
                         int64_t top_k, bool width_gate, double gate_t1, double gate_t2,
                         bool allow_float64 = false) {
  TORCH_CHECK(segments.dim() == 3 && segments.size(2) == 2, "soft_nms: segments must have shape (V, P, 2), got ",
              segments.sizes());
  TORCH_CHECK(scores.dim() == 2 && scores.size(0) == segments.size(0) && scores.size(1) == segments.size(1),
              "soft_nms: scores must have shape (V, P) = (", segments.size(0), ", ", segments.size(1), "), got ",
              scores.sizes());
  // float64 (computed in float64) only where the caller's kernel has that precision (CPU).
  const bool float_ok = segments.scalar_type() == at::kFloat || (allow_float64 && segments.scalar_type() == at::kDouble);
  TORCH_CHECK(float_ok, "soft_nms: segments must be float32", allow_float64 ? " or float64" : "", ", got ",
              segments.scalar_type());
  TORCH_CHECK(scores.scalar_type() == segments.scalar_type(), "soft_nms: scores must have the dtype of segments (",
              segments.scalar_type(), "), got ", scores.scalar_type());
  TORCH_CHECK(scores.device() == segments.device(), "soft_nms: scores is on ", scores.device(),
              " but segments is on ", segments.device());
  TORCH_CHECK(segments.size(1) < (int64_t(1) << 31), "soft_nms: at most 2^31 - 1 candidates per video, got ",
              segments.size(1));
  if (labels.has_value()) {
    TORCH_CHECK(labels->sizes() == scores.sizes(), "soft_nms: labels must have shape (V, P) = ", scores.sizes(),
                ", got ", labels->sizes());
    TORCH_CHECK(labels->scalar_type() == at::kLong, "soft_nms: labels must be int64, got ", labels->scalar_type());
    TORCH_CHECK(labels->device() == segments.device(), "soft_nms: labels is on ", labels->device(),
                " but segments is on ", segments.device());
  }
  if (lengths.has_value()) {
    TORCH_CHECK(lengths->dim() == 1 && lengths->size(0) == segments.size(0),
                "soft_nms: lengths must have shape (V,) = (", segments.size(0), ",), got ", lengths->sizes());
    TORCH_CHECK(lengths->scalar_type() == at::kLong, "soft_nms: lengths must be int64, got ",
                lengths->scalar_type());
    TORCH_CHECK(lengths->device() == segments.device(), "soft_nms: lengths is on ", lengths->device(),
                " but segments is on ", segments.device());
  }
  const int code = parse_method(method);
  TORCH_CHECK(code >= 0, "soft_nms: method must be 'gaussian', 'linear' or 'hard', got '", method, "'");
  TORCH_CHECK(std::isfinite(sigma) && sigma > 0, "soft_nms: sigma must be finite and > 0, got ", sigma);
  TORCH_CHECK(std::isfinite(iou_threshold) && iou_threshold >= 0,
              "soft_nms: iou_threshold must be finite and >= 0, got ", iou_threshold);
  TORCH_CHECK(std::isfinite(min_score), "soft_nms: min_score must be finite, got ", min_score);
  TORCH_CHECK(top_k >= 1, "soft_nms: top_k must be >= 1, got ", top_k);
  TORCH_CHECK(!width_gate || (std::isfinite(gate_t1) && std::isfinite(gate_t2)),
              "soft_nms: width_gate must be two finite numbers, got (", gate_t1, ", ", gate_t2, ")");
  return make_params(code, sigma, iou_threshold, min_score, width_gate, gate_t1, gate_t2);
}

// (segments (V, top_k, 2), scores (V, top_k), labels (V, top_k) or (0,), indices (V, top_k),
// counts (V,)), uninitialised: the kernels write every element. Segments and scores have the
// inputs' float type.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> allocate_outputs(
    const at::Tensor& segments, bool has_labels, int64_t top_k) {
  const int64_t V = segments.size(0);
  const auto float_opts = segments.options().dtype(segments.scalar_type());
  const auto long_opts = segments.options().dtype(at::kLong);
  return {at::empty({V, top_k, 2}, float_opts), at::empty({V, top_k}, float_opts),
          has_labels ? at::empty({V, top_k}, long_opts) : at::empty({0}, long_opts),
          at::empty({V, top_k}, long_opts), at::empty({V}, long_opts)};
}

}  // namespace soft_nms
}  // namespace rcl_kernels
