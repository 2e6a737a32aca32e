"""Pure-PyTorch SoI: the baseline every kernel is tested against.

Vectorised over batch, segments and samples (no Python loop). It gathers a (B, K, N*S, C)
float32 tensor, so it needs about 4 * S times the output's memory: fine as a reference, and
exactly the cost the kernels remove. Gradients come from autograd through the same formulas the
kernels differentiate by hand (csrc/segment_interp_common.h).
"""

from __future__ import annotations

import torch


def accumulation_dtype(features: torch.Tensor) -> torch.dtype:
    """Positions and sums are computed in float64 for float64 features, else in float32."""
    return torch.float64 if features.dtype == torch.float64 else torch.float32


def sample_positions(segments: torch.Tensor, num_points: int, context: float) -> torch.Tensor:
    """(B, K, 2) segments -> (B, K, num_points) sub-sample positions x_k = a + (b - a) k / (M - 1)."""
    start, end = segments[..., 0:1], segments[..., 1:2]
    length = end - start
    a = start - context * length
    b = end + context * length
    if num_points > 1:
        frac = torch.arange(num_points, device=segments.device, dtype=segments.dtype) / (num_points - 1)
    else:
        frac = torch.full((1,), 0.5, device=segments.device, dtype=segments.dtype)
    return a + (b - a) * frac


def interpolation_taps(x: torch.Tensor, length: int, padding: str):
    """Indices (always inside [0, T-1]) and weights with value(x) = w0 F[i0] + w1 F[i1].

    The weights are differentiable in x; the indices are not. NaN positions get zero weights
    (the caller turns their values into NaN).
    """
    is_nan = torch.isnan(x)
    x = torch.where(is_nan, torch.zeros_like(x), x)
    last = length - 1
    if padding == "border":
        # torch.where rather than clamp: clamp's gradient vanishes at the bounds themselves, but
        # the rule is the slope between floor(x) and floor(x) + 1 there (zero only at x = T-1).
        xc = torch.where(x < 0, torch.zeros_like(x), torch.where(x > last, torch.full_like(x, last), x))
        i0 = torch.floor(xc).detach().clamp(max=last)
        i1 = (i0 + 1).clamp(max=last)
        frac = xc - i0
        return i0.long(), i1.long(), 1 - frac, frac, is_nan
    # Clamping to [-2, T+1] keeps the float-to-int cast safe for inf and huge values; such
    # positions read only padding.
    xc = x.clamp(-2, last + 2)
    f = torch.floor(xc).detach()
    frac = xc - f
    valid0 = (f >= 0) & (f <= last)
    valid1 = (f + 1 >= 0) & (f + 1 <= last)
    w0 = torch.where(valid0, 1 - frac, torch.zeros_like(frac))
    w1 = torch.where(valid1, frac, torch.zeros_like(frac))
    i0 = torch.where(valid0, f, torch.zeros_like(f))
    i1 = torch.where(valid1, f + 1, torch.zeros_like(f))
    if padding == "bmn":
        # BMN's math.modf truncates toward zero: positions in (-1, 0) read F[0] with weight 1.
        trunc = (x > -1) & (x < 0)
        w0 = torch.where(trunc, torch.ones_like(w0), w0)
        w1 = torch.where(trunc, torch.zeros_like(w1), w1)
        i0 = torch.where(trunc, torch.zeros_like(i0), i0)
    return i0.long(), i1.long(), w0, w1, is_nan


def segment_interp_reference(
    features: torch.Tensor,
    segments: torch.Tensor,
    num_samples: int,
    samples_per_point: int = 1,
    context: float = 0.0,
    padding: str = "zeros",
) -> torch.Tensor:
    """SoI in plain PyTorch: features (B, C, T), segments (B, K, 2) -> (B, K, C, N).

    Same rules as rcl_kernels.segment_interp (see its docstring); inputs are not validated here.
    """
    B, C, T = features.shape
    K = segments.shape[1]
    N, S = num_samples, samples_per_point
    acc = accumulation_dtype(features)
    x = sample_positions(segments.to(acc), N * S, float(context))  # (B, K, M)
    i0, i1, w0, w1, is_nan = interpolation_taps(x, T, padding)
    ft = features.to(acc).transpose(1, 2)  # (B, T, C)
    batch = torch.arange(B, device=features.device).view(B, 1, 1)
    values = w0.unsqueeze(-1) * ft[batch, i0] + w1.unsqueeze(-1) * ft[batch, i1]  # (B, K, M, C)
    values = torch.where(is_nan.unsqueeze(-1), torch.full_like(values, float("nan")), values)
    values = values.view(B, K, N, S, C).mean(dim=3) if S > 1 else values.view(B, K, N, C)
    return values.permute(0, 1, 3, 2).contiguous().to(features.dtype)
