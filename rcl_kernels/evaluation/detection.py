"""detection_map and average_recall: the public entry points, with their result tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcl_kernels.evaluation.activitynet import activitynet_average_precision
from rcl_kernels.evaluation.io import GroundTruth, InputReport, load_detections, load_ground_truth
from rcl_kernels.evaluation.proposals import ProposalRecall, proposal_recall
from rcl_kernels.evaluation.thumos14 import thumos14_average_precision

# Decimal values (np.linspace(0.5, 0.95, 10) gives 0.8999999999999999 for 0.9, which would flip a
# tIoU of exactly 0.9 computed as a double).
ACTIVITYNET_TIOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
THUMOS14_TIOU_THRESHOLDS = np.round(np.linspace(0.3, 0.7, 5), 1)

PROTOCOLS = {
    "activitynet": (activitynet_average_precision, ACTIVITYNET_TIOU_THRESHOLDS),
    "thumos14": (thumos14_average_precision, THUMOS14_TIOU_THRESHOLDS),
}
# Reversed intervals (end < start) by default: the THUMOS14 kit orders each interval's ends;
# ActivityNet's script would score them as empty, which hides a bug, so they stay an error there.
DEFAULT_REVERSED = {"activitynet": "error", "thumos14": "swap"}


def check_thresholds(tiou_thresholds, default: np.ndarray) -> np.ndarray:
    if tiou_thresholds is None:
        return default.copy()
    t = np.atleast_1d(np.asarray(tiou_thresholds, dtype=np.float64))
    if t.ndim != 1 or len(t) == 0 or not np.all(np.isfinite(t)) or np.any((t < 0) | (t > 1)):
        raise ValueError(f"tiou_thresholds must be a non-empty list of numbers in [0, 1], got {tiou_thresholds!r}")
    return t


@dataclass(frozen=True)
class DetectionMAP:
    """AP per threshold and class. Classes without ground truth have AP NaN and are left out of
    the mean; a class with ground truth but no detection has AP 0."""

    protocol: str
    tiou_thresholds: np.ndarray  # (K,)
    classes: tuple[str, ...]
    ap: np.ndarray  # (K, C)
    num_instances: np.ndarray  # (C,)
    num_detections: int
    input_report: InputReport = InputReport()
    ground_truth_reordered: int = 0  # reversed ground-truth intervals ordered (THUMOS14 kit files)

    @property
    def map(self) -> np.ndarray:
        """(K,) mAP per threshold."""
        evaluated = self.num_instances > 0
        if not evaluated.any():
            return np.full(len(self.tiou_thresholds), np.nan)
        return self.ap[:, evaluated].mean(axis=1)

    @property
    def average_map(self) -> float:
        """mAP averaged over the thresholds."""
        return float(self.map.mean())

    def map_at(self, tiou: float) -> float:
        k = np.flatnonzero(np.isclose(self.tiou_thresholds, tiou, rtol=0, atol=1e-9))
        if len(k) == 0:
            raise KeyError(f"tIoU {tiou} was not evaluated; thresholds are {self.tiou_thresholds.tolist()}")
        return float(self.map[k[0]])

    def to_dict(self) -> dict:
        """Plain numbers for json (a class without ground truth has "ap": null)."""
        return {
            "protocol": self.protocol,
            "tiou_thresholds": self.tiou_thresholds.tolist(),
            "map": self.map.tolist(),
            "average_map": self.average_map,
            "per_class": {c: {"ap": None if self.num_instances[i] == 0 else self.ap[:, i].tolist(),
                              "num_instances": int(self.num_instances[i])}
                          for i, c in enumerate(self.classes)},
            "num_detections": self.num_detections,
            "input": {**self.input_report.to_dict(), "ground_truth_reordered": self.ground_truth_reordered},
        }

    def table(self, per_class: bool = False) -> str:
        """Markdown table of mAP (%) per threshold and the average; optionally AP per class."""
        head = " | ".join(f"{t:g}" for t in self.tiou_thresholds)
        lines = [f"| tIoU | {head} | avg |", "|---|" + "---|" * (len(self.tiou_thresholds) + 1),
                 f"| mAP | {' | '.join(f'{100 * m:.2f}' for m in self.map)} | {100 * self.average_map:.2f} |"]
        if per_class:
            for i, c in enumerate(self.classes):
                if self.num_instances[i] == 0:
                    continue
                ap = self.ap[:, i]
                lines.append(f"| {c} | {' | '.join(f'{100 * a:.2f}' for a in ap)} | {100 * ap.mean():.2f} |")
        evaluated = int((self.num_instances > 0).sum())
        lines.append(f"\n{self.protocol} protocol; {evaluated} classes, {int(self.num_instances.sum())} instances, "
                     f"{self.num_detections} detections")
        notes = self.input_report.lines()
        if self.ground_truth_reordered:
            notes.append(f"{self.ground_truth_reordered} reversed ground-truth intervals ordered")
        lines.extend(f"note: {n}" for n in notes)
        return "\n".join(lines)


def detection_map(predictions, ground_truth, tiou_thresholds=None, protocol: str = "activitynet", *,
                  subset: str | None = None, unknown_videos: str = "error", reversed: str | None = None,
                  class_list=None, unknown_class_ids: str = "warn") -> DetectionMAP:
    """Mean average precision of temporal detections.

    Args:
        predictions: detections in any form rcl_kernels.evaluation.io accepts (ActivityNet
            results dict or json path, arrays mapping, Detections).
        ground_truth: a GroundTruth, annotation records, a database dict, or a json/csv path.
        tiou_thresholds: default 0.5:0.05:0.95 (activitynet) or 0.3:0.1:0.7 (thumos14).
        protocol: "activitynet" (Evaluation/eval_detection.py) or "thumos14" (the official kit,
            Ambiguous regions ignored); see the modules of the same names for the exact rules.
        subset: keep the ground-truth videos of this subset (files and dicts only).
        unknown_videos: "error" or "false_positive" for detections on videos missing from the
            ground truth.
        reversed: detections with end < start: "error", "swap" (order the ends) or "drop";
            default "swap" under thumos14 (what the kit does), "error" under activitynet.
        class_list, unknown_class_ids: for THUMOS14 kit files (rcl_kernels.evaluation.thumos14_kit).

    Returns a DetectionMAP: .ap (K, C), .map (K,), .average_map, .table(), and .input_report
    (intervals reordered or left out, detections on unknown videos or classes).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    average_precision, default_thresholds = PROTOCOLS[protocol]
    thresholds = check_thresholds(tiou_thresholds, default_thresholds)
    gt = load_ground_truth(ground_truth, subset=subset, class_list=class_list)
    det = load_detections(predictions, gt, unknown_videos=unknown_videos,
                          reversed=DEFAULT_REVERSED[protocol] if reversed is None else reversed,
                          class_list=class_list, unknown_class_ids=unknown_class_ids)
    ap = average_precision(det, gt, thresholds)
    return DetectionMAP(protocol, thresholds, gt.classes, ap, gt.num_instances, len(det), det.report,
                        gt.num_reordered)


def average_recall(proposals, ground_truth, max_proposals: int = 100, tiou_thresholds=None, *,
                   subset: str | None = None, unknown_videos: str = "error") -> ProposalRecall:
    """AR@AN for AN = 1..max_proposals and its AUC (rules in rcl_kernels.evaluation.proposals).

    proposals: the same forms as detection_map's predictions; labels are ignored.
    tiou_thresholds: default 0.5:0.05:0.95.
    """
    thresholds = check_thresholds(tiou_thresholds, ACTIVITYNET_TIOU_THRESHOLDS)
    gt = load_ground_truth(ground_truth, subset=subset)
    det = load_detections(proposals, gt, with_labels=False, unknown_videos=unknown_videos)
    return proposal_recall(det, gt, thresholds, max_proposals)


__all__ = ["ACTIVITYNET_TIOU_THRESHOLDS", "THUMOS14_TIOU_THRESHOLDS", "DetectionMAP", "GroundTruth",
           "average_recall", "detection_map"]
