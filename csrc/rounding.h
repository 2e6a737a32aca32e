// Separately rounded float arithmetic shared by every kernel whose results must match across
// backends bit for bit. nvcc contracts a + b * c into one FMA (-fmad=true, kept for the kernels'
// sums; csrc/cuda/nvcc_flags.txt); a position or a score would then differ from the CPU kernel
// and the reference by an ulp (which flips an interpolation interval, or a Soft-NMS selection).
// On the device these are the __[fd]*_rn intrinsics, which are never contracted; on the host the
// files that need it turn contraction off.
#pragma once

#include "host_device.h"

namespace rcl_kernels {

template <typename acc_t>
RCL_HOST_DEVICE acc_t add_rn(acc_t x, acc_t y) {
#ifdef __CUDA_ARCH__
  if constexpr (sizeof(acc_t) == sizeof(double)) {
    return __dadd_rn(x, y);
  } else {
    return __fadd_rn(x, y);
  }
#else
  return x + y;
#endif
}
template <typename acc_t>
RCL_HOST_DEVICE acc_t sub_rn(acc_t x, acc_t y) {
#ifdef __CUDA_ARCH__
  if constexpr (sizeof(acc_t) == sizeof(double)) {
    return __dsub_rn(x, y);
  } else {
    return __fsub_rn(x, y);
  }
#else
  return x - y;
#endif
}
template <typename acc_t>
RCL_HOST_DEVICE acc_t mul_rn(acc_t x, acc_t y) {
#ifdef __CUDA_ARCH__
  if constexpr (sizeof(acc_t) == sizeof(double)) {
    return __dmul_rn(x, y);
  } else {
    return __fmul_rn(x, y);
  }
#else
  return x * y;
#endif
}
template <typename acc_t>
RCL_HOST_DEVICE acc_t div_rn(acc_t x, acc_t y) {
#ifdef __CUDA_ARCH__
  if constexpr (sizeof(acc_t) == sizeof(double)) {
    return __ddiv_rn(x, y);
  } else {
    return __fdiv_rn(x, y);
  }
#else
  return x / y;
#endif
}

}  // namespace rcl_kernels
