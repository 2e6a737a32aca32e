"""Triton backend of 1D RoIAlign: launchers and the torch.library operators around the kernels.

rcl_kernels::roi_align_1d_triton has the schema of rcl_kernels::roi_align_1d and is
differentiable through rcl_kernels::roi_align_1d_triton_backward; both have fake kernels, so
torch.compile(fullgraph=True) traces through them. The kernels are in _roi_align_1d_kernels.py.
They run on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import math

import torch

from rcl_kernels import _roi_align_1d_registration as _registration
from rcl_kernels._launch_plan import LaunchPlan
from rcl_kernels._roi_align_1d_launch import WORK_UNIT, next_pow2, samples_per_bin, work_needed
from rcl_kernels._triton_support import TRITON_VERSION
from rcl_kernels.reference.segment_interp import (
    accumulation_dtype as _accumulation_dtype,
)
from rcl_kernels.triton._launching import EXACT_FLOAT_OPTIONS, device_guard, launch_grid, scalar_tensor

AVAILABLE = TRITON_VERSION is not None

if AVAILABLE:
    from rcl_kernels.triton import _roi_align_1d_kernels as _kernels

NUM_WARPS = 4
_MAX_BLOCK_P = 32
_MAX_BLOCK_S = 64
# Elements of a program's [channels, bins] (or [channels, sub-samples]) tile: 8 (4 in float64)
# per thread of 4 warps keeps the forward at C >= 128, P >= 16 within registers (4,096
# elements needed all 255 registers in float32 and spilled 120 B in float64).
_TILE_ELEMENTS = {4: 1024, 8: 512}
_BLOCK_T = 16  # time steps per gather-kernel tile (the [C, T, P] product is its register cost)


def _acc_bytes(dtype: torch.dtype) -> int:
    return 8 if dtype == torch.float64 else 4


def _forward_blocks(C: int, P: int, dtype: torch.dtype) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_P) of the forward and roi-gradient kernels."""
    block_p = min(next_pow2(P), _MAX_BLOCK_P)
    block_c = max(1, min(next_pow2(C), _TILE_ELEMENTS[_acc_bytes(dtype)] // block_p))
    return block_c, block_p


def _scatter_blocks(C: int, P: int, sampling_ratio: int, dtype: torch.dtype) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_S) of the scatter input gradient: BLOCK_S < 2 P G for a fixed ratio
    G (< 2 P for adaptive sampling), so at most half of a roi's last chunk of sub-samples is idle."""
    per_bin = sampling_ratio if sampling_ratio > 0 else 1
    block_s = min(next_pow2(P * per_bin), _MAX_BLOCK_S)
    block_c = max(1, min(next_pow2(C), _TILE_ELEMENTS[_acc_bytes(dtype)] // block_s))
    return block_c, block_s


def _gather_blocks(C: int, P: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(BLOCK_C, BLOCK_T, BLOCK_P) of the deterministic gather input gradient; its
    [BLOCK_C, BLOCK_T, BLOCK_P] product is halved in float64 (16^3 spilled 28 B there)."""
    block_c = max(1, min(next_pow2(C), 16))
    block_p = min(next_pow2(P), 16 if _acc_bytes(dtype) == 4 else 8)
    return block_c, _BLOCK_T, block_p


def _forward_grid(R: int, C: int, block_c: int) -> tuple[int, int]:
    return R, -(-C // block_c)


def _scatter_grid(R: int, C: int, block_c: int) -> tuple[int, int]:
    return R, -(-C // block_c)


def _gather_grid(B: int, C: int, T: int, block_c: int, block_t: int) -> tuple[int, int, int]:
    return B, -(-C // block_c), -(-T // block_t)


def _rois_grad_grid(R: int) -> tuple[int]:
    return (R,)


def _padded(n: int, block: int) -> int:
    return -(-n // block) * block


def roi_align_1d_launch_plans(B: int, C: int, T: int, R: int, P: int, dtype: torch.dtype = torch.float32, *,
                              sampling_ratio: int = -1, roi_length: float | None = None, aligned: bool = False,
                              deterministic: bool = False) -> list[LaunchPlan]:
    """The Triton launches of one forward and one backward (both gradients) as the launchers
    below choose them, with every roi `roi_length` scaled steps long (default T / 4; it sets
    the adaptive G): forward, the input gradient (scatter, or gather where deterministic) and
    the roi gradient. Work counts every lane of every tile, masked or not (unit:
    rcl_kernels._roi_align_1d_launch.WORK_UNIT). The gather kernel's work assumes rois spread
    evenly over the videos' T steps."""
    length = T / 4 if roi_length is None else roi_length
    G = samples_per_bin(P, sampling_ratio, length, aligned)
    needed = work_needed(R, C, P, G)
    if needed == 0:
        return []
    threads = NUM_WARPS * 32
    plans = []
    block_c, block_p = _forward_blocks(C, P, dtype)
    grid = _forward_grid(R, C, block_c)
    plans.append(LaunchPlan("roi_align_1d_forward_kernel", math.prod(grid), threads,
                            R * _padded(C, block_c) * _padded(P, block_p) * G, needed, WORK_UNIT))
    if deterministic:
        block_c, block_t, block_p = _gather_blocks(C, P, dtype)
        grid = _gather_grid(B, C, T, block_c, block_t)
        # A roi of the tile's video reaches it when its span (plus the two-step slack) overlaps.
        reach = min(1.0, (max(length, 1.0) + block_t + 4) / T)
        rois_per_tile = R / max(B, 1) * reach
        work = math.prod(grid) * rois_per_tile * block_c * block_t * _padded(P, block_p) * G
        plans.append(LaunchPlan("roi_align_1d_input_grad_gather_kernel", math.prod(grid), threads, work, needed,
                                WORK_UNIT + "; every program also walks all R rois' geometry"))
    else:
        block_c, block_s = _scatter_blocks(C, P, sampling_ratio, dtype)
        grid = _scatter_grid(R, C, block_c)
        plans.append(LaunchPlan("roi_align_1d_input_grad_scatter_kernel", math.prod(grid), threads,
                                R * _padded(C, block_c) * _padded(P * G, block_s), needed, WORK_UNIT))
    block_c, block_p = _forward_blocks(C, P, dtype)
    plans.append(LaunchPlan("roi_align_1d_rois_grad_kernel", math.prod(_rois_grad_grid(R)), threads,
                            R * _padded(C, block_c) * _padded(P, block_p) * G, needed, WORK_UNIT))
    return plans


def _check_launchable(input: torch.Tensor) -> None:
    if input.shape[2] >= 2**31 - 1:
        raise ValueError(f"roi_align_1d (triton): T = {input.shape[2]} is too long (must be < 2^31)")


def _constexprs(sampling_ratio: int, aligned: bool) -> dict:
    # Adaptive sampling is one compiled variant (any ratio <= 0), fixed ratios one each.
    return {"SAMPLING_RATIO": max(int(sampling_ratio), 0), "ALIGNED": bool(aligned)}


@torch.library.custom_op("rcl_kernels::roi_align_1d_triton", mutates_args=())
def roi_align_1d_triton_op(input: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float,
                           sampling_ratio: int, aligned: bool) -> torch.Tensor:
    B, C, T = input.shape
    R, P = rois.shape[0], output_size
    out = torch.empty((R, C, P), dtype=input.dtype, device=input.device)
    if out.numel() == 0:
        return out
    if B == 0:  # no roi has a valid batch index: all NaN, and nothing to read
        return out.fill_(float("nan"))
    _check_launchable(input)
    acc = _accumulation_dtype(input)
    r = rois.to(acc).contiguous()
    block_c, block_p = _forward_blocks(C, P, acc)
    with device_guard(input.device):
        _kernels.roi_align_1d_forward_kernel[launch_grid("roi_align_1d (triton)", *_forward_grid(R, C, block_c))](
            input, r, scalar_tensor(spatial_scale, acc, input.device), out,
            B, C, T, P, *input.stride(),
            **_constexprs(sampling_ratio, aligned), BLOCK_C=block_c, BLOCK_P=block_p,
            num_warps=NUM_WARPS, **EXACT_FLOAT_OPTIONS,
        )  # fmt: skip
    return out


@torch.library.custom_op("rcl_kernels::roi_align_1d_triton_backward", mutates_args=())
def roi_align_1d_triton_backward_op(grad_output: torch.Tensor, input: torch.Tensor, rois: torch.Tensor,
                                    output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool,
                                    need_input_grad: bool, need_rois_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    B, C, T = input.shape
    R, P = rois.shape[0], output_size
    acc = _accumulation_dtype(input)
    grad_input = torch.zeros((B, C, T), dtype=acc, device=input.device)
    grad_rois = torch.zeros((R, 3), dtype=acc, device=rois.device)
    if grad_output.numel() > 0 and B > 0 and (need_input_grad or need_rois_grad):
        _check_launchable(input)
        r = rois.to(acc).contiguous()
        grad = grad_output.to(input.dtype)
        scale = scalar_tensor(spatial_scale, acc, input.device)
        flags = dict(**_constexprs(sampling_ratio, aligned), num_warps=NUM_WARPS, **EXACT_FLOAT_OPTIONS)
        op = "roi_align_1d (triton)"
        with device_guard(input.device):
            if need_input_grad and torch.are_deterministic_algorithms_enabled():
                block_c, block_t, block_p = _gather_blocks(C, P, acc)
                _kernels.roi_align_1d_input_grad_gather_kernel[launch_grid(op, *_gather_grid(B, C, T, block_c,
                                                                                             block_t))](
                    grad, r, scale, grad_input, B, C, T, P, R, *grad.stride(),
                    BLOCK_C=block_c, BLOCK_T=block_t, BLOCK_P=block_p, **flags,
                )  # fmt: skip
            elif need_input_grad:
                block_c, block_s = _scatter_blocks(C, P, sampling_ratio, acc)
                _kernels.roi_align_1d_input_grad_scatter_kernel[launch_grid(op, *_scatter_grid(R, C, block_c))](
                    grad, r, scale, grad_input, B, C, T, P, *grad.stride(),
                    BLOCK_C=block_c, BLOCK_S=block_s, **flags,
                )  # fmt: skip
            if need_rois_grad:
                block_c, block_p = _forward_blocks(C, P, acc)
                _kernels.roi_align_1d_rois_grad_kernel[launch_grid(op, *_rois_grad_grid(R))](
                    grad, input, r, scale, grad_rois, B, C, T, P, *grad.stride(), *input.stride(),
                    BLOCK_C=block_c, BLOCK_P=block_p, **flags,
                )  # fmt: skip
    return grad_input.to(input.dtype), grad_rois.to(rois.dtype)


roi_align_1d_triton_op.register_fake(_registration.fake_forward)
roi_align_1d_triton_backward_op.register_fake(_registration.fake_backward)
roi_align_1d_triton_op.register_autograd(_registration.backward_formula(roi_align_1d_triton_backward_op),
                                         setup_context=_registration.setup_context)


def roi_align_1d_triton(input: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float,
                        sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """The Triton backend of rcl_kernels.roi_align_1d (arguments already validated there)."""
    if not AVAILABLE:
        raise RuntimeError("roi_align_1d: the triton backend needs the triton package")
    return roi_align_1d_triton_op(input, rois, output_size, float(spatial_scale), int(sampling_ratio), bool(aligned))
