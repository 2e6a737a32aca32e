// Device properties the CUDA launchers size their grids and shared memory by.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

namespace rcl_kernels {

inline int device_attribute(cudaDeviceAttr attr, int device) {
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, attr, device));
  return value;
}

}  // namespace rcl_kernels
