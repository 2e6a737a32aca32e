"""Proposal recall: average recall against the average number of proposals per video (AR@AN).

As ActivityNet's eval_proposal.py and BMN report it: for AN = 1 .. max_proposals, each video keeps
its AN highest-scoring proposals (ties: input order); a ground-truth instance is recalled at a
threshold if any kept proposal of its video has tIoU >= the threshold (no one-to-one matching);
recall = recalled instances / all instances; AR averages recall over the thresholds (0.5:0.05:0.95);
AUC is the area under AR(AN) by the trapezoid rule divided by max_proposals (BMN prints it x 100).
Videos without ground truth do not count; a video without proposals recalls nothing.

Difference from the official script: it keeps a fixed fraction of every video's proposals
(max_proposals x videos / all proposals), which equals "the top AN per video" when every video has
at least max_proposals proposals; here it is always the top AN (fewer if a video has fewer), and
AN takes exactly the integers 1..max_proposals (the official float products truncate some, e.g.
0.29 x 100 -> 28).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcl_kernels.evaluation._groups import (
    descending_score_order,
    expand_pairs,
    first_true_per_segment,
    key_ranges,
    rank_within_runs,
)
from rcl_kernels.evaluation.io import Detections, GroundTruth
from rcl_kernels.evaluation.tiou import paired_tiou


@dataclass(frozen=True)
class ProposalRecall:
    tiou_thresholds: np.ndarray  # (K,)
    num_proposals: np.ndarray  # (N,) AN = 1 .. max_proposals
    recall: np.ndarray  # (K, N)
    num_instances: int

    @property
    def average_recall(self) -> np.ndarray:
        """(N,) recall averaged over the thresholds."""
        return self.recall.mean(axis=0)

    @property
    def auc(self) -> float:
        """Area under AR(AN) over [1, max_proposals], divided by max_proposals (in [0, 1])."""
        ar, an = self.average_recall, self.num_proposals.astype(np.float64)
        if len(an) < 2:
            return float(ar[0]) if len(ar) else 0.0
        return float(np.sum((ar[1:] + ar[:-1]) * np.diff(an)) / 2 / an[-1])

    def at(self, num_proposals: int) -> float:
        """AR@AN."""
        if not 1 <= num_proposals <= len(self.num_proposals):
            raise ValueError(f"num_proposals must be in [1, {len(self.num_proposals)}], got {num_proposals}")
        return float(self.average_recall[num_proposals - 1])

    def table(self) -> str:
        points = [n for n in (1, 5, 10, 50, 100, 200, 500, 1000) if n <= len(self.num_proposals)]
        head = " | ".join(f"AR@{n}" for n in points)
        row = " | ".join(f"{100 * self.at(n):.2f}" for n in points)
        return (f"| {head} | AUC |\n|{'---|' * (len(points) + 1)}\n| {row} | {100 * self.auc:.2f} |\n"
                f"({self.num_instances} instances; tIoU {_thresholds_text(self.tiou_thresholds)})")


def _thresholds_text(t: np.ndarray) -> str:
    return ", ".join(f"{x:g}" for x in t)


def proposal_recall(det: Detections, gt: GroundTruth, tiou_thresholds: np.ndarray,
                    max_proposals: int = 100) -> ProposalRecall:
    """AR@AN for AN = 1..max_proposals on aligned proposals (labels ignored)."""
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    if isinstance(max_proposals, bool) or not isinstance(max_proposals, (int, np.integer)) or max_proposals < 1:
        raise ValueError(f"max_proposals must be an int >= 1, got {max_proposals!r}")
    num_gt = len(gt.video)
    an = np.arange(1, max_proposals + 1)
    first_hit = np.full((num_gt, len(thresholds)), max_proposals, dtype=np.int64)  # rank of the first hit
    if len(det) and num_gt:
        order = descending_score_order(det.score, det.video)
        rank = rank_within_runs(det.video[order])
        order, rank = order[rank < max_proposals], rank[rank < max_proposals]
        start, count = key_ranges(det.video[order], gt.video)
        pair_gt, pair_pos = expand_pairs(np.arange(num_gt, dtype=np.int64), start, count)
        if len(pair_gt):
            tiou = paired_tiou(gt.segments[pair_gt], det.segments[order[pair_pos]])
            hit = tiou[:, None] >= thresholds[None, :]
            has_pairs = np.flatnonzero(count)
            seg = np.searchsorted(pair_gt, has_pairs)  # pairs are grouped by instance, ranks ascending
            first = first_true_per_segment(hit, seg)
            first_hit[has_pairs] = np.where(first >= 0, rank[pair_pos[np.maximum(first, 0)]], max_proposals)
    # recall[k, n-1] = fraction of instances whose first hit has rank < n.
    counts = np.stack([np.bincount(first_hit[:, k], minlength=max_proposals + 1)[:max_proposals]
                       for k in range(len(thresholds))]) if len(thresholds) else np.zeros((0, max_proposals))
    recall = np.cumsum(counts, axis=1) / max(num_gt, 1)
    return ProposalRecall(thresholds, an, recall, num_gt)
