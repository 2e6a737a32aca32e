// AVX-512 kernels of SoI on the CPU, used where cpu_capability.h says the CPU has AVX-512.
//
// Layout: features are (B, T, Cp) in the accumulation type, Cp = C rounded up to a whole vector
// (zero padding), so every tap loads one channel vector without a mask. For a channel tile of W
// channels (W = 16 floats or 8 doubles) and a block of W points, the W point vectors are summed
// in registers, transposed in registers to W channel rows of W points, and stored straight into
// the (C, N) block of the output: full rows with streaming (non-temporal) stores, since the
// output is written once and is far larger than the caches; the features stay in L1/L2.
//
// The backward reads the (C, N) gradient block the same way (loads, then the transpose) into a
// small (N, W) buffer. The sub-samples of a segment fall into runs with the same two taps (many
// per row for short segments): each run sums its weighted gradients in registers, adds them to
// the thread-private (T, Cp) feature-gradient buffer once per tap row, and multiplies its slope
// once for the segment gradient, which is summed over channels in vectors and reduced once.
//
// Positions and tap weights come from vector_taps(): the scalar rule of make_tap() done with the
// same separately rounded operations (no FMA contraction: setup.py passes -ffp-contract=off), so
// they stay bit-identical to the portable kernel's and the reference's (tested).
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "segment_interp_cpu_taps.h"

#define RCL_AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define RCL_AVX512_INLINE RCL_AVX512_TARGET __attribute__((always_inline)) inline

namespace rcl_kernels {
namespace avx512 {

template <typename acc_t>
struct Vec;

template <>
struct Vec<float> {
  using reg = __m512;
  static constexpr int kWidth = 16;
  static RCL_AVX512_INLINE reg zero() { return _mm512_setzero_ps(); }
  static RCL_AVX512_INLINE reg set1(float x) { return _mm512_set1_ps(x); }
  static RCL_AVX512_INLINE reg load(const float* p) { return _mm512_loadu_ps(p); }
  static RCL_AVX512_INLINE void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static RCL_AVX512_INLINE reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static RCL_AVX512_INLINE reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static RCL_AVX512_INLINE reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static RCL_AVX512_INLINE float reduce(reg v) { return _mm512_reduce_add_ps(v); }
  static RCL_AVX512_INLINE reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }

  // What the tap computation needs: compares, blends (b where the mask is set), floor, and
  // the lane indices as 32-bit integers.
  using mask = __mmask16;
  using ivec = __m512i;
  static RCL_AVX512_INLINE mask lt(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static RCL_AVX512_INLINE mask le(reg a, reg b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static RCL_AVX512_INLINE mask is_nan(reg a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static RCL_AVX512_INLINE reg blend(mask m, reg a, reg b) { return _mm512_mask_blend_ps(m, a, b); }
  static RCL_AVX512_INLINE reg keep(mask m, reg a) { return _mm512_maskz_mov_ps(m, a); }
  static RCL_AVX512_INLINE reg floor(reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static RCL_AVX512_INLINE ivec to_int(reg integral) { return _mm512_cvttps_epi32(integral); }
  static RCL_AVX512_INLINE reg from_int(ivec i) { return _mm512_cvtepi32_ps(i); }
  static RCL_AVX512_INLINE ivec iset1(int32_t x) { return _mm512_set1_epi32(x); }
  static RCL_AVX512_INLINE ivec iadd(ivec a, ivec b) { return _mm512_add_epi32(a, b); }
  static RCL_AVX512_INLINE ivec imul(ivec a, ivec b) { return _mm512_mullo_epi32(a, b); }
  static RCL_AVX512_INLINE ivec imin(ivec a, ivec b) { return _mm512_min_epi32(a, b); }
  static RCL_AVX512_INLINE ivec ikeep(mask m, ivec a) { return _mm512_maskz_mov_epi32(m, a); }
  static RCL_AVX512_INLINE mask ile(ivec a, ivec b) { return _mm512_cmp_epi32_mask(a, b, _MM_CMPINT_LE); }
  static RCL_AVX512_INLINE mask ine(ivec a, ivec b) { return _mm512_cmp_epi32_mask(a, b, _MM_CMPINT_NE); }
  static RCL_AVX512_INLINE void istore(int32_t* p, ivec a) { _mm512_storeu_si512(p, a); }

  // r[i] lane j -> r[j] lane i. Unpack pairs of rows, then pairs of pairs (each 128-bit lane
  // then holds a 4 x 4 block), then move the 128-bit lanes into place.
  static RCL_AVX512_INLINE void transpose(reg* r) {
    reg t[16], u[16];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
      t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * g + 2]), d = _mm512_castps_pd(t[4 * g + 3]);
      u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    // u[4g + e], 128-bit lane L: rows 4g .. 4g+3 of column 4L + e.
#pragma GCC unroll 4
    for (int e = 0; e < 4; ++e) {
      const reg p0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x44), p1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xEE);
      const reg q0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x44);
      const reg q1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xEE);
      r[e] = _mm512_shuffle_f32x4(p0, q0, 0x88);
      r[4 + e] = _mm512_shuffle_f32x4(p0, q0, 0xDD);
      r[8 + e] = _mm512_shuffle_f32x4(p1, q1, 0x88);
      r[12 + e] = _mm512_shuffle_f32x4(p1, q1, 0xDD);
    }
  }
};

template <>
struct Vec<double> {
  using reg = __m512d;
  static constexpr int kWidth = 8;
  static RCL_AVX512_INLINE reg zero() { return _mm512_setzero_pd(); }
  static RCL_AVX512_INLINE reg set1(double x) { return _mm512_set1_pd(x); }
  static RCL_AVX512_INLINE reg load(const double* p) { return _mm512_loadu_pd(p); }
  static RCL_AVX512_INLINE void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static RCL_AVX512_INLINE reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static RCL_AVX512_INLINE reg mul(reg a, reg b) { return _mm512_mul_pd(a, b); }
  static RCL_AVX512_INLINE reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
  static RCL_AVX512_INLINE double reduce(reg v) { return _mm512_reduce_add_pd(v); }
  static RCL_AVX512_INLINE reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }

  using mask = __mmask8;
  using ivec = __m256i;
  static RCL_AVX512_INLINE mask lt(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
  static RCL_AVX512_INLINE mask le(reg a, reg b) { return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ); }
  static RCL_AVX512_INLINE mask is_nan(reg a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
  static RCL_AVX512_INLINE reg blend(mask m, reg a, reg b) { return _mm512_mask_blend_pd(m, a, b); }
  static RCL_AVX512_INLINE reg keep(mask m, reg a) { return _mm512_maskz_mov_pd(m, a); }
  static RCL_AVX512_INLINE reg floor(reg a) { return _mm512_roundscale_pd(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static RCL_AVX512_INLINE ivec to_int(reg integral) { return _mm512_cvttpd_epi32(integral); }
  static RCL_AVX512_INLINE reg from_int(ivec i) { return _mm512_cvtepi32_pd(i); }
  static RCL_AVX512_INLINE ivec iset1(int32_t x) { return _mm256_set1_epi32(x); }
  static RCL_AVX512_INLINE ivec iadd(ivec a, ivec b) { return _mm256_add_epi32(a, b); }
  static RCL_AVX512_INLINE ivec imul(ivec a, ivec b) { return _mm256_mullo_epi32(a, b); }
  static RCL_AVX512_INLINE ivec imin(ivec a, ivec b) { return _mm256_min_epi32(a, b); }
  static RCL_AVX512_INLINE ivec ikeep(mask m, ivec a) { return _mm256_maskz_mov_epi32(m, a); }
  static RCL_AVX512_INLINE mask ile(ivec a, ivec b) { return _mm256_cmp_epi32_mask(a, b, _MM_CMPINT_LE); }
  static RCL_AVX512_INLINE mask ine(ivec a, ivec b) { return _mm256_cmp_epi32_mask(a, b, _MM_CMPINT_NE); }
  static RCL_AVX512_INLINE void istore(int32_t* p, ivec a) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a); }

  static RCL_AVX512_INLINE void transpose(reg* r) {
    reg t[8];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      t[2 * k] = _mm512_unpacklo_pd(r[2 * k], r[2 * k + 1]);
      t[2 * k + 1] = _mm512_unpackhi_pd(r[2 * k], r[2 * k + 1]);
    }
    // t[2k + e], 128-bit lane L: rows 2k, 2k+1 of column 2L + e.
#pragma GCC unroll 2
    for (int e = 0; e < 2; ++e) {
      const reg p0 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x44), p1 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xEE);
      const reg q0 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x44);
      const reg q1 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xEE);
      r[e] = _mm512_shuffle_f64x2(p0, q0, 0x88);
      r[2 + e] = _mm512_shuffle_f64x2(p0, q0, 0xDD);
      r[4 + e] = _mm512_shuffle_f64x2(p1, q1, 0x88);
      r[6 + e] = _mm512_shuffle_f64x2(p1, q1, 0xDD);
    }
  }
};

RCL_AVX512_INLINE __mmask16 first_lanes16(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }
RCL_AVX512_INLINE __mmask8 first_lanes8(int n) { return n >= 8 ? __mmask8(0xFF) : __mmask8((1u << n) - 1); }

RCL_AVX512_INLINE bool aligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

// Rounds to nearest even like c10::BFloat16(float), NaN to the canonical quiet NaN.
RCL_AVX512_INLINE __m256i float_to_bfloat16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  return _mm512_cvtepi32_epi16(rounded);
}

// Rows of the (C, N) blocks: the first n points of a channel, as one accumulator vector.
RCL_AVX512_INLINE void store_points(float* dst, __m512 v, int n) {
  if (n == 16 && aligned(dst, 64)) {
    _mm512_stream_ps(dst, v);
  } else {
    _mm512_mask_storeu_ps(dst, first_lanes16(n), v);
  }
}
RCL_AVX512_INLINE void store_points(double* dst, __m512d v, int n) {
  if (n == 8 && aligned(dst, 64)) {
    _mm512_stream_pd(dst, v);
  } else {
    _mm512_mask_storeu_pd(dst, first_lanes8(n), v);
  }
}
RCL_AVX512_INLINE void store_half_bits(void* dst, __m256i h, int n) {
  if (n == 16 && aligned(dst, 32)) {
    _mm256_stream_si256(static_cast<__m256i*>(dst), h);
  } else {
    _mm256_mask_storeu_epi16(dst, first_lanes16(n), h);
  }
}
RCL_AVX512_INLINE __m256i half_bits(c10::BFloat16*, __m512 v) { return float_to_bfloat16(v); }
RCL_AVX512_INLINE __m256i half_bits(c10::Half*, __m512 v) {
  return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
RCL_AVX512_INLINE void store_points(c10::BFloat16* dst, __m512 v, int n) { store_half_bits(dst, half_bits(dst, v), n); }
RCL_AVX512_INLINE void store_points(c10::Half* dst, __m512 v, int n) { store_half_bits(dst, half_bits(dst, v), n); }
// 32 points of a 16-bit type, one whole cache line where aligned: two 32-byte streaming stores
// to the same line from different blocks would leave write-combining buffers half full.
RCL_AVX512_INLINE void store_line(void* dst, __m256i first, __m256i second) {
  const __m512i line = _mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1);
  if (aligned(dst, 64)) {
    _mm512_stream_si512(static_cast<__m512i*>(dst), line);
  } else {
    _mm512_storeu_si512(dst, line);
  }
}

RCL_AVX512_INLINE __m512 load_points(const float* src, int n) { return _mm512_maskz_loadu_ps(first_lanes16(n), src); }
RCL_AVX512_INLINE __m512d load_points(const double* src, int n) { return _mm512_maskz_loadu_pd(first_lanes8(n), src); }
RCL_AVX512_INLINE __m512 load_points(const c10::BFloat16* src, int n) {
  const __m256i h = _mm256_maskz_loadu_epi16(first_lanes16(n), src);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
RCL_AVX512_INLINE __m512 load_points(const c10::Half* src, int n) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_lanes16(n), src));
}

// A zero-filled buffer whose data starts on a cache line: the kernels load and store whole
// vectors of it, and a vector split over two lines defeats store-to-load forwarding.
template <typename T>
class LineAlignedBuffer {
 public:
  explicit LineAlignedBuffer(int64_t n) : storage_(static_cast<size_t>(n) + 64 / sizeof(T), T(0)) {
    const uintptr_t p = reinterpret_cast<uintptr_t>(storage_.data());
    data_ = reinterpret_cast<T*>((p + 63) & ~uintptr_t(63));
  }
  T* data() { return data_; }

 private:
  std::vector<T> storage_;
  T* data_;
};

// One segment's taps as arrays over its M sub-samples (rounded up to whole vectors): the row
// offsets (index * Cp) and weights of make_tap(), with a NaN position coded as w0 = NaN (so the
// forward produces NaN and the backward skips it) and i0 = i1 = 0.
template <typename acc_t>
struct TapArrays {
  std::vector<int32_t> off0, off1;
  std::vector<acc_t> w0, w1, g0, g1;
  explicit TapArrays(int64_t M) {
    const size_t n = static_cast<size_t>((M + 15) / 16 * 16);
    off0.resize(n);
    off1.resize(n);
    w0.resize(n);
    w1.resize(n);
    g0.resize(n);
    g1.resize(n);
  }
};

// make_tap() of segment_interp_common.h for W sub-samples at once, with the same individually
// rounded operations in the same order (setup.py compiles with -ffp-contract=off, so the
// multiply and the add of the position stay separate): positions, indices and weights are
// bit-identical to the scalar rule's. frac: sample_fraction() of every sub-sample.
template <typename acc_t>
RCL_AVX512_TARGET void vector_taps(const acc_t* seg, acc_t context, const acc_t* frac, int64_t M, int64_t T,
                                   int64_t Cp, Padding padding, TapArrays<acc_t>& out) {
  using V = Vec<acc_t>;
  using reg = typename V::reg;
  using mask = typename V::mask;
  using ivec = typename V::ivec;
  constexpr int W = V::kWidth;
  acc_t a, b;
  window(seg[0], seg[1], context, a, b);
  const reg va = V::set1(a), vlen = V::set1(b - a);
  const acc_t last = static_cast<acc_t>(T - 1);
  const reg zero = V::zero(), one = V::set1(acc_t(1)), vlast = V::set1(last);
  const reg lo = V::set1(acc_t(-2)), hi = V::set1(last + acc_t(2));
  const reg nan = V::set1(std::numeric_limits<acc_t>::quiet_NaN());
  const ivec izero = V::iset1(0), ione = V::iset1(1), ilast = V::iset1(static_cast<int32_t>(T - 1));
  const ivec icp = V::iset1(static_cast<int32_t>(Cp));
  for (int64_t m0 = 0; m0 < M; m0 += W) {
    const reg x = V::add(va, V::mul(vlen, V::load(frac + m0)));  // sample_position()
    const mask x_nan = V::is_nan(x);
    ivec i0, i1;
    reg w0, w1, g0, g1;
    if (padding == Padding::Border) {
      const mask inside = V::le(zero, x) & V::le(x, vlast);
      reg xc = V::blend(V::lt(x, zero), x, zero);
      xc = V::blend(V::lt(vlast, x), xc, vlast);
      i0 = V::imin(V::to_int(V::floor(xc)), ilast);
      i1 = V::imin(V::iadd(i0, ione), ilast);
      const reg f = V::sub(xc, V::from_int(i0));
      w0 = V::sub(one, f);
      w1 = f;
      const mask sloped = inside & V::ine(i1, i0);
      g0 = V::keep(sloped, V::set1(acc_t(-1)));
      g1 = V::keep(sloped, one);
    } else {
      reg xc = V::blend(V::lt(x, lo), x, lo);
      xc = V::blend(V::lt(hi, x), xc, hi);
      const ivec fl = V::to_int(V::floor(xc));
      const reg f = V::sub(xc, V::from_int(fl));
      const ivec fl1 = V::iadd(fl, ione);
      const mask valid0 = V::ile(izero, fl) & V::ile(fl, ilast);
      const mask valid1 = V::ile(izero, fl1) & V::ile(fl1, ilast);
      i0 = V::ikeep(valid0, fl);
      w0 = V::keep(valid0, V::sub(one, f));
      g0 = V::keep(valid0, V::set1(acc_t(-1)));
      i1 = V::ikeep(valid1, fl1);
      w1 = V::keep(valid1, f);
      g1 = V::keep(valid1, one);
      if (padding == Padding::Bmn) {
        // BMN's modf truncation toward zero: F[0] with weight 1 on (-1, 0).
        const mask truncated = V::lt(V::set1(acc_t(-1)), x) & V::lt(x, zero);
        i0 = V::ikeep(static_cast<mask>(~truncated), i0);
        i1 = V::ikeep(static_cast<mask>(~truncated), i1);
        w0 = V::blend(truncated, w0, one);
        w1 = V::keep(static_cast<mask>(~truncated), w1);
        g0 = V::keep(static_cast<mask>(~truncated), g0);
        g1 = V::keep(static_cast<mask>(~truncated), g1);
      }
    }
    const mask ok = static_cast<mask>(~x_nan);
    V::istore(out.off0.data() + m0, V::imul(V::ikeep(ok, i0), icp));
    V::istore(out.off1.data() + m0, V::imul(V::ikeep(ok, i1), icp));
    V::store(out.w0.data() + m0, V::blend(x_nan, w0, nan));
    V::store(out.w1.data() + m0, V::keep(ok, w1));
    V::store(out.g0.data() + m0, V::keep(ok, g0));
    V::store(out.g1.data() + m0, V::keep(ok, g1));
  }
}

// r[j] = the value of point n0 + j over channels c0 .. c0 + W (zero for j >= nn), for one segment.
template <typename acc_t>
RCL_AVX512_INLINE void point_block(const acc_t* fc, const TapArrays<acc_t>& taps, int64_t S, int64_t n0, int nn,
                                   typename Vec<acc_t>::reg inv_s, typename Vec<acc_t>::reg* r) {
  using V = Vec<acc_t>;
  const int32_t* off0 = taps.off0.data();
  const int32_t* off1 = taps.off1.data();
  const acc_t* w0 = taps.w0.data();
  const acc_t* w1 = taps.w1.data();
#pragma GCC unroll 16
  for (int j = 0; j < V::kWidth; ++j) {
    typename V::reg acc = V::zero();
    if (j < nn) {
      const int64_t m0 = (n0 + j) * S;
      for (int64_t m = m0; m < m0 + S; ++m) {
        acc = V::fmadd(V::set1(w0[m]), V::load(fc + off0[m]), acc);
        acc = V::fmadd(V::set1(w1[m]), V::load(fc + off1[m]), acc);
      }
      acc = V::mul(acc, inv_s);
    }
    r[j] = acc;
  }
  V::transpose(r);  // now r[l] = channel c0 + l over points n0 .. n0 + W
}

// Forward over segments [begin, end) of all batches (bk = b * K + k). ft: (B, T, Cp).
template <typename scalar_t, typename acc_t>
RCL_AVX512_TARGET void forward_segments(const acc_t* ft, int64_t Cp, const acc_t* segments, const acc_t* frac,
                                        scalar_t* out, const SegmentInterpProblem& p, acc_t context,
                                        Padding padding, int64_t begin, int64_t end, TapArrays<acc_t>& taps) {
  using V = Vec<acc_t>;
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  const int64_t C = p.C, N = p.N, S = p.S, M = N * S;
  const reg inv_s = V::set1(acc_t(1) / static_cast<acc_t>(S));
  for (int64_t bk = begin; bk < end; ++bk) {
    const acc_t* fb = ft + (bk / p.K) * p.T * Cp;
    vector_taps(segments + bk * 2, context, frac, M, p.T, Cp, padding, taps);
    scalar_t* ob = out + bk * C * N;
    for (int64_t c0 = 0; c0 < C; c0 += W) {
      const int64_t nc = std::min<int64_t>(W, C - c0);
      const acc_t* fc = fb + c0;
      for (int64_t n0 = 0; n0 < N; n0 += W) {
        const int nn = static_cast<int>(std::min<int64_t>(W, N - n0));
        reg r[W];
        point_block(fc, taps, S, n0, nn, inv_s, r);
        if constexpr (sizeof(scalar_t) == 2) {
          if (n0 + 2 * W <= N) {  // two whole blocks: 32 points, 64 bytes per channel
            __m256i first[W];
#pragma GCC unroll 16
            for (int l = 0; l < W; ++l) first[l] = half_bits(ob, r[l]);
            point_block(fc, taps, S, n0 + W, W, inv_s, r);
#pragma GCC unroll 16
            for (int l = 0; l < W; ++l) {
              if (l < nc) store_line(ob + (c0 + l) * N + n0, first[l], half_bits(ob, r[l]));
            }
            n0 += W;
            continue;
          }
        }
#pragma GCC unroll 16
        for (int l = 0; l < W; ++l) {
          if (l < nc) store_points(ob + (c0 + l) * N + n0, r[l], nn);
        }
      }
    }
  }
  _mm_sfence();  // streaming stores are weakly ordered: make them visible before returning
}

// Runs of one segment's sub-samples: maximal stretches of consecutive sub-samples with the same
// taps (rows and slopes), so each run adds to its two feature-gradient rows once and reads its
// two feature rows once. A NaN sub-sample is a run of its own (and is skipped). Run starts are
// written to starts[0 .. count), with starts[count] = M; starts needs M + 17 entries.
template <typename acc_t>
RCL_AVX512_TARGET int64_t tap_runs(const TapArrays<acc_t>& taps, int64_t M, int32_t* starts) {
  int64_t count = 0;
  starts[count++] = 0;
  for (int64_t m = 1; m < M; ++m) {
    const bool same = taps.off0[m] == taps.off0[m - 1] && taps.off1[m] == taps.off1[m - 1] &&
                      taps.g0[m] == taps.g0[m - 1] && taps.g1[m] == taps.g1[m - 1] &&
                      taps.w0[m] == taps.w0[m] && taps.w0[m - 1] == taps.w0[m - 1];
    starts[count] = static_cast<int32_t>(m);
    count += same ? 0 : 1;
  }
  starts[count] = static_cast<int32_t>(M);
  return count;
}

constexpr int64_t kPrefetchSegments = 2;

// Both gradients for segments [kbegin, kend) of batch b. grad_ft_local: (T, Cp), this thread's.
// points: m / S for every sub-sample. gbuf: N * W entries, the gradient of one channel tile as
// (N, W). starts: M + 17 entries.
template <typename scalar_t, typename acc_t>
RCL_AVX512_TARGET void backward_segments(const scalar_t* grad_out, const acc_t* ft, int64_t Cp,
                                         const acc_t* segments, const acc_t* frac, const int32_t* points,
                                         acc_t* grad_ft_local, acc_t* grad_segments, const SegmentInterpProblem& p,
                                         acc_t context, Padding padding, int64_t b, int64_t kbegin, int64_t kend,
                                         TapArrays<acc_t>& taps, acc_t* gbuf, int32_t* starts, const acc_t* dstart,
                                         const acc_t* dend, bool need_features, bool need_segments) {
  using V = Vec<acc_t>;
  using reg = typename V::reg;
  constexpr int W = V::kWidth;
  const int64_t C = p.C, N = p.N, S = p.S, M = N * S;
  const reg inv_s = V::set1(acc_t(1) / static_cast<acc_t>(S));
  const acc_t* fb = ft + b * p.T * Cp;
  const int32_t* off0 = taps.off0.data();
  const int32_t* off1 = taps.off1.data();
  const acc_t* w0 = taps.w0.data();
  const acc_t* w1 = taps.w1.data();
  const acc_t* g0 = taps.g0.data();
  const acc_t* g1 = taps.g1.data();
  for (int64_t k = kbegin; k < kend; ++k) {
    const int64_t bk = b * p.K + k;
    vector_taps(segments + bk * 2, context, frac, M, p.T, Cp, padding, taps);
    const int64_t runs = tap_runs(taps, M, starts);
    const scalar_t* gb = grad_out + bk * C * N;
    // The gradient is read once, from memory, in bursts between long stretches of arithmetic:
    // ask for a later segment's block now, so the reads overlap the work.
    if (k + kPrefetchSegments < kend) {
      const char* ahead = reinterpret_cast<const char*>(gb + kPrefetchSegments * C * N);
      for (int64_t byte = 0; byte < C * N * static_cast<int64_t>(sizeof(scalar_t)); byte += 64) {
        _mm_prefetch(ahead + byte, _MM_HINT_T0);
      }
    }
    reg ds = V::zero(), de = V::zero();
    for (int64_t c0 = 0; c0 < C; c0 += W) {
      const int64_t nc = std::min<int64_t>(W, C - c0);
      for (int64_t n0 = 0; n0 < N; n0 += W) {
        const int nn = static_cast<int>(std::min<int64_t>(W, N - n0));
        reg r[W];
#pragma GCC unroll 16
        for (int l = 0; l < W; ++l) r[l] = l < nc ? load_points(gb + (c0 + l) * N + n0, nn) : V::zero();
        V::transpose(r);
#pragma GCC unroll 16
        for (int j = 0; j < W; ++j) {
          if (j < nn) V::store(gbuf + (n0 + j) * W, V::mul(r[j], inv_s));
        }
      }
      const acc_t* fc = fb + c0;
      acc_t* lc = grad_ft_local + c0;
      for (int64_t run = 0; run < runs; ++run) {
        const int64_t mb = starts[run], me = starts[run + 1];
        if (w0[mb] != w0[mb]) continue;  // NaN positions produce NaN values and no gradient
        reg sum0 = V::zero(), sum1 = V::zero(), sum_ds = V::zero(), sum_de = V::zero();
        for (int64_t m = mb; m < me; ++m) {
          const reg g = V::load(gbuf + points[m] * W);
          sum0 = V::fmadd(V::set1(w0[m]), g, sum0);
          sum1 = V::fmadd(V::set1(w1[m]), g, sum1);
          sum_ds = V::fmadd(V::set1(dstart[m]), g, sum_ds);
          sum_de = V::fmadd(V::set1(dend[m]), g, sum_de);
        }
        if (need_features) {
          V::store(lc + off0[mb], V::add(V::load(lc + off0[mb]), sum0));
          V::store(lc + off1[mb], V::add(V::load(lc + off1[mb]), sum1));
        }
        if (need_segments && (g0[mb] != acc_t(0) || g1[mb] != acc_t(0))) {
          // dvalue/dx = g0 F[i0] + g1 F[i1] is the same for the whole run.
          const reg slope = V::fmadd(V::set1(g1[mb]), V::load(fc + off1[mb]), V::mul(V::set1(g0[mb]), V::load(fc + off0[mb])));
          ds = V::fmadd(slope, sum_ds, ds);
          de = V::fmadd(slope, sum_de, de);
        }
      }
    }
    if (need_segments) {
      grad_segments[bk * 2] = V::reduce(ds);
      grad_segments[bk * 2 + 1] = V::reduce(de);
    }
  }
}

}  // namespace avx512
}  // namespace rcl_kernels
