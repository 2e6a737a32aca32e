// Sampling rules of the SoI op shared by the CPU and CUDA kernels, so both compute the same
// positions, taps and derivatives. The Python reference (rcl_kernels/reference/segment_interp.py)
// spells out the same rules in PyTorch; the docstring of rcl_kernels.segment_interp is the spec.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "host_device.h"
#include "rounding.h"

namespace rcl_kernels {

enum class Padding : int { Zeros = 0, Border = 1, Bmn = 2 };

// Returns -1 for an unknown name; callers turn that into an error naming the argument.
inline int parse_padding(std::string_view name) {
  if (name == "zeros") return static_cast<int>(Padding::Zeros);
  if (name == "border") return static_cast<int>(Padding::Border);
  if (name == "bmn") return static_cast<int>(Padding::Bmn);
  return -1;
}

// Fraction t_k of sub-sample k along the window [a, b]: k / (M - 1), or 1/2 when M == 1.
template <typename acc_t>
RCL_HOST_DEVICE acc_t sample_fraction(int64_t k, int64_t M) {
  return M > 1 ? div_rn(static_cast<acc_t>(k), static_cast<acc_t>(M - 1)) : acc_t(0.5);
}

// Window ends a = s - context (e - s), b = e + context (e - s).
template <typename acc_t>
RCL_HOST_DEVICE void window(acc_t s, acc_t e, acc_t context, acc_t& a, acc_t& b) {
  const acc_t len = e - s;
  a = s - mul_rn(context, len);
  b = e + mul_rn(context, len);
}

// x = a + (b - a) t, and its derivatives with respect to s and e.
template <typename acc_t>
RCL_HOST_DEVICE acc_t sample_position(acc_t a, acc_t b, acc_t t) {
  return a + mul_rn(b - a, t);
}
template <typename acc_t>
RCL_HOST_DEVICE acc_t dposition_dstart(acc_t context, acc_t t) {
  return (acc_t(1) + context) * (acc_t(1) - t) - context * t;
}
template <typename acc_t>
RCL_HOST_DEVICE acc_t dposition_dend(acc_t context, acc_t t) {
  return -context * (acc_t(1) - t) + (acc_t(1) + context) * t;
}

// One interpolation tap pair: value(x) = w0 F[i0] + w1 F[i1], dvalue/dx = g0 F[i0] + g1 F[i1].
// Indices are always inside [0, T-1] (weights are zero where padding applies), so a kernel can
// read F[i0], F[i1] unconditionally. A NaN position sets is_nan and zeroes every weight.
template <typename acc_t>
struct Tap {
  int64_t i0, i1;
  acc_t w0, w1, g0, g1;
  bool is_nan;
};

template <typename acc_t>
RCL_HOST_DEVICE Tap<acc_t> make_tap(acc_t x, int64_t T, Padding padding) {
  Tap<acc_t> tap{0, 0, acc_t(0), acc_t(0), acc_t(0), acc_t(0), false};
  if (x != x) {  // NaN
    tap.is_nan = true;
    return tap;
  }
  const acc_t last = static_cast<acc_t>(T - 1);
  if (padding == Padding::Border) {
    // Clamp, then interpolate; the slope is zero wherever clamping is active.
    const bool inside = x >= acc_t(0) && x <= last;
    const acc_t xc = x < acc_t(0) ? acc_t(0) : (x > last ? last : x);
    int64_t i0 = static_cast<int64_t>(std::floor(xc));
    if (i0 > T - 1) i0 = T - 1;
    const int64_t i1 = i0 + 1 < T ? i0 + 1 : T - 1;
    const acc_t frac = xc - static_cast<acc_t>(i0);
    tap.i0 = i0;
    tap.i1 = i1;
    tap.w0 = acc_t(1) - frac;
    tap.w1 = frac;
    if (inside && i1 != i0) {
      tap.g0 = acc_t(-1);
      tap.g1 = acc_t(1);
    }
    return tap;
  }
  if (padding == Padding::Bmn && x > acc_t(-1) && x < acc_t(0)) {
    // BMN splits positions with math.modf, which truncates toward zero: F[0] with weight 1.
    tap.w0 = acc_t(1);
    return tap;
  }
  // Zeros padding. Clamp before the float-to-int cast: positions beyond [-2, T+1] read only
  // padding anyway, and inf or 1e30 would overflow the cast.
  const acc_t xc = x < acc_t(-2) ? acc_t(-2) : (x > last + acc_t(2) ? last + acc_t(2) : x);
  const int64_t f = static_cast<int64_t>(std::floor(xc));
  const acc_t frac = xc - static_cast<acc_t>(f);
  const bool valid0 = f >= 0 && f <= T - 1;
  const bool valid1 = f + 1 >= 0 && f + 1 <= T - 1;
  if (valid0) {
    tap.i0 = f;
    tap.w0 = acc_t(1) - frac;
    tap.g0 = acc_t(-1);
  }
  if (valid1) {
    tap.i1 = f + 1;
    tap.w1 = frac;
    tap.g1 = acc_t(1);
  }
  return tap;
}

}  // namespace rcl_kernels
