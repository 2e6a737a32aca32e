// RCL_HOST_DEVICE: functions shared by the CPU and CUDA kernels compile for both sides.
#pragma once

#ifdef __CUDACC__
#define RCL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RCL_HOST_DEVICE inline
#endif

// Declares a kernel's dynamic shared memory as `unsigned char name[]`. The CPU emulation of the
// kernels (tests/cuda_emulation) supplies its own definition before including a kernel header.
#if defined(__CUDACC__) && !defined(RCL_DYNAMIC_SHARED_BYTES)
#define RCL_DYNAMIC_SHARED_BYTES(name) extern __shared__ __align__(16) unsigned char name[]
#endif
