// score_anchors_hidden on the CPU (schema and contract: ../score_anchors.cpp).
//
// Per segment the work is 2 M row reads of `projected` (M = N S sub-samples) and as many
// multiply-adds per hidden unit: a weighted gather-sum whose speed is how fast rows come from the
// caches, plus the taps' own arithmetic. Measured on the anet problem (N = 16, T = 100, H = 256,
// K = 5,050; one core of a 2-core AMD EPYC VM, 2026-12-03) with whole rows per segment: taps
// alone 1.0 ms of 3.0 ms (floor() is a libm call in a default x86-64 build), and the rows of one
// video (1.6 MB) came from L3, while a 64-unit slice (410 KB) stays in L2 (1.3 ms at H = 64
// against 3.0 ms at H = 256). Hence:
//   - hidden units in blocks of W (the caller picks 1, 2, 4 or 8 AVX2 registers so that a block's
//     slice stays within 256 KB: rcl_kernels/cpu/score_anchors.py), each block a contiguous
//     (T, N, W) slice of `projected` (the layout the caller's matmul writes), summed in registers
//     over all 2 M taps and stored once, with the coordinate term and relu;
//   - segments in runs whose taps (offsets, weights) fit in about 128 KB: the taps of a run are
//     computed once, then every block of hidden units visits all the run's segments, so each
//     slice is read from L2 by the whole run;
//   - the taps compiled for AVX2 (floor is one instruction there), through the SoI kernels' own
//     rules (segment_interp_common.h); setup.py's -ffp-contract=off keeps the positions rounded
//     like the reference's in either build.
// After that the anet forward's kernel part takes 2.1 ms on one core. What is left is a cost per
// segment that does not depend on H: 25 of 62 ms of a THUMOS14 window call (T = 128, N = 16,
// S = 2, H = 128, 131,072 segments, 2 threads) at H = 8. The taps' scalar code takes most of it in
// a profile, but computing them 8 at a time in AVX2 vectors (tried 2026-12-03, bit-identical)
// left the time unchanged, so the bound is elsewhere (not found yet).
// AVX2 + FMA intrinsics where the CPU has them (every x86-64 CPU with AVX-512 has them too);
// plain loops, vectorised by the compiler for the default target, otherwise.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "heap_reusing_allocation.h"
#include "segment_interp_common.h"

namespace rcl_kernels {
namespace {

struct GatherProblem {
  int64_t B, K, N, S, T, H;
  int64_t HB, W;  // blocks of hidden units in `projected`, units per block
  int64_t E;      // coordinate features
};

// Where one segment's block reads and writes: the slice of `projected`, its taps, its coordinate
// features, the block's columns of coord_weight (row stride HB W) and bias, and its output.
template <typename acc_t>
struct SegmentBlock {
  const acc_t* slice;
  const int64_t* offset;
  const acc_t* weight;
  int64_t taps;
  const acc_t* coordinates;
  const acc_t* coord_weight;
  const acc_t* bias;
  int64_t E, coord_stride;
  acc_t* out;
  int64_t width;  // units of the block inside H
};

// The taps of a run of segments: 2 M row offsets into a (T, N, W) slice and their weights per
// segment, and whether the segment has a NaN position (its row is written NaN, its taps unused).
template <typename acc_t>
struct RunTaps {
  std::vector<int64_t> offset;
  std::vector<acc_t> weight;
  std::vector<char> is_nan;
  void resize(int64_t segments, int64_t taps) {
    offset.resize(static_cast<size_t>(segments * taps));
    weight.resize(static_cast<size_t>(segments * taps));
    is_nan.resize(static_cast<size_t>(segments));
  }
};

// Taps of segments [begin, end); `frac` holds sample_fraction() of every sub-sample. Inlined into
// each caller, so the AVX2 build compiles it for AVX2.
template <typename acc_t>
__attribute__((always_inline)) inline void run_taps_body(const acc_t* segments, const acc_t* frac,
                                                         const GatherProblem& p, acc_t context, Padding padding,
                                                         int64_t begin, int64_t end, RunTaps<acc_t>& taps) {
  const int64_t M = p.N * p.S;
  for (int64_t bk = begin; bk < end; ++bk) {
    const int64_t j = bk - begin;
    acc_t a, b;
    window(segments[bk * 2], segments[bk * 2 + 1], context, a, b);
    int64_t* off = taps.offset.data() + j * 2 * M;
    acc_t* w = taps.weight.data() + j * 2 * M;
    bool nan = false;
    // Over points and their sub-samples: sub-sample m = n S + s.
    const int64_t row_stride = p.N * p.W;
    for (int64_t n = 0, m = 0; n < p.N; ++n) {
      for (int64_t s = 0; s < p.S; ++s, ++m) {
        const Tap<acc_t> t = make_tap<acc_t>(sample_position(a, b, frac[m]), p.T, padding);
        nan = nan || t.is_nan;
        off[2 * m] = t.i0 * row_stride + n * p.W;
        off[2 * m + 1] = t.i1 * row_stride + n * p.W;
        w[2 * m] = t.w0;
        w[2 * m + 1] = t.w1;
      }
    }
    taps.is_nan[j] = nan;
  }
}

template <typename acc_t>
void run_taps_portable(const acc_t* segments, const acc_t* frac, const GatherProblem& p, acc_t context,
                       Padding padding, int64_t begin, int64_t end, RunTaps<acc_t>& taps) {
  run_taps_body(segments, frac, p, context, padding, begin, end, taps);
}

// One segment's block in plain loops.
template <typename acc_t>
void segment_block_portable(const SegmentBlock<acc_t>& sb, acc_t inv_s, bool relu) {
  acc_t acc[64];  // W <= 64 (checked by the entry point)
  std::fill_n(acc, sb.width, acc_t(0));
  for (int64_t i = 0; i < sb.taps; ++i) {
    const acc_t wi = sb.weight[i];
    const acc_t* row = sb.slice + sb.offset[i];
    for (int64_t h = 0; h < sb.width; ++h) acc[h] += wi * row[h];
  }
  for (int64_t h = 0; h < sb.width; ++h) {
    acc_t x = sb.bias[h];
    for (int64_t e = 0; e < sb.E; ++e) x += sb.coordinates[e] * sb.coord_weight[e * sb.coord_stride + h];
    x += acc[h] * inv_s;
    sb.out[h] = relu && x < acc_t(0) ? acc_t(0) : x;  // keeps NaN, as torch.relu does
  }
}

#if defined(__x86_64__)
#define RCL_AVX2_TARGET __attribute__((target("avx2,fma")))
#define RCL_AVX2_INLINE RCL_AVX2_TARGET __attribute__((always_inline)) inline

template <typename acc_t>
struct Avx2Lanes;

template <>
struct Avx2Lanes<float> {
  using reg = __m256;
  static constexpr int kWidth = 8;
  static RCL_AVX2_INLINE reg zero() { return _mm256_setzero_ps(); }
  static RCL_AVX2_INLINE reg set1(float x) { return _mm256_set1_ps(x); }
  static RCL_AVX2_INLINE reg load(const float* p) { return _mm256_loadu_ps(p); }
  static RCL_AVX2_INLINE void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static RCL_AVX2_INLINE reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static RCL_AVX2_INLINE reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static RCL_AVX2_INLINE reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  // maxps returns its second operand where either is NaN: max(0, x) keeps a NaN x.
  static RCL_AVX2_INLINE reg relu(reg x) { return _mm256_max_ps(_mm256_setzero_ps(), x); }
};

template <>
struct Avx2Lanes<double> {
  using reg = __m256d;
  static constexpr int kWidth = 4;
  static RCL_AVX2_INLINE reg zero() { return _mm256_setzero_pd(); }
  static RCL_AVX2_INLINE reg set1(double x) { return _mm256_set1_pd(x); }
  static RCL_AVX2_INLINE reg load(const double* p) { return _mm256_loadu_pd(p); }
  static RCL_AVX2_INLINE void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static RCL_AVX2_INLINE reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static RCL_AVX2_INLINE reg mul(reg a, reg b) { return _mm256_mul_pd(a, b); }
  static RCL_AVX2_INLINE reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
  static RCL_AVX2_INLINE reg relu(reg x) { return _mm256_max_pd(_mm256_setzero_pd(), x); }
};

// The AVX2 build's block: W = V vectors, summed in registers over all the taps; the first
// `width` units are stored. Not inlined into the generic loop below, which is compiled for the
// default target (a call per segment and block: a few % of its work).
template <typename acc_t, int V>
RCL_AVX2_TARGET void segment_block_avx2(const SegmentBlock<acc_t>& sb, acc_t inv_s, bool relu) {
  using L = Avx2Lanes<acc_t>;
  typename L::reg acc[V];
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) acc[v] = L::zero();
  for (int64_t i = 0; i < sb.taps; ++i) {
    const typename L::reg wi = L::set1(sb.weight[i]);
    const acc_t* row = sb.slice + sb.offset[i];
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) acc[v] = L::fmadd(wi, L::load(row + v * L::kWidth), acc[v]);
  }
  // bias + phi W_phi + acc / S; coord_weight and bias are padded to whole blocks.
  const typename L::reg scale = L::set1(inv_s);
#pragma GCC unroll 8
  for (int v = 0; v < V; ++v) {
    typename L::reg x = L::load(sb.bias + v * L::kWidth);
    for (int64_t e = 0; e < sb.E; ++e) {
      x = L::add(x, L::mul(L::set1(sb.coordinates[e]), L::load(sb.coord_weight + e * sb.coord_stride + v * L::kWidth)));
    }
    x = L::add(x, L::mul(acc[v], scale));
    acc[v] = relu ? L::relu(x) : x;
  }
  const int full = static_cast<int>(sb.width / L::kWidth);
  for (int v = 0; v < full; ++v) L::store(sb.out + v * L::kWidth, acc[v]);
  const int rest = static_cast<int>(sb.width - full * L::kWidth);
  if (rest > 0) {
    alignas(32) acc_t lanes[L::kWidth];
    L::store(lanes, acc[full]);
    std::copy_n(lanes, rest, sb.out + full * L::kWidth);
  }
}

// The AVX2 block for W = 1, 2, 4 or 8 vectors; nullptr for any other W (portable loops).
template <typename acc_t>
using BlockFn = void (*)(const SegmentBlock<acc_t>&, acc_t, bool);

template <typename acc_t>
BlockFn<acc_t> avx2_block_for(int64_t W) {
  constexpr int64_t lanes = Avx2Lanes<acc_t>::kWidth;
  if (W == lanes) return &segment_block_avx2<acc_t, 1>;
  if (W == 2 * lanes) return &segment_block_avx2<acc_t, 2>;
  if (W == 4 * lanes) return &segment_block_avx2<acc_t, 4>;
  if (W == 8 * lanes) return &segment_block_avx2<acc_t, 8>;
  return nullptr;
}

template <typename acc_t>
RCL_AVX2_TARGET void run_taps_avx2(const acc_t* segments, const acc_t* frac, const GatherProblem& p, acc_t context,
                                   Padding padding, int64_t begin, int64_t end, RunTaps<acc_t>& taps) {
  run_taps_body(segments, frac, p, context, padding, begin, end, taps);
}

bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#endif

// The AVX2 block for this W where the CPU has AVX2 and FMA and RCL_CPU_CAPABILITY=default (read
// on every call, as for SoI: cpu_capability.h) does not force the portable loops; else nullptr.
template <typename acc_t>
auto avx2_block(int64_t W) {
#if defined(__x86_64__)
  const char* forced = std::getenv("RCL_CPU_CAPABILITY");
  const bool portable = forced != nullptr && std::strcmp(forced, "default") == 0;
  return portable || !cpu_has_avx2_fma() ? nullptr : avx2_block_for<acc_t>(W);
#else
  (void)W;
  return static_cast<void (*)(const SegmentBlock<acc_t>&, acc_t, bool)>(nullptr);
#endif
}

template <typename acc_t>
void hidden_impl(const acc_t* projected, const acc_t* segments, const acc_t* coordinates, const acc_t* coord_weight,
                 const acc_t* bias, acc_t* hidden, const GatherProblem& p, acc_t context, Padding padding, bool relu) {
  const int64_t M = p.N * p.S, taps_per_segment = 2 * M;
  const acc_t inv_s = acc_t(1) / static_cast<acc_t>(p.S);
  std::vector<acc_t> frac(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m) frac[m] = sample_fraction<acc_t>(m, M);
  // A run's taps take about 128 KB, so they stay in L2 beside one slice.
  const int64_t tap_bytes = taps_per_segment * static_cast<int64_t>(sizeof(int64_t) + sizeof(acc_t));
  const int64_t run = std::max<int64_t>(16, (int64_t(128) << 10) / tap_bytes);
  const auto block_avx2 = avx2_block<acc_t>(p.W);
  const bool avx2 = block_avx2 != nullptr;
  const int64_t slice_size = p.T * p.N * p.W, coord_stride = p.HB * p.W;
  at::parallel_for(0, p.B * p.K, run, [&](int64_t first, int64_t last) {
    RunTaps<acc_t> taps;
    for (int64_t begin = first; begin < last; begin += run) {
      const int64_t end = std::min(last, begin + run);
      taps.resize(end - begin, taps_per_segment);
#if defined(__x86_64__)
      if (avx2) {
        run_taps_avx2(segments, frac.data(), p, context, padding, begin, end, taps);
      } else {
        run_taps_portable(segments, frac.data(), p, context, padding, begin, end, taps);
      }
#else
      run_taps_portable(segments, frac.data(), p, context, padding, begin, end, taps);
#endif
      for (int64_t hb = 0; hb < p.HB; ++hb) {
        for (int64_t bk = begin; bk < end; ++bk) {
          const int64_t j = bk - begin;
          if (taps.is_nan[j]) continue;
          const SegmentBlock<acc_t> sb{projected + ((bk / p.K) * p.HB + hb) * slice_size,
                                       taps.offset.data() + j * taps_per_segment,
                                       taps.weight.data() + j * taps_per_segment,
                                       taps_per_segment,
                                       coordinates + bk * p.E,
                                       coord_weight + hb * p.W,
                                       bias + hb * p.W,
                                       p.E,
                                       coord_stride,
                                       hidden + bk * p.H + hb * p.W,
                                       std::min(p.W, p.H - hb * p.W)};
#if defined(__x86_64__)
          if (avx2) {
            block_avx2(sb, inv_s, relu);
            continue;
          }
#endif
          segment_block_portable(sb, inv_s, relu);
        }
      }
      for (int64_t bk = begin; bk < end; ++bk) {
        if (taps.is_nan[bk - begin]) std::fill_n(hidden + bk * p.H, p.H, std::numeric_limits<acc_t>::quiet_NaN());
      }
    }
  });
}

at::Tensor score_anchors_hidden_cpu(const at::Tensor& projected, const at::Tensor& segments,
                                    const at::Tensor& coordinates, const at::Tensor& coord_weight,
                                    const at::Tensor& bias, int64_t hidden_units, int64_t num_samples,
                                    int64_t samples_per_point, double context, c10::string_view padding, bool relu) {
  const char* op = "score_anchors_hidden";
  TORCH_CHECK(projected.dim() == 5, op, ": projected must have shape (B, HB, T, N, W), got ", projected.sizes());
  TORCH_CHECK(segments.dim() == 3 && segments.size(2) == 2, op, ": segments must have shape (B, K, 2), got ",
              segments.sizes());
  const int64_t B = projected.size(0), HB = projected.size(1), T = projected.size(2), N = projected.size(3),
                W = projected.size(4);
  const int64_t K = segments.size(1), H = hidden_units;
  TORCH_CHECK(num_samples == N, op, ": num_samples (", num_samples, ") must equal projected.size(3) (", N, ")");
  TORCH_CHECK(samples_per_point >= 1, op, ": samples_per_point must be >= 1, got ", samples_per_point);
  TORCH_CHECK(W >= 1 && W <= 64, op, ": projected's blocks must hold 1 to 64 hidden units, got W = ", W);
  TORCH_CHECK(segments.size(0) == B, op, ": segments has batch ", segments.size(0), " but projected has ", B);
  TORCH_CHECK((HB - 1) * W < H && H <= HB * W, op, ": hidden_units = ", H, " does not fit projected's ", HB,
              " blocks of ", W, " units");
  TORCH_CHECK(coordinates.dim() == 3 && coordinates.size(0) == B && coordinates.size(1) == K, op,
              ": coordinates must have shape (B, K, E) with (B, K) = (", B, ", ", K, "), got ", coordinates.sizes());
  const int64_t E = coordinates.size(2);
  TORCH_CHECK(coord_weight.dim() == 2 && coord_weight.size(0) == E && coord_weight.size(1) == HB * W, op,
              ": coord_weight must have shape (E, HB W) = (", E, ", ", HB * W, "), got ", coord_weight.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == HB * W, op, ": bias must have shape (HB W) = (", HB * W,
              "), got ", bias.sizes());
  const at::ScalarType dtype = projected.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, op, ": projected must be float32 or float64, got ", dtype);
  for (const at::Tensor* t : {&segments, &coordinates, &coord_weight, &bias}) {
    TORCH_CHECK(t->scalar_type() == dtype, op, ": every tensor must have projected's dtype ", dtype, ", got ",
                t->scalar_type());
  }
  for (const at::Tensor* t : {&projected, &segments, &coordinates, &coord_weight, &bias}) {
    TORCH_CHECK(t->is_cpu(), op, ": every tensor must be on the CPU");
    TORCH_CHECK(t->is_contiguous(), op, ": every tensor must be contiguous");
  }
  TORCH_CHECK(std::isfinite(context) && context >= 0, op, ": context must be finite and >= 0, got ", context);
  const std::string_view pad_name(padding.data(), padding.size());
  const int code = parse_padding(pad_name);
  TORCH_CHECK(code >= 0, op, ": padding must be 'zeros', 'border' or 'bmn', got '", pad_name, "'");
  TORCH_CHECK(T >= 1 || K == 0, op, ": projected must have at least one time step (T >= 1)");
  at::Tensor hidden = empty_reusing_heap({B, K, H}, projected.options());  // chunk after chunk on the same pages
  if (hidden.numel() == 0) return hidden;
  const GatherProblem p{B, K, N, samples_per_point, T, H, HB, W, E};
  AT_DISPATCH_FLOATING_TYPES(dtype, "score_anchors_hidden", [&] {
    hidden_impl<scalar_t>(projected.const_data_ptr<scalar_t>(), segments.const_data_ptr<scalar_t>(),
                          coordinates.const_data_ptr<scalar_t>(), coord_weight.const_data_ptr<scalar_t>(),
                          bias.const_data_ptr<scalar_t>(), hidden.mutable_data_ptr<scalar_t>(), p,
                          static_cast<scalar_t>(context), static_cast<Padding>(code), relu);
  });
  return hidden;
}

}  // namespace

TORCH_LIBRARY_IMPL(rcl_kernels, CPU, m) { m.impl("score_anchors_hidden", &score_anchors_hidden_cpu); }

}  // namespace rcl_kernels
