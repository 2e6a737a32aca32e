// Run-time choice between the AVX-512 kernels and the portable (scalar, compiler-vectorised)
// ones, made the way ATen makes it: the AVX-512 code is compiled into every build (function
// target attributes, no -mavx512 for the rest of the library) and used only where ATen itself
// would use its AVX-512 kernels on this CPU (at::get_cpu_capability(), which honours
// ATEN_CPU_CAPABILITY). RCL_CPU_CAPABILITY=default, read on every call, forces the portable
// kernels in one process, so tests run both paths.
#pragma once

#include <ATen/Version.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace rcl_kernels {

inline bool cpu_has_avx512() {
  // ATen says "AVX512" only where cpuinfo reports AVX-512 F, BW, VL and DQ (and the OS saves
  // the zmm state); the compiler's own check guards builds of ATen that never say it.
  static const bool has = at::get_cpu_capability() == "AVX512" && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512dq");
  return has;
}

inline bool use_avx512_kernels() {
  const char* forced = std::getenv("RCL_CPU_CAPABILITY");
  if (forced != nullptr && std::strcmp(forced, "default") == 0) return false;
  return cpu_has_avx512();
}

}  // namespace rcl_kernels
