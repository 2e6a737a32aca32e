"""Training targets of a scored segment x = (x_s, x_e) (RCL, Sec. 3.2):

    tIoU*(x)  = max over the video's instances g of tIoU(x, g)
    g*        = the instance attaining it (the closest ground truth)
    offsets   = (g* - x) / (x_e - x_s), i.e. ((g*_s - x_s) / L, (g*_e - x_e) / L) with L = x_e - x_s,
                so x + offsets * L = g*
    label     = the class of g*

and their inverse, apply_offsets, which moves a segment by predicted offsets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AnchorTargets(NamedTuple):
    tiou: torch.Tensor  # (B, K) tIoU*, 0 where the video has no instance
    offsets: torch.Tensor  # (B, K, 2)
    labels: torch.Tensor  # (B, K) int64 class of g*, -1 where the video has no instance
    has_instance: torch.Tensor  # (B, K) bool: the video has at least one instance
    instance: torch.Tensor | None = None  # (B, K) int64 index of g* among the video's instances, -1 if none


def pairwise_tiou(segments: torch.Tensor, instances: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) and (B, G, 2) -> (B, K, G) temporal IoU (0 for disjoint or empty pairs)."""
    s = segments[:, :, None, :]
    g = instances[:, None, :, :]
    inter = (torch.minimum(s[..., 1], g[..., 1]) - torch.maximum(s[..., 0], g[..., 0])).clamp(min=0)
    union = (s[..., 1] - s[..., 0]).clamp(min=0) + (g[..., 1] - g[..., 0]).clamp(min=0) - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter))


def segment_length(segments: torch.Tensor, min_length: float = 1e-3) -> torch.Tensor:
    return (segments[..., 1] - segments[..., 0]).clamp(min=min_length)


def anchor_targets(segments: torch.Tensor, instances: torch.Tensor, instance_labels: torch.Tensor,
                   instance_valid: torch.Tensor) -> AnchorTargets:
    """Targets of segments (B, K, 2) against instances (B, G, 2) with labels and validity (B, G).

    Ties in tIoU go to the first instance. Computed without gradient.
    """
    with torch.no_grad():
        B, K, _ = segments.shape
        has = instance_valid.any(dim=1)[:, None].expand(B, K)
        if instances.shape[1] == 0:
            zeros = segments.new_zeros((B, K))
            none = torch.full((B, K), -1, dtype=torch.int64, device=segments.device)
            return AnchorTargets(zeros, segments.new_zeros((B, K, 2)), none, has, none)
        tiou = pairwise_tiou(segments, instances)
        tiou = torch.where(instance_valid[:, None, :], tiou, torch.full_like(tiou, -1.0))
        best_tiou, best = tiou.max(dim=2)
        closest = torch.gather(instances, 1, best[..., None].expand(B, K, 2))
        offsets = (closest - segments) / segment_length(segments)[..., None]
        labels = torch.gather(instance_labels, 1, best)
        return AnchorTargets(
            torch.where(has, best_tiou.clamp(min=0), torch.zeros_like(best_tiou)),
            torch.where(has[..., None], offsets, torch.zeros_like(offsets)),
            torch.where(has, labels, torch.full_like(labels, -1)),
            has,
            torch.where(has, best, torch.full_like(best, -1)),
        )


def apply_offsets(segments: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """x + offsets * (x_e - x_s): the inverse of the offset target."""
    return segments + offsets * segment_length(segments)[..., None]
