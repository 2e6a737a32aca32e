"""The boundary head RCL keeps from BMN: start / end probabilities per step, and BMN's TEM loss.

Targets (BMN, Lin et al. ICCV 2019, Sec. 3.4): every instance boundary b gets a region
[b - w / 2, b + w / 2] (w = 3 steps in BMN); step t, standing for [t - 1/2, t + 1/2], has target
max over regions of |[t - 1/2, t + 1/2] ∩ region| (its overlap ratio, in [0, 1]). The loss is
binary logistic regression against targets > 0.5 with positives and negatives weighted to equal
total weight.
"""

from __future__ import annotations

import torch
from torch import nn

from rcl_kernels.models.losses import balanced_bce


class BoundaryHead(nn.Module):
    """(B, H, T) encoder features -> (B, 2, T) start / end logits."""

    def __init__(self, channels: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv1d(channels, 2, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def boundary_targets(instances: torch.Tensor, valid: torch.Tensor, num_steps: int, region: float) -> torch.Tensor:
    """instances (B, G, 2), valid (B, G) -> (B, 2, T) start / end targets in [0, 1]."""
    B, G, _ = instances.shape
    if G == 0:
        return instances.new_zeros((B, 2, num_steps))
    t = torch.arange(num_steps, device=instances.device, dtype=instances.dtype)
    lo, hi = (t - 0.5)[None, None, None, :], (t + 0.5)[None, None, None, :]
    centre = instances.permute(0, 2, 1)[..., None]  # (B, 2, G, 1): starts, then ends
    overlap = (torch.minimum(hi, centre + region / 2) - torch.maximum(lo, centre - region / 2)).clamp(min=0)
    overlap = torch.where(valid[:, None, :, None], overlap, torch.zeros_like(overlap))
    return overlap.amax(dim=2).clamp(max=1.0)


def boundary_loss(logits: torch.Tensor, targets: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """BMN's TEM loss: balanced BCE of start and end logits (B, 2, T) against targets > 0.5."""
    mask = step_mask[:, None, :].expand_as(logits)
    return balanced_bce(logits[:, 0], targets[:, 0] > 0.5, mask[:, 0]) + \
        balanced_bce(logits[:, 1], targets[:, 1] > 0.5, mask[:, 1])
