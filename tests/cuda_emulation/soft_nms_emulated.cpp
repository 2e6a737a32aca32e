// The CUDA Soft-NMS kernel (csrc/cuda/soft_nms_kernels.cuh) compiled for the CPU on top of
// cuda_emulation.h, behind a C interface for ctypes (tests/test_soft_nms_cuda_emulated.py).
// The launch plan is the CUDA entry point's, with the caller's `static_bytes` standing in for
// cudaFuncGetAttributes (what ptxas reports for the device build), `optin_limit` for the
// device's opt-in limit (so a test can send small P down the global-memory path) and
// `multiprocessors` for the SM count.
#include "cuda_emulation.h"
// The emulation macros must come first.
#include "cuda/soft_nms_kernels.cuh"

#include <limits>
#include <vector>

namespace {

using namespace rcl_kernels::soft_nms;

template <Method kMethod, bool kLabels>
void run(const Inputs& in, const Outputs& out, const Params& p, int64_t V, const LaunchPlan& plan) {
  std::vector<float> scratch(plan.global_scratch ? static_cast<size_t>(V) * 3 * in.P : 0,
                             std::numeric_limits<float>::quiet_NaN());
  float* scratch_ptr = plan.global_scratch ? scratch.data() : nullptr;
  emu::launch(dim3(static_cast<unsigned>(V)), dim3(plan.threads), static_cast<size_t>(plan.dynamic_bytes),
              [&] { soft_nms_kernel<kMethod, kLabels>(in, out, p, scratch_ptr); });
}

template <Method kMethod>
void run_method(bool labels, const Inputs& in, const Outputs& out, const Params& p, int64_t V,
                const LaunchPlan& plan) {
  labels ? run<kMethod, true>(in, out, p, V, plan) : run<kMethod, false>(in, out, p, V, plan);
}

}  // namespace

// The launch plan for P candidates (threads, dynamic bytes, global_scratch, opt_in) into plan[4].
extern "C" void soft_nms_plan(int64_t P, int64_t V, int labels, int multiprocessors, int64_t static_bytes,
                              int64_t default_limit, int64_t optin_limit, int64_t* plan) {
  const LaunchPlan lp = plan_launch(static_cast<int>(P), V, labels != 0, multiprocessors,
                                    SharedMemory{static_bytes, default_limit, optin_limit});
  plan[0] = lp.threads;
  plan[1] = lp.dynamic_bytes;
  plan[2] = lp.global_scratch;
  plan[3] = lp.opt_in;
}

extern "C" int64_t soft_nms_static_shared_bytes() { return sizeof(ArgmaxScratch); }

// Returns 1 when the candidates went to the global-memory path, 0 for shared memory.
// labels may be null with has_labels set (an empty labels tensor, P = 0).
extern "C" int soft_nms_emulated(const float* segments, const float* scores, int has_labels, const int64_t* labels,
                                 const int64_t* lengths, int64_t V, int64_t P, int method, double sigma,
                                 double iou_threshold, double min_score, int64_t top_k, int width_gate,
                                 double gate_t1, double gate_t2, int multiprocessors, int64_t static_bytes,
                                 int64_t optin_limit, float* out_segments, float* out_scores, int64_t* out_labels,
                                 int64_t* out_indices, int64_t* out_counts) {
  const Params p = make_params(method, sigma, iou_threshold, min_score, width_gate != 0, gate_t1, gate_t2);
  const Inputs in{segments, scores, labels, lengths, static_cast<int>(P)};
  const Outputs out{out_segments, out_scores, has_labels ? out_labels : nullptr, out_indices, out_counts, top_k};
  const LaunchPlan plan = plan_launch(static_cast<int>(P), V, has_labels != 0, multiprocessors,
                                      SharedMemory{static_bytes, 48 * 1024, optin_limit});
  if (V == 0) return plan.global_scratch;
  switch (p.method) {
    case Method::Gaussian:
      run_method<Method::Gaussian>(has_labels != 0, in, out, p, V, plan);
      break;
    case Method::Linear:
      run_method<Method::Linear>(has_labels != 0, in, out, p, V, plan);
      break;
    case Method::Hard:
      run_method<Method::Hard>(has_labels != 0, in, out, p, V, plan);
      break;
  }
  return plan.global_scratch;
}
