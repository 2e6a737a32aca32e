"""DETAD's error diagnosis of a temporal action detector, vectorised with numpy.

Definitions from DETAD (Alwassel et al., ECCV 2018; HumamAlwassel/DETAD src/action_detector_diagnosis.py,
sensitivity_analysis.py, false_positive_analysis.py, false_negative_analysis.py, utils.py):

Matching (compute_average_precision_detection): per class, predictions by descending score each
take the unmatched ground truth of their video and class with the largest tIoU, if >= the
threshold (ActivityNet's rule; rcl_kernels.evaluation.activitynet). Ground truth of length <= 0,
and of coverage > 1 where coverage is known, is removed first.

Normalized AP (AP_N): precision at each rank is r N / (r N + fp), with r the recall so far, fp the
false positives so far and N the average number of instances per class, len(ground truth) //
number of classes (Python 2 integer division, as DETAD runs; average_instances= overrides it);
AP is VOC's interpolated area (utils.interpolated_prec_rec). mAP_N averages over the classes of
the ground truth, average-mAP_N over the thresholds.

False-positive types at threshold t (analyze_fp_error_types), for each unmatched prediction,
against the ground truth of its video of any class: with the largest tIoU and its label,
  tIoU >= t:        same label -> double detection, else wrong label;
  0.1 <= tIoU < t:  same label -> localization,     else confusion;
  otherwise (or no ground truth in the video) -> background.
The false-positive analysis keeps each class's 10 x (its instances) best predictions (limit_factor
10); the profile splits them by rank into groups 1G..10G (ranks [(g-1) n, g n) of a class with n
instances) and gives each type's share per group, averaged over the thresholds; removing a type
at each threshold and recomputing AP_N (matches unchanged) gives its average-mAP_N gain.

Sensitivity (compute_average_mAP_N_for_characteristic): for a characteristic's bin, a class's
ground truth is its instances in the bin, and its predictions those that at no threshold match an
instance outside the bin; the bin's value is the mean over classes (with instances in the bin)
of average-mAP_N.

False negatives (false_negative_analysis.py): AP_N evaluated with minimum precision 0.05 (a true
positive at a rank whose normalized precision is <= 0.05 no longer matches); a bin's false-negative
rate is its unmatched instances / its instances, averaged over the thresholds.

Equal scores: DETAD sorts with numpy's and pandas' default sorts, which are not stable, so the
order of ties (and with it AP_N, whenever a tie holds a true and a false positive) depends on
the numpy version and the CPU. ties="input" (the default) ranks ties in input order on every
machine; ties="detad" makes DETAD's own sort calls (rcl_kernels.evaluation.detad_order) and so
reproduces its numbers in the environment DETAD runs in. Equal tIoUs go by annotation order.
Other differences from DETAD, each where DETAD fails: a class without predictions gets AP 0
(DETAD raises in get_group); every prediction on a video without ground truth is a background error
(DETAD's loop, after the first such prediction, compares the others with the previous video's
ground truth, since it does not reset its cached group).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from rcl_kernels.data.annotations import GroundTruth
from rcl_kernels.evaluation._groups import (
    descending_score_order,
    expand_pairs,
    key_ranges,
    rank_within_runs,
    segmented_suffix_max,
)
from rcl_kernels.evaluation.activitynet import activitynet_matches
from rcl_kernels.evaluation.detad_order import (
    TIE_ORDERS,
    detad_limited,
    detad_profile_positions,
    detad_ranking,
    pandas_descending,
    per_class,
)
from rcl_kernels.evaluation.characteristics import (
    DETAD_BINS,
    DETAD_BUCKET_ORDER,
    Bins,
    instance_characteristics,
    read_extra_characteristics,
)
from rcl_kernels.evaluation.io import Detections, load_detections, load_ground_truth
from rcl_kernels.evaluation.tiou import paired_tiou

# DETAD's thresholds (np.linspace, not rounded, as DETAD passes them).
DETAD_TIOU_THRESHOLDS = {"activitynet": np.linspace(0.5, 0.95, 10), "thumos14": np.array([0.5])}
ERROR_TYPES = ("True Positive", "Double Detection Err", "Wrong Label Err", "Localization Err", "Confusion Err",
               "Background Err")
TRUE_POSITIVE, DOUBLE_DETECTION, WRONG_LABEL, LOCALIZATION, CONFUSION, BACKGROUND = range(6)
MIN_TIOU = 0.1
LIMIT_FACTOR = 10
FALSE_NEGATIVE_MIN_PRECISION = 0.05


@dataclass(frozen=True)
class Diagnosis:
    """DETAD's three analyses. Fractions and mAP values are in [0, 1]."""

    dataset: str
    tiou_thresholds: np.ndarray  # (K,)
    classes: tuple[str, ...]  # the evaluated classes (those with ground truth)
    average_instances: float  # N of AP_N
    map_n: np.ndarray  # (K,) mAP_N with all predictions
    sensitivity: dict[str, dict[str, float]]  # characteristic -> bin -> average-mAP_N (NaN: no instances)
    false_negative: dict[str, dict[str, float]]  # characteristic -> bin -> false-negative rate (bins with instances)
    false_positive_counts: np.ndarray  # (K, 6) predictions of each ERROR_TYPES, limited set
    false_positive_profile: np.ndarray  # (10, 6) share of each type in groups 1G..10G
    limited_average_map_n: float  # average-mAP_N of the limited set (the gains' base)
    average_map_gain: dict[str, float]  # error type -> average-mAP_N gain from removing it
    num_predictions: int
    num_limited_predictions: int
    removed_instances: int  # ground truth of length <= 0 or coverage > 1, left out as DETAD does

    @property
    def average_map_n(self) -> float:
        return float(self.map_n.mean())

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset, "tiou_thresholds": self.tiou_thresholds.tolist(),
            "average_instances": self.average_instances, "map_n": self.map_n.tolist(),
            "average_map_n": self.average_map_n,
            "sensitivity": _jsonable(self.sensitivity), "false_negative": _jsonable(self.false_negative),
            "false_positive_counts": {name: self.false_positive_counts[:, i].tolist()
                                      for i, name in enumerate(ERROR_TYPES)},
            "false_positive_profile": {f"{g + 1}G": dict(zip(ERROR_TYPES, _jsonable(row.tolist())))
                                       for g, row in enumerate(self.false_positive_profile)},
            "limited_average_map_n": self.limited_average_map_n, "average_map_gain": self.average_map_gain,
            "num_predictions": self.num_predictions, "num_limited_predictions": self.num_limited_predictions,
            "removed_instances": self.removed_instances,
        }

    def table(self) -> str:
        lines = [f"average-mAP_N {100 * self.average_map_n:.2f} (N = {self.average_instances:g}; "
                 f"{self.dataset} bins; tIoU {', '.join(f'{t:g}' for t in self.tiou_thresholds)})", "",
                 "| characteristic | bin | average-mAP_N | false negative |", "|---|---|---|---|"]
        for name, bins in self.sensitivity.items():
            for label, value in bins.items():
                fn = self.false_negative.get(name, {}).get(label, np.nan)
                lines.append(f"| {name} | {label} | {_pct(value)} | {_pct(fn)} |")
        lines += ["", "| top predictions | " + " | ".join(ERROR_TYPES) + " |", "|---|" + "---|" * len(ERROR_TYPES)]
        for g, row in enumerate(self.false_positive_profile):
            lines.append(f"| {g + 1}G | " + " | ".join(_pct(v) for v in row) + " |")
        lines += ["", "| removing | average-mAP_N gain |", "|---|---|"]
        lines += [f"| {name} | {100 * gain:.2f} |" for name, gain in self.average_map_gain.items()]
        return "\n".join(lines)


def _pct(value: float) -> str:
    return "-" if np.isnan(value) else f"{100 * value:.1f}"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return None if isinstance(obj, float) and np.isnan(obj) else obj


@dataclass(frozen=True)
class _Ranked:
    """Predictions of the classes in (class, descending score) order, the order AP walks them."""

    order: np.ndarray  # (P',) prediction indices
    cls: np.ndarray  # (P',) class of each, sorted
    starts: np.ndarray  # (C,) first position of each class
    num_classes: int

    @classmethod
    def of(cls, label: np.ndarray, score_order: np.ndarray, num_classes: int) -> _Ranked:
        """From the predictions' labels and their descending-score order (a subset of indices)."""
        return cls.of_ranking(label, score_order[np.argsort(label[score_order], kind="stable")], num_classes)

    @classmethod
    def of_ranking(cls, label: np.ndarray, order: np.ndarray, num_classes: int) -> _Ranked:
        """From prediction indices already in (class, rank) order."""
        ranked_cls = label[order]
        return cls(order, ranked_cls, np.searchsorted(ranked_cls, np.arange(num_classes)), num_classes)


def normalized_ap(ranked: _Ranked, tp: np.ndarray, npos: np.ndarray, n: float, removed: np.ndarray | None = None,
                  min_precision: float | None = None):
    """(K, C) AP_N (NaN where npos is 0) of the ranked predictions, tp (K, P') in ranked order.

    removed: predictions left out of the ranking, (P',) for every threshold or (K, P'); a removed
    prediction is never a true positive here. Only true positives add to AP (VOC's interpolated
    precision is the largest at or after each, and normalized precision only rises at true
    positives), so the work is on them: at a true positive, the predictions counted so far are its
    position in its class minus the removed ones before it.
    With min_precision, also the (K, P') true positives whose normalized precision is above it.
    """
    K, P = tp.shape
    C = ranked.num_classes
    if removed is None:
        kept_tp = tp
    else:
        kept_tp = tp & ~(removed[None, :] if removed.ndim == 1 else removed)
    k, p = np.nonzero(kept_tp)
    c = ranked.cls[p]
    start = ranked.starts[c]
    counted = p - start + 1
    if removed is not None and removed.ndim == 1:
        before = np.concatenate([[0], np.cumsum(removed, dtype=np.int64)])
        counted -= before[p + 1] - before[start]
    elif removed is not None:
        flat = np.flatnonzero(removed)  # k * P + p, sorted
        counted -= np.searchsorted(flat, k * P + p, side="right") - np.searchsorted(flat, k * P + start)
    segment = k * C + c  # sorted: nonzero walks k, then ranked position (class-sorted)
    found = rank_within_runs(segment) + 1
    recall = found / npos[c]
    precision = recall * n / (recall * n + (counted - found))
    envelope = segmented_suffix_max(precision, segment)
    ap = np.bincount(segment, weights=envelope, minlength=K * C).reshape(K, C)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(npos > 0, ap / npos, np.nan)
    if min_precision is None:
        return ap
    survivors = np.zeros_like(tp)
    good = precision > min_precision
    survivors[k[good], p[good]] = True
    return ap, survivors


def _best_overlap(det: Detections, gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """(P,) largest tIoU of each prediction with the ground truth of its video (any class), and that
    instance's label (the first of equal tIoUs in annotation order); 0 and -1 without ground truth."""
    best = np.zeros(len(det))
    label = np.full(len(det), -1, dtype=np.int64)
    gt_order = np.argsort(gt.video, kind="stable")
    start, count = key_ranges(gt.video[gt_order], det.video)
    pair_det, pair_pos = expand_pairs(np.arange(len(det), dtype=np.int64), start, count)
    if len(pair_det) == 0:
        return best, label
    tiou = paired_tiou(det.segments[pair_det], gt.segments[gt_order[pair_pos]])
    order = np.lexsort((pair_pos, -tiou, pair_det))
    first = order[np.concatenate([[True], pair_det[order][1:] != pair_det[order][:-1]])]
    best[pair_det[first]] = tiou[first]
    label[pair_det[first]] = gt.label[gt_order[pair_pos[first]]]
    return best, label


def false_positive_types(matched: np.ndarray, det: Detections, gt: GroundTruth, thresholds: np.ndarray,
                         min_tiou: float = MIN_TIOU) -> np.ndarray:
    """(K, P) int: ERROR_TYPES index of each prediction at each threshold (0: true positive)."""
    best, best_label = _best_overlap(det, gt)
    same = (best_label == det.label)[None, :]
    t = np.asarray(thresholds, dtype=np.float64)[:, None]
    types = np.where(best[None, :] >= t, np.where(same, DOUBLE_DETECTION, WRONG_LABEL),
                     np.where(best[None, :] >= min_tiou, np.where(same, LOCALIZATION, CONFUSION), BACKGROUND))
    return np.where(matched >= 0, TRUE_POSITIVE, types)


def _clean_ground_truth(gt: GroundTruth, characteristics: dict[str, np.ndarray]):
    coverage = characteristics.get("coverage")
    keep = gt.segments[:, 0] < gt.segments[:, 1]
    if coverage is not None:
        keep &= ~(coverage > 1.0)
    clean = dataclasses.replace(gt, video=gt.video[keep], label=gt.label[keep], segments=gt.segments[keep])
    return clean, {k: v[keep] for k, v in characteristics.items()}, int((~keep).sum())


def diagnose(predictions, ground_truth, dataset: str = "activitynet", *, tiou_thresholds=None,
             bins: Mapping[str, Bins] | None = None, extra_characteristics=None,
             average_instances: float | None = None, subset: str | None = None,
             class_list=None, reversed: str = "error", ties: str = "input") -> Diagnosis:
    """DETAD's false-positive, sensitivity and false-negative analyses (module docstring).

    predictions, ground_truth: any form detection_map takes (detections on videos without ground
        truth count as background errors).
    dataset: "activitynet" or "thumos14": DETAD's bins and thresholds (0.5:0.05:0.95, or 0.5).
    bins: {characteristic: Bins}, default DETAD's for the dataset (characteristics without values
        for any instance, e.g. coverage without durations, are left out).
    extra_characteristics: a DETAD extra-characteristics json (path or object): its fields
        (agreement, context-size, ...) and values win over the computed ones.
    average_instances: N of AP_N (default DETAD's integer len(ground truth) // classes).
    ties: order of equal scores, "input" (the same on every machine) or "detad" (DETAD's own
        unstable sorts, as numpy sorts here; module docstring).
    """
    if ties not in TIE_ORDERS:
        raise ValueError(f"ties must be one of {TIE_ORDERS}, got {ties!r}")
    if dataset not in DETAD_BINS:
        raise ValueError(f"dataset must be one of {sorted(DETAD_BINS)}, got {dataset!r}")
    thresholds = DETAD_TIOU_THRESHOLDS[dataset] if tiou_thresholds is None else \
        np.atleast_1d(np.asarray(tiou_thresholds, dtype=np.float64))
    gt = load_ground_truth(ground_truth, subset=subset, class_list=class_list)
    det = load_detections(predictions, gt, unknown_videos="false_positive", reversed=reversed, class_list=class_list)
    extra = read_extra_characteristics(extra_characteristics, gt) if extra_characteristics is not None else None
    evaluated = gt.num_instances > 0
    labels_seen, first_seen = np.unique(gt.label, return_index=True)
    detad_class_order = labels_seen[np.argsort(first_seen)]  # DETAD numbers classes as the ground truth shows them
    gt, values, num_removed = _clean_ground_truth(gt, instance_characteristics(gt, extra))
    C = len(gt.classes)
    npos = gt.num_instances
    n = float(len(gt.label) // max(int(evaluated.sum()), 1)) if average_instances is None else float(average_instances)
    bins = dict(DETAD_BINS[dataset] if bins is None else bins)
    bins = {name: b for name, b in bins.items() if name in values and not np.isnan(values[name]).all()}
    gt_bins = {name: b.assign(values[name]) for name, b in bins.items()}

    def class_mean(ap: np.ndarray) -> np.ndarray:
        return ap[:, evaluated].mean(axis=1) if evaluated.any() else np.full(len(ap), np.nan)

    # Every prediction: the base mAP_N, sensitivity and false negatives.
    if ties == "detad":
        everything = _Ranked.of_ranking(det.label, detad_ranking(det.score, det.label, np.arange(len(det)), C), C)
        score_order = everything.order
    else:
        score_order = descending_score_order(det.score)
        everything = _Ranked.of(det.label, score_order, C)
    matched = activitynet_matches(det, gt, thresholds, score_order)[:, everything.order]
    tp = matched >= 0
    ap, survivors = normalized_ap(everything, tp, npos, n, min_precision=FALSE_NEGATIVE_MIN_PRECISION)
    map_n = class_mean(ap)
    k, p = np.nonzero(survivors)
    found = np.zeros((len(thresholds), len(gt.label)), dtype=bool)
    found[k, matched[k, p]] = True

    if ties == "detad":  # DETAD's sensitivity AP walks a class in pandas' order, its matches in argsort's
        walk = per_class(det.label, np.arange(len(det)), np.arange(C), lambda rows: pandas_descending(rows, det.score))
        sensitivity_ranked = _Ranked.of_ranking(det.label, walk, C)
        where = np.empty(len(det), dtype=np.int64)
        where[everything.order] = np.arange(len(everything.order))
        to_walk = where[walk]
    else:
        sensitivity_ranked, to_walk = everything, slice(None)

    sensitivity, false_negative = {}, {}
    for name, b in bins.items():
        gt_bin = gt_bins[name]
        # A prediction stays in bin i's evaluation if every instance it matches (at any threshold) is in bin i.
        matched_bin = np.where(tp, gt_bin[np.maximum(matched, 0)], -1)
        lowest = np.where(tp, matched_bin, len(b)).min(axis=0)
        highest = matched_bin.max(axis=0)
        unmatched = highest < 0 if len(thresholds) else np.ones(tp.shape[1], dtype=bool)
        sensitivity[name], false_negative[name] = {}, {}
        for i in _bucket_order(b):
            in_bin = gt_bin == i
            label = b.labels[i]
            if not in_bin.any():
                sensitivity[name][label] = float("nan")
                continue
            elsewhere = ~(unmatched | ((lowest == i) & (highest == i)))
            npos_bin = np.bincount(gt.label[in_bin], minlength=C)
            ap_bin = normalized_ap(sensitivity_ranked, tp[:, to_walk], npos_bin, n, elsewhere[to_walk])
            sensitivity[name][label] = float(np.nanmean(ap_bin.mean(axis=0)[npos_bin > 0]))
            false_negative[name][label] = float(np.mean(1.0 - found[:, in_bin].sum(axis=1) / in_bin.sum()))

    # The limited set: each class's best LIMIT_FACTOR x (its instances) predictions.
    if ties == "detad":
        held = detad_limited(det.score, det.label, npos, LIMIT_FACTOR)
        lim_order = detad_ranking(det.score, det.label, held, C)
    else:
        position = np.arange(len(everything.order)) - everything.starts[everything.cls]
        in_limit = (npos[everything.cls] > 0) & (position < np.floor(npos[everything.cls] * LIMIT_FACTOR))
        lim_order = everything.order[in_limit]
    lim_det = dataclasses.replace(det, video=det.video[lim_order], label=det.label[lim_order],
                                  segments=det.segments[lim_order], score=det.score[lim_order])
    lim_ranked = _Ranked.of_ranking(lim_det.label, np.arange(len(lim_order)), C)  # already in ranked order
    if ties == "detad":  # DETAD matches the limited set on its own, in its own order of ties
        lim_matched = activitynet_matches(lim_det, gt, thresholds, lim_ranked.order)
    else:  # matching is greedy by score inside a class: the kept predictions match as among all of them
        lim_matched = matched[:, in_limit]
    lim_tp = lim_matched >= 0
    types = false_positive_types(lim_matched, lim_det, gt, thresholds)
    base = float(class_mean(normalized_ap(lim_ranked, lim_tp, npos, n)).mean())
    gains = {}
    for code in range(1, len(ERROR_TYPES)):
        ap_without = normalized_ap(lim_ranked, lim_tp, npos, n, types == code)
        gains[ERROR_TYPES[code]] = float(ap_without[:, evaluated].mean() - base) if evaluated.any() else float("nan")
    counts = np.stack([np.bincount(row, minlength=len(ERROR_TYPES)) for row in types]) if len(thresholds) else \
        np.zeros((0, len(ERROR_TYPES)), dtype=np.int64)

    if ties == "detad":
        lim_position = detad_profile_positions(det.score, det.label, held, detad_class_order)[lim_order]
    else:
        lim_position = position[in_limit]
    group = lim_position // np.maximum(npos[lim_det.label], 1)
    profile = np.full((LIMIT_FACTOR, len(ERROR_TYPES)), np.nan)
    for g in range(LIMIT_FACTOR):
        members = group == g
        if members.any():
            per_type = np.stack([np.bincount(row[members], minlength=len(ERROR_TYPES)) for row in types])
            profile[g] = per_type.mean(axis=0) / members.sum()

    return Diagnosis(dataset, thresholds, tuple(c for c, e in zip(gt.classes, evaluated) if e), n, map_n,
                     sensitivity, false_negative, counts, profile, base, gains, len(det), len(lim_order), num_removed)


def _bucket_order(b: Bins) -> list[int]:
    """Bin indices in the order DETAD's figures draw them (its buckets_order; others keep their place)."""
    rank = {label: i for i, label in enumerate(DETAD_BUCKET_ORDER)}
    return sorted(range(len(b)), key=lambda i: (rank.get(b.labels[i], len(rank)), i))
