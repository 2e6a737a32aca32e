// Race check of the CUDA kernels that share memory between threads, without a GPU: the kernels
// run on tests/cuda_emulation with one OS thread per CUDA thread (RCL_EMULATION_OS_THREADS), so
// ThreadSanitizer sees every shared-memory access and every barrier. Built and run by
// tests/test_sanitizers.py (TSan cannot be loaded into a Python process); torch-free.
//
//   Soft-NMS (csrc/cuda/soft_nms_kernels.cuh): the block-wide argmax's scratch, and the
//     candidates in dynamic shared memory (or the global scratch), 1 to 5 warps, with and
//     without labels, every method.
//   SoI (csrc/cuda/segment_interp_kernels.cuh): the backward's shared-memory slab (cleared,
//     accumulated with atomics, flushed, between barriers), over several jobs per block; the
//     forward, which shares nothing, once.
//
// Exit status 0 when every run produced the expected results; TSan's own exit status (66) on a
// report. Built with -D'RCL_ARGMAX_RESULT_BARRIER()=' it is the seeded mutant that must be caught.
#define RCL_EMULATION_OS_THREADS 1
#include "cuda_emulation.h"
// The emulation macros must come first.
#include "cuda/segment_interp_kernels.cuh"
#include "cuda/soft_nms_kernels.cuh"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

namespace nms = rcl_kernels::soft_nms;
namespace soi = rcl_kernels::segment_interp;

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "racecheck: %s\n", what);
    ++failures;
  }
}

struct NmsResult {
  std::vector<float> segments, scores;
  std::vector<int64_t> labels, indices, counts;
};

template <nms::Method kMethod, bool kLabels>
NmsResult run_soft_nms(const std::vector<float>& seg, const std::vector<float>& sc, const std::vector<int64_t>& lab,
                       int64_t V, int P, int64_t top_k, bool global_memory) {
  NmsResult r{std::vector<float>(V * top_k * 2), std::vector<float>(V * top_k), std::vector<int64_t>(V * top_k),
              std::vector<int64_t>(V * top_k), std::vector<int64_t>(V)};
  const nms::Params p = nms::make_params(static_cast<int>(kMethod), 0.5, 0.1, 0.001, false, 0.0, 0.0);
  const nms::Inputs in{seg.data(), sc.data(), kLabels ? lab.data() : nullptr, nullptr, P};
  const nms::Outputs out{r.segments.data(), r.scores.data(), kLabels ? r.labels.data() : nullptr,
                         r.indices.data(), r.counts.data(), top_k};
  const nms::LaunchPlan plan = nms::plan_launch(P, V, kLabels, 132,
                                                nms::SharedMemory{sizeof(nms::ArgmaxScratch), 48 * 1024,
                                                                  global_memory ? 0 : 232448});
  std::vector<float> scratch(plan.global_scratch ? V * 3 * P : 0);
  float* scratch_ptr = plan.global_scratch ? scratch.data() : nullptr;
  emu::launch(dim3(static_cast<unsigned>(V)), dim3(plan.threads), static_cast<size_t>(plan.dynamic_bytes),
              [&] { nms::soft_nms_kernel<kMethod, kLabels>(in, out, p, scratch_ptr); });
  return r;
}

template <nms::Method kMethod, bool kLabels>
int soft_nms_case(int64_t V, int P, int64_t top_k, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> seg(V * P * 2), sc(V * P);
  std::vector<int64_t> lab(V * P);
  for (int64_t i = 0; i < V * P; ++i) {
    seg[2 * i] = u(gen) * 10.f;
    seg[2 * i + 1] = seg[2 * i] + u(gen) * u(gen) * 5.f;
    sc[i] = u(gen);
    lab[i] = static_cast<int64_t>(gen() % 3);
  }
  const NmsResult shared = run_soft_nms<kMethod, kLabels>(seg, sc, lab, V, P, top_k, false);
  const NmsResult global = run_soft_nms<kMethod, kLabels>(seg, sc, lab, V, P, top_k, true);
  expect(shared.indices == global.indices && shared.scores == global.scores && shared.counts == global.counts,
         "soft_nms: the shared- and global-memory paths differ");
  for (int64_t v = 0; v < V; ++v) expect(shared.counts[v] == std::min<int64_t>(top_k, P), "soft_nms: short count");
  return 2;
}

int segment_interp_case(int64_t B, int64_t C, int64_t T, int64_t K, int64_t N, int64_t S, int64_t max_grid,
                        int64_t multiprocessors) {
  const soi::Shape p{B, C, T, K, N, S, N * S};
  std::mt19937 gen(static_cast<unsigned>(B * 131 + C * 17 + T + K + N + S));
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> u(-3.f, static_cast<float>(T + 1));
  std::vector<float> features(B * C * T), segments(B * K * 2), grad(B * K * C * N), out(B * K * C * N);
  for (float& f : features) f = normal(gen);
  for (float& s : segments) s = u(gen);
  for (float& g : grad) g = normal(gen);
  const float context = 0.25f;
  const auto pad = rcl_kernels::Padding::Zeros;
  emu::launch(dim3(static_cast<unsigned>(std::min<int64_t>(soi::grid_for(B * K), max_grid))),
              soi::point_block(N, soi::kForwardThreads), 0,
              [&] { soi::segment_interp_forward_kernel<float, float>(features.data(), segments.data(), out.data(), p,
                                                                     context, pad); });
  const dim3 block = soi::point_block(N, soi::kBackwardThreads);
  int runs = 1;
  for (int need = 1; need <= 3; ++need) {  // features, segments, both
    const bool want_f = need & 1, want_s = need & 2;
    const soi::BackwardPlan plan = soi::plan_backward(p, sizeof(float), multiprocessors, block.y, want_f);
    std::vector<float> grad_f(B * C * T, 0.f), grad_s(B * K * 2, 0.f);
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(soi::grid_for(B * plan.channel_tiles * plan.segment_groups),
                                                            max_grid)));
    const size_t slab_bytes = plan.use_slab ? static_cast<size_t>(plan.channel_tile * T) * sizeof(float) : 0;
    soi::with_backward_variant(plan.use_slab, want_f, want_s, [&](auto slab, auto feats, auto segs) {
      emu::launch(grid, block, slab_bytes, [&] {
        soi::segment_interp_backward_kernel<float, float, decltype(slab)::value, decltype(feats)::value,
                                            decltype(segs)::value>(grad.data(), features.data(), segments.data(),
                                                                   grad_f.data(), grad_s.data(), p, context, pad, plan);
      });
    });
    double total = 0;
    for (float g : grad_f) total += std::fabs(g);
    for (float g : grad_s) total += std::fabs(g);
    expect(std::isfinite(total) && total > 0, "segment_interp: empty or non-finite gradient");
    ++runs;
  }
  return runs;
}

}  // namespace

int main() {
  using nms::Method;
  int runs = 0;
  // 1, 2 and 5 warps (P = 20, 100, 300 at 2 candidates per thread).
  runs += soft_nms_case<Method::Gaussian, false>(2, 20, 8, 1);
  runs += soft_nms_case<Method::Gaussian, false>(2, 100, 30, 2);
  runs += soft_nms_case<Method::Linear, true>(2, 100, 30, 3);
  runs += soft_nms_case<Method::Hard, true>(1, 300, 40, 4);
  runs += soft_nms_case<Method::Gaussian, true>(1, 300, 40, 5);
  // Slab path, several jobs per block (grid capped at 2), two channel tiles; and no slab.
  runs += segment_interp_case(2, 5, 9, 12, 7, 3, 2, 2);
  runs += segment_interp_case(1, 3, 3000, 6, 5, 2, 1, 2);
  runs += segment_interp_case(1, 2, 8200, 4, 3, 1, 1, 2);
  std::printf("racecheck: %d kernel runs, %d failures\n", runs, failures);
  return failures == 0 ? 0 : 1;
}
