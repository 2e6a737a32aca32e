"""BMN's boundary-matching (BM) layer as BMN computes it: a product with a dense sample mask.

BMN (Lin et al., "BMN: Boundary-Matching Network for Temporal Action Proposal Generation",
ICCV 2019; JJBOY/BMN-Boundary-Matching-Network, and OpenTAD's BMNExtractor in
opentad/models/roi_heads/roi_extractors/bmn_extractor.py) samples, for every proposal with
start s and duration d (s + d < T), N points over [s - r (d + 1), s + d + r (d + 1)] (r =
prop_boundary_ratio), each the mean of num_sample_perbin sub-samples spread with both ends
included and split between floor and ceil with math.modf. It stores those weights as a
(T, N, D, T) mask and multiplies: (B, C, T) x (T, N*D*T). Cells with s + d >= T are zero.

This module is the baseline the SoI-based layer (rcl_kernels.nn.BoundaryMatching) is tested and
timed against. The mask is built here by applying the SoI reference with padding="bmn" (which
reproduces math.modf's split) to an identity feature map: row t of the mask for cell (d, s) is
what the cell's samples read from step t. tests/test_boundary_matching.py checks it against
BMN's loop, written from the published algorithm.
"""

from __future__ import annotations

import torch

from rcl_kernels.reference.segment_interp import segment_interp_reference


def boundary_matching_cells(temporal_scale: int, duration_scale: int, prop_boundary_ratio: float,
                            dtype: torch.dtype = torch.float64, device=None):
    """The valid BM cells (start + duration < T), duration-major: flat index d * T + s (K,), and
    their sampling windows (K, 2) = (s - r (d + 1), s + d + r (d + 1))."""
    T, D = temporal_scale, duration_scale
    d, s = torch.meshgrid(torch.arange(D, device=device), torch.arange(T, device=device), indexing="ij")
    keep = s + d < T
    d, s = d[keep], s[keep]
    center = (d + 1).to(dtype)
    windows = torch.stack([s.to(dtype) - center * prop_boundary_ratio,
                           (s + d).to(dtype) + center * prop_boundary_ratio], dim=-1)
    return d * T + s, windows


def bmn_sample_mask(temporal_scale: int, duration_scale: int, num_sample: int, num_sample_perbin: int,
                    prop_boundary_ratio: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """BMN's (T, N, D, T) sample mask: mask[t, n, d, s] = weight of step t in point n of cell (d, s)."""
    T, D, N = temporal_scale, duration_scale, num_sample
    flat, windows = boundary_matching_cells(T, D, prop_boundary_ratio, device=device)
    identity = torch.eye(T, dtype=torch.float64, device=device).unsqueeze(0)  # channel c = step c
    rows = segment_interp_reference(identity, windows.unsqueeze(0), N, num_sample_perbin, 0.0, "bmn")[0]  # (K, T, N)
    mask = torch.zeros(T, N, D * T, dtype=torch.float64, device=device)
    mask[:, :, flat] = rows.permute(1, 2, 0)
    return mask.view(T, N, D, T).to(dtype)


def boundary_matching_dense(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C, T) x (T, N, D, T) mask -> (B, C, N, D, T), as BMN and OpenTAD compute it."""
    return torch.tensordot(features, mask.to(features.dtype), dims=([2], [0]))
