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
// The arithmetic (csrc/soft_nms_common.h) uses __f*_rn intrinsics, so nvcc's FMA contraction
// (-fmad=true) never fuses anything that decides a selection, and the build does not flush
// subnormals (csrc/cuda/nvcc_flags.txt).
//
// The kernel and its launch plan are in soft_nms_kernels.cuh (so that tests can also run them
// on the CPU, see tests/cuda_emulation); this file holds the operator entry point and the launch.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <mutex>
#include <unordered_set>

#include "cuda/device_attributes.h"
#include "cuda/soft_nms_kernels.cuh"
#include "soft_nms_checks.h"
#include "soft_nms_common.h"

namespace rcl_kernels {
namespace soft_nms {
namespace {

// Lets soft_nms_kernel<kMethod, kLabels> launch with up to `max_dynamic_bytes` of dynamic shared
// memory on `device` (the current one): cudaFuncAttributeMaxDynamicSharedMemorySize, set once per
// kernel and device, to the most any launch of it can ask for.
//
// Why once, to the maximum: the attribute belongs to the function in the device's context, shared
// by every host thread, and a launch fails when it asks for more dynamic memory than the value at
// launch time. Set per launch to that launch's own need (as it was), thread A (P = 10,000, 120 KB)
// could set 120 KB, thread B (P = 5,000) then set 60 KB, and A's launch fail; no lock around
// set-and-launch would help against a thread that launches through another library. Set here,
// the value changes once, before the first launch that needs it (a second thread waits on the
// mutex until it is set) and never goes down again: every plan's dynamic_bytes is at most
// optin_limit - static_bytes (plan_launch takes the global-memory path beyond), so no interleaving
// of threads can leave a launch above the limit. A larger limit costs nothing: a block's
// footprint, and so the occupancy, is the dynamic size of its launch, not the attribute.
template <Method kMethod, bool kLabels>
void allow_dynamic_shared_memory(int device, int64_t max_dynamic_bytes) {
  static std::mutex mutex;
  static std::unordered_set<int> devices_done;
  const std::lock_guard<std::mutex> lock(mutex);
  if (devices_done.count(device) != 0) return;
  C10_CUDA_CHECK(cudaFuncSetAttribute(soft_nms_kernel<kMethod, kLabels>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(max_dynamic_bytes)));
  devices_done.insert(device);
}

template <Method kMethod, bool kLabels>
void launch(const Inputs& in, const Outputs& out, const Params& p, int64_t V, const at::Tensor& like,
            cudaStream_t stream) {
  auto kernel = soft_nms_kernel<kMethod, kLabels>;
  const int device = like.get_device();
  cudaFuncAttributes attrs;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attrs, kernel));
  const SharedMemory smem{static_cast<int64_t>(attrs.sharedSizeBytes),
                          device_attribute(cudaDevAttrMaxSharedMemoryPerBlock, device),
                          device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device)};
  const LaunchPlan plan =
      plan_launch(in.P, V, kLabels, device_attribute(cudaDevAttrMultiProcessorCount, device), smem);
  at::Tensor scratch;
  if (plan.global_scratch) {
    scratch = at::empty({V, 3 * static_cast<int64_t>(in.P)}, like.options().dtype(at::kFloat));
  }
  if (plan.opt_in) allow_dynamic_shared_memory<kMethod, kLabels>(device, smem.optin_limit - smem.static_bytes);
  kernel<<<static_cast<unsigned int>(V), plan.threads, static_cast<size_t>(plan.dynamic_bytes), stream>>>(
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
