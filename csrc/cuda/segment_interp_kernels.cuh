// Device code of the CUDA SoI kernels (design note: segment_interp_cuda.cu) and the launch
// geometry they assume. It is a header, free of ATen and of launch syntax, so that
// tests/cuda_emulation can also compile it for the CPU and run the kernels there (CI has no GPU).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "segment_interp_common.h"

namespace rcl_kernels {
namespace segment_interp {

// (index, weight) pairs a thread keeps per point: the 2S taps of S <= 3 sub-samples always fit
// (S = 3 is BMN's setting); more registers would cost occupancy in the fused backward kernel.
constexpr int kMaxPairs = 6;
constexpr int kForwardThreads = 128;   // forward block size
constexpr int kBackwardThreads = 256;  // backward block sizes
constexpr int64_t kSlabBytes = 32 * 1024;
constexpr int64_t kMaxGrid = int64_t(1) << 30;  // blocks loop over work beyond this

struct Shape {
  int64_t B, C, T, K, N, S, M;  // M = N * S sub-samples per segment
};

template <typename acc_t>
struct Window {
  acc_t a, b;
};

template <typename acc_t>
__device__ __forceinline__ Window<acc_t> segment_window(const acc_t* __restrict__ segments, int64_t bk,
                                                        acc_t context) {
  Window<acc_t> w;
  window(segments[2 * bk], segments[2 * bk + 1], context, w.a, w.b);
  return w;
}

// Calls fn(tap, t) for the S sub-samples of output point n (t: the sub-sample's window fraction).
template <typename acc_t, typename Fn>
__device__ __forceinline__ void for_each_tap(const Window<acc_t>& win, int64_t n, const Shape& p, Padding pad,
                                             Fn&& fn) {
  for (int64_t s = 0; s < p.S; ++s) {
    const acc_t t = sample_fraction<acc_t>(n * p.S + s, p.M);
    fn(make_tap<acc_t>(sample_position(win.a, win.b, t), p.T, pad), t);
  }
}

// Up to kMaxPairs (index, W weights) pairs of one point, held in registers: every array access
// below is at an index known after unrolling. Adjacent pairs with the same index are merged (the
// taps of consecutive sub-samples arrive in index order); pairs whose weights are all zero are
// dropped; `overflow` is set when a point needs more pairs than fit.
template <typename acc_t, int W>
struct PairList {
  int count = 0;
  bool overflow = false;
  int32_t last = -1;
  int32_t idx[kMaxPairs];
  acc_t w[W][kMaxPairs];

  __device__ __forceinline__ void add(int64_t index, const acc_t (&v)[W]) {
    bool nonzero = false;
#pragma unroll
    for (int q = 0; q < W; ++q) nonzero = nonzero || v[q] != acc_t(0);  // NaN counts as non-zero
    if (!nonzero) return;
    const int32_t i = static_cast<int32_t>(index);
    const bool merge = count > 0 && i == last;
    if (!merge && count == kMaxPairs) {
      overflow = true;
      return;
    }
    const int slot = merge ? count - 1 : count;
#pragma unroll
    for (int j = 0; j < kMaxPairs; ++j) {
      if (j == slot) {
        idx[j] = i;
#pragma unroll
        for (int q = 0; q < W; ++q) w[q][j] = merge ? w[q][j] + v[q] : v[q];
      }
    }
    count += merge ? 0 : 1;
    last = i;
  }
};

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t load_acc(const scalar_t* __restrict__ p) {
  return static_cast<acc_t>(*p);
}

// ---------------------------------------------------------------------------------------------
// Forward: block = (points, channel rows); loops over segments.

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kForwardThreads)
    segment_interp_forward_kernel(const scalar_t* __restrict__ features, const acc_t* __restrict__ segments,
                                  scalar_t* __restrict__ out, const Shape p, const acc_t context,
                                  const Padding pad) {
  const acc_t inv_s = div_rn(acc_t(1), static_cast<acc_t>(p.S));
  const acc_t nan = std::numeric_limits<acc_t>::quiet_NaN();
  for (int64_t bk = blockIdx.x; bk < p.B * p.K; bk += gridDim.x) {
    const int64_t b = bk / p.K;
    const Window<acc_t> win = segment_window(segments, bk, context);
    for (int64_t n0 = 0; n0 < p.N; n0 += blockDim.x) {
      const int64_t n = n0 + threadIdx.x;
      if (n >= p.N) continue;  // no block-wide synchronisation in this kernel
      PairList<acc_t, 1> pairs;
      bool is_nan = false;
      for_each_tap(win, n, p, pad, [&](const Tap<acc_t>& tap, acc_t) {
        is_nan = is_nan || tap.is_nan;
        pairs.add(tap.i0, {tap.w0});
        pairs.add(tap.i1, {tap.w1});
      });
      if (is_nan) {  // the whole point is NaN: read nothing
        pairs.count = 0;
        pairs.overflow = false;
      }
#pragma unroll 2
      for (int64_t c = threadIdx.y; c < p.C; c += blockDim.y) {
        const scalar_t* row = features + (b * p.C + c) * p.T;
        acc_t v = 0;
        if (!pairs.overflow) {
#pragma unroll
          for (int j = 0; j < kMaxPairs; ++j) {
            if (j < pairs.count) v += pairs.w[0][j] * load_acc<scalar_t, acc_t>(row + pairs.idx[j]);
          }
        } else {
          for_each_tap(win, n, p, pad, [&](const Tap<acc_t>& tap, acc_t) {
            v += tap.w0 * load_acc<scalar_t, acc_t>(row + tap.i0) + tap.w1 * load_acc<scalar_t, acc_t>(row + tap.i1);
          });
        }
        out[(bk * p.C + c) * p.N + n] = static_cast<scalar_t>(is_nan ? nan : v * inv_s);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Backward: block = (points, segments) over one (batch, channel tile, segment group) job. Each
// thread works out the (index, weight, d/dstart, d/dend) pairs of one (segment, point) and runs
// them over the tile's channels: the feature gradient goes into the shared-memory slab (kSlab) or
// straight into global memory, the segment gradient into registers, summed over the points of
// the segment with warp shuffles and added with one global atomic per warp and job.

struct BackwardPlan {
  int64_t channel_tile, channel_tiles, segments_per_group, segment_groups;
  bool use_slab;
};

// Sum over the `width` lanes (a power of two <= 32) that share a segment row of the warp; every
// lane of the warp must call it.
template <typename acc_t>
__device__ __forceinline__ acc_t row_sum(acc_t v, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset, width);
  return v;
}

template <typename scalar_t, typename acc_t, bool kSlab, bool kFeatures, bool kSegments>
__global__ void __launch_bounds__(kBackwardThreads)
    segment_interp_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ features,
                                   const acc_t* __restrict__ segments, acc_t* __restrict__ grad_features,
                                   acc_t* __restrict__ grad_segments, const Shape p, const acc_t context,
                                   const Padding pad, const BackwardPlan plan) {
  static_assert(kFeatures || !kSlab, "the slab holds the feature gradient");
  RCL_DYNAMIC_SHARED_BYTES(slab_bytes);
  acc_t* slab = reinterpret_cast<acc_t*>(slab_bytes);
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int nthreads = blockDim.x * blockDim.y;
  const int row_lanes = blockDim.x < 32 ? static_cast<int>(blockDim.x) : 32;
  const acc_t inv_s = div_rn(acc_t(1), static_cast<acc_t>(p.S));
  const int64_t jobs = p.B * plan.channel_tiles * plan.segment_groups;
  for (int64_t job = blockIdx.x; job < jobs; job += gridDim.x) {
    const int64_t group = job % plan.segment_groups;
    const int64_t tile = (job / plan.segment_groups) % plan.channel_tiles;
    const int64_t b = job / (plan.segment_groups * plan.channel_tiles);
    const int64_t c0 = tile * plan.channel_tile;
    const int64_t cn = std::min(plan.channel_tile, p.C - c0);
    const int64_t k_begin = group * plan.segments_per_group;
    const int64_t k_end = std::min(p.K, k_begin + plan.segments_per_group);
    acc_t* grad_tile = grad_features + (b * p.C + c0) * p.T;  // rows c0 .. c0+cn-1, contiguous
    acc_t* target = kSlab ? slab : grad_tile;
    if (kSlab) {
      for (int64_t e = tid; e < cn * p.T; e += nthreads) slab[e] = acc_t(0);
      __syncthreads();
    }
    // Both loops have the same trip count in every thread (row_sum needs whole warps).
    for (int64_t k_base = k_begin; k_base < k_end; k_base += blockDim.y) {
      const int64_t k = k_base + threadIdx.y;
      const bool k_valid = k < k_end;
      const int64_t bk = b * p.K + (k_valid ? k : k_begin);
      const Window<acc_t> win = segment_window(segments, bk, context);
      for (int64_t n0 = 0; n0 < p.N; n0 += blockDim.x) {
        const int64_t n = n0 + threadIdx.x;
        const bool active = k_valid && n < p.N;
        acc_t d_start = 0, d_end = 0;
        if (active) {
          // NaN sub-samples have all-zero pairs, which the list drops: they get no gradient.
          PairList<acc_t, 3> pairs;
          for_each_tap(win, n, p, pad, [&](const Tap<acc_t>& tap, acc_t t) {
            const acc_t ds = kSegments ? dposition_dstart(context, t) : acc_t(0);
            const acc_t de = kSegments ? dposition_dend(context, t) : acc_t(0);
            pairs.add(tap.i0, {kFeatures ? tap.w0 : acc_t(0), tap.g0 * ds, tap.g0 * de});
            pairs.add(tap.i1, {kFeatures ? tap.w1 : acc_t(0), tap.g1 * ds, tap.g1 * de});
          });
          const scalar_t* g = grad_out + (bk * p.C + c0) * p.N + n;
          const scalar_t* f_row = features + (b * p.C + c0) * p.T;
          for (int64_t c = 0; c < cn; ++c, f_row += p.T) {
            const acc_t gv = load_acc<scalar_t, acc_t>(g + c * p.N);
            // A zero gv adds only zeros to the feature gradient, so its atomics are skipped; the
            // segment gradient still takes gv * fs, which is NaN for an inf or NaN feature, as
            // on every other backend.
            const bool scatter = kFeatures && gv != acc_t(0);
            if (!scatter && !kSegments) continue;
            const acc_t gv_mean = gv * inv_s;
            acc_t* grad_row = target + c * p.T;
            acc_t fs = 0, fe = 0;
            if (!pairs.overflow) {
#pragma unroll
              for (int j = 0; j < kMaxPairs; ++j) {
                if (j < pairs.count) {
                  if (scatter) atomicAdd(grad_row + pairs.idx[j], pairs.w[0][j] * gv_mean);
                  if (kSegments) {
                    const acc_t f = load_acc<scalar_t, acc_t>(f_row + pairs.idx[j]);
                    fs += pairs.w[1][j] * f;
                    fe += pairs.w[2][j] * f;
                  }
                }
              }
            } else {
              for_each_tap(win, n, p, pad, [&](const Tap<acc_t>& tap, acc_t t) {
                if (scatter) {
                  if (tap.w0 != acc_t(0)) atomicAdd(grad_row + tap.i0, tap.w0 * gv_mean);
                  if (tap.w1 != acc_t(0)) atomicAdd(grad_row + tap.i1, tap.w1 * gv_mean);
                }
                if (kSegments && !tap.is_nan) {
                  const acc_t dvdx = tap.g0 * load_acc<scalar_t, acc_t>(f_row + tap.i0) +
                                     tap.g1 * load_acc<scalar_t, acc_t>(f_row + tap.i1);
                  fs += dvdx * dposition_dstart(context, t);
                  fe += dvdx * dposition_dend(context, t);
                }
              });
            }
            d_start += gv * fs;
            d_end += gv * fe;
          }
        }
        if (kSegments) {
          d_start = row_sum(d_start, row_lanes);
          d_end = row_sum(d_end, row_lanes);
          // The first lane of each row group; beyond N its whole group is.
          if (active && threadIdx.x % row_lanes == 0) {
            atomicAdd(grad_segments + 2 * bk, d_start * inv_s);
            atomicAdd(grad_segments + 2 * bk + 1, d_end * inv_s);
          }
        }
      }
    }
    if (kSlab) {
      __syncthreads();
      for (int64_t e = tid; e < cn * p.T; e += nthreads) {
        const acc_t v = slab[e];
        if (v != acc_t(0)) atomicAdd(grad_tile + e, v);  // NaN != 0: propagated
      }
      __syncthreads();  // the next job clears the slab
    }
  }
}

// Calls fn(kSlab, kFeatures, kSegments) with std::bool_constant arguments matching the flags.
template <typename Fn>
void with_backward_variant(bool slab, bool features, bool segments, Fn&& fn) {
  using Y = std::true_type;
  using N = std::false_type;
  if (features && segments) {
    slab ? fn(Y{}, Y{}, Y{}) : fn(N{}, Y{}, Y{});
  } else if (features) {
    slab ? fn(Y{}, Y{}, N{}) : fn(N{}, Y{}, N{});
  } else if (segments) {
    fn(N{}, N{}, Y{});
  }
}

// ---------------------------------------------------------------------------------------------
// Launch geometry (host).

inline int64_t next_pow2(int64_t v) {
  int64_t r = 1;
  while (r < v) r *= 2;
  return r;
}

// threadIdx.x covers points (a power of two >= N, up to the block size), threadIdx.y the rest.
inline dim3 point_block(int64_t N, int threads) {
  const int tx = static_cast<int>(std::min<int64_t>(next_pow2(N), threads));
  return dim3(tx, threads / tx);
}

inline unsigned grid_for(int64_t jobs) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(jobs, kMaxGrid)));
}

// Channel tiles: as many channels as fit the 32 KiB slab when the feature gradient is wanted
// (64 per tile and no slab when not even one T-long row fits); all channels otherwise.
// Segment groups: enough to give every SM several blocks, each group at least one segment per
// thread row, so that flushing a slab stays cheap next to filling it.
inline BackwardPlan plan_backward(const Shape& p, int64_t acc_bytes, int64_t multiprocessors, int64_t segments_per_pass,
                                  bool features_grad) {
  BackwardPlan plan{};
  const int64_t slab_rows = kSlabBytes / (p.T * acc_bytes);
  plan.use_slab = features_grad && slab_rows >= 1;
  const int64_t tile_cap = !features_grad ? p.C : (plan.use_slab ? slab_rows : 64);
  plan.channel_tiles = (p.C + tile_cap - 1) / tile_cap;
  plan.channel_tile = (p.C + plan.channel_tiles - 1) / plan.channel_tiles;  // balanced tiles
  const int64_t target_blocks = multiprocessors * 8;
  const int64_t max_groups = std::max<int64_t>(1, (p.K + segments_per_pass - 1) / segments_per_pass);
  const int64_t want = (target_blocks + p.B * plan.channel_tiles - 1) / (p.B * plan.channel_tiles);
  const int64_t groups = std::clamp<int64_t>(want, 1, max_groups);
  plan.segments_per_group = (p.K + groups - 1) / groups;
  plan.segment_groups = (p.K + plan.segments_per_group - 1) / plan.segments_per_group;
  return plan;
}

}  // namespace segment_interp
}  // namespace rcl_kernels
