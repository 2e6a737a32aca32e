"""Pure-PyTorch anchor scoring: the baseline the fused kernels are tested and timed against.

RCL's continuous anchoring representation scores a segment x = (start, end) with an MLP over
the SoI features of x and coordinate features phi(x):

    score(x) = Linear2(act(Linear1(cat(flatten(segment_interp(F, x)), phi(x)))))

flatten takes segment_interp's (C, N) block row-major, so column c * N + n of W1 multiplies
channel c at sample point n; the E coordinate features come after the C * N feature columns.
This module is literally that composition: it writes the (B, K, C, N) SoI tensor, which is
exactly the cost the fused kernels remove.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcl_kernels._vocabulary import ACTIVATIONS, COORD_FEATURES
from rcl_kernels.reference.segment_interp import segment_interp_reference


def coordinate_features(segments: torch.Tensor, kind: str, num_steps: float) -> torch.Tensor:
    """phi(x): (B, K, 2) segments -> (B, K, E), in the segments' dtype.

    "ses": start / T, end / T, (end - start) / T;  "se": start / T, end / T;  "none": no columns.
    T is num_steps (the feature length unless the caller says otherwise), so a model trained on
    one temporal scale sees coordinates in [0, 1]-ish units.
    """
    start, end = segments[..., 0], segments[..., 1]
    if kind == "ses":
        cols = [start, end, end - start]
    elif kind == "se":
        cols = [start, end]
    elif kind == "none":
        return segments.new_zeros(segments.shape[:-1] + (0,))
    else:
        raise ValueError(f"coord_features must be one of {tuple(COORD_FEATURES)}, got {kind!r}")
    return torch.stack(cols, dim=-1) / num_steps


def coordinate_features_backward(grad_phi: torch.Tensor, kind: str, num_steps: float) -> torch.Tensor:
    """d segments (B, K, 2) from d phi (B, K, E): the transpose of coordinate_features (for the
    kernels, whose backward is written by hand)."""
    if kind == "none":
        return grad_phi.new_zeros(grad_phi.shape[:-1] + (2,))
    d_start, d_end = grad_phi[..., 0], grad_phi[..., 1]
    if kind == "ses":
        d_start, d_end = d_start - grad_phi[..., 2], d_end + grad_phi[..., 2]
    return torch.stack([d_start, d_end], dim=-1) / num_steps


def activation_function(name: str):
    if name == "relu":
        return torch.relu
    if name == "gelu":
        return F.gelu  # the exact (erf) form
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def score_anchors_reference(
    features: torch.Tensor,
    segments: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor | None,
    w2: torch.Tensor,
    b2: torch.Tensor | None,
    num_samples: int,
    samples_per_point: int = 1,
    context: float = 0.0,
    padding: str = "zeros",
    coord_features: str = "ses",
    activation: str = "relu",
    num_steps: float | None = None,
) -> torch.Tensor:
    """features (B, C, T), segments (B, K, 2) -> scores (B, K, out_channels), in features' dtype.

    w1: (hidden, C * N + E), b1: (hidden,), w2: (out_channels, hidden), b2: (out_channels,), all in
    the features' dtype. Inputs are not validated here (rcl_kernels.score_anchors does that).
    """
    B, C, T = features.shape
    K = segments.shape[1]
    soi = segment_interp_reference(features, segments, num_samples, samples_per_point, context, padding)
    flat = soi.reshape(B, K, C * num_samples)  # (C, N) row-major: column c * N + n
    phi = coordinate_features(segments, coord_features, float(num_steps or T)).to(features.dtype)
    hidden = F.linear(torch.cat([flat, phi], dim=-1), w1, b1)
    return F.linear(activation_function(activation)(hidden), w2, b2)
