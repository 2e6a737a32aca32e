// SoI on CUDA: forward, and backward for features and segment coordinates.
//
// Design
// ------
// The forward pass is bound by its output write (B*K*C*N values, e.g. 2.6 GB in float32 for the
// "anet" problem against a 3 MB feature map), so the kernel is built around that write:
//   * threadIdx.x is the output point n, threadIdx.y a channel row. A warp therefore writes
//     consecutive addresses of out[b, k, c, :] (N >= 32), or several whole consecutive rows
//     (N < 32, rows are contiguous), and every store is coalesced.
//   * A thread keeps one point for the whole segment, so it works out that point's taps once,
//     in registers, and reuses them for all C / blockDim.y channels it writes. The S sub-samples
//     of a point give up to 2S (index, weight) pairs; neighbouring sub-samples share indices, so
//     equal indices are merged and zero weights (padding, integer positions) dropped: with S = 3 a
//     point usually reads 3-4 feature values instead of 6. Points needing more than kMaxPairs
//     pairs (huge S over a long window) fall back to recomputing taps per channel.
//   * Feature reads are gathers along one row of the (B, C, T) map, which stays in L1/L2 (a
//     batch's map is C*T values); no shared memory and no block-wide synchronisation.
// The backward pass reads grad_output (as large as the output) once, in one kernel that produces
// both gradients. A block takes a job of (batch, channel tile, group of segments); threads map as
// (point, segment), so each thread works out the merged pairs of a (segment, point) once, now
// with three weights (value, d/dstart, d/dend), and runs them over every channel of the tile.
//   * Feature gradient: global atomics per sample (what autograd through a gather does) would
//     be B*K*C*N*2S atomics. Instead the block owns a channel tile x T slab of the gradient in
//     shared memory, accumulates its segments into it with shared-memory atomics, and flushes it
//     with one global atomicAdd per non-zero entry. The launcher sizes the segment groups so the
//     grid still fills the GPU. When not even one T-long row fits the slab, the kernel adds
//     straight into global memory.
//   * Segment gradient: a reduction over C*N*S per segment. Each thread sums its (segment, point)
//     over the tile's channels in registers; warp shuffles sum the points of a segment; one global
//     atomicAdd per warp and job adds the result. When only one gradient is wanted, a template
//     flag removes the other's work.
// Sums run in float32 (float64 for float64 features); positions use the rounding rules of
// segment_interp_common.h so they match the CPU kernel and the reference bit for bit.
//
// The kernels are in segment_interp_kernels.cuh (so that tests can also run them on the CPU, see
// tests/cuda_emulation); this file holds the operator entry points and the launches.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "cuda/device_attributes.h"
#include "cuda/segment_interp_kernels.cuh"
#include "segment_interp_checks.h"
#include "segment_interp_common.h"

namespace rcl_kernels {
namespace {

using namespace segment_interp;

Shape make_shape(const at::Tensor& features, const at::Tensor& segments, int64_t num_samples,
                 int64_t samples_per_point) {
  const Shape p{features.size(0), features.size(1), features.size(2), segments.size(1), num_samples,
                samples_per_point, num_samples * samples_per_point};
  // Pair indices are int32; everything else is indexed in 64 bits.
  TORCH_CHECK(p.T < std::numeric_limits<int32_t>::max(), "segment_interp (cuda kernel): T = ", p.T,
              " is too long (must be < 2^31)");
  TORCH_CHECK(num_samples <= std::numeric_limits<int64_t>::max() / samples_per_point,
              "segment_interp (cuda kernel): num_samples * samples_per_point overflows");
  return p;
}

at::Tensor segment_interp_cuda(const at::Tensor& features, const at::Tensor& segments, int64_t num_samples,
                               int64_t samples_per_point, double context, c10::string_view padding) {
  const Padding pad = check_segment_interp_args(features, segments, num_samples, samples_per_point, context,
                                                std::string_view(padding.data(), padding.size()));
  TORCH_CHECK(features.is_cuda(), "segment_interp (cuda kernel): features must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(features.device());
  const Shape p = make_shape(features, segments, num_samples, samples_per_point);
  at::Tensor out = at::empty({p.B, p.K, p.C, p.N}, features.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor f = features.contiguous();
  const at::Tensor seg = segments.to(segment_interp_acc_type(features)).contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const dim3 block = point_block(p.N, kForwardThreads);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "segment_interp_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    segment_interp_forward_kernel<scalar_t, acc_t><<<grid_for(p.B * p.K), block, 0, stream>>>(
        f.const_data_ptr<scalar_t>(), seg.const_data_ptr<acc_t>(), out.mutable_data_ptr<scalar_t>(), p,
        static_cast<acc_t>(context), pad);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> segment_interp_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& features, const at::Tensor& segments, int64_t num_samples,
    int64_t samples_per_point, double context, c10::string_view padding, bool need_features_grad,
    bool need_segments_grad) {
  const Padding pad = check_segment_interp_args(features, segments, num_samples, samples_per_point, context,
                                                std::string_view(padding.data(), padding.size()));
  TORCH_CHECK(features.is_cuda(), "segment_interp_backward (cuda kernel): features must be a CUDA tensor");
  TORCH_CHECK(grad_output.device() == features.device(), "segment_interp_backward: grad_output is on ",
              grad_output.device(), " but features is on ", features.device());
  const c10::cuda::CUDAGuard guard(features.device());
  const Shape p = make_shape(features, segments, num_samples, samples_per_point);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({p.B, p.K, p.C, p.N}),
              "segment_interp_backward: grad_output must have shape (B, K, C, N) = (", p.B, ", ", p.K, ", ",
              p.C, ", ", p.N, "), got ", grad_output.sizes());
  const at::ScalarType acc_type = segment_interp_acc_type(features);
  // Both are accumulated into atomically.
  at::Tensor grad_features_acc = at::zeros({p.B, p.C, p.T}, features.options().dtype(acc_type));
  at::Tensor grad_segments_acc = at::zeros({p.B, p.K, 2}, segments.options().dtype(acc_type));
  if (grad_output.numel() > 0 && (need_features_grad || need_segments_grad)) {
    const at::Tensor g = grad_output.to(features.scalar_type()).contiguous();
    const at::Tensor f = features.contiguous();
    const at::Tensor seg = segments.to(acc_type).contiguous();
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const dim3 block = point_block(p.N, kBackwardThreads);
    const int multiprocessors = device_attribute(cudaDevAttrMultiProcessorCount, features.get_device());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "segment_interp_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const BackwardPlan plan = plan_backward(p, sizeof(acc_t), multiprocessors, block.y, need_features_grad);
      const unsigned grid = grid_for(p.B * plan.channel_tiles * plan.segment_groups);
      const size_t slab_bytes = plan.use_slab ? static_cast<size_t>(plan.channel_tile * p.T) * sizeof(acc_t) : 0;
      with_backward_variant(plan.use_slab, need_features_grad, need_segments_grad, [&](auto slab, auto feats, auto segs) {
        segment_interp_backward_kernel<scalar_t, acc_t, decltype(slab)::value, decltype(feats)::value,
                                       decltype(segs)::value><<<grid, block, slab_bytes, stream>>>(
            g.const_data_ptr<scalar_t>(), f.const_data_ptr<scalar_t>(), seg.const_data_ptr<acc_t>(),
            grad_features_acc.mutable_data_ptr<acc_t>(), grad_segments_acc.mutable_data_ptr<acc_t>(), p,
            static_cast<acc_t>(context), pad, plan);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  return {grad_features_acc.to(features.scalar_type()), grad_segments_acc.to(segments.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(rcl_kernels, CUDA, m) {
  m.impl("segment_interp", &segment_interp_cuda);
  m.impl("segment_interp_backward", &segment_interp_backward_cuda);
}

}  // namespace rcl_kernels
