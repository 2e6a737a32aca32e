"""What every detector of this package returns before Soft-NMS, and how its backend names map to
the ops' backend argument."""

from __future__ import annotations

from typing import NamedTuple

import torch

# ModelConfig.backend -> the backend argument of each op.
OP_BACKEND = {"fast": "auto", "reference": "reference"}


class Candidates(NamedTuple):
    """Detections of a batch before Soft-NMS, in input steps of each item."""

    segments: torch.Tensor  # (B, P, 2) float32
    scores: torch.Tensor  # (B, P) float32
    labels: torch.Tensor  # (B, P) int64
    valid: torch.Tensor  # (B, P) bool
