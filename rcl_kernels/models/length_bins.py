"""mAP per instance-length bin, in the spirit of DETAD's sensitivity analysis (Alwassel et al., ECCV 2018).

For a bin (lo, hi] of instance lengths (rcl_kernels.evaluation.characteristics.Bins, the package's one
definition of a bin, DETAD's; lengths in feature steps of each video, so that "shorter than one
grid cell" means the same on every video):
  ground truth  the instances whose length falls in the bin (Ambiguous regions kept);
  detections    each detection is assigned to the bin of the same-class instance of its video it
                overlaps most (tIoU), or, overlapping none, to the bin of its own length; a bin keeps
                the detections assigned to it.
So a bin's mAP measures how well its instances are found, with the false positives that look like
them, and is not diluted by detections of other lengths. recall_by_length asks the other half of
that question: whether a bin's instances are among each video's top detections at all (whatever
their rank against false positives), with every detection of the video competing.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from rcl_kernels.evaluation import detection_map
from rcl_kernels.evaluation.characteristics import Bins
from rcl_kernels.evaluation.io import Detections, GroundTruth, load_detections
from rcl_kernels.evaluation.proposals import proposal_recall
from rcl_kernels.evaluation.tiou import pairwise_tiou


def quartile_edges(lengths: np.ndarray) -> np.ndarray:
    """Bin edges [0, q25, q50, q75, inf] of the given instance lengths."""
    q = np.quantile(lengths, [0.25, 0.5, 0.75]) if len(lengths) else np.zeros(3)
    return np.concatenate([[0.0], q, [np.inf]])


def instance_lengths(gt: GroundTruth, seconds_per_step: Mapping[str, float]) -> np.ndarray:
    """(G,) lengths in feature steps of each instance's video."""
    sps = np.array([seconds_per_step[gt.video_ids[v]] for v in gt.video], dtype=np.float64)
    return (gt.segments[:, 1] - gt.segments[:, 0]) / sps


def _bins_of_instances(gt: GroundTruth, seconds_per_step: Mapping[str, float], edges) -> tuple[Bins, np.ndarray]:
    lengths = instance_lengths(gt, seconds_per_step)
    bins = Bins.from_edges(quartile_edges(lengths) if edges is None else edges)
    return bins, bins.assign(lengths)


def _instances_in(gt: GroundTruth, keep: np.ndarray) -> GroundTruth:
    return dataclasses.replace(gt, video=gt.video[keep], label=gt.label[keep], segments=gt.segments[keep])


def _assign_bins(det: Detections, gt: GroundTruth, gt_bin: np.ndarray, seconds_per_step: Mapping[str, float],
                 bins: Bins) -> np.ndarray:
    """(P,) bin of each detection (see the module docstring), -1 outside every bin."""
    sps = np.array([seconds_per_step.get(det.video_ids[v], np.nan) for v in det.video], dtype=np.float64)
    own = bins.assign((det.segments[:, 1] - det.segments[:, 0]) / sps)
    out = own.copy()
    # Group by (video, label): the pairwise tIoU stays small per group.
    gt_key = gt.video.astype(np.int64) * (len(gt.classes) + 1) + gt.label
    gt_index = {}
    for i, key in enumerate(gt_key):
        gt_index.setdefault(int(key), []).append(i)
    det_video = np.array([gt.video_ids.index(v) if v in gt.video_ids else -1 for v in det.video_ids])[det.video]
    det_key = det_video * (len(gt.classes) + 1) + det.label
    for key in np.unique(det_key):
        rows = np.flatnonzero(det_key == key)
        cols = gt_index.get(int(key))
        if not cols or det_video[rows[0]] < 0:
            continue
        tiou = pairwise_tiou(det.segments[rows], gt.segments[cols])
        best = tiou.argmax(axis=1)
        overlaps = tiou[np.arange(len(rows)), best] > 0
        out[rows[overlaps]] = gt_bin[np.asarray(cols)[best[overlaps]]]
    return out


def map_by_length(predictions, gt: GroundTruth, seconds_per_step: Mapping[str, float], *,
                  edges: Sequence[float] | None = None, protocol: str = "thumos14",
                  tiou_thresholds=None) -> list[dict]:
    """[{"bin": "(lo, hi]", "lo", "hi", "instances", "detections", "map": (K,) list, "average_map"}] per bin.

    predictions: any form detection_map accepts; seconds_per_step: {video_id: seconds per feature step};
    edges: bin edges in steps (default: the quartiles of the instances' lengths).
    """
    det = load_detections(predictions, gt)
    bins, gt_bin = _bins_of_instances(gt, seconds_per_step, edges)
    edges = np.asarray(bins.edges)
    det_bin = _assign_bins(det, gt, gt_bin, seconds_per_step, bins)
    rows = []
    for b in range(len(bins)):
        keep_gt = gt_bin == b
        sub_gt = _instances_in(gt, keep_gt)
        keep = det_bin == b
        sub_det = {"video": np.asarray(det.video_ids)[det.video[keep]],
                   "label": det.label[keep], "score": det.score[keep], "segment": det.segments[keep]}
        result = detection_map(sub_det, sub_gt, tiou_thresholds, protocol=protocol)
        rows.append({"bin": bins.labels[b], "lo": float(edges[b]), "hi": float(edges[b + 1]),
                     "instances": int(keep_gt.sum()), "detections": int(keep.sum()),
                     "map": result.map.tolist(), "average_map": result.average_map})
    return rows


def recall_by_length(predictions, gt: GroundTruth, seconds_per_step: Mapping[str, float], *,
                     edges: Sequence[float] | None = None, max_proposals: int = 100,
                     tiou_thresholds=(0.5,)) -> list[dict]:
    """[{"bin", "instances", "recall": [R@max_proposals per threshold], "average_recall"}] per bin:
    the share of the bin's instances that one of their video's top max_proposals detections
    (labels ignored, rcl_kernels.evaluation.proposals' rules) overlaps by tIoU >= each threshold.
    Bins as in map_by_length (default: the instances' length quartiles)."""
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64)
    bins, gt_bin = _bins_of_instances(gt, seconds_per_step, edges)
    det = load_detections(predictions, gt, with_labels=False)
    rows = []
    for b in range(len(bins)):
        keep = gt_bin == b
        recall = proposal_recall(det, _instances_in(gt, keep), thresholds, max_proposals).recall[:, -1]
        rows.append({"bin": bins.labels[b], "instances": int(keep.sum()), "recall": recall.tolist(),
                     "average_recall": float(recall.mean()) if keep.any() else float("nan")})
    return rows
