// Arithmetic of the Soft-NMS op shared by the CPU and CUDA kernels.
//
// Every backend (these two kernels and the PyTorch reference, rcl_kernels/reference/soft_nms.py)
// must pick the same candidates, ties included, so every value that decides a selection is
// computed in float32 (float64 for float64 inputs) by the same sequence of correctly rounded IEEE operations:
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

// The constants every backend derives from the user's (double) arguments in the same way, in
// the precision of the computation: float32 (Params), or float64 for float64 inputs (CPU kernel
// and reference only).
template <typename scalar_t>
struct ParamsOf {
  Method method;
  scalar_t neg_inv_sigma;  // rounded -1 / sigma: the Gaussian weight is exp(tIoU^2 * neg_inv_sigma)
  scalar_t iou_threshold;  // decay only where tIoU > iou_threshold
  scalar_t min_score;      // rounded min_score: selectable only while score >= min_score
  bool width_gate;         // decay only where tIoU > gate_t1 + gate_t2 * (end_best - start_best)
  scalar_t gate_t1, gate_t2;
};
using Params = ParamsOf<float>;

template <typename scalar_t>
inline ParamsOf<scalar_t> make_params_of(int method, double sigma, double iou_threshold, double min_score,
                                         bool width_gate, double gate_t1, double gate_t2) {
  return ParamsOf<scalar_t>{static_cast<Method>(method),
                            static_cast<scalar_t>(-1.0 / sigma),
                            static_cast<scalar_t>(iou_threshold),
                            static_cast<scalar_t>(min_score),
                            width_gate,
                            static_cast<scalar_t>(gate_t1),
                            static_cast<scalar_t>(gate_t2)};
}

inline Params make_params(int method, double sigma, double iou_threshold, double min_score, bool width_gate,
                          double gate_t1, double gate_t2) {
  return make_params_of<float>(method, sigma, iou_threshold, min_score, width_gate, gate_t1, gate_t2);
}

// The smallest normal number of the computation's type (FLT_MIN, DBL_MIN).
template <typename scalar_t>
RCL_HOST_DEVICE constexpr scalar_t min_normal() {
  return sizeof(scalar_t) == sizeof(double) ? static_cast<scalar_t>(DBL_MIN) : static_cast<scalar_t>(FLT_MIN);
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

RCL_HOST_DEVICE double double_from_bits(int64_t bits) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(bits);
#else
  double d;
  std::memcpy(&d, &bits, sizeof(d));
  return d;
#endif
}

RCL_HOST_DEVICE int64_t bits_from_double(double d) {
#ifdef __CUDA_ARCH__
  return __double_as_longlong(d);
#else
  int64_t bits;
  std::memcpy(&bits, &d, sizeof(bits));
  return bits;
#endif
}

template <typename scalar_t>
RCL_HOST_DEVICE bool is_nan(scalar_t x) {
  return x != x;
}

// Segments with a NaN or infinite coordinate are replaced by the inverted segment (1, 0): the
// intersection of an inverted segment with anything is negative, so such a candidate's tIoU
// with every other candidate is 0 and it neither suppresses nor is suppressed.
template <typename scalar_t>
RCL_HOST_DEVICE bool finite_segment(scalar_t start, scalar_t end) {
  return start - start == scalar_t(0) && end - end == scalar_t(0);  // false for NaN and +-inf
}

// Scores below the smallest normal number in magnitude (subnormals) become +0; NaN stays NaN.
template <typename scalar_t>
RCL_HOST_DEVICE scalar_t flush_score(scalar_t s) {
  return (s < min_normal<scalar_t>() && s > -min_normal<scalar_t>()) ? scalar_t(0) : s;
}

// tIoU = inter / (len_best - inter + end_j - start_j), the union summed left to right in that
// order (BSN's and mmaction2's order, so that float64 inputs reproduce their decisions at tIoUs
// that equal the width gate exactly), 0 where the segments do not overlap (inter <= 0).
// Where inter > 0 the union is >= inter, so the quotient lies in (0, 1], or is NaN when lengths
// overflow to inf. Quotients below the smallest normal number (subnormal, which the device would
// flush) and NaN give 0: such a pair is left alone.
template <typename scalar_t>
RCL_HOST_DEVICE scalar_t tiou(scalar_t start_b, scalar_t end_b, scalar_t len_b, scalar_t start_j, scalar_t end_j) {
  const scalar_t lo = start_b > start_j ? start_b : start_j;
  const scalar_t hi = end_b < end_j ? end_b : end_j;
  const scalar_t inter = sub_rn(hi, lo);
  const scalar_t uni = sub_rn(add_rn(sub_rn(len_b, inter), end_j), start_j);
  const scalar_t iou = div_rn(inter, uni);
  return (inter > scalar_t(0) && iou >= min_normal<scalar_t>()) ? iou : scalar_t(0);
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

// exp(x) for x <= 0 in float64, by the same scheme: Cody-Waite reduction by ln 2 (ln 2 split as
// in fdlibm: a high part with 32 significant bits, so k * kLn2HiD is exact), then the Taylor
// polynomial of degree 13 on |r| <= ln(2) / 2 (truncation below 0.05 ulp) by Horner's rule; the
// relative error stays within 2 ulp (checked in tests/test_soft_nms.py). x < -708 (the result
// would be within a factor 2 of DBL_MIN) and NaN give 0.
constexpr double kExpMinArgD = -708.0;
constexpr double kLog2eD = 1.4426950408889634;
constexpr double kRoundMagicD = 6755399441055744.0;  // 1.5 * 2^52
constexpr double kLn2HiD = 6.93147180369123816490e-01;
constexpr double kLn2LoD = 1.90821492927058770002e-10;
constexpr int kExpTaylorDegreeD = 13;

RCL_HOST_DEVICE double exp_nonpositive(double x) {
  const bool in_range = x >= kExpMinArgD;
  const double xc = in_range ? x : 0.0;
  const double t = mul_rn(xc, kLog2eD);
  const double k = sub_rn(add_rn(t, kRoundMagicD), kRoundMagicD);
  double r = sub_rn(xc, mul_rn(k, kLn2HiD));
  r = sub_rn(r, mul_rn(k, kLn2LoD));
  // Horner's rule from the highest coefficient 1/13! down: p = 1 + r (1 + r/2 (1 + r/3 (...))),
  // written as p_n = 1 + r * p_{n+1} / n so that every coefficient is a division by a small
  // integer (exact constants, no table).
  double p = 1.0;
  for (int n = kExpTaylorDegreeD; n >= 1; --n) p = add_rn(1.0, div_rn(mul_rn(r, p), static_cast<double>(n)));
  // 2^k, k in [-1022, 0]. k's integer from the bits of k + 1.5 * 2^52 (exact: one unit per ulp
  // there) rather than a double -> int64 conversion, which AVX2 lacks, so the loops that call this
  // vectorise; the same integer as static_cast<int64_t>(k).
  const int64_t k_int = bits_from_double(add_rn(k, kRoundMagicD)) - bits_from_double(kRoundMagicD);
  const double scale = double_from_bits((k_int + 1023) << 52);
  return in_range ? mul_rn(p, scale) : 0.0;
}

// The score of a candidate after a decay by a selected candidate with overlap `iou`.
template <Method kMethod, typename scalar_t>
RCL_HOST_DEVICE scalar_t decayed_score(scalar_t score, scalar_t iou, scalar_t neg_inv_sigma) {
  if (kMethod == Method::Hard) return scalar_t(0);
  scalar_t weight;
  if (kMethod == Method::Gaussian) {
    const scalar_t squared = mul_rn(iou, iou);
    weight = exp_nonpositive(mul_rn(squared >= min_normal<scalar_t>() ? squared : scalar_t(0), neg_inv_sigma));
  } else {
    weight = sub_rn(scalar_t(1), iou);
  }
  return flush_score(mul_rn(score, weight));
}

// Candidates of the selected segment's label with tIoU above this are decayed (besides
// iou_threshold); -inf without a width gate.
template <typename scalar_t>
RCL_HOST_DEVICE scalar_t gate_threshold(const ParamsOf<scalar_t>& p, scalar_t len_b) {
  return p.width_gate ? add_rn(p.gate_t1, mul_rn(p.gate_t2, len_b)) : static_cast<scalar_t>(-INFINITY);
}

// Whether the decay applies to a live candidate (score not NaN) with overlap `iou`.
template <typename scalar_t>
RCL_HOST_DEVICE bool decays(scalar_t score, scalar_t iou, scalar_t iou_threshold, scalar_t gate) {
  return !is_nan(score) && iou > iou_threshold && iou > gate;
}

// (score, index) order of the selection: higher score first, ties to the lower input index.
template <typename scalar_t>
RCL_HOST_DEVICE bool better(scalar_t score_a, int64_t index_a, scalar_t score_b, int64_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

// With min_score > 0 a candidate below it can never be selected again (decays never raise a
// non-negative score, and never lift a negative one above 0), so kernels may drop it early.
template <typename scalar_t>
RCL_HOST_DEVICE bool never_selectable(scalar_t score, scalar_t min_score) {
  return is_nan(score) || (min_score > scalar_t(0) && !(score >= min_score));
}

}  // namespace soft_nms
}  // namespace rcl_kernels
