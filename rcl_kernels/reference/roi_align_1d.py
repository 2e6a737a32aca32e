"""Pure-PyTorch 1D RoIAlign: the ground truth the kernels are tested against.

The rules are torchvision's roi_align (torchvision/csrc/ops/cpu/roi_align_kernel.cpp) restricted to
one axis, which with aligned=False are also those of G-TAD's Align1D (Align1D_cuda_kernal.cu in
frostinassiky/gtad and sming256/OpenTAD): the docstring of rcl_kernels.roi_align_1d is the spec,
csrc/roi_align_1d_common.h the kernels' copy. Vectorised over rois, bins and sub-samples; it
gathers an (R, P, G, C) tensor (G the largest sub-sample count), so it is a reference, not a
kernel. Gradients, including those for the roi coordinates, come from autograd through the same
formulas the kernels differentiate by hand.
"""

from __future__ import annotations

import torch

from rcl_kernels._roi_align_1d_launch import MAX_ADAPTIVE_SAMPLES
from rcl_kernels.reference.segment_interp import accumulation_dtype

__all__ = ["MAX_ADAPTIVE_SAMPLES", "roi_align_1d_reference", "roi_geometry"]


def roi_geometry(rois: torch.Tensor, batch_size: int, output_size: int, spatial_scale: float,
                 sampling_ratio: int, aligned: bool):
    """Per roi (rows of the (R, 3) tensor, in the accumulation dtype): batch index (int64, 0 where
    invalid), validity (batch index inside [0, B) and finite coordinates), start, bin size and
    sub-sample count per bin (int64, >= 0)."""
    index, x1, x2 = rois[:, 0], rois[:, 1], rois[:, 2]
    # The batch index is truncated toward zero, as a C cast does.
    valid = (index > -1) & (index < batch_size) & torch.isfinite(x1) & torch.isfinite(x2)
    batch = torch.where(valid, index, torch.zeros_like(index)).to(torch.int64)
    offset = 0.5 if aligned else 0.0
    start = x1 * spatial_scale - offset
    end = x2 * spatial_scale - offset
    length = end - start
    if not aligned:
        # Align1D and torchvision force malformed (short, reversed) rois to length 1.
        length = torch.where(length < 1, torch.ones_like(length), length)
    bin_size = length / output_size
    if sampling_ratio > 0:
        grid = torch.full_like(batch, sampling_ratio)
    else:
        ratio = torch.where(valid, (length / output_size).detach(), torch.zeros_like(length))
        grid = torch.ceil(ratio.clamp(0, MAX_ADAPTIVE_SAMPLES)).to(torch.int64)
    return batch, valid, start, bin_size, grid


def roi_align_1d_reference(input: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float = 1.0,
                           sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """input (B, C, T), rois (R, 3) = (batch index, start, end) -> (R, C, output_size).

    Same rules as rcl_kernels.roi_align_1d; inputs are not validated here.
    """
    B, C, T = input.shape
    R, P = rois.shape[0], output_size
    acc = accumulation_dtype(input)
    batch, valid, start, bin_size, grid = roi_geometry(rois.to(acc), B, P, float(spatial_scale),
                                                       int(sampling_ratio), bool(aligned))
    G = max(int(grid.max()), 1) if R > 0 else 1
    p = torch.arange(P, device=input.device, dtype=acc).view(1, P, 1)
    i = torch.arange(G, device=input.device, dtype=acc).view(1, 1, G)
    grid_f = grid.to(acc).clamp(min=1).view(R, 1, 1)
    bin_size = bin_size.view(R, 1, 1)
    # Sub-sample i of bin p, in torchvision's order of operations.
    t = (start.view(R, 1, 1) + p * bin_size) + ((i + 0.5) * bin_size) / grid_f  # (R, P, G)
    live = (i < grid.view(R, 1, 1)) & (t >= -1) & (t <= T)
    t = torch.where(live, t, torch.zeros_like(t))
    t = torch.where(t <= 0, torch.zeros_like(t), t)
    low = torch.floor(t).detach()
    at_end = low >= T - 1
    low = torch.where(at_end, torch.full_like(low, T - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(t), t - low)
    w_low = torch.where(live, 1 - frac, torch.zeros_like(frac))
    w_high = torch.where(live, frac, torch.zeros_like(frac))
    ft = input.to(acc).transpose(1, 2)  # (B, T, C)
    b = batch.view(R, 1, 1)
    values = w_low.unsqueeze(-1) * ft[b, low.long()] + w_high.unsqueeze(-1) * ft[b, high.long()]  # (R, P, G, C)
    out = values.sum(dim=2) / grid_f.view(R, 1, 1)  # (R, P, C)
    out = torch.where(valid.view(R, 1, 1), out, torch.full_like(out, float("nan")))
    return out.transpose(1, 2).contiguous().to(input.dtype)
