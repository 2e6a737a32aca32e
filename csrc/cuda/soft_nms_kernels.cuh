// Device code of the CUDA Soft-NMS kernel (design note: soft_nms_cuda.cu) and the host-side
// launch plan it assumes. A header free of ATen and of launch syntax, so that tests/cuda_emulation
// can also compile it for the CPU and run the kernel thread by thread (CI has no GPU), and the
// tests can check the launch plan for every P.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>

#include "soft_nms_common.h"

// The barrier of block_argmax that publishes the block's result. The race-check driver
// (tests/tsan) defines it away in a mutant build, to show that a missing barrier is caught.
#ifndef RCL_ARGMAX_RESULT_BARRIER
#define RCL_ARGMAX_RESULT_BARRIER() __syncthreads()
#endif

namespace rcl_kernels {
namespace soft_nms {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
constexpr int kNoIndex = INT_MAX;

__device__ __forceinline__ float quiet_nan() { return float_from_bits(0x7fc00000); }

__device__ __forceinline__ void warp_argmax(float& score, int& index) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
    const float other_score = __shfl_down_sync(0xffffffffu, score, offset);
    const int other_index = __shfl_down_sync(0xffffffffu, index, offset);
    if (better(other_score, other_index, score, index)) {
      score = other_score;
      index = other_index;
    }
  }
}

// Scratch of the block-wide argmax (static shared memory).
struct ArgmaxScratch {
  float warp_score[kMaxThreads / kWarpSize];
  int warp_index[kMaxThreads / kWarpSize];
  float score;
  int index;
};

// Every thread passes its best (score, index) and gets the block's best. blockDim.x must be a
// multiple of 32. Writes to the scratch of the next call happen only after every thread has
// passed this call's second barrier, i.e. after it has read the result.
__device__ __forceinline__ void block_argmax(float& score, int& index, ArgmaxScratch& s) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  warp_argmax(score, index);
  if (lane == 0) {
    s.warp_score[warp] = score;
    s.warp_index[warp] = index;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / kWarpSize;
    score = lane < warps ? s.warp_score[lane] : -INFINITY;
    index = lane < warps ? s.warp_index[lane] : kNoIndex;
    warp_argmax(score, index);
    if (lane == 0) {
      s.score = score;
      s.index = index;
    }
  }
  RCL_ARGMAX_RESULT_BARRIER();
  score = s.score;
  index = s.index;
}

struct Inputs {
  const float* segments;   // (V, P, 2)
  const float* scores;     // (V, P)
  const int64_t* labels;   // (V, P) or null
  const int64_t* lengths;  // (V,) or null
  int P;
};

struct Outputs {
  float* segments;   // (V, top_k, 2)
  float* scores;     // (V, top_k)
  int64_t* labels;   // (V, top_k) or null
  int64_t* indices;  // (V, top_k)
  int64_t* counts;   // (V,)
  int64_t top_k;
};

// One block per video. scratch: null when the candidates live in dynamic shared memory
// (labels, int64, first; then start, end, score, float, P each); else a (V, 3 * P) float
// buffer, labels read in place.
template <Method kMethod, bool kLabels>
__global__ void __launch_bounds__(kMaxThreads)
    soft_nms_kernel(const Inputs in, const Outputs out, const Params p, float* __restrict__ scratch) {
  RCL_DYNAMIC_SHARED_BYTES(dynamic_smem);
  __shared__ ArgmaxScratch argmax_scratch;

  const int64_t v = blockIdx.x;
  const int P = in.P;
  const int64_t length = in.lengths != nullptr ? in.lengths[v] : P;
  const int n = length < 0 ? 0 : (length > P ? P : static_cast<int>(length));  // clamped to [0, P]
  const float* seg_v = in.segments + v * P * 2;
  const float* score_v = in.scores + v * P;
  const int64_t* label_in = kLabels ? in.labels + v * P : nullptr;

  const int64_t* label = label_in;
  float *start, *end, *score;
  if (scratch == nullptr) {
    int64_t* label_smem = reinterpret_cast<int64_t*>(dynamic_smem);
    float* f = reinterpret_cast<float*>(dynamic_smem + (kLabels ? sizeof(int64_t) * P : 0));
    start = f;
    end = f + P;
    score = f + 2 * P;
    if (kLabels) {
      for (int j = threadIdx.x; j < n; j += blockDim.x) label_smem[j] = label_in[j];
      label = label_smem;
    }
  } else {
    start = scratch + v * 3 * P;
    end = start + P;
    score = end + P;
  }

  // Load, and each thread's best candidate.
  float best_score = -INFINITY;
  int best = kNoIndex;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float s = seg_v[2 * j], e = seg_v[2 * j + 1];
    if (!finite_segment(s, e)) {
      s = 1.f;
      e = 0.f;
    }
    start[j] = s;
    end[j] = e;
    const float sc = flush_score(score_v[j]);
    score[j] = never_selectable(sc, p.min_score) ? quiet_nan() : sc;
    if (sc >= p.min_score && sc > best_score) {  // owned indices increase: strict > keeps the lower one
      best_score = sc;
      best = j;
    }
  }
  block_argmax(best_score, best, argmax_scratch);  // its barriers also publish the loads

  const int64_t out_base = v * out.top_k;
  int64_t t = 0;
  for (; t < out.top_k; ++t) {
    if (best == kNoIndex) break;  // the same value in every thread: a uniform exit
    const int b = best;
    const float start_b = start[b], end_b = end[b];
    const float len_b = sub_rn(end_b, start_b);
    const float gate = gate_threshold(p, len_b);
    const int64_t label_b = kLabels ? label[b] : 0;
    if (threadIdx.x == 0) {
      out.segments[2 * (out_base + t)] = seg_v[2 * b];
      out.segments[2 * (out_base + t) + 1] = seg_v[2 * b + 1];
      out.scores[out_base + t] = best_score;
      out.indices[out_base + t] = b;
      if (kLabels) out.labels[out_base + t] = label_b;
    }
    best_score = -INFINITY;
    best = kNoIndex;
    for (int j = threadIdx.x; j < n; j += blockDim.x) {
      float s = score[j];
      if (j == b) {
        score[j] = quiet_nan();  // selected: removed
        continue;
      }
      if (is_nan(s)) continue;
      if (!kLabels || label[j] == label_b) {
        const float iou = tiou(start_b, end_b, len_b, start[j], end[j]);
        if (decays(s, iou, p.iou_threshold, gate)) {
          s = decayed_score<kMethod>(s, iou, p.neg_inv_sigma);
          score[j] = never_selectable(s, p.min_score) ? quiet_nan() : s;
        }
      }
      if (s >= p.min_score && s > best_score) {
        best_score = s;
        best = j;
      }
    }
    block_argmax(best_score, best, argmax_scratch);
  }

  if (threadIdx.x == 0) out.counts[v] = t;
  for (int64_t k = t + threadIdx.x; k < out.top_k; k += blockDim.x) {
    out.segments[2 * (out_base + k)] = 0.f;
    out.segments[2 * (out_base + k) + 1] = 0.f;
    out.scores[out_base + k] = 0.f;
    out.indices[out_base + k] = -1;
    if (kLabels) out.labels[out_base + k] = -1;
  }
}

// ---------------------------------------------------------------------------------------------
// Launch plan (host).

// Shared memory per block, in bytes: what the kernel declares statically
// (cudaFuncAttributes::sharedSizeBytes), and the device's limits on static + dynamic together,
// without opting in (cudaDevAttrMaxSharedMemoryPerBlock, 48 KiB) and at most
// (cudaDevAttrMaxSharedMemoryPerBlockOptin).
struct SharedMemory {
  int64_t static_bytes, default_limit, optin_limit;
};

struct LaunchPlan {
  int threads;
  int64_t dynamic_bytes;  // 0 on the global-memory path; never above optin_limit - static_bytes
  bool global_scratch;    // candidates in a (V, 3 P) float buffer instead of shared memory
  bool opt_in;            // static + dynamic exceed the default limit: the kernel's
                          // cudaFuncAttributeMaxDynamicSharedMemorySize must be raised first
                          // (soft_nms_cuda.cu raises it once, to optin_limit - static_bytes)
};

inline int64_t candidate_bytes(int64_t P, bool labels) {
  return P * static_cast<int64_t>(3 * sizeof(float) + (labels ? sizeof(int64_t) : 0));
}

// Candidates per thread: with enough videos to fill the GPU several times over, fewer threads
// per block (less barrier work per candidate); with few videos, more threads (shorter steps).
inline LaunchPlan plan_launch(int P, int64_t V, bool labels, int multiprocessors, const SharedMemory& smem) {
  LaunchPlan plan{};
  const int per_thread = V >= 8 * static_cast<int64_t>(multiprocessors) ? 8 : 2;
  const int64_t wanted = (std::max<int64_t>(P, 1) + per_thread - 1) / per_thread;  // P + 7 may overflow int
  const int64_t warps = std::max<int64_t>(1, (wanted + kWarpSize - 1) / kWarpSize);
  plan.threads = static_cast<int>(std::min<int64_t>(kMaxThreads, warps * kWarpSize));
  const int64_t bytes = candidate_bytes(P, labels);
  plan.global_scratch = smem.static_bytes + bytes > smem.optin_limit;
  plan.dynamic_bytes = plan.global_scratch ? 0 : bytes;
  plan.opt_in = smem.static_bytes + plan.dynamic_bytes > smem.default_limit;
  return plan;
}

}  // namespace soft_nms
}  // namespace rcl_kernels
