// RCL_HOST_DEVICE: functions shared by the CPU and CUDA kernels compile for both sides.
#pragma once

#ifdef __CUDACC__
#define RCL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RCL_HOST_DEVICE inline
#endif
