"""SoI: continuous segment feature interpolation, the public op and its torch.library glue.

The C++ operator rcl_kernels::segment_interp (schema in csrc/segment_interp.cpp, CPU and CUDA
kernels) gets its fake kernel and autograd formula here; the Triton backend is its own operator,
declared in rcl_kernels/triton/segment_interp.py with the same schema; the reference backend is
plain PyTorch and differentiates by autograd.
"""

from __future__ import annotations

import math

import torch

from rcl_kernels import _segment_interp_registration as _registration
from rcl_kernels._backends import OpBackends
from rcl_kernels._extension import EXTENSION_LOADED
from rcl_kernels._vocabulary import PADDINGS, shape_of
from rcl_kernels.reference.segment_interp import segment_interp_reference
from rcl_kernels.triton import segment_interp as triton_segment_interp

SEGMENT_INTERP_BACKENDS = OpBackends(
    op_name="segment_interp",
    backends=("reference", "cpu", "cuda", "triton"),
    auto_order={"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")},
    triton_available=lambda: triton_segment_interp.AVAILABLE,
)

_FLOAT_FEATURES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_segment_interp_args(
    features: torch.Tensor,
    segments: torch.Tensor,
    num_samples: int,
    samples_per_point: int,
    context: float,
    padding: str,
) -> None:
    """Raise an error naming the offending argument; never looks at tensor values (no sync)."""
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        raise ValueError(f"segment_interp: features must be a tensor of shape (B, C, T), got {shape_of(features)}")
    if not isinstance(segments, torch.Tensor) or segments.dim() != 3 or segments.shape[2] != 2:
        raise ValueError(f"segment_interp: segments must be a tensor of shape (B, K, 2), got {shape_of(segments)}")
    if features.shape[0] != segments.shape[0]:
        raise ValueError(
            f"segment_interp: features has batch size {features.shape[0]} but segments has {segments.shape[0]}"
        )
    if features.dtype not in _FLOAT_FEATURES:
        raise TypeError(f"segment_interp: features must be float16, bfloat16, float32 or float64, got {features.dtype}")
    if segments.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"segment_interp: segments must be float32 or float64, got {segments.dtype}")
    if features.device != segments.device:
        raise ValueError(f"segment_interp: features is on {features.device} but segments is on {segments.device}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"segment_interp: num_samples must be an int >= 1, got {num_samples!r}")
    if isinstance(samples_per_point, bool) or not isinstance(samples_per_point, int) or samples_per_point < 1:
        raise ValueError(f"segment_interp: samples_per_point must be an int >= 1, got {samples_per_point!r}")
    if not isinstance(context, (int, float)) or not math.isfinite(context) or context < 0:
        raise ValueError(f"segment_interp: context must be a finite number >= 0, got {context!r}")
    if padding not in PADDINGS:
        raise ValueError(f"segment_interp: padding must be one of {PADDINGS}, got {padding!r}")
    if features.shape[2] == 0 and segments.shape[1] > 0 and features.shape[1] > 0:
        raise ValueError("segment_interp: features must have at least one time step (T >= 1)")


def segment_interp(
    features: torch.Tensor,
    segments: torch.Tensor,
    num_samples: int,
    *,
    samples_per_point: int = 1,
    context: float = 0.0,
    padding: str = "zeros",
    backend: str = "auto",
) -> torch.Tensor:
    """Sample N feature vectors inside each continuous segment: (B, C, T), (B, K, 2) -> (B, K, C, N).

    Args:
        features: (B, C, T) float16 / bfloat16 / float32 / float64, any strides. The feature at
            index t sits at coordinate t.
        segments: (B, K, 2) float32 or float64 (start, end) in feature steps; end < start is
            allowed and the formulas apply as written.
        num_samples: N, points per segment.
        samples_per_point: S; each output point is the mean of S consecutive sub-samples.
        context: widen the window on both sides by context * (end - start):
            a = s - context (e - s), b = e + context (e - s).
        padding: what lies outside [0, T-1]. "zeros": zero. "border": positions clamped to
            [0, T-1]. "bmn": as "zeros", but positions in (-1, 0) read F[0] with weight 1, as the
            math.modf split in BMN's sample-mask code does (with S=3 and BMN's sample_xmin /
            sample_xmax as the segment, the output equals BMN's boundary-matching layer).
        backend: "auto", "reference", "cpu", "cuda" or "triton" (see rcl_kernels.info()).

    The N*S sub-sample positions are x_k = a + (b - a) k / (N*S - 1), k = 0 .. N*S-1 (the window
    centre when N*S = 1); each is linearly interpolated between floor(x) and floor(x) + 1.
    Sums run in float32 (float64 for float64 features); the output has the features' dtype.

    Gradients flow to features and segments. At integer x the slope is the one between floor(x)
    and floor(x) + 1; it is zero where border clamping is active.

    Non-finite coordinates: a NaN position gives NaN at its output point and no gradient;
    +-inf and huge positions are out of range like any other (the padding value). Nothing
    is ever read or written out of bounds. Empty B, K, C or N give an empty result.
    """
    check_segment_interp_args(features, segments, num_samples, samples_per_point, context, padding)
    chosen = SEGMENT_INTERP_BACKENDS.resolve(backend, features.device, features.dtype)
    args = (features, segments, num_samples, samples_per_point, float(context), padding)
    if chosen == "reference":
        return segment_interp_reference(*args)
    if chosen == "triton":
        return triton_segment_interp.segment_interp_triton(*args)
    return torch.ops.rcl_kernels.segment_interp.default(*args)


if EXTENSION_LOADED:
    torch.library.register_fake("rcl_kernels::segment_interp")(_registration.fake_forward)
    torch.library.register_fake("rcl_kernels::segment_interp_backward")(_registration.fake_backward)
    torch.library.register_autograd(
        "rcl_kernels::segment_interp",
        _registration.backward_formula(torch.ops.rcl_kernels.segment_interp_backward.default),
        setup_context=_registration.setup_context,
    )
