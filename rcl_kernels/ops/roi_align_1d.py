"""1D RoIAlign: the public op and its torch.library glue.

The C++ operator rcl_kernels::roi_align_1d (CPU and CUDA kernels) gets its fake kernel and
autograd formula here; the Triton backend is its own operator (rcl_kernels/triton/roi_align_1d.py)
with the same schema; the reference backend is plain PyTorch and differentiates by autograd.
"""

from __future__ import annotations

import math

import torch

from rcl_kernels import _roi_align_1d_registration as _registration
from rcl_kernels._backends import OpBackends
from rcl_kernels._extension import EXTENSION_LOADED
from rcl_kernels._vocabulary import shape_of
from rcl_kernels.reference.roi_align_1d import roi_align_1d_reference
from rcl_kernels.triton import roi_align_1d as _triton_roi

ROI_ALIGN_1D_BACKENDS = OpBackends(
    op_name="roi_align_1d",
    backends=("reference", "cpu", "cuda", "triton"),
    auto_order={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")},
    triton_available=lambda: _triton_roi.AVAILABLE,
)

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def normalise_output_size(output_size) -> int:
    """An int P, or torchvision's (P,) / (P, 1) for the (B, C, T, 1) layout."""
    if isinstance(output_size, (tuple, list)) and len(output_size) in (1, 2) and all(map(_is_int, output_size)) \
            and (len(output_size) == 1 or output_size[1] == 1):
        output_size = output_size[0]
    if not _is_int(output_size) or output_size < 1:
        raise ValueError(f"roi_align_1d: output_size must be an int >= 1 (or (P,) / (P, 1)), got {output_size!r}")
    return output_size


def check_roi_align_1d_args(input, rois, output_size, spatial_scale, sampling_ratio, aligned) -> None:
    """Raise an error naming the offending argument. Looks at tensor values only for the batch
    indices of CPU rois outside torch.compile (on a GPU that would be a host synchronisation;
    the kernels give NaN for a bad index instead)."""
    if not isinstance(input, torch.Tensor) or input.dim() != 3:
        raise ValueError(f"roi_align_1d: input must be a tensor of shape (B, C, T), got {shape_of(input)}")
    if input.dtype not in _FLOATS:
        raise TypeError(f"roi_align_1d: input must be float16, bfloat16, float32 or float64, got {input.dtype}")
    if not isinstance(rois, torch.Tensor) or rois.dim() != 2 or rois.shape[1] != 3:
        raise ValueError(f"roi_align_1d: rois must be a tensor of shape (R, 3) = (batch index, start, end) "
                         f"or segments of shape (B, K, 2), got {shape_of(rois)}")
    if rois.dtype not in _FLOATS:
        raise TypeError(f"roi_align_1d: rois must be a floating-point tensor, got {rois.dtype}")
    if input.device != rois.device:
        raise ValueError(f"roi_align_1d: input is on {input.device} but rois is on {rois.device}")
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)) \
            or not math.isfinite(spatial_scale) or spatial_scale <= 0:
        raise ValueError(f"roi_align_1d: spatial_scale must be a finite number > 0, got {spatial_scale!r}")
    if not _is_int(sampling_ratio):
        raise ValueError(f"roi_align_1d: sampling_ratio must be an int (<= 0: adaptive), got {sampling_ratio!r}")
    if not isinstance(aligned, bool):
        raise ValueError(f"roi_align_1d: aligned must be a bool, got {aligned!r}")
    if input.shape[2] == 0 and rois.shape[0] > 0 and input.shape[1] > 0:
        raise ValueError("roi_align_1d: input must have at least one time step (T >= 1)")
    if rois.device.type == "cpu" and rois.shape[0] > 0 and not torch.compiler.is_compiling():
        index = rois[:, 0].detach()
        bad = ~((index > -1) & (index < input.shape[0]))
        if bool(bad.any()):
            value = index[bad][0].item()
            raise ValueError(f"roi_align_1d: rois[:, 0] holds batch indices, which must lie in [0, B) = "
                             f"[0, {input.shape[0]}); got {value!r}")


def segments_to_rois(segments: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) segments -> (B * K, 3) rois (batch index, start, end), batch-major; differentiable."""
    B, K = segments.shape[:2]
    index = torch.arange(B, device=segments.device, dtype=segments.dtype).view(B, 1, 1).expand(B, K, 1)
    return torch.cat([index, segments], dim=2).reshape(B * K, 3)


def roi_align_1d(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """RoIAlign along time: average linear interpolations over each bin of each roi.

    Args:
        input: (B, C, T) float16 / bfloat16 / float32 / float64, any strides. The feature at
            index t sits at coordinate t (aligned=False) or t + 1/2 (aligned=True).
        rois: (R, 3) rows (batch index, start, end), or segments (B, K, 2) rows (start, end) of
            video b; any floating dtype (positions are computed in float32, float64 for float64
            input). The batch index is truncated toward zero and must lie in [0, B).
        output_size: P bins per roi (an int; torchvision's (P, 1) is accepted too).
        spatial_scale: coordinates are multiplied by it first (1 / the feature stride).
        sampling_ratio: sub-samples per bin; <= 0 chooses ceil(length / P) per roi (adaptive, as
            torchvision and Align1D do; capped at 2^16).
        aligned: False gives G-TAD's Align1D and torchvision's aligned=False: rois shorter than
            one step (or reversed) are treated as length 1. True subtracts 1/2 from both scaled
            coordinates (torchvision's pixel-centre convention) and keeps the length as it is.
        backend: "auto", "reference", "cpu", "cuda" or "triton" (see rcl_kernels.info()).

    Returns (R, C, P), or (B, K, C, P) for segments, in the input's dtype.

    Rules (torchvision's roi_align on one axis, csrc/ops/cpu/roi_align_kernel.cpp): with
    s = start * spatial_scale - o, L = (end - start) * spatial_scale (o = 1/2 if aligned else 0;
    L = max(L, 1) if not aligned), bin size h = L / P and G sub-samples per bin, sub-sample i of
    bin p sits at t = s + p h + (i + 1/2) h / G, and output p is the sum of their values over
    max(G, 1). A value is 0 for t outside [-1, T]; t in [-1, 0] reads F[0]; t >= T - 1 reads
    F[T-1]; otherwise linear interpolation between floor(t) and floor(t) + 1. These are the
    numbers of torchvision.ops.roi_align on the (B, C, T, 1) layout with boxes
    (b, 0, start, 1 / spatial_scale, end) and output_size (P, 1). With aligned=True and
    adaptive sampling a reversed roi gives G <= 0, so zeros (torchvision raises there).

    Gradients flow to input and to the roi coordinates (start, end; not the batch index): the
    slope of the interpolation, which is zero where t <= 0, t >= T - 1 or t outside [-1, T];
    at integer t the slope between t and t + 1. The adaptive G is piecewise constant in the
    coordinates (no gradient through it). The backward of the cpu, cuda and triton backends
    is bitwise deterministic (no atomics; every sum runs in a fixed order).

    Bad values: a NaN or infinite coordinate, or (on a GPU) an out-of-range batch index, gives
    NaN for that roi and no gradient; nothing is read out of bounds. Empty R, B or C give an
    empty result.
    """
    output_size = normalise_output_size(output_size)
    segments_layout = isinstance(rois, torch.Tensor) and rois.dim() == 3
    if segments_layout:
        if rois.shape[2] != 2:
            raise ValueError(f"roi_align_1d: segments must have shape (B, K, 2), got {shape_of(rois)}")
        if not isinstance(input, torch.Tensor) or input.dim() != 3 or input.shape[0] != rois.shape[0]:
            raise ValueError(f"roi_align_1d: input of shape {shape_of(input)} does not have the segments' batch "
                             f"size {rois.shape[0]}")
        B, K = rois.shape[:2]
        rois = segments_to_rois(rois)
    check_roi_align_1d_args(input, rois, output_size, spatial_scale, sampling_ratio, aligned)
    chosen = ROI_ALIGN_1D_BACKENDS.resolve(backend, input.device, input.dtype)
    args = (input, rois, output_size, float(spatial_scale), int(sampling_ratio), bool(aligned))
    if chosen == "reference":
        out = roi_align_1d_reference(*args)
    elif chosen == "triton":
        out = _triton_roi.roi_align_1d_triton(*args)
    else:
        out = torch.ops.rcl_kernels.roi_align_1d.default(*args)
    if segments_layout:
        out = out.view(B, K, input.shape[1], output_size)
    return out


# A _C built before this op existed has no schema for it: the other backends still work.
if EXTENSION_LOADED and hasattr(torch.ops.rcl_kernels, "roi_align_1d"):
    torch.library.register_fake("rcl_kernels::roi_align_1d")(_registration.fake_forward)
    torch.library.register_fake("rcl_kernels::roi_align_1d_backward")(_registration.fake_backward)
    torch.library.register_autograd(
        "rcl_kernels::roi_align_1d",
        _registration.backward_formula(torch.ops.rcl_kernels.roi_align_1d_backward.default),
        setup_context=_registration.setup_context,
    )
