"""Per-dtype comparison against a float64 reference, following flash-attention's rule: a kernel's
error may be at most `factor` times the error PyTorch itself makes when the same computation is
done in the low-precision dtype, plus a small absolute floor."""

from __future__ import annotations

import torch

# Floors on the max-abs error, for outputs of order 1; float64 is checked to ~1e-9.
ABS_FLOOR = {
    torch.float64: 1e-9,
    torch.float32: 1e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}


def max_abs_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    both_nan = torch.isnan(a) & torch.isnan(b)
    if (torch.isnan(a) ^ torch.isnan(b)).any():
        return float("inf")
    diff = (a - b).abs().masked_fill(both_nan, 0)
    return diff.max().item() if diff.numel() else 0.0


def assert_close_to_reference(
    ours: torch.Tensor,
    exact: torch.Tensor,
    torch_same_dtype: torch.Tensor | None,
    dtype: torch.dtype,
    *,
    factor: float = 2.0,
    scale: float = 1.0,
    what: str = "output",
) -> None:
    """ours and torch_same_dtype computed in `dtype`; exact in float64 (same shape)."""
    assert ours.shape == exact.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(exact.shape)}"
    err = max_abs_err(ours, exact)
    base = max_abs_err(torch_same_dtype, exact) if torch_same_dtype is not None else 0.0
    bound = factor * base + ABS_FLOOR[dtype] * scale
    assert err <= bound, f"{what} ({dtype}): max error {err:.3g} > bound {bound:.3g} (PyTorch's own error {base:.3g})"
