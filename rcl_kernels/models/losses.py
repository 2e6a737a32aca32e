"""Losses of RCL's anchor outputs (Sec. 3.4 of the paper) and their building blocks.

For a set of scored segments with targets (rcl_kernels.models.targets):
  classification  balanced BCE of p1 against tIoU* > 0.7 (or TSI's scale-invariant BCE, below),
  regression      lambda1 (10) x MSE of p2 against tIoU*, averaged per tIoU* band (> 0.7, (0.3, 0.7],
                  (0, 0.3]) as BMN balances its samples, so the many empty cells do not swamp the
                  rest; segments with tIoU* = 0 are not regressed (BMN's low band starts above 0),
  offsets         lambda2 (1) x L1 between predicted offsets and (g* - x) / (x_e - x_s), where
                  tIoU* >= offset_min_tiou (far from every instance the closest one is arbitrary),
  class           cross-entropy of the class logits against g*'s class, where tIoU* >= class_min_tiou.

Scale-invariant loss (TSI, Liu et al., "TSI: Temporal Scale Invariant Network for Action Proposal
Generation", ACCV 2020): a long instance matches many more positive segments than a short
one, so in a plain or balanced BCE the long instances dominate the positives. TSI weighs each
positive segment i, assigned to instance g*(i), by 1 / |P_g*| (|P_g| the positives of instance g),
and each negative by K / |N| (K instances, |N| negatives of the video), so every instance carries
the same total positive weight whatever its length and the negatives together weigh K:

    L_SI(video) = alpha sum_{i in P} BCE_i / |P_g*(i)| + (1 - alpha) (K / |N|) sum_{i in N} BCE_i.

Here the batch's sum is divided by the batch's instance count (TSI divides by the batch size), so
that one instance per video and alpha = 0.5 give exactly balanced_bce's scale; the formula and the
per-instance assignment (a positive counts for its best-matching instance) are TSI's,
as in OpenTAD's implementation of TSI (ScaleInvariantLoss, default alpha 0.2).

Every average is over masked entries with the count clamped to 1, so no step synchronises with the
host and an empty set contributes 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcl_kernels.models.targets import AnchorTargets

# Output channels of the scorer and of each refinement step.
P1, P2, OFFSETS, CLASSES = 0, 1, slice(2, 4), slice(4, None)
NUM_ANCHOR_OUTPUTS = 4  # p1, p2, two offsets; the class logits follow


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def balanced_bce(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """0.5 (mean BCE over positives + mean BCE over negatives), over valid entries (BMN's weighting)."""
    logits = logits.float()
    target = positive.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return 0.5 * (_masked_mean(loss, valid & positive) + _masked_mean(loss, valid & ~positive))


def scale_invariant_bce(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor, instance: torch.Tensor,
                        num_instances: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """TSI's scale-invariant BCE (module docstring) of logits (B, K) against positive (B, K) over valid
    (B, K); instance (B, K) int64 is each segment's best-matching instance (-1: none) and
    num_instances (B,) each video's instance count K."""
    logits = logits.float()
    loss = F.binary_cross_entropy_with_logits(logits, positive.to(logits.dtype), reduction="none")
    pos = (valid & positive & (instance >= 0)).to(logits.dtype)
    neg = (valid & ~positive).to(logits.dtype)
    index = instance.clamp(min=0)
    slots = max(int(num_instances.max()) if num_instances.numel() else 0, 1)
    per_instance = logits.new_zeros((logits.shape[0], slots)).scatter_add_(1, index, pos)
    pos_weight = pos / torch.gather(per_instance, 1, index).clamp(min=1)
    k = num_instances.to(logits.dtype)
    neg_weight = neg * (k / neg.sum(dim=1).clamp(min=1))[:, None]
    total = (alpha * pos_weight * loss).sum() + ((1 - alpha) * neg_weight * loss).sum()
    return total / k.sum().clamp(min=1)


def banded_mse(prediction: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               bands: tuple[float, float] = (0.3, 0.7)) -> torch.Tensor:
    """MSE averaged within tIoU* bands ((0, low], (low, high], > high), then over the non-empty bands.

    BMN (Lin et al. 2019, Sec. 3.4) draws as many low- and middle-band samples as the top band holds,
    from tIoU > 0 only; the per-band mean is that balance in expectation, without the random draw.
    """
    error = (prediction.float() - target.float()) ** 2
    low, high = bands
    masks = (valid & (target > 0) & (target <= low), valid & (target > low) & (target <= high), valid & (target > high))
    total = sum(_masked_mean(error, m) for m in masks)
    nonempty = sum(m.any().to(error.dtype) for m in masks)
    return total / nonempty.clamp(min=1)


def anchor_losses(outputs: torch.Tensor, targets: AnchorTargets, valid: torch.Tensor, *, positive_tiou: float,
                  offset_min_tiou: float, class_min_tiou: float, use_offsets: bool,
                  scale_invariant_alpha: float | None = None,
                  num_instances: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Unweighted loss terms of outputs (B, K, 4 + classes) against targets over valid (B, K).
    scale_invariant_alpha: p1 by TSI's scale-invariant BCE with this alpha (num_instances (B,): each
    video's instance count), else balanced BCE."""
    outputs = outputs.float()
    tiou = targets.tiou
    if scale_invariant_alpha is None:
        classification = balanced_bce(outputs[..., P1], tiou > positive_tiou, valid)
    else:
        if num_instances is None:
            raise ValueError("anchor_losses: the scale-invariant loss needs num_instances")
        classification = scale_invariant_bce(outputs[..., P1], tiou > positive_tiou, valid, targets.instance,
                                             num_instances, scale_invariant_alpha)
    terms = {
        "classification": classification,
        "regression": banded_mse(torch.sigmoid(outputs[..., P2]), tiou, valid),
    }
    near = valid & targets.has_instance & (tiou >= offset_min_tiou)
    if use_offsets:
        l1 = (outputs[..., OFFSETS] - targets.offsets.float()).abs().sum(dim=-1)
        terms["offset"] = _masked_mean(l1, near)
    else:
        terms["offset"] = outputs.new_zeros(())
    if outputs.shape[-1] > NUM_ANCHOR_OUTPUTS:
        labelled = valid & targets.has_instance & (tiou >= class_min_tiou)
        ce = F.cross_entropy(outputs[..., CLASSES].reshape(-1, outputs.shape[-1] - NUM_ANCHOR_OUTPUTS),
                             targets.labels.clamp(min=0).reshape(-1), reduction="none").view_as(tiou)
        terms["class"] = _masked_mean(ce, labelled)
    else:
        terms["class"] = outputs.new_zeros(())
    return terms
