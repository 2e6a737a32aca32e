// Arithmetic of the Soft-NMS op shared by the CPU and CUDA kernels.
//
// Every backend (these two kernels and the PyTorch reference, rcl_kernels/reference/soft_nms.py)
// must pick the same candidates, ties included, so every value that decides a selection is
// computed in float32 by the same sequence of correctly rounded IEEE operations:
//   * no fused multiply-add: add_rn, sub_rn, mul_rn, div_rn (rounding.h);
//   * the Gaussian weight uses its own exp (below) instead of the library's, whose last bit
//     differs between glibc, CUDA and PyTorch's vectorised kernels;
//   * scores below FLT_MIN in magnitude are flushed to 0 explicitly, so the device's
//     flush-to-zero mode never sees a subnormal score.
// The docstring of rcl_kernels.soft_nms is the specification.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "host_device.h"
#include "rounding.h"

namespace rcl_kernels {
namespace soft_nms {

enum class Method : int { Gaussian = 0, Linear = 1, Hard = 2 };

// Returns -1 for an unknown name; callers turn that into an error naming the argument.
inline int parse_method(std::string_view name) {
  if (name == "gaussian") return static_cast<int>(Method::Gaussian);
  if (name == "linear") return static_cast<int>(Method::Linear);
  if (name == "hard") return static_cast<int>(Method::Hard);
  return -1;
}

// The float32 constants every backend derives from the user's (double) arguments in the same way.
struct Params {
  Method method;
  float neg_inv_sigma;  // float32(-1 / sigma): the Gaussian weight is exp(tIoU^2 * neg_inv_sigma)
  float iou_threshold;  // decay only where tIoU > iou_threshold
  float min_score;      // float32(min_score): selectable only while score >= min_score
  bool width_gate;      // decay only where tIoU > gate_t1 + gate_t2 * (end_best - start_best)
  float gate_t1, gate_t2;
};

inline Params make_params(int method, double sigma, double iou_threshold, double min_score, bool width_gate,
                          double gate_t1, double gate_t2) {
  return Params{static_cast<Method>(method),
                static_cast<float>(-1.0 / sigma),
                static_cast<float>(iou_threshold),
                static_cast<float>(min_score),
                width_gate,
                static_cast<float>(gate_t1),
                static_cast<float>(gate_t2)};
}

RCL_HOST_DEVICE float float_from_bits(int32_t bits) {
#ifdef __CUDA_ARCH__
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

RCL_HOST_DEVICE bool is_nan(float x) { return x != x; }

// Segments with a NaN or infinite coordinate are replaced by the inverted segment (1, 0): the
// intersection of an inverted segment with anything is negative, so such a candidate's tIoU
// with every other candidate is 0 and it neither suppresses nor is suppressed.
RCL_HOST_DEVICE bool finite_segment(float start, float end) {
  return start - start == 0.f && end - end == 0.f;  // false for NaN and +-inf
}

// Scores with |s| < FLT_MIN (subnormals) become +0; NaN stays NaN.
RCL_HOST_DEVICE float flush_score(float s) { return (s < FLT_MIN && s > -FLT_MIN) ? 0.f : s; }

// tIoU = inter / (len_best + len_j - inter), 0 where the segments do not overlap (inter <= 0).
// Where inter > 0 the union is >= inter, so the quotient lies in (0, 1], or is NaN when lengths
// overflow to inf. Quotients below FLT_MIN (subnormal, which the device would flush) and NaN
// give 0: such a pair is left alone.
RCL_HOST_DEVICE float tiou(float start_b, float end_b, float len_b, float start_j, float end_j) {
  const float lo = start_b > start_j ? start_b : start_j;
  const float hi = end_b < end_j ? end_b : end_j;
  const float inter = sub_rn(hi, lo);
  const float uni = sub_rn(add_rn(len_b, sub_rn(end_j, start_j)), inter);
  const float iou = div_rn(inter, uni);
  return (inter > 0.f && iou >= FLT_MIN) ? iou : 0.f;
}

// exp(x) for x <= 0, in float32 with a fixed sequence of operations: Cody-Waite reduction by
// ln 2 and the degree-7 polynomial of Cephes' expf (S. L. Moshier, Cephes Mathematical Library;
// coefficients from there), relative error within 2 ulp (checked in tests/test_soft_nms.py).
// x < -86 (the result would be within a factor 3 of FLT_MIN) and NaN give 0, so the result is
// 0 or a normal float.
constexpr float kExpMinArg = -86.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: (t + M) - M rounds t to an integer
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpP0 = 1.9875691500e-4f;
constexpr float kExpP1 = 1.3981999507e-3f;
constexpr float kExpP2 = 8.3334519073e-3f;
constexpr float kExpP3 = 4.1665795894e-2f;
constexpr float kExpP4 = 1.6666665459e-1f;
constexpr float kExpP5 = 5.0000001201e-1f;

RCL_HOST_DEVICE float exp_nonpositive(float x) {
  const bool in_range = x >= kExpMinArg;
  const float xc = in_range ? x : 0.f;  // keeps the integer conversion below defined
  const float t = mul_rn(xc, kLog2e);
  const float k = sub_rn(add_rn(t, kRoundMagic), kRoundMagic);
  float r = sub_rn(xc, mul_rn(k, kLn2Hi));
  r = sub_rn(r, mul_rn(k, kLn2Lo));
  const float z = mul_rn(r, r);
  float p = kExpP0;
  p = add_rn(mul_rn(p, r), kExpP1);
  p = add_rn(mul_rn(p, r), kExpP2);
  p = add_rn(mul_rn(p, r), kExpP3);
  p = add_rn(mul_rn(p, r), kExpP4);
  p = add_rn(mul_rn(p, r), kExpP5);
  p = add_rn(mul_rn(p, z), r);
  p = add_rn(p, 1.f);
  const float scale = float_from_bits((static_cast<int32_t>(k) + 127) << 23);  // 2^k, k in [-124, 0]
  return in_range ? mul_rn(p, scale) : 0.f;
}

// The score of a candidate after a decay by a selected candidate with overlap `iou`.
template <Method kMethod>
RCL_HOST_DEVICE float decayed_score(float score, float iou, float neg_inv_sigma) {
  if (kMethod == Method::Hard) return 0.f;
  float weight;
  if (kMethod == Method::Gaussian) {
    const float squared = mul_rn(iou, iou);
    weight = exp_nonpositive(mul_rn(squared >= FLT_MIN ? squared : 0.f, neg_inv_sigma));  // no subnormal
  } else {
    weight = sub_rn(1.f, iou);
  }
  return flush_score(mul_rn(score, weight));
}

// Candidates of the selected segment's label with tIoU above this are decayed (besides
// iou_threshold); -inf without a width gate.
RCL_HOST_DEVICE float gate_threshold(const Params& p, float len_b) {
  return p.width_gate ? add_rn(p.gate_t1, mul_rn(p.gate_t2, len_b)) : -INFINITY;
}

// Whether the decay applies to a live candidate (score not NaN) with overlap `iou`.
RCL_HOST_DEVICE bool decays(float score, float iou, float iou_threshold, float gate) {
  return !is_nan(score) && iou > iou_threshold && iou > gate;
}

// (score, index) order of the selection: higher score first, ties to the lower input index.
RCL_HOST_DEVICE bool better(float score_a, int64_t index_a, float score_b, int64_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

// With min_score > 0 a candidate below it can never be selected again (decays never raise a
// non-negative score, and never lift a negative one above 0), so kernels may drop it early.
RCL_HOST_DEVICE bool never_selectable(float score, float min_score) {
  return is_nan(score) || (min_score > 0.f && !(score >= min_score));
}

}  // namespace soft_nms
}  // namespace rcl_kernels
