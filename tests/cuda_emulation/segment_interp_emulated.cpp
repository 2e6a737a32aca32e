// The CUDA SoI kernels (csrc/cuda/segment_interp_kernels.cuh) compiled for the CPU on top of
// cuda_emulation.h, behind a C interface for ctypes (tests/test_segment_interp_kernels.py).
// Launch geometry comes from the same helpers the CUDA entry points use; `max_grid` caps the
// grid so tests can make blocks loop over several work items, `multiprocessors` stands in for
// the GPU's SM count in the feature-gradient plan. float32 and float64 only.
#include "cuda_emulation.h"
// The emulation macros must come first.
#include "cuda/segment_interp_kernels.cuh"

namespace {

using namespace rcl_kernels;
using namespace rcl_kernels::segment_interp;

Shape make_shape(int64_t B, int64_t C, int64_t T, int64_t K, int64_t N, int64_t S) {
  return Shape{B, C, T, K, N, S, N * S};
}

unsigned capped_grid(int64_t jobs, int64_t max_grid) {
  return static_cast<unsigned>(std::min<int64_t>(grid_for(jobs), max_grid));
}

template <typename T>
void forward(const T* features, const T* segments, T* out, const Shape& p, double context, int padding,
             int64_t max_grid) {
  if (p.B * p.K * p.C * p.N == 0) return;  // as the CUDA entry point: nothing to launch
  emu::launch(dim3(capped_grid(p.B * p.K, max_grid)), point_block(p.N, kForwardThreads), 0, [&] {
    segment_interp_forward_kernel<T, T>(features, segments, out, p, static_cast<T>(context),
                                        static_cast<Padding>(padding));
  });
}

// grad_features (B, C, T) and grad_segments (B, K, 2) must be zero on entry.
template <typename T>
void backward(const T* grad_out, const T* features, const T* segments, T* grad_features, T* grad_segments,
              const Shape& p, double context, int padding, bool need_features, bool need_segments, int64_t max_grid,
              int64_t multiprocessors) {
  if (p.B * p.K * p.C * p.N == 0 || !(need_features || need_segments)) return;  // as the CUDA entry point
  const dim3 block = point_block(p.N, kBackwardThreads);
  const BackwardPlan plan = plan_backward(p, sizeof(T), multiprocessors, block.y, need_features);
  const dim3 grid(capped_grid(p.B * plan.channel_tiles * plan.segment_groups, max_grid));
  const size_t slab_bytes = plan.use_slab ? static_cast<size_t>(plan.channel_tile * p.T) * sizeof(T) : 0;
  with_backward_variant(plan.use_slab, need_features, need_segments, [&](auto slab, auto feats, auto segs) {
    emu::launch(grid, block, slab_bytes, [&] {
      segment_interp_backward_kernel<T, T, decltype(slab)::value, decltype(feats)::value, decltype(segs)::value>(
          grad_out, features, segments, grad_features, grad_segments, p, static_cast<T>(context),
          static_cast<Padding>(padding), plan);
    });
  });
}

}  // namespace

#define RCL_EMULATED_ENTRY_POINTS(T, suffix)                                                                  \
  extern "C" void soi_forward_##suffix(const T* features, const T* segments, T* out, int64_t B, int64_t C,    \
                                       int64_t Tn, int64_t K, int64_t N, int64_t S, double context,          \
                                       int padding, int64_t max_grid) {                                      \
    forward<T>(features, segments, out, make_shape(B, C, Tn, K, N, S), context, padding, max_grid);          \
  }                                                                                                          \
  extern "C" void soi_backward_##suffix(const T* grad_out, const T* features, const T* segments,             \
                                        T* grad_features, T* grad_segments, int64_t B, int64_t C, int64_t Tn, \
                                        int64_t K, int64_t N, int64_t S, double context, int padding,         \
                                        int need_features, int need_segments, int64_t max_grid,               \
                                        int64_t multiprocessors) {                                           \
    backward<T>(grad_out, features, segments, grad_features, grad_segments, make_shape(B, C, Tn, K, N, S),   \
                context, padding, need_features != 0, need_segments != 0, max_grid, multiprocessors);        \
  }

RCL_EMULATED_ENTRY_POINTS(float, f32)
RCL_EMULATED_ENTRY_POINTS(double, f64)

// The CUDA entry points' launches for one problem (the size matrix, tests/size_matrix.py), from
// the same helpers: plan[0..2] forward grid and block (x, y); plan[3..5] backward grid and block;
// plan[6..9] channel_tile, channel_tiles, segments_per_group, segment_groups; plan[10] use_slab;
// plan[11] the slab's dynamic shared bytes. acc_bytes: sizeof(acc_t) (8 for float64, else 4).
extern "C" void soi_launch_plan(int64_t B, int64_t C, int64_t Tn, int64_t K, int64_t N, int64_t S, int64_t acc_bytes,
                                int64_t multiprocessors, int need_features, int64_t* plan) {
  const Shape p = make_shape(B, C, Tn, K, N, S);
  const dim3 forward_block = point_block(p.N, kForwardThreads);
  const dim3 backward_block = point_block(p.N, kBackwardThreads);
  const BackwardPlan bp = plan_backward(p, acc_bytes, multiprocessors, backward_block.y, need_features != 0);
  const int64_t values[12] = {grid_for(p.B * p.K), forward_block.x, forward_block.y,
                              grid_for(p.B * bp.channel_tiles * bp.segment_groups), backward_block.x,
                              backward_block.y, bp.channel_tile, bp.channel_tiles, bp.segments_per_group,
                              bp.segment_groups, bp.use_slab, bp.use_slab ? bp.channel_tile * p.T * acc_bytes : 0};
  std::copy(values, values + 12, plan);
}

// Signed overflow on purpose, for x > 0: tests/test_sanitizers.py checks that UBSan reports it
// (so a build that lost -fsanitize=undefined cannot pass the memcheck silently).
extern "C" int sanitizer_probe_signed_overflow(int x) { return x + std::numeric_limits<int>::max(); }
