"""What every detector of this package returns before Soft-NMS, and how its backend names map to
the ops' backend argument."""

from __future__ import annotations

from typing import NamedTuple

import torch

from rcl_kernels.data.windows import owned_by_window

# ModelConfig.backend -> the backend argument of each op.
OP_BACKEND = {"fast": "auto", "reference": "reference"}


class Candidates(NamedTuple):
    """Detections of a batch before Soft-NMS, in input steps of each item."""

    segments: torch.Tensor  # (B, P, 2) float32
    scores: torch.Tensor  # (B, P) float32
    labels: torch.Tensor  # (B, P) int64
    valid: torch.Tensor  # (B, P) bool


def cell_candidates(segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                    mask: torch.Tensor, neighbours: torch.Tensor | None = None) -> Candidates:
    """The candidates of a detector that scores fixed cells (B, P, 2) in input steps: invalid cells
    score 0. With neighbours (B, 2) (window gaps in input steps, rcl_kernels.data.windows), the cells
    another window owns (owned_by_window) are invalid too, so that overlapping windows report each
    cell once, as RCL's detect scores each of its segments once."""
    if neighbours is not None:
        valid = valid & owned_by_window(segments, mask.sum(dim=1), neighbours.to(mask.device))
    return Candidates(segments, torch.where(valid, scores, torch.zeros_like(scores)), labels, valid)
