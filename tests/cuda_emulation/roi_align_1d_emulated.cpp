// The CUDA 1D RoIAlign kernels (csrc/cuda/roi_align_1d_kernels.cuh) compiled for the CPU on top of
// cuda_emulation.h, behind a C interface for ctypes (tests/test_roi_align_1d_cuda_emulated.py).
// Launches use the header's plan_* functions, as the CUDA entry points do; `max_blocks` caps the
// grid so tests can make the grid-stride loops take several passes. float32 and float64 only.
#include "cuda_emulation.h"
// The emulation macros must come first.
#include "cuda/roi_align_1d_kernels.cuh"

namespace {

using namespace rcl_kernels;
using namespace rcl_kernels::roi_align_1d;

Problem make_problem(int64_t B, int64_t C, int64_t T, int64_t R, int64_t P, int64_t sampling_ratio, int aligned) {
  return Problem{B, C, T, R, P, sampling_ratio, aligned != 0};
}

dim3 grid_of(const Launch& l, int64_t max_blocks) {
  return dim3(static_cast<unsigned>(std::min<int64_t>(l.blocks, max_blocks)));
}

template <typename T>
void forward(const T* f, const T* rois, T* out, const Problem& p, double scale, int64_t max_blocks) {
  if (p.R * p.C * p.P == 0) return;  // as the CUDA entry point: nothing to launch
  const Launch l = plan_forward(p);
  emu::launch(grid_of(l, max_blocks), dim3(l.threads), 0,
              [&] { forward_kernel<T, T>(f, rois, out, p, static_cast<T>(scale)); });
}

// grad_f (B, C, T) and grad_rois (R, 3) must be zero on entry.
template <typename T>
void backward(const T* g, const T* f, const T* rois, T* grad_f, T* grad_rois, const Problem& p, double scale,
              int deterministic, int need_input, int need_rois, int64_t max_blocks) {
  if (p.R * p.C * p.P == 0) return;
  const T s = static_cast<T>(scale);
  if (need_input && p.B * p.C > 0) {
    const Launch l = deterministic ? plan_input_grad_rows(p) : plan_input_grad_atomic(p);
    emu::launch(grid_of(l, max_blocks), dim3(l.threads), 0, [&] {
      deterministic ? input_grad_rows_kernel<T>(g, rois, grad_f, p, s) : input_grad_atomic_kernel<T>(g, rois, grad_f, p, s);
    });
  }
  if (need_rois) {
    const Launch l = plan_rois_grad(p);
    emu::launch(grid_of(l, max_blocks), dim3(l.threads), 0,
                [&] { rois_grad_kernel<T>(g, f, rois, grad_rois, p, s); });
  }
}

}  // namespace

// The launch plan of `kernel` (0 forward, 1 atomic input gradient, 2 rows input gradient,
// 3 roi gradient) into plan[2] = (blocks, threads).
extern "C" void roi_align_1d_plan(int kernel, int64_t B, int64_t C, int64_t T, int64_t R, int64_t P, int64_t* plan) {
  const Problem p = make_problem(B, C, T, R, P, 0, 0);
  const Launch l = kernel == 0   ? plan_forward(p)
                   : kernel == 1 ? plan_input_grad_atomic(p)
                   : kernel == 2 ? plan_input_grad_rows(p)
                                 : plan_rois_grad(p);
  plan[0] = l.blocks;
  plan[1] = l.threads;
}

#define RCL_EMULATED_ENTRY_POINTS(T, suffix)                                                                     \
  extern "C" void roi_align_1d_forward_##suffix(const T* f, const T* rois, T* out, int64_t B, int64_t C,        \
                                                int64_t Tn, int64_t R, int64_t P, double scale,                  \
                                                int64_t sampling_ratio, int aligned, int64_t max_blocks) {       \
    forward<T>(f, rois, out, make_problem(B, C, Tn, R, P, sampling_ratio, aligned), scale, max_blocks);          \
  }                                                                                                             \
  extern "C" void roi_align_1d_backward_##suffix(const T* g, const T* f, const T* rois, T* grad_f, T* grad_rois, \
                                                 int64_t B, int64_t C, int64_t Tn, int64_t R, int64_t P,         \
                                                 double scale, int64_t sampling_ratio, int aligned,              \
                                                 int deterministic, int need_input, int need_rois,               \
                                                 int64_t max_blocks) {                                           \
    backward<T>(g, f, rois, grad_f, grad_rois, make_problem(B, C, Tn, R, P, sampling_ratio, aligned), scale,     \
                deterministic, need_input, need_rois, max_blocks);                                               \
  }

RCL_EMULATED_ENTRY_POINTS(float, f32)
RCL_EMULATED_ENTRY_POINTS(double, f64)
