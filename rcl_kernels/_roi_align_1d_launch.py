"""Launch plans of roi_align_1d's GPU kernels, for the size matrix: the work model the Triton and
CUDA plans share, and the CUDA launcher's plan (csrc/cuda/roi_align_1d_kernels.cuh,
`plan_*`), which tests/test_roi_align_1d_cuda_emulated.py checks against the header's own
functions built for the CPU. The Triton plan is rcl_kernels.triton.roi_align_1d's
roi_align_1d_launch_plans, computed by the code that chooses its launches.

Work unit of every roi_align_1d plan: one sub-sample of one roi for one channel (its two taps:
two multiply-adds in the forward and the input gradient, one difference and multiply-add in the
roi gradient). Every kernel needs R * C * P * G of them (G sub-samples per bin).
Importable without Triton or a GPU.
"""

from __future__ import annotations

import math

from rcl_kernels._launch_plan import LaunchPlan

# The adaptive sub-sample count ceil(length / output_size) is capped, so that a huge roi cannot
# make a kernel loop for hours; torchvision has no cap, so only rois longer than this many steps
# per output bin differ from it. Keep in step with kRoiAlignMaxAdaptiveSamples in
# csrc/roi_align_1d_common.h (the reference and every kernel use it).
MAX_ADAPTIVE_SAMPLES = 1 << 16

# Keep in step with csrc/cuda/roi_align_1d_kernels.cuh (checked by the emulation test).
CUDA_THREADS = 256
CUDA_MAX_BLOCKS = 1 << 16
CUDA_ROIS_GRAD_MAX_THREADS = 256
WORK_UNIT = "sub-sample x channel evaluations (two taps each)"


def next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def samples_per_bin(output_size: int, sampling_ratio: int, roi_length: float, aligned: bool = False) -> int:
    """G of a roi of `roi_length` scaled steps: the fixed ratio, or ceil(length / P) (capped)."""
    if sampling_ratio > 0:
        return int(sampling_ratio)
    length = roi_length if aligned else max(roi_length, 1.0)
    return int(math.ceil(min(max(length / output_size, 0.0), MAX_ADAPTIVE_SAMPLES)))


def work_needed(R: int, C: int, P: int, G: int) -> int:
    return R * C * P * G


def _blocks_for(n: int) -> int:
    return min(-(-n // CUDA_THREADS), CUDA_MAX_BLOCKS)


def _grid_stride_lanes(n: int) -> int:
    """Lanes a grid-stride loop over n items evaluates: every thread of the grid, per pass."""
    threads = _blocks_for(n) * CUDA_THREADS
    return -(-n // threads) * threads


def rois_grad_threads(C: int, P: int) -> int:
    """Threads of the CUDA roi-gradient block: the roi's C * P (channel, bin) pairs, rounded up
    to a power of two in [32, 256], so that a block's lanes are at least half busy."""
    return min(max(next_pow2(C * P), 32), CUDA_ROIS_GRAD_MAX_THREADS)


def roi_align_1d_cuda_launch_plans(B: int, C: int, T: int, R: int, P: int, *, sampling_ratio: int = -1,
                                   roi_length: float | None = None, aligned: bool = False,
                                   deterministic: bool = False) -> list[LaunchPlan]:
    """The CUDA launches of one forward and one backward (both gradients) with every roi
    `roi_length` scaled steps long (default T / 4): forward_kernel, the input gradient
    (input_grad_atomic_kernel, or input_grad_rows_kernel where deterministic) and
    rois_grad_kernel. Blocks are those of the launch (grid-stride loops cover the rest)."""
    G = samples_per_bin(P, sampling_ratio, T / 4 if roi_length is None else roi_length, aligned)
    needed = work_needed(R, C, P, G)
    plans = []
    if needed == 0:
        return plans
    outputs = R * C * P
    # One thread per output element (roi, channel, bin), looping over the G sub-samples.
    plans.append(LaunchPlan("forward_kernel", _blocks_for(outputs), CUDA_THREADS, _grid_stride_lanes(outputs) * G,
                            needed, WORK_UNIT))
    if deterministic:
        # One thread per (batch, channel) row walking every roi: each row's thread evaluates the
        # G P sub-samples of every roi of its batch (R / B of them on average).
        plans.append(LaunchPlan("input_grad_rows_kernel", _blocks_for(B * C), CUDA_THREADS,
                                _grid_stride_lanes(B * C) / (B * C) * needed, needed,
                                WORK_UNIT + "; one thread per (batch, channel) row: B C threads in all"))
    else:
        plans.append(LaunchPlan("input_grad_atomic_kernel", _blocks_for(outputs), CUDA_THREADS,
                                _grid_stride_lanes(outputs) * G, needed, WORK_UNIT))
    threads = rois_grad_threads(C, P)
    blocks = min(R, CUDA_MAX_BLOCKS)
    plans.append(LaunchPlan("rois_grad_kernel", blocks, threads, R * (-(-(C * P) // threads)) * threads * G,
                            needed, WORK_UNIT))
    return plans
