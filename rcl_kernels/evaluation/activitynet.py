"""Detection AP with the rules of ActivityNet's official Evaluation/eval_detection.py.

Per class, predictions are taken by descending score (ties: input order, where the official
script's quicksort leaves the order unspecified). Each is matched against the not-yet-matched
ground truth of its video and class with the largest tIoU (ties: annotation order) and is a true
positive if that tIoU >= the threshold, else a false positive; predictions on a video without
ground truth of their class are false positives. Precision is made non-increasing from the right
and AP = sum over recall steps of delta-recall x precision. A class with no predictions has AP 0.

Vectorisation: matching is greedy in score order only inside one (video, class) group, and groups
are independent, so round r processes the r-th prediction of every group at once, all thresholds
together; a round costs a few numpy calls on the (prediction, ground truth) pairs of that rank.
"""

from __future__ import annotations

import numpy as np

from rcl_kernels.evaluation._groups import (
    descending_score_order,
    expand_pairs,
    first_true_per_segment,
    key_ranges,
    rank_in_class,
    rank_within_runs,
    run_starts,
    segmented_suffix_max,
)
from rcl_kernels.evaluation.io import Detections, GroundTruth
from rcl_kernels.evaluation.tiou import paired_tiou


def activitynet_true_positives(det: Detections, gt: GroundTruth, thresholds: np.ndarray,
                               score_order: np.ndarray | None = None) -> np.ndarray:
    """(K, P) bool: prediction p is a true positive at threshold k.

    score_order: descending_score_order(det.score), if the caller already has it.
    """
    return activitynet_matches(det, gt, thresholds, score_order) >= 0


def activitynet_matches(det: Detections, gt: GroundTruth, thresholds: np.ndarray,
                        score_order: np.ndarray | None = None) -> np.ndarray:
    """(K, P) int64: the ground-truth instance prediction p matches at threshold k, -1 for none."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_classes = len(gt.classes)
    matched = np.full((len(thresholds), len(det)), -1, dtype=np.int64)
    if len(det) == 0 or len(gt.label) == 0:
        return matched

    gt_key = gt.video * num_classes + gt.label
    gt_order = np.argsort(gt_key, kind="stable")  # annotation order inside each group
    det_key = det.video * num_classes + det.label
    if score_order is None:
        score_order = descending_score_order(det.score)
    group_order = score_order[np.argsort(det_key[score_order], kind="stable")]
    rank = np.empty(len(det), dtype=np.int64)
    rank[group_order] = rank_within_runs(det_key[group_order])

    start, count = key_ranges(gt_key[gt_order], det_key)
    pair_det, pair_gt_pos = expand_pairs(np.arange(len(det), dtype=np.int64), start, count)
    pair_gt = gt_order[pair_gt_pos]
    tiou = paired_tiou(det.segments[pair_det], gt.segments[pair_gt])
    # A pair below the lowest threshold can never be a candidate match.
    keep = tiou >= thresholds.min()
    pair_det, pair_gt_pos, pair_gt, tiou = pair_det[keep], pair_gt_pos[keep], pair_gt[keep], tiou[keep]
    # Rounds by rank; inside a prediction, candidates by tIoU descending, then annotation order.
    order = np.lexsort((pair_gt_pos, -tiou, pair_det, rank[pair_det]))
    pair_det, pair_gt, tiou = pair_det[order], pair_gt[order], tiou[order]

    locked = np.zeros((len(thresholds), len(gt.label)), dtype=bool)
    round_bounds = np.append(run_starts(rank[pair_det]), len(pair_det))
    for a, b in zip(round_bounds[:-1], round_bounds[1:]):
        dets, gts = pair_det[a:b], pair_gt[a:b]
        candidate = (tiou[a:b, None] >= thresholds[None, :]) & ~locked[:, gts].T
        seg = run_starts(dets)
        first = first_true_per_segment(candidate, seg)  # (m, K) row in [a, b), or -1
        m, k = np.nonzero(first >= 0)
        locked[k, gts[first[m, k]]] = True
        matched[k, dets[seg[m]]] = gts[first[m, k]]
    return matched


def activitynet_average_precision(det: Detections, gt: GroundTruth, thresholds: np.ndarray) -> np.ndarray:
    """(K, C) AP per threshold and class; NaN for a class without ground truth.

    Only true positives add to AP (each adds delta-recall = 1 / npos times the interpolated
    precision, the maximum precision at or after it in its class's ranking), so the work after
    matching is on the (at most npos per class) true positives, not on all predictions.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_classes = len(gt.classes)
    num_pos = gt.num_instances
    score_order = descending_score_order(det.score)
    tp = activitynet_true_positives(det, gt, thresholds, score_order)
    rank = rank_in_class(det.label, score_order, num_classes)

    k, p = np.nonzero(tp)
    segment = k * num_classes + det.label[p]  # one run per (threshold, class)
    order = np.lexsort((rank[p], segment))
    segment, p = segment[order], p[order]
    precision = (rank_within_runs(segment) + 1) / (rank[p] + 1)
    interpolated = segmented_suffix_max(precision, segment)
    ap = np.bincount(segment, weights=interpolated, minlength=len(thresholds) * num_classes)
    ap = ap.reshape(len(thresholds), num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(num_pos > 0, ap / num_pos, np.nan)
