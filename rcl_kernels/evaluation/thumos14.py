"""Detection AP with the rules of the official THUMOS14 kit (TH14evalDet_Updated.m).

Within each video and class, detections are sorted by confidence (stable). Each ground-truth
instance, in annotation order, takes the not-yet-matched detection with the largest overlap (the
first on ties), whatever its score; it is a match only if that overlap is strictly greater than the
threshold. Unmatched detections that intersect an Ambiguous region of their video are ignored; the
other unmatched ones are false positives. Detections of all videos are ranked by confidence (the
kit's stable sorts break ties by video name, then by input order) and AP = sum of the precision at
each true positive / number of ground-truth instances (no interpolation). A class without
detections has AP 0.

Vectorisation: as in activitynet.py, but the rounds run over the ground-truth instances' rank in
their (video, class) group, since here ground truth picks detections.
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
)
from rcl_kernels.evaluation.io import Detections, GroundTruth
from rcl_kernels.evaluation.tiou import intersection, paired_tiou


def thumos14_true_positives(det: Detections, gt: GroundTruth, thresholds: np.ndarray) -> np.ndarray:
    """(K, P) bool: detection p is matched to a ground-truth instance at threshold k."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_classes = len(gt.classes)
    tp = np.zeros((len(thresholds), len(det)), dtype=bool)
    if len(det) == 0 or len(gt.label) == 0:
        return tp

    det_key = det.video * num_classes + det.label
    det_order = descending_score_order(det.score, det_key)  # equal confidences keep input order
    det_rank = np.empty(len(det), dtype=np.int64)
    det_rank[det_order] = rank_within_runs(det_key[det_order])
    gt_key = gt.video * num_classes + gt.label
    gt_order = np.argsort(gt_key, kind="stable")
    gt_rank = np.empty(len(gt_key), dtype=np.int64)
    gt_rank[gt_order] = rank_within_runs(gt_key[gt_order])

    start, count = key_ranges(det_key[det_order], gt_key)
    pair_gt, pair_det_pos = expand_pairs(np.arange(len(gt_key), dtype=np.int64), start, count)
    pair_det = det_order[pair_det_pos]
    overlap = paired_tiou(gt.segments[pair_gt], det.segments[pair_det])
    keep = overlap > thresholds.min()  # a match needs overlap > threshold
    pair_gt, pair_det, overlap = pair_gt[keep], pair_det[keep], overlap[keep]
    # Rounds by annotation rank; inside an instance, candidates by overlap descending, then by the
    # detections' confidence order (MATLAB's max returns the first maximum).
    order = np.lexsort((det_rank[pair_det], -overlap, pair_gt, gt_rank[pair_gt]))
    pair_gt, pair_det, overlap = pair_gt[order], pair_det[order], overlap[order]

    free = np.ones((len(thresholds), len(det)), dtype=bool)
    round_bounds = np.append(run_starts(gt_rank[pair_gt]), len(pair_gt))
    for a, b in zip(round_bounds[:-1], round_bounds[1:]):
        dets = pair_det[a:b]
        candidate = (overlap[a:b, None] > thresholds[None, :]) & free[:, dets].T
        first = first_true_per_segment(candidate, run_starts(pair_gt[a:b]))
        m, k = np.nonzero(first >= 0)
        free[k, dets[first[m, k]]] = False
    return ~free


def touches_ambiguous(det: Detections, gt: GroundTruth) -> np.ndarray:
    """(P,) bool: the detection intersects (positive length) an Ambiguous region of its video."""
    out = np.zeros(len(det), dtype=bool)
    if len(det) == 0 or len(gt.ambiguous_video) == 0:
        return out
    amb_order = np.argsort(gt.ambiguous_video, kind="stable")
    start, count = key_ranges(gt.ambiguous_video[amb_order], det.video)
    pair_det, pair_amb = expand_pairs(np.arange(len(det), dtype=np.int64), start, count)
    hit = intersection(det.segments[pair_det], gt.ambiguous_segments[amb_order[pair_amb]]) > 0
    out[pair_det[hit]] = True
    return out


def thumos14_average_precision(det: Detections, gt: GroundTruth, thresholds: np.ndarray) -> np.ndarray:
    """(K, C) AP per threshold and class; NaN for a class without ground truth.

    Precision at a true positive = true positives so far / detections so far that are not
    ignored; only true positives add to AP, so the work after matching is on them alone.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_classes = len(gt.classes)
    num_pos = gt.num_instances
    tp = thumos14_true_positives(det, gt, thresholds)
    ignored = ~tp & touches_ambiguous(det, gt)[None, :]
    name_rank = np.empty(len(det.video_ids), dtype=np.int64)
    name_rank[np.argsort(np.asarray(det.video_ids, dtype=object), kind="stable")] = np.arange(len(det.video_ids))
    # The kit's ranking: confidence descending, then video name, then input order.
    by_name = np.argsort(name_rank[det.video], kind="stable")
    ranking = by_name[np.argsort(-det.score[by_name], kind="stable")]
    rank = rank_in_class(det.label, ranking, num_classes)

    # Positions in a flat (threshold, class, rank) order; P + 1 slots per class keep them apart.
    stride = len(det) + 1
    k, p = np.nonzero(tp)
    segment = k * num_classes + det.label[p]
    position = np.sort(segment * stride + rank[p])
    segment = position // stride
    k_ign, p_ign = np.nonzero(ignored)
    ignored_positions = np.sort((k_ign * num_classes + det.label[p_ign]) * stride + rank[p_ign])
    ignored_before = (np.searchsorted(ignored_positions, position)
                      - np.searchsorted(ignored_positions, segment * stride))
    counted = position % stride + 1 - ignored_before
    precision = (rank_within_runs(segment) + 1) / counted
    ap = np.bincount(segment, weights=precision, minlength=len(thresholds) * num_classes)
    ap = ap.reshape(len(thresholds), num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(num_pos > 0, ap / num_pos, np.nan)
