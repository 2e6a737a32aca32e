// Device code of the CUDA 1D RoIAlign kernels (design note: roi_align_1d_cuda.cu) and their launch
// plans. A header free of ATen and of launch syntax, so that tests/cuda_emulation can compile it
// for the CPU and run the kernels there, and check rcl_kernels/_roi_align_1d_launch.py (the plans
// the size matrix prints) against plan_* below.
//
// Arithmetic: every product and sum goes through the separately rounded helpers of rounding.h,
// so nvcc (which contracts with -fmad=true, csrc/cuda/nvcc_flags.txt) cannot fuse them into FMAs: the forward and the deterministic input
// gradient equal the CPU kernel bit for bit (same terms, same order); the atomic input gradient
// has the CPU kernel's terms in another order, the roi gradient another summation tree.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "roi_align_1d_common.h"

namespace rcl_kernels {
namespace roi_align_1d {

// Keep in step with rcl_kernels/_roi_align_1d_launch.py.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 16;  // grid-stride loops cover the rest
constexpr int kRoisGradMaxThreads = 256;

using Problem = RoiAlign1dProblem;

struct Launch {
  int64_t blocks;
  int threads;
};

inline int64_t blocks_for(int64_t n) { return std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks); }

// One thread per output element (roi, channel, bin): forward and atomic input gradient.
inline Launch plan_forward(const Problem& p) { return {blocks_for(p.R * p.C * p.P), kThreads}; }
inline Launch plan_input_grad_atomic(const Problem& p) { return {blocks_for(p.R * p.C * p.P), kThreads}; }
// One thread per (batch, channel) row of the gradient.
inline Launch plan_input_grad_rows(const Problem& p) { return {blocks_for(p.B * p.C), kThreads}; }
// One block per roi; its threads take the roi's C * P (channel, bin) pairs, a power of two in
// [32, 256] so that at least half of a block's lanes have a pair.
inline Launch plan_rois_grad(const Problem& p) {
  int64_t threads = 32;
  while (threads < p.C * p.P && threads < kRoisGradMaxThreads) threads *= 2;
  return {std::min<int64_t>(p.R, kMaxBlocks), static_cast<int>(threads)};
}

template <typename acc_t>
__device__ __forceinline__ RoiGeometry<acc_t> geometry_of(const acc_t* roi, const Problem& p, acc_t scale) {
  return roi_geometry<acc_t>(roi[0], roi[1], roi[2], p.B, p.P, scale, p.sampling_ratio, p.aligned);
}

template <typename acc_t>
__device__ __forceinline__ acc_t inverse_count(const RoiGeometry<acc_t>& g) {
  return div_rn(acc_t(1), static_cast<acc_t>(g.grid > 1 ? g.grid : 1));
}

// f: input (B, C, T) contiguous in acc_t; out: (R, C, P).
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const acc_t* __restrict__ f, const acc_t* __restrict__ rois, scalar_t* __restrict__ out,
                               Problem p, acc_t scale) {
  const int64_t total = p.R * p.C * p.P;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t bin = index % p.P;
    const int64_t c = (index / p.P) % p.C;
    const int64_t r = index / (p.P * p.C);
    const RoiGeometry<acc_t> g = geometry_of(rois + r * 3, p, scale);
    if (!g.valid) {
      out[index] = static_cast<scalar_t>(std::numeric_limits<acc_t>::quiet_NaN());
      continue;
    }
    const acc_t* row = f + (g.batch * p.C + c) * p.T;
    acc_t sum = 0;
    for (int64_t i = 0; i < g.grid; ++i) {
      const RoiTap<acc_t> tap = roi_tap(roi_sample_position(g, bin, i), p.T);
      if (tap.live) sum = add_rn(sum, add_rn(mul_rn(tap.w_low, row[tap.low]), mul_rn(tap.w_high, row[tap.high])));
    }
    out[index] = static_cast<scalar_t>(mul_rn(sum, inverse_count(g)));
  }
}

// The default input gradient. g: grad_output (R, C, P) contiguous in acc_t; grad_f: (B, C, T)
// zeros. Consecutive threads take consecutive bins of one (roi, channel), so the reads of g are
// coalesced and the atomic adds of a warp land on a few neighbouring steps of one or two rows.
template <typename acc_t>
__global__ void input_grad_atomic_kernel(const acc_t* __restrict__ g, const acc_t* __restrict__ rois,
                                         acc_t* __restrict__ grad_f, Problem p, acc_t scale) {
  const int64_t total = p.R * p.C * p.P;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t bin = index % p.P;
    const int64_t c = (index / p.P) % p.C;
    const int64_t r = index / (p.P * p.C);
    const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
    if (!geo.valid) continue;
    const acc_t inv = inverse_count(geo);
    const acc_t gv = g[index];
    acc_t* row = grad_f + (geo.batch * p.C + c) * p.T;
    for (int64_t i = 0; i < geo.grid; ++i) {
      const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
      if (!tap.live) continue;
      atomicAdd(row + tap.low, mul_rn(mul_rn(tap.w_low, inv), gv));
      atomicAdd(row + tap.high, mul_rn(mul_rn(tap.w_high, inv), gv));
    }
  }
}

// The deterministic input gradient: one thread per (batch, channel) row walks every roi, bin and
// sub-sample in the CPU kernel's order, so each element is the CPU kernel's sum bit for bit.
// B * C threads: a checkable path, not a fast one.
template <typename acc_t>
__global__ void input_grad_rows_kernel(const acc_t* __restrict__ g, const acc_t* __restrict__ rois,
                                       acc_t* __restrict__ grad_f, Problem p, acc_t scale) {
  const int64_t total = p.B * p.C;
  for (int64_t row_index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; row_index < total;
       row_index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t b = row_index / p.C, c = row_index % p.C;
    acc_t* row = grad_f + row_index * p.T;
    for (int64_t r = 0; r < p.R; ++r) {
      const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
      if (!geo.valid || geo.batch != b) continue;
      const acc_t inv = inverse_count(geo);
      const acc_t* gr = g + (r * p.C + c) * p.P;
      for (int64_t bin = 0; bin < p.P; ++bin) {
        for (int64_t i = 0; i < geo.grid; ++i) {
          const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
          if (!tap.live) continue;
          row[tap.low] = add_rn(row[tap.low], mul_rn(mul_rn(tap.w_low, inv), gr[bin]));
          row[tap.high] = add_rn(row[tap.high], mul_rn(mul_rn(tap.w_high, inv), gr[bin]));
        }
      }
    }
  }
}

// grad_rois: (R, 3); column 0 (the batch index) gets no gradient. One block per roi (grid-stride
// over rois); thread j takes the pairs (channel, bin) = divmod(j + k blockDim, P), so a warp reads
// consecutive elements of g's (C, P) block. Each thread sums its pairs' sub-samples in order; the
// block adds the threads' sums in a fixed tree: deterministic, without atomics. blockDim.x must be
// a power of two <= kRoisGradMaxThreads (plan_rois_grad).
template <typename acc_t>
__global__ void rois_grad_kernel(const acc_t* __restrict__ g, const acc_t* __restrict__ f,
                                 const acc_t* __restrict__ rois, acc_t* __restrict__ grad_rois, Problem p,
                                 acc_t scale) {
  __shared__ acc_t partial[2][kRoisGradMaxThreads];
  const int tid = threadIdx.x;
  const int64_t pairs = p.C * p.P;
  for (int64_t r = blockIdx.x; r < p.R; r += gridDim.x) {
    const RoiGeometry<acc_t> geo = geometry_of(rois + r * 3, p, scale);
    acc_t d1 = 0, d2 = 0;
    if (geo.valid) {
      const acc_t inv = inverse_count(geo);
      for (int64_t j = tid; j < pairs; j += blockDim.x) {
        const int64_t c = j / p.P, bin = j % p.P;
        const acc_t gv = g[r * pairs + j];
        const acc_t* row = f + (geo.batch * p.C + c) * p.T;
        for (int64_t i = 0; i < geo.grid; ++i) {
          const RoiTap<acc_t> tap = roi_tap(roi_sample_position(geo, bin, i), p.T);
          if (!tap.sloped) continue;
          const acc_t dvdt = mul_rn(mul_rn(gv, sub_rn(row[tap.high], row[tap.low])), inv);
          const acc_t u = roi_sample_dposition_dbin(geo, bin, i);
          d1 = add_rn(d1, mul_rn(dvdt, add_rn(scale, mul_rn(geo.dbin_dx1, u))));
          d2 = add_rn(d2, mul_rn(dvdt, mul_rn(geo.dbin_dx2, u)));
        }
      }
    }
    partial[0][tid] = d1;
    partial[1][tid] = d2;
    __syncthreads();
    for (int half = static_cast<int>(blockDim.x) / 2; half > 0; half /= 2) {
      if (tid < half) {
        partial[0][tid] = add_rn(partial[0][tid], partial[0][tid + half]);
        partial[1][tid] = add_rn(partial[1][tid], partial[1][tid + half]);
      }
      __syncthreads();
    }
    if (tid == 0) {
      grad_rois[r * 3] = 0;
      grad_rois[r * 3 + 1] = partial[0][0];
      grad_rois[r * 3 + 2] = partial[1][0];
    }
    __syncthreads();  // the next roi reuses partial
  }
}

}  // namespace roi_align_1d
}  // namespace rcl_kernels
