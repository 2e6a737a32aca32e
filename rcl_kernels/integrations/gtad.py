"""G-TAD's Align1DLayer (Xu et al., "G-TAD: Sub-Graph Localization for Temporal Action Detection",
CVPR 2020), on rcl_kernels.roi_align_1d instead of its CUDA-only extension.

The original (frostinassiky/gtad, and opentad/models/roi_heads/roi_extractors/align1d/ in
sming256/OpenTAD) is RoIAlign along time with aligned=False: rois shorter than one step count as
one step long, and sampling_ratio <= 0 takes ceil(length / feature_dim) sub-samples per bin.
Here it runs on CPU and GPU in every float dtype, its backward is deterministic without a float64
trick, and it also differentiates the roi coordinates.
"""

from __future__ import annotations

import torch
from torch import nn

from rcl_kernels.ops.roi_align_1d import roi_align_1d


class Align1DLayer(nn.Module):
    """Align1DLayer(feature_dim, ratio=0): forward(input (B, C, T), rois (R, 3) = (batch index,
    start, end)) -> (R, C, feature_dim), G-TAD's numbers. No parameters."""

    round_inputs_to_half = False  # OpenTAD's copy rounds its inputs through float16 (opentad.Align1DLayer)

    def __init__(self, feature_dim: int, ratio: int = 0, *, backend: str = "auto"):
        super().__init__()
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"Align1DLayer: feature_dim must be an int >= 1, got {feature_dim!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, int):
            raise ValueError(f"Align1DLayer: ratio must be an int (<= 0: adaptive), got {ratio!r}")
        self.feature_dim = feature_dim
        self.ratio = ratio
        self.backend = backend

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if not isinstance(rois, torch.Tensor) or rois.dim() != 2 or rois.shape[1] != 3:
            shape = tuple(rois.shape) if isinstance(rois, torch.Tensor) else type(rois).__name__
            raise ValueError(f"Align1DLayer: rois must have shape (R, 3) = (batch index, start, end), got {shape}")
        if isinstance(input, torch.Tensor) and input.device != rois.device:
            raise ValueError(f"Align1DLayer: input is on {input.device} but rois is on {rois.device}")
        if self.round_inputs_to_half and isinstance(input, torch.Tensor) and isinstance(rois, torch.Tensor):
            input, rois = input.half().to(input.dtype), rois.half().to(rois.dtype)
        return roi_align_1d(input, rois, self.feature_dim, 1.0, self.ratio, False, backend=self.backend)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(feature_dim={self.feature_dim}, sampling_ratio={self.ratio})"
