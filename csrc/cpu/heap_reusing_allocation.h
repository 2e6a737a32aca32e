// Large CPU outputs that the next call of the same op can allocate again on the same pages.
//
// torch's CPU allocator takes every block from posix_memalign(64, n). glibc serves an aligned
// request by asking its free lists for n + 64 + a minimum chunk, so the block that the previous
// call of an op freed, exactly n long, never serves the next call's request for the same n: the
// heap grows by a fresh block instead, whose pages fault in at first touch, until freed
// neighbours happen to coalesce. With freed memory kept (rcl_kernels.keep_freed_memory(), glibc's
// mmap threshold raised) that took 1 to 6 rounds per process for SoI's 41 MB anet output
// (2-core AMD EPYC VM, AVX-512, 2026-12-08: 10 fresh processes, 2 threads, 12 calls each; each
// round 12-16 ms of page faults against a 2-3 ms kernel), so the median of a few calls was fast
// in some processes and 5x slower in others. Here the block comes from plain malloc(n + 64) and
// is aligned inside it: glibc reuses a freed block of exactly that size, and from the second
// call on every process wrote to the same, resident pages (the same 10 processes: only the
// first call faulted). Under glibc's defaults such a block is still a fresh mmap each call; the
// allocator does not change that.
//
// The tensors are ordinary resizable CPU tensors (their storage carries this allocator).
#pragma once

#include <ATen/EmptyTensor.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Allocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace rcl_kernels {

class HeapReusingAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kAlignment = 64;  // torch's CPU alignment (whole cache lines, AVX-512 rows)

  c10::DataPtr allocate(size_t nbytes) override {
    if (nbytes == 0) return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    void* block = std::malloc(nbytes + kAlignment);
    TORCH_CHECK(block != nullptr, "rcl_kernels: out of memory allocating ", nbytes, " bytes");
    const uintptr_t start = (reinterpret_cast<uintptr_t>(block) + kAlignment - 1) & ~uintptr_t(kAlignment - 1);
    return {reinterpret_cast<void*>(start), block, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }  // the block is not the data pointer

  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }

 private:
  static void release(void* block) { std::free(block); }
};

inline HeapReusingAllocator& heap_reusing_allocator() {
  static HeapReusingAllocator allocator;
  return allocator;
}

// at::empty(sizes, options) (contiguous, CPU) with the storage from HeapReusingAllocator.
inline at::Tensor empty_reusing_heap(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_CHECK(options.device().is_cpu(), "empty_reusing_heap: a CPU tensor only");
  return at::detail::empty_generic(sizes, &heap_reusing_allocator(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()), c10::MemoryFormat::Contiguous);
}

}  // namespace rcl_kernels
