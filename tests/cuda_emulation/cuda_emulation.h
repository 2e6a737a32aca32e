// A CPU stand-in for the CUDA built-ins that csrc/cuda/*.cuh kernels use, so tests can run the
// real kernel code on a machine without a GPU. Blocks run one after another; inside a block,
// every CUDA thread runs its own copy of the kernel with its own stack, and __syncthreads and
// the warp shuffles are real barriers: no thread passes one before every thread of the block
// (of the warp, for a shuffle) has reached it.
//
// Two ways to run the threads of a block:
//   * default: fibers on the calling OS thread, switched at barriers by a round-robin
//     scheduler. Fast, deterministic, and a barrier that not every thread reaches (a deadlock
//     on a GPU) aborts with a message instead of hanging. On x86-64 a fiber switch saves the
//     callee-saved registers and swaps stacks (no system call, unlike swapcontext, which also
//     saves the signal mask); elsewhere it is ucontext. AddressSanitizer is told about every
//     stack switch.
//   * RCL_EMULATION_OS_THREADS: one OS thread per CUDA thread, std::barrier for the barriers,
//     so ThreadSanitizer sees the threads and their synchronisation (tests/tsan).
// atomicAdd is std::atomic_ref. Function-local __shared__ variables become statics, private to
// the running block because blocks run one at a time. Dynamic shared memory is filled with NaN
// bytes before each block, as a kernel that reads it before writing it would see garbage on a
// GPU too.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#ifdef RCL_EMULATION_OS_THREADS
#include <barrier>
#include <thread>
#else
#include <sys/mman.h>
#include <ucontext.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define RCL_EMULATION_ASAN 1
#endif
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static
#define RCL_DYNAMIC_SHARED_BYTES(name) unsigned char* name = emu::dynamic_shared()

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace emu {

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda_emulation: %s\n", what);
  std::abort();
}

inline uint3 thread_index(int t, const dim3& block) {
  return uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
}

inline int warps_of(int threads) { return (threads + 31) / 32; }

#ifdef RCL_EMULATION_OS_THREADS

struct Barrier {
  explicit Barrier(int count) : impl(count) {}
  void arrive_and_wait() { impl.arrive_and_wait(); }
  std::barrier<> impl;
};

#else

// ---------------------------------------------------------------------------------------------
// Fibers

#if defined(__x86_64__)
// rcl_emu_switch(&save, next): pushes the System V callee-saved registers, stores the stack
// pointer in save, loads next and pops the registers saved there. Weak: every emulation library
// that includes this header defines it.
extern "C" void rcl_emu_switch(void** save, void* next);
asm(R"(
  .text
  .weak rcl_emu_switch
  .type rcl_emu_switch, @function
rcl_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size rcl_emu_switch, .-rcl_emu_switch
)");

struct Context {
  void* sp = nullptr;
};
inline void switch_context(Context& from, Context& to) { rcl_emu_switch(&from.sp, to.sp); }
// A stack whose first switch-in "returns" into entry, as if entry had been called.
inline void make_context(Context& c, void* stack, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                              // entry's return address: it never returns
  *--sp = reinterpret_cast<void*>(entry);       // popped by rcl_emu_switch's ret
  for (int r = 0; r < 6; ++r) *--sp = nullptr;  // rbp, rbx, r12 - r15
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
};
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void make_context(Context& c, void* stack, size_t size, void (*entry)()) {
  if (getcontext(&c.uc) != 0) fail("getcontext failed");
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
  Context context;
  void* stack = nullptr;
  uint3 index;
  bool done = false;
#ifdef RCL_EMULATION_ASAN
  void* fake_stack = nullptr;
#endif
};

struct Scheduler {
  Context context;
  std::vector<Fiber>* fibers = nullptr;
  Fiber* running = nullptr;
  uint64_t progress = 0;  // barrier arrivals and finished threads: a round without any is a deadlock
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
#ifdef RCL_EMULATION_ASAN
  const void* stack_bottom = nullptr;
  size_t stack_size = 0;
#endif
};

inline thread_local Scheduler* scheduler = nullptr;

// Stack of each fiber; mapped untouched, so only the pages a kernel uses cost memory.
constexpr size_t kFiberStack = size_t(1) << 20;

// Fiber -> scheduler. `finished`: the fiber will never be resumed.
inline void to_scheduler(bool finished) {
  Scheduler& s = *scheduler;
  Fiber& f = *s.running;
#ifdef RCL_EMULATION_ASAN
  __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake_stack, s.stack_bottom, s.stack_size);
#else
  (void)finished;
#endif
  switch_context(f.context, s.context);
#ifdef RCL_EMULATION_ASAN
  __sanitizer_finish_switch_fiber(f.fake_stack, &s.stack_bottom, &s.stack_size);
#endif
}

inline void fiber_main() {
#ifdef RCL_EMULATION_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &scheduler->stack_bottom, &scheduler->stack_size);
#endif
  scheduler->body(scheduler->body_arg);
  scheduler->running->done = true;
  ++scheduler->progress;
  to_scheduler(true);
  fail("a finished fiber was resumed");
}

struct Barrier {
  explicit Barrier(int count) : expected(count) {}
  void arrive_and_wait() {
    ++scheduler->progress;
    if (++arrived == expected) {
      arrived = 0;
      ++generation;
      return;
    }
    const uint64_t mine = generation;
    while (generation == mine) to_scheduler(false);
  }
  int expected;
  int arrived = 0;
  uint64_t generation = 0;
};

// Runs body(arg) once per thread of `block`, each on its own fiber, until all have returned.
inline void run_fibers(const dim3& block, void (*body)(void*), void* arg, std::vector<Fiber>& fibers) {
  Scheduler s;
  s.fibers = &fibers;
  s.body = body;
  s.body_arg = arg;
  Scheduler* outer = scheduler;
  scheduler = &s;
  for (size_t t = 0; t < fibers.size(); ++t) {
    Fiber& f = fibers[t];
    f.index = thread_index(static_cast<int>(t), block);
    f.done = false;
    make_context(f.context, f.stack, kFiberStack, fiber_main);
  }
  size_t live = fibers.size();
  while (live > 0) {
    const uint64_t before = s.progress;
    for (Fiber& f : fibers) {
      if (f.done) continue;
      threadIdx = f.index;
      s.running = &f;
#ifdef RCL_EMULATION_ASAN
      void* fake = nullptr;
      __sanitizer_start_switch_fiber(&fake, static_cast<char*>(f.stack), kFiberStack);
#endif
      switch_context(s.context, f.context);
#ifdef RCL_EMULATION_ASAN
      __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
      if (f.done) --live;
    }
    if (live > 0 && s.progress == before) {
      fail("deadlock: some threads of a block wait at a barrier that others never reach");
    }
  }
  scheduler = outer;
}

struct Stacks {
  explicit Stacks(int threads) : fibers(threads) {
    for (Fiber& f : fibers) {
      f.stack = mmap(nullptr, kFiberStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (f.stack == MAP_FAILED) fail("cannot map a fiber stack");
    }
  }
  ~Stacks() {
    for (Fiber& f : fibers) munmap(f.stack, kFiberStack);
  }
  std::vector<Fiber> fibers;
};

#endif  // RCL_EMULATION_OS_THREADS

struct Block {
  Block(int threads, size_t shared_bytes)
      : barrier(threads), shared(shared_bytes, 0xFF), exchange(warps_of(threads)), turn(warps_of(threads)) {
    for (int w = 0; w < warps_of(threads); ++w) {
      warp_barriers.emplace_back(std::make_unique<Barrier>(std::min(32, threads - 32 * w)));
    }
  }
  Barrier barrier;
  std::vector<std::unique_ptr<Barrier>> warp_barriers;
  std::vector<unsigned char> shared;
  // Two exchange buffers per warp, used in turn by consecutive shuffles, so one barrier per
  // shuffle suffices: a lane can write the next shuffle's values only after every lane of its
  // warp has arrived there, i.e. has read this one's.
  std::vector<std::array<std::array<double, 32>, 2>> exchange;
  std::vector<std::array<unsigned char, 32>> turn;
};

inline thread_local Block* current_block = nullptr;

inline unsigned char* dynamic_shared() { return current_block->shared.data(); }

inline int linear_thread() { return threadIdx.y * blockDim.x + threadIdx.x; }

// Runs kernel() on grid x block threads, one block at a time.
template <typename Kernel>
void launch(dim3 grid, dim3 block, size_t shared_bytes, Kernel&& kernel) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads < 1 || threads > 1024) fail("a block must have 1 to 1024 threads");
#ifndef RCL_EMULATION_OS_THREADS
  Stacks stacks(threads);
#endif
  for (unsigned bx = 0; bx < grid.x; ++bx) {
    Block state(threads, shared_bytes);
#ifdef RCL_EMULATION_OS_THREADS
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        current_block = &state;
        gridDim = grid;
        blockDim = block;
        blockIdx = uint3{bx, 0, 0};
        threadIdx = thread_index(t, block);
        kernel();
      });
    }
    for (auto& th : pool) th.join();
#else
    current_block = &state;
    gridDim = grid;
    blockDim = block;
    blockIdx = uint3{bx, 0, 0};
    using K = std::remove_reference_t<Kernel>;
    run_fibers(block, [](void* k) { (*static_cast<K*>(k))(); }, &kernel, stacks.fibers);
    current_block = nullptr;
#endif
  }
}

}  // namespace emu

inline void __syncthreads() { emu::current_block->barrier.arrive_and_wait(); }

// Lanes read from lane + offset inside their group of `width` lanes, or keep their own value.
template <typename T>
T __shfl_down_sync(unsigned /*mask*/, T value, int offset, int width = 32) {
  emu::Block& b = *emu::current_block;
  const int t = emu::linear_thread(), warp = t / 32, lane = t % 32;
  std::array<double, 32>& buffer = b.exchange[warp][b.turn[warp][lane]];
  b.turn[warp][lane] ^= 1;
  buffer[lane] = static_cast<double>(value);
  b.warp_barriers[warp]->arrive_and_wait();
  return lane % width + offset < width ? static_cast<T>(buffer[lane + offset]) : value;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
