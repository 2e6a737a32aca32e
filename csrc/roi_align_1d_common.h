// Sampling rules of the 1D RoIAlign op shared by the CPU and CUDA kernels. The spec is the
// docstring of rcl_kernels.roi_align_1d; rcl_kernels/reference/roi_align_1d.py spells out the same
// rules in PyTorch. They are torchvision's roi_align (ops/cpu/roi_align_kernel.cpp) on one axis,
// which with aligned = false are also G-TAD's Align1D.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"
#include "rounding.h"

namespace rcl_kernels {

// Keep in step with MAX_ADAPTIVE_SAMPLES in rcl_kernels/reference/roi_align_1d.py.
constexpr int64_t kRoiAlignMaxAdaptiveSamples = int64_t(1) << 16;

// Sizes and sampling parameters of one call, for the kernels.
struct RoiAlign1dProblem {
  int64_t B, C, T, R, P;
  int64_t sampling_ratio;
  bool aligned;
};

// Where one roi samples: batch index, start, bin size, sub-samples per bin, and the derivatives
// of start and bin size with respect to the roi's two coordinates.
template <typename acc_t>
struct RoiGeometry {
  int64_t batch;
  bool valid;  // batch index inside [0, B) and finite coordinates; otherwise the output is NaN
  acc_t start, bin_size;
  int64_t grid;
  acc_t dbin_dx1, dbin_dx2;  // d bin_size / d x1, d x2 (d start / d x1 is spatial_scale)
};

template <typename acc_t>
RCL_HOST_DEVICE RoiGeometry<acc_t> roi_geometry(acc_t index, acc_t x1, acc_t x2, int64_t batch_size,
                                                int64_t output_size, acc_t spatial_scale, int64_t sampling_ratio,
                                                bool aligned) {
  RoiGeometry<acc_t> g{0, false, acc_t(0), acc_t(0), 0, acc_t(0), acc_t(0)};
  // The batch index is truncated toward zero, as a C cast does; test before casting.
  g.valid = index > acc_t(-1) && index < static_cast<acc_t>(batch_size) && std::isfinite(x1) && std::isfinite(x2);
  if (!g.valid) return g;
  g.batch = static_cast<int64_t>(index);
  // Do not round the coordinates: the half-step offset of aligned = true is what makes a
  // coordinate x refer to the point between steps floor(x - 1/2) and floor(x + 1/2).
  const acc_t offset = aligned ? acc_t(0.5) : acc_t(0);
  g.start = mul_rn(x1, spatial_scale) - offset;
  const acc_t end = mul_rn(x2, spatial_scale) - offset;
  acc_t length = end - g.start;
  const acc_t P = static_cast<acc_t>(output_size);
  bool clamped = false;
  if (!aligned && length < acc_t(1)) {  // malformed rois are forced to length 1
    length = acc_t(1);
    clamped = true;
  }
  g.bin_size = div_rn(length, P);
  if (sampling_ratio > 0) {
    g.grid = sampling_ratio;
  } else {
    acc_t ratio = div_rn(length, P);
    ratio = ratio < acc_t(0) ? acc_t(0) : ratio;
    ratio = ratio > static_cast<acc_t>(kRoiAlignMaxAdaptiveSamples) ? static_cast<acc_t>(kRoiAlignMaxAdaptiveSamples)
                                                                    : ratio;
    g.grid = static_cast<int64_t>(std::ceil(ratio));
  }
  g.dbin_dx1 = clamped ? acc_t(0) : div_rn(-spatial_scale, P);
  g.dbin_dx2 = clamped ? acc_t(0) : div_rn(spatial_scale, P);
  return g;
}

// Position of sub-sample i of bin p, in torchvision's order of operations:
// (start + p * bin) + ((i + 1/2) * bin) / grid; and its derivative with respect to bin_size.
template <typename acc_t>
RCL_HOST_DEVICE acc_t roi_sample_position(const RoiGeometry<acc_t>& g, int64_t p, int64_t i) {
  const acc_t grid = static_cast<acc_t>(g.grid);
  return (g.start + mul_rn(static_cast<acc_t>(p), g.bin_size)) +
         div_rn(mul_rn(static_cast<acc_t>(i) + acc_t(0.5), g.bin_size), grid);
}
template <typename acc_t>
RCL_HOST_DEVICE acc_t roi_sample_dposition_dbin(const RoiGeometry<acc_t>& g, int64_t p, int64_t i) {
  return static_cast<acc_t>(p) + div_rn(static_cast<acc_t>(i) + acc_t(0.5), static_cast<acc_t>(g.grid));
}

// One linear-interpolation tap: value(t) = w_low F[low] + w_high F[high], dvalue/dt =
// slope * (F[high] - F[low]) with slope 0 or 1. low and high are inside [0, T-1] whenever
// live; a dead tap (outside [-1, T]) reads nothing.
template <typename acc_t>
struct RoiTap {
  int64_t low, high;
  acc_t w_low, w_high;
  bool live, sloped;
};

template <typename acc_t>
RCL_HOST_DEVICE RoiTap<acc_t> roi_tap(acc_t t, int64_t T) {
  RoiTap<acc_t> tap{0, 0, acc_t(0), acc_t(0), false, false};
  if (!(t >= acc_t(-1) && t <= static_cast<acc_t>(T))) return tap;  // also NaN
  tap.live = true;
  // Positions in [-1, 0] read F[0]; positions in [T-1, T] read F[T-1]: flat there, no slope.
  if (t <= acc_t(0)) t = acc_t(0);
  const int64_t low = static_cast<int64_t>(t);
  if (low >= T - 1) {
    tap.low = tap.high = T - 1;
    tap.w_low = acc_t(1);
    return tap;
  }
  tap.low = low;
  tap.high = low + 1;
  const acc_t frac = t - static_cast<acc_t>(low);
  tap.w_low = acc_t(1) - frac;
  tap.w_high = frac;
  tap.sloped = t > acc_t(0);
  return tap;
}

}  // namespace rcl_kernels
