// Per-segment sampling data of the SoI CPU kernels: the problem sizes, the taps of one segment's
// N*S sub-samples (portable kernels; the AVX-512 ones compute the same taps in vectors) and the
// per-sub-sample fractions and position derivatives (both).
//
// Positions must be bit-identical to the reference's (correctly rounded, no multiply-add
// contraction): setup.py compiles with -ffp-contract=off, and these functions are kept out of
// line so that they are compiled for the default target even when called from AVX-512 code.
#pragma once

#include <cstdint>
#include <vector>

#include "segment_interp_common.h"

namespace rcl_kernels {

struct SegmentInterpProblem {
  int64_t B, C, T, K, N, S;
};

// Taps of the M = N*S sub-samples of one segment.
template <typename acc_t>
__attribute__((noinline)) void segment_taps(const acc_t* seg, acc_t context, const SegmentInterpProblem& p,
                                            Padding padding, Tap<acc_t>* taps) {
  acc_t a, b;
  window(seg[0], seg[1], context, a, b);
  const int64_t M = p.N * p.S;
  for (int64_t m = 0; m < M; ++m) {
    taps[m] = make_tap<acc_t>(sample_position(a, b, sample_fraction<acc_t>(m, M)), p.T, padding);
  }
}

// sample_fraction() of every sub-sample (the same for all segments).
template <typename acc_t>
__attribute__((noinline)) std::vector<acc_t> sample_fractions(int64_t M) {
  std::vector<acc_t> frac(static_cast<size_t>((M + 15) / 16 * 16), acc_t(0.5));
  for (int64_t m = 0; m < M; ++m) frac[m] = sample_fraction<acc_t>(m, M);
  return frac;
}

// dx/ds and dx/de of every sub-sample (the same for all segments).
template <typename acc_t>
__attribute__((noinline)) void sample_position_derivatives(acc_t context, int64_t M, acc_t* dstart, acc_t* dend) {
  for (int64_t m = 0; m < M; ++m) {
    const acc_t frac = sample_fraction<acc_t>(m, M);
    dstart[m] = dposition_dstart(context, frac);
    dend[m] = dposition_dend(context, frac);
  }
}

}  // namespace rcl_kernels
