// A CPU stand-in for the CUDA built-ins that csrc/cuda/*.cuh kernels use, so tests can run the
// real kernel code on a machine without a GPU. Every CUDA thread of a block is an OS thread:
// __syncthreads is a std::barrier over the block, warp shuffles exchange through a per-warp
// buffer between two warp barriers, atomicAdd is std::atomic_ref. Blocks run one after another,
// so function-local __shared__ arrays (here: statics) are private to the running block.
// Dynamic shared memory is filled with NaN bytes before each block, as a kernel that reads it
// before writing it would see garbage on a GPU too.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

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

struct Block {
  explicit Block(int threads, size_t shared_bytes)
      : barrier(threads), shared(shared_bytes, 0xFF), exchange((threads + 31) / 32) {
    for (int w = 0; w < (threads + 31) / 32; ++w) {
      warp_barriers.emplace_back(std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w)));
    }
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  std::vector<unsigned char> shared;
  std::vector<std::array<double, 32>> exchange;
};

inline thread_local Block* current_block = nullptr;

inline unsigned char* dynamic_shared() { return current_block->shared.data(); }

inline int linear_thread() { return threadIdx.y * blockDim.x + threadIdx.x; }

// Runs kernel(args...) on grid x block threads, one block at a time.
template <typename Kernel>
void launch(dim3 grid, dim3 block, size_t shared_bytes, Kernel&& kernel) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  for (unsigned bx = 0; bx < grid.x; ++bx) {
    Block state(threads, shared_bytes);
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        current_block = &state;
        gridDim = grid;
        blockDim = block;
        blockIdx = uint3{bx, 0, 0};
        threadIdx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
        kernel();
      });
    }
    for (auto& th : pool) th.join();
  }
}

}  // namespace emu

inline void __syncthreads() { emu::current_block->barrier.arrive_and_wait(); }

// Lanes read from lane + offset inside their group of `width` lanes, or keep their own value.
template <typename T>
T __shfl_down_sync(unsigned /*mask*/, T value, int offset, int width = 32) {
  emu::Block& b = *emu::current_block;
  const int t = emu::linear_thread(), warp = t / 32, lane = t % 32;
  b.exchange[warp][lane] = static_cast<double>(value);
  b.warp_barriers[warp]->arrive_and_wait();
  const T result = lane % width + offset < width ? static_cast<T>(b.exchange[warp][lane + offset]) : value;
  b.warp_barriers[warp]->arrive_and_wait();
  return result;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
