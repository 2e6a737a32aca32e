// Batched Soft-NMS on the CPU: videos in parallel (at::parallel_for), one greedy loop per video.
//
// Per video the live candidates are packed (structure of arrays) and, with labels, grouped by
// label (stable, so input order is kept inside a group). A selection only decays its own
// group, so a step costs one vectorised pass over that group plus a scan of the group maxima;
// candidates that can no longer be selected are compacted away as they accumulate.

// Bit-identical results with the CUDA kernel and the PyTorch reference need every float
// operation rounded on its own: forbid multiply-add contraction for this file (x86-64 builds
// have no FMA in their baseline ISA anyway; this matters on aarch64 and friends). GCC also
// needs no-trapping-math to if-convert (and so vectorise) the decay pass; nothing here reads
// the floating-point exception flags.
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off", "no-trapping-math")
#endif

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>

#include "soft_nms_checks.h"
#include "soft_nms_common.h"

// The decay and argmax passes are compiled for AVX-512, AVX2 and the baseline ISA, and the best
// the CPU supports is picked at load time (GCC function multi-versioning); contraction stays off
// in every clone (no FMA instruction appears in the library).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define RCL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RCL_SIMD_CLONES
#endif

namespace rcl_kernels {
namespace soft_nms {
namespace {

template <typename scalar_t>
constexpr scalar_t kNaN = std::numeric_limits<scalar_t>::quiet_NaN();
template <typename scalar_t>
constexpr scalar_t kNegInf = -std::numeric_limits<scalar_t>::infinity();

template <Method kMethod, typename scalar_t>
inline void decay_loop(scalar_t* __restrict score, const scalar_t* __restrict start, const scalar_t* __restrict end,
                       int64_t count, scalar_t start_b, scalar_t end_b, scalar_t len_b, scalar_t gate,
                       const ParamsOf<scalar_t>& p) {
  const scalar_t threshold = p.iou_threshold;
  const scalar_t neg_inv_sigma = p.neg_inv_sigma;
  for (int64_t i = 0; i < count; ++i) {
    const scalar_t s = score[i];
    const scalar_t iou = tiou(start_b, end_b, len_b, start[i], end[i]);
    const scalar_t decayed = decayed_score<kMethod>(s, iou, neg_inv_sigma);
    score[i] = decays(s, iou, threshold, gate) ? decayed : s;
  }
}

template <typename scalar_t>
inline void decay_methods(scalar_t* score, const scalar_t* start, const scalar_t* end, int64_t count,
                          scalar_t start_b, scalar_t end_b, scalar_t len_b, scalar_t gate,
                          const ParamsOf<scalar_t>& p) {
  switch (p.method) {
    case Method::Gaussian:
      decay_loop<Method::Gaussian>(score, start, end, count, start_b, end_b, len_b, gate, p);
      break;
    case Method::Linear:
      decay_loop<Method::Linear>(score, start, end, count, start_b, end_b, len_b, gate, p);
      break;
    case Method::Hard:
      decay_loop<Method::Hard>(score, start, end, count, start_b, end_b, len_b, gate, p);
      break;
  }
}

// Decay every candidate of [0, count) by the selected segment (start_b, end_b). Branch-free, so
// the compiler vectorises it. One plain function per precision: GCC clones plain functions only.
RCL_SIMD_CLONES
void decay_range(float* score, const float* start, const float* end, int64_t count, float start_b, float end_b,
                 float len_b, float gate, const Params& p) {
  decay_methods(score, start, end, count, start_b, end_b, len_b, gate, p);
}

// float64 in passes: the float64 Gaussian weight (13 dependent divisions) costs many times a
// tIoU, and only the few candidates that overlap the selection beyond the thresholds decay.
// Pass 1 (branch-free, vectorised) writes each candidate's tIoU; pass 2 packs (branch-free) the
// candidates that pass decays() (position, score, tIoU); pass 3 decays the packed ones, branch-free over
// contiguous arrays, so it vectorises too (the weight's divisions run 4 or 8 lanes at a time
// instead of one dependent chain per candidate); pass 4 writes them back. Every decayed score is
// computed by the same operations as in the one-pass loop, so the results are bit-identical.
RCL_SIMD_CLONES
void overlaps(double* __restrict iou, const double* __restrict start, const double* __restrict end, int64_t count,
              double start_b, double end_b, double len_b) {
  for (int64_t i = 0; i < count; ++i) iou[i] = tiou(start_b, end_b, len_b, start[i], end[i]);
}

template <Method kMethod>
void decay_packed_loop(double* __restrict score, const double* __restrict iou, int64_t n, double neg_inv_sigma) {
  for (int64_t k = 0; k < n; ++k) score[k] = decayed_score<kMethod>(score[k], iou[k], neg_inv_sigma);
}

RCL_SIMD_CLONES
void decay_packed(double* score, const double* iou, int64_t n, const ParamsOf<double>& p) {
  switch (p.method) {
    case Method::Gaussian:
      decay_packed_loop<Method::Gaussian>(score, iou, n, p.neg_inv_sigma);
      break;
    case Method::Linear:
      decay_packed_loop<Method::Linear>(score, iou, n, p.neg_inv_sigma);
      break;
    case Method::Hard:
      decay_packed_loop<Method::Hard>(score, iou, n, p.neg_inv_sigma);
      break;
  }
}

// Scratch of the float64 decay: (P,) each.
struct DecayScratch {
  double* iou;
  double* packed_score;
  double* packed_iou;
  int32_t* packed_pos;
};

void decay_range(double* score, const double* start, const double* end, int64_t count, double start_b,
                 double end_b, double len_b, double gate, const ParamsOf<double>& p, const DecayScratch& s) {
  overlaps(s.iou, start, end, count, start_b, end_b, len_b);
  int64_t n = 0;
  for (int64_t i = 0; i < count; ++i) {  // written always, kept where it decays: no branch to mispredict
    s.packed_pos[n] = static_cast<int32_t>(i);
    s.packed_score[n] = score[i];
    s.packed_iou[n] = s.iou[i];
    n += decays(score[i], s.iou[i], p.iou_threshold, gate);
  }
  decay_packed(s.packed_score, s.packed_iou, n, p);
  for (int64_t k = 0; k < n; ++k) score[s.packed_pos[k]] = s.packed_score[k];
}

// float32's weight is cheap and the whole pass vectorises: one pass (the scratch is unused).
struct NoScratch {};

void decay_range(float* score, const float* start, const float* end, int64_t count, float start_b, float end_b,
                 float len_b, float gate, const Params& p, const NoScratch&) {
  decay_range(score, start, end, count, start_b, end_b, len_b, gate, p);
}

// Reusable per-thread buffers for one video's live candidates, grouped by label.
template <typename scalar_t>
struct VideoWork {
  std::vector<scalar_t> start, end, score;
  std::vector<double> iou, packed_score, packed_iou;  // scratch of the float64 decay (empty for float32)
  std::vector<int32_t> packed_pos;
  std::vector<int32_t> index;  // input index of each packed candidate
  std::vector<int32_t> order;  // scratch for the label sort
  // Group g occupies [group_begin[g], group_end[g]); its best selectable candidate is at
  // best_pos[g] (-1: none left).
  std::vector<int32_t> group_begin, group_end, best_pos;

  void reserve(int64_t P) {
    start.resize(P);
    end.resize(P);
    score.resize(P);
    const int64_t scratch = sizeof(scalar_t) == sizeof(double) ? P : 0;
    iou.resize(scratch);
    packed_score.resize(scratch);
    packed_iou.resize(scratch);
    packed_pos.resize(scratch);
    index.resize(P);
    order.resize(P);
    group_begin.resize(P);
    group_end.resize(P);
    best_pos.resize(P);
  }
};

template <typename scalar_t>
struct VideoIn {
  const scalar_t* segments;  // (P, 2)
  const scalar_t* scores;    // (P,)
  const int64_t* labels;  // (P,) or null
  int64_t count;          // candidates [0, count) are real, the rest padding
};

template <typename scalar_t>
struct VideoOut {
  scalar_t* segments;  // (top_k, 2)
  scalar_t* scores;    // (top_k,)
  int64_t* labels;  // (top_k,) or null
  int64_t* indices;  // (top_k,)
  int64_t* count;
};

inline NoScratch decay_scratch(VideoWork<float>&) { return {}; }
inline DecayScratch decay_scratch(VideoWork<double>& w) {
  return {w.iou.data(), w.packed_score.data(), w.packed_iou.data(), w.packed_pos.data()};
}

// Packs the candidates that may still be selected; returns the number of groups.
template <typename scalar_t>
int64_t pack_video(const VideoIn<scalar_t>& in, const ParamsOf<scalar_t>& p, VideoWork<scalar_t>& w) {
  int64_t live = 0;
  for (int64_t j = 0; j < in.count; ++j) {
    if (!never_selectable(flush_score(in.scores[j]), p.min_score)) w.order[live++] = static_cast<int32_t>(j);
  }
  if (in.labels != nullptr) {
    std::stable_sort(w.order.begin(), w.order.begin() + live,
                     [&](int32_t a, int32_t b) { return in.labels[a] < in.labels[b]; });
  }
  int64_t groups = 0;
  for (int64_t k = 0; k < live; ++k) {
    const int32_t j = w.order[k];
    scalar_t s = in.segments[2 * j], e = in.segments[2 * j + 1];
    if (!finite_segment(s, e)) {
      s = scalar_t(1);
      e = scalar_t(0);
    }
    w.start[k] = s;
    w.end[k] = e;
    w.score[k] = flush_score(in.scores[j]);
    w.index[k] = j;
    if (k == 0 || (in.labels != nullptr && in.labels[j] != in.labels[w.order[k - 1]])) {
      if (groups > 0) w.group_end[groups - 1] = static_cast<int32_t>(k);
      w.group_begin[groups++] = static_cast<int32_t>(k);
    }
  }
  if (groups > 0) w.group_end[groups - 1] = static_cast<int32_t>(live);
  return groups;
}

// Position of the best selectable score in score[0, count) (input order: ties go to the lower
// position; -1 if none), and how many entries can never be selected again.
struct ScanResult {
  int32_t best;
  int32_t dead;
};

// The scan, one element at a time: the tail of the lane scan, and the whole scan without GCC's
// vector extensions.
template <typename scalar_t>
ScanResult scan_scores_serial(const scalar_t* score, int32_t begin, int32_t count, scalar_t min_score, ScanResult r,
                              scalar_t r_score) {
  for (int32_t i = begin; i < count; ++i) {
    const scalar_t s = score[i];
    r.dead += never_selectable(s, min_score);
    if (s >= min_score && s > r_score) {
      r_score = s;
      r.best = i;
    }
  }
  return r;
}

#if defined(__GNUC__) && !defined(__clang__)
// L lanes with GCC vector extensions (8 floats or 4 doubles: AVX2 registers in the AVX2 clone,
// SSE pairs otherwise): each lane keeps its first maximum, then the lanes are merged by (score,
// position), then the tail is scanned one at a time.
typedef float float8 __attribute__((vector_size(32)));
typedef int32_t int8x32 __attribute__((vector_size(32)));
typedef double double4 __attribute__((vector_size(32)));
typedef int64_t int4x64 __attribute__((vector_size(32)));

template <typename scalar_t, typename Vec, typename IVec, int L>
inline ScanResult scan_lanes(const scalar_t* score, int32_t count, scalar_t min_score) {
  // never_selectable, lane-wise
  const scalar_t dead_below = min_score > scalar_t(0) ? min_score : kNegInf<scalar_t>;
  Vec best_score;
  IVec best_pos, dead = {}, pos;
  for (int k = 0; k < L; ++k) {
    best_score[k] = kNegInf<scalar_t>;
    best_pos[k] = -1;
    pos[k] = k;
  }
  int32_t i = 0;
  for (; i + L <= count; i += L) {
    Vec s;
    std::memcpy(&s, score + i, sizeof(s));
    const IVec take = (s >= min_score) & (s > best_score);
    best_score = take ? s : best_score;
    best_pos = take ? pos : best_pos;
    dead -= ~(s >= dead_below);  // +1 where !(s >= dead_below), NaN included
    pos += L;
  }
  ScanResult r{-1, 0};
  scalar_t r_score = kNegInf<scalar_t>;
  for (int k = 0; k < L; ++k) {
    r.dead += static_cast<int32_t>(dead[k]);
    if (best_pos[k] >= 0 && better(best_score[k], best_pos[k], r_score, r.best)) {
      r_score = best_score[k];
      r.best = static_cast<int32_t>(best_pos[k]);
    }
  }
  // later positions than every lane's: strict > keeps ties on the lanes
  return scan_scores_serial(score, i, count, min_score, r, r_score);
}

RCL_SIMD_CLONES
ScanResult scan_scores(const float* score, int32_t count, float min_score) {
  return scan_lanes<float, float8, int8x32, 8>(score, count, min_score);
}

RCL_SIMD_CLONES
ScanResult scan_scores(const double* score, int32_t count, double min_score) {
  return scan_lanes<double, double4, int4x64, 4>(score, count, min_score);
}
#else
template <typename scalar_t>
ScanResult scan_scores(const scalar_t* score, int32_t count, scalar_t min_score) {
  return scan_scores_serial(score, 0, count, min_score, ScanResult{-1, 0}, kNegInf<scalar_t>);
}
#endif

// Finds group g's best selectable candidate; packs the group tighter when over a quarter of it
// can no longer be selected (keeping input order, so ties still go to the lower index).
template <typename scalar_t>
void refresh_group(int64_t g, const ParamsOf<scalar_t>& p, VideoWork<scalar_t>& w) {
  const int32_t b = w.group_begin[g];
  int32_t e = w.group_end[g];
  const ScanResult scan = scan_scores(w.score.data() + b, e - b, p.min_score);
  int32_t best = scan.best >= 0 ? b + scan.best : -1;
  if (scan.dead > 8 && 4 * scan.dead > e - b) {
    int32_t out = b;
    for (int32_t i = b; i < e; ++i) {
      if (never_selectable(w.score[i], p.min_score)) continue;
      if (i == best) best = out;
      w.start[out] = w.start[i];
      w.end[out] = w.end[i];
      w.score[out] = w.score[i];
      w.index[out] = w.index[i];
      ++out;
    }
    e = out;
    w.group_end[g] = e;
  }
  w.best_pos[g] = best;
}

template <typename scalar_t>
void soft_nms_video(const VideoIn<scalar_t>& in, const VideoOut<scalar_t>& out, int64_t top_k,
                    const ParamsOf<scalar_t>& p, VideoWork<scalar_t>& w) {
  const int64_t groups = pack_video(in, p, w);
  for (int64_t g = 0; g < groups; ++g) refresh_group(g, p, w);
  int64_t t = 0;
  for (; t < top_k; ++t) {
    int64_t g_best = -1;
    scalar_t s_best = kNegInf<scalar_t>;
    int64_t i_best = std::numeric_limits<int64_t>::max();
    for (int64_t g = 0; g < groups; ++g) {
      const int32_t pos = w.best_pos[g];
      if (pos >= 0 && better(w.score[pos], w.index[pos], s_best, i_best)) {
        g_best = g;
        s_best = w.score[pos];
        i_best = w.index[pos];
      }
    }
    if (g_best < 0) break;
    const int32_t pos = w.best_pos[g_best];
    out.segments[2 * t] = in.segments[2 * i_best];
    out.segments[2 * t + 1] = in.segments[2 * i_best + 1];
    out.scores[t] = s_best;
    out.indices[t] = i_best;
    if (out.labels != nullptr) out.labels[t] = in.labels[i_best];
    w.score[pos] = kNaN<scalar_t>;  // selected: removed
    const scalar_t start_b = w.start[pos], end_b = w.end[pos];
    const scalar_t len_b = sub_rn(end_b, start_b);
    const int32_t b = w.group_begin[g_best];
    decay_range(w.score.data() + b, w.start.data() + b, w.end.data() + b, w.group_end[g_best] - b, start_b, end_b,
                len_b, gate_threshold(p, len_b), p, decay_scratch(w));
    refresh_group(g_best, p, w);
  }
  *out.count = t;
  for (int64_t k = t; k < top_k; ++k) {
    out.segments[2 * k] = scalar_t(0);
    out.segments[2 * k + 1] = scalar_t(0);
    out.scores[k] = scalar_t(0);
    out.indices[k] = -1;
    if (out.labels != nullptr) out.labels[k] = -1;
  }
}

template <typename scalar_t>
void run_videos(const at::Tensor& segments, const at::Tensor& scores, const std::optional<at::Tensor>& labels,
                const std::optional<at::Tensor>& lengths, const ParamsOf<scalar_t>& p, int64_t top_k,
                std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>& outputs) {
  auto& [out_segments, out_scores, out_labels, out_indices, out_counts] = outputs;
  const int64_t V = segments.size(0), P = segments.size(1);
  const at::Tensor seg = segments.contiguous();
  const at::Tensor sc = scores.contiguous();
  const at::Tensor lab = labels.has_value() ? labels->contiguous() : at::Tensor();
  const at::Tensor len = lengths.has_value() ? lengths->contiguous() : at::Tensor();
  const scalar_t* seg_ptr = seg.const_data_ptr<scalar_t>();
  const scalar_t* sc_ptr = sc.const_data_ptr<scalar_t>();
  const int64_t* lab_ptr = lab.defined() ? lab.const_data_ptr<int64_t>() : nullptr;
  const int64_t* len_ptr = len.defined() ? len.const_data_ptr<int64_t>() : nullptr;
  scalar_t* o_seg = out_segments.mutable_data_ptr<scalar_t>();
  scalar_t* o_sc = out_scores.mutable_data_ptr<scalar_t>();
  // lab_ptr is null for P = 0 even with labels: the label outputs must still be written (-1).
  int64_t* o_lab = lab.defined() ? out_labels.mutable_data_ptr<int64_t>() : nullptr;
  int64_t* o_idx = out_indices.mutable_data_ptr<int64_t>();
  int64_t* o_cnt = out_counts.mutable_data_ptr<int64_t>();
  // Videos are handed out one at a time from a shared counter rather than in fixed slices:
  // their costs differ (lengths, classes), and a thread that the OS preempts on a busy machine
  // then holds up nothing but its current video.
  std::atomic<int64_t> next_video{0};
  const int64_t workers = std::min<int64_t>(V, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    VideoWork<scalar_t> work;
    work.reserve(P);
    for (int64_t v = next_video.fetch_add(1, std::memory_order_relaxed); v < V;
         v = next_video.fetch_add(1, std::memory_order_relaxed)) {
      const int64_t count = len_ptr != nullptr ? std::clamp<int64_t>(len_ptr[v], 0, P) : P;
      const VideoIn<scalar_t> in{seg_ptr + v * P * 2, sc_ptr + v * P, lab_ptr != nullptr ? lab_ptr + v * P : nullptr,
                                 count};
      const VideoOut<scalar_t> out{o_seg + v * top_k * 2, o_sc + v * top_k,
                                   o_lab != nullptr ? o_lab + v * top_k : nullptr, o_idx + v * top_k, o_cnt + v};
      soft_nms_video(in, out, top_k, p, work);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> soft_nms_cpu(
    const at::Tensor& segments, const at::Tensor& scores, const std::optional<at::Tensor>& labels,
    const std::optional<at::Tensor>& lengths, c10::string_view method, double sigma, double iou_threshold,
    double min_score, int64_t top_k, bool width_gate, double gate_t1, double gate_t2) {
  const std::string_view method_name(method.data(), method.size());
  check_args(segments, scores, labels, lengths, method_name, sigma, iou_threshold, min_score, top_k, width_gate,
             gate_t1, gate_t2, /*allow_float64=*/true);
  TORCH_CHECK(segments.device().is_cpu(), "soft_nms (cpu kernel): segments must be a CPU tensor");
  auto outputs = allocate_outputs(segments, labels.has_value(), top_k);
  if (segments.size(0) == 0) return outputs;
  const int code = parse_method(method_name);
  if (segments.scalar_type() == at::kDouble) {
    run_videos<double>(segments, scores, labels, lengths,
                       make_params_of<double>(code, sigma, iou_threshold, min_score, width_gate, gate_t1, gate_t2),
                       top_k, outputs);
  } else {
    run_videos<float>(segments, scores, labels, lengths,
                      make_params(code, sigma, iou_threshold, min_score, width_gate, gate_t1, gate_t2), top_k,
                      outputs);
  }
  return outputs;
}

}  // namespace
}  // namespace soft_nms

TORCH_LIBRARY_IMPL(rcl_kernels, CPU, m) { m.impl("soft_nms", &soft_nms::soft_nms_cpu); }

}  // namespace rcl_kernels
