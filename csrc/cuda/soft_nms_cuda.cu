// Batched Soft-NMS on the GPU: one thread block per video.
//
// The block copies its video's candidates (sanitised start, end, working score, and labels) to
// shared memory; thread t owns candidates t, t + blockDim, ... for the whole run. A step is one
// pass in which every thread decays its own candidates by the last selection and keeps its
// best remaining one, then a block-wide (score, index) argmax by warp shuffles (two
// __syncthreads). Only the owner ever touches a candidate's score, and the selected
// candidate's coordinates are read-only after the load, so the two barriers of the argmax are
// the only synchronisation needed. Videos whose candidates do not fit in shared memory (more
// than about 19,000 per video on an H100 without labels, 11,000 with) keep them in a global
// scratch buffer instead: same code, slower memory.
//
// The arithmetic (csrc/soft_nms_common.h) uses __f*_rn intrinsics, so --use_fast_math neither
// fuses nor approximates anything that decides a selection.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>

#include "soft_nms_checks.h"
#include "soft_nms_common.h"

namespace rcl_kernels {
namespace soft_nms {
namespace {

constexpr int kWarpSize = 32;
constexpr int kMaxThreads = 1024;
constexpr int kNoIndex = INT_MAX;

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

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
  __syncthreads();
  score = s.score;
  index = s.index;
}

struct Inputs {
  const float* segments;  // (V, P, 2)
  const float* scores;    // (V, P)
  const int64_t* labels;  // (V, P) or null
  const int64_t* lengths;  // (V,) or null
  int P;
};

struct Outputs {
  float* segments;  // (V, top_k, 2)
  float* scores;    // (V, top_k)
  int64_t* labels;  // (V, top_k) or null
  int64_t* indices;  // (V, top_k)
  int64_t* counts;   // (V,)
  int64_t top_k;
};

// scratch: null when the candidates live in dynamic shared memory (labels, int64, first; then
// start, end, score, float, P each); else a (V, 3 * P) float buffer, labels read in place.
template <Method kMethod, bool kLabels>
__global__ void __launch_bounds__(kMaxThreads)
    soft_nms_kernel(const Inputs in, const Outputs out, const Params p, float* __restrict__ scratch) {
  extern __shared__ __align__(16) unsigned char dynamic_smem[];
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

int device_attribute(cudaDeviceAttr attr, int device) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value;
}

template <Method kMethod, bool kLabels>
void launch(const Inputs& in, const Outputs& out, const Params& p, int64_t V, const at::Tensor& like,
            cudaStream_t stream) {
  auto kernel = soft_nms_kernel<kMethod, kLabels>;
  const int device = like.get_device();
  const int P = in.P;
  // Candidates per thread: with enough videos to fill the GPU several times over, fewer threads
  // per block (less barrier work per candidate); with few videos, more threads (shorter steps).
  const int sm_count = device_attribute(cudaDevAttrMultiProcessorCount, device);
  const int per_thread = V >= 8 * static_cast<int64_t>(sm_count) ? 8 : 2;
  const int wanted = (std::max(P, 1) + per_thread - 1) / per_thread;
  const int threads = std::min(kMaxThreads, std::max(kWarpSize, (wanted + kWarpSize - 1) / kWarpSize * kWarpSize));

  cudaFuncAttributes attrs;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attrs, kernel));
  const int64_t smem_limit =
      static_cast<int64_t>(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device)) -
      static_cast<int64_t>(attrs.sharedSizeBytes);
  int64_t smem = static_cast<int64_t>(P) * (3 * sizeof(float) + (kLabels ? sizeof(int64_t) : 0));
  at::Tensor scratch;
  if (smem > smem_limit) {
    scratch = at::empty({V, 3 * static_cast<int64_t>(P)}, like.options().dtype(at::kFloat));
    smem = 0;
  }
  if (smem > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  }
  kernel<<<static_cast<unsigned int>(V), threads, static_cast<size_t>(smem), stream>>>(
      in, out, p, scratch.defined() ? scratch.mutable_data_ptr<float>() : nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <Method kMethod>
void launch_method(bool labels, const Inputs& in, const Outputs& out, const Params& p, int64_t V,
                   const at::Tensor& like, cudaStream_t stream) {
  if (labels) {
    launch<kMethod, true>(in, out, p, V, like, stream);
  } else {
    launch<kMethod, false>(in, out, p, V, like, stream);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> soft_nms_cuda(
    const at::Tensor& segments, const at::Tensor& scores, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& lengths, c10::string_view method, double sigma, double iou_threshold,
    double min_score, int64_t top_k, bool width_gate, double gate_t1, double gate_t2) {
  const Params p = check_args(segments, scores, labels, lengths, std::string_view(method.data(), method.size()),
                              sigma, iou_threshold, min_score, top_k, width_gate, gate_t1, gate_t2);
  TORCH_CHECK(segments.is_cuda(), "soft_nms (cuda kernel): segments must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(segments.device());
  auto outputs = allocate_outputs(segments, labels.has_value(), top_k);
  auto& [out_segments, out_scores, out_labels, out_indices, out_counts] = outputs;
  const int64_t V = segments.size(0);
  TORCH_CHECK(V < (int64_t(1) << 31), "soft_nms (cuda kernel): at most 2^31 - 1 videos, got ", V);
  if (V == 0) return outputs;
  const at::Tensor seg = segments.contiguous();
  const at::Tensor sc = scores.contiguous();
  const at::Tensor lab = labels.has_value() ? labels->contiguous() : at::Tensor();
  const at::Tensor len = lengths.has_value() ? lengths->contiguous() : at::Tensor();
  const Inputs in{seg.const_data_ptr<float>(), sc.const_data_ptr<float>(),
                  lab.defined() ? lab.const_data_ptr<int64_t>() : nullptr,
                  len.defined() ? len.const_data_ptr<int64_t>() : nullptr, static_cast<int>(segments.size(1))};
  const Outputs out{out_segments.mutable_data_ptr<float>(),
                    out_scores.mutable_data_ptr<float>(),
                    lab.defined() ? out_labels.mutable_data_ptr<int64_t>() : nullptr,
                    out_indices.mutable_data_ptr<int64_t>(),
                    out_counts.mutable_data_ptr<int64_t>(),
                    top_k};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(segments.get_device()).stream();
  const bool has_labels = lab.defined();
  switch (p.method) {
    case Method::Gaussian:
      launch_method<Method::Gaussian>(has_labels, in, out, p, V, seg, stream);
      break;
    case Method::Linear:
      launch_method<Method::Linear>(has_labels, in, out, p, V, seg, stream);
      break;
    case Method::Hard:
      launch_method<Method::Hard>(has_labels, in, out, p, V, seg, stream);
      break;
  }
  return outputs;
}

}  // namespace
}  // namespace soft_nms

TORCH_LIBRARY_IMPL(rcl_kernels, CUDA, m) { m.impl("soft_nms", &soft_nms::soft_nms_cuda); }

}  // namespace rcl_kernels
