"""Triton backend of 1D RoIAlign: launchers and the torch.library operators around the kernels.

rcl_kernels::roi_align_1d_triton has the schema of rcl_kernels::roi_align_1d and is
differentiable through rcl_kernels::roi_align_1d_triton_backward; both have fake kernels, so
torch.compile(fullgraph=True) traces through them. The kernels are in _roi_align_1d_kernels.py.
They run on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import torch

from rcl_kernels import _roi_align_1d_registration as _registration
from rcl_kernels._triton_support import TRITON_VERSION
from rcl_kernels.reference.segment_interp import (
    accumulation_dtype as _accumulation_dtype,
)
from rcl_kernels.triton._launching import device_guard, launch_grid, scalar_tensor

AVAILABLE = TRITON_VERSION is not None

if AVAILABLE:
    import triton

    from rcl_kernels.triton import _roi_align_1d_kernels as _kernels

_MAX_BLOCK_P = 32
_TILE_ELEMENTS = 4096
_BLOCK_T = 16  # time steps per input-gradient tile (the [C, T, P] product is the register cost)


def _block_sizes(C: int, P: int) -> tuple[int, int]:
    block_p = min(triton.next_power_of_2(P), _MAX_BLOCK_P)
    block_c = max(1, min(triton.next_power_of_2(C), _TILE_ELEMENTS // block_p))
    return block_c, block_p


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
    _check_launchable(input)
    acc = _accumulation_dtype(input)
    r = rois.to(acc).contiguous()
    block_c, block_p = _block_sizes(C, P)
    with device_guard(input.device):
        _kernels.roi_align_1d_forward_kernel[launch_grid("roi_align_1d (triton)", R, triton.cdiv(C, block_c))](
            input, r, scalar_tensor(spatial_scale, acc, input.device), out,
            B, C, T, P, *input.stride(),
            **_constexprs(sampling_ratio, aligned), BLOCK_C=block_c, BLOCK_P=block_p,
            num_warps=4, enable_fp_fusion=False,
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
    if grad_output.numel() > 0 and (need_input_grad or need_rois_grad):
        _check_launchable(input)
        r = rois.to(acc).contiguous()
        grad = grad_output.to(input.dtype)
        scale = scalar_tensor(spatial_scale, acc, input.device)
        flags = _constexprs(sampling_ratio, aligned)
        with device_guard(input.device):
            if need_input_grad:
                block_c = max(1, min(triton.next_power_of_2(C), 16))
                block_p = min(triton.next_power_of_2(P), 16)
                _kernels.roi_align_1d_input_grad_kernel[launch_grid("roi_align_1d (triton)", B, triton.cdiv(C, block_c),
                                                                 triton.cdiv(T, _BLOCK_T))](
                    grad, r, scale, grad_input, B, C, T, P, R, *grad.stride(),
                    **flags, BLOCK_C=block_c, BLOCK_T=_BLOCK_T, BLOCK_P=block_p,
                    num_warps=4, enable_fp_fusion=False,
                )  # fmt: skip
            if need_rois_grad:
                block_c, block_p = _block_sizes(C, P)
                _kernels.roi_align_1d_rois_grad_kernel[launch_grid("roi_align_1d (triton)", R)](
                    grad, input, r, scale, grad_rois, B, C, T, P, *grad.stride(), *input.stride(),
                    **flags, BLOCK_C=block_c, BLOCK_P=block_p, num_warps=4, enable_fp_fusion=False,
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
