"""score_anchors by linearity, the "cpu" backend: interpolate projected features, not features.

It is pure PyTorch rather than C++ because after the factorisation below all of its work is in
two library calls that are already near the machine's limits on the CPU: one matmul per video
(oneDNN / MKL) and one weighted gather-sum (F.embedding_bag), both with their own backward. A
C++ kernel would have to re-implement a tuned GEMM to beat them, and would need a hand-written
backward for every weight.

SoI is linear in the features, so the SoI part of the first layer is

    h[k, j] = sum_{c, n} W1[j, c N + n] SoI(F; x_k)[c, n] = sum_n interp at x_kn of G[n, :, j],
    G[n, t, j] = sum_c W1[j, c N + n] F[c, t]   (per video: N T C H multiply-adds).

Projecting the features once per video costs T instead of K segments' worth of matmul, and each
segment then gathers 2 N S rows of G (length hidden) instead of doing C N hidden multiply-adds:
about C / (2 S) times less arithmetic than the reference (128x on "anet"), and the (B, K, C, N)
tensor never exists. F.embedding_bag with per-sample weights does the weighted gather-sum
without materialising the gathered rows, forward and backward, so autograd gives every gradient.

Same sampling rules as the SoI op (the reference's own helpers); the sums run in another order
and in float32 (float64 for float64 inputs), so results match the reference to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcl_kernels.reference.score_anchors import activation_function, coordinate_features
from rcl_kernels.reference.segment_interp import accumulation_dtype, interpolation_taps, sample_positions


def score_anchors_cpu(
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
    """Same contract as score_anchors_reference (inputs already validated)."""
    B, C, T = features.shape
    K = segments.shape[1]
    H = w1.shape[0]
    N, S = num_samples, samples_per_point
    M = N * S
    acc = accumulation_dtype(features)
    w_soi = w1[:, : C * N].to(acc).reshape(H, C, N)
    projected = torch.einsum("hcn,bct->bnth", w_soi, features.to(acc)).reshape(B * N * T, H)

    x = sample_positions(segments.to(acc), M, float(context))  # (B, K, M)
    i0, i1, w0, w1_tap, is_nan = interpolation_taps(x, T, padding)
    # Row of `projected` that holds (video b, point n, step t) is (b N + n) T + t.
    point = torch.arange(M, device=features.device) // S
    base = (torch.arange(B, device=features.device) * (N * T)).view(B, 1, 1) + (point * T).view(1, 1, M)
    phi = coordinate_features(segments.to(acc), coord_features, float(num_steps or T))
    coordinate_term = F.linear(phi, w1[:, C * N:].to(acc), None if b1 is None else b1.to(acc))
    grad_needed = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (features, segments, w1, b1))
    if grad_needed:
        rows = torch.cat([base + i0, base + i1], dim=-1)
        weights = torch.cat([w0, w1_tap], dim=-1) / S
    else:
        # The same values written in place: at the inference grid's sizes (10^5 segments a call)
        # each (B, K, .) temporary is tens of MB that glibc, under its default settings, maps
        # fresh and the kernel faults in page by page (a THUMOS14 grid call, 2026-12-03, 2-core
        # EPYC: 0.55 -> 0.32 s; no change where rcl_kernels.keep_freed_memory() is in effect).
        rows = torch.empty((B, K, 2 * M), dtype=torch.int64, device=features.device)
        torch.add(base, i0, out=rows[..., :M])
        torch.add(base, i1, out=rows[..., M:])
        weights = torch.empty((B, K, 2 * M), dtype=w0.dtype, device=features.device)
        torch.div(w0, S, out=weights[..., :M])
        torch.div(w1_tap, S, out=weights[..., M:])
        # A NaN weight makes the segment's whole bag sum NaN: its NaN row without a pass over
        # (B, K, H) (with autograd, below, the row is filled instead, so the gradients stay finite).
        weights[..., :M].masked_fill_(is_nan, float("nan"))
    hidden = F.embedding_bag(rows.view(B * K, 2 * M), projected, per_sample_weights=weights.view(B * K, 2 * M),
                             mode="sum").view(B, K, H)
    if grad_needed:
        # A NaN position makes its SoI value NaN, and so the whole hidden row (as in the reference).
        hidden = hidden.masked_fill(is_nan.any(dim=-1, keepdim=True), float("nan")) + coordinate_term
        hidden = activation_function(activation)(hidden)
    else:
        hidden.add_(coordinate_term)
        hidden = hidden.relu_() if activation == "relu" else activation_function(activation)(hidden)
    out = F.linear(hidden, w2.to(acc), None if b2 is None else b2.to(acc))
    return out.to(features.dtype)
