"""Straightforward per-prediction loop versions of the metrics: slow, written to follow the control
flow of the official scripts line by line, so that the vectorised code can be checked against them
(tests) and timed against them (benchmarks/bench_evaluation.py).

They share only the aligned inputs (GroundTruth, Detections) with the vectorised code; overlaps
are computed here with the kit's own formulas.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from rcl_kernels.evaluation.io import Detections, GroundTruth


def _tiou(a, b) -> float:
    # eval_detection.py's segment_iou: intersection / (|a| + |b| - intersection), 0/0 taken as 0.
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def _kit_overlap(a, b) -> float:
    # TH14evalDet's intervalsingleoverlapvalseconds: intersection / span of the union, 0 if disjoint.
    width = min(a[1], b[1]) - max(a[0], b[0])
    if width <= 0:
        return 0.0
    return width / (max(a[1], b[1]) - min(a[0], b[0]))


def _by_class(det: Detections, gt: GroundTruth):
    gt_of = defaultdict(lambda: defaultdict(list))  # class -> video -> instance indices (file order)
    for g in range(len(gt.label)):
        gt_of[int(gt.label[g])][int(gt.video[g])].append(g)
    det_of = defaultdict(list)  # class -> detection indices (input order)
    for p in range(len(det)):
        det_of[int(det.label[p])].append(p)
    return gt_of, det_of


def _interpolated_ap(precision: list[float], recall: list[float]) -> float:
    # eval_detection.py's interpolated_prec_rec.
    mprec = [0.0, *precision, 0.0]
    mrec = [0.0, *recall, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def activitynet_ap_loop(det: Detections, gt: GroundTruth, thresholds) -> np.ndarray:
    """(K, C) AP by eval_detection.py's compute_average_precision_detection, one class at a time."""
    thresholds = [float(t) for t in thresholds]
    num_classes = len(gt.classes)
    ap = np.zeros((len(thresholds), num_classes))
    gt_of, det_of = _by_class(det, gt)
    for c in range(num_classes):
        videos = gt_of.get(c, {})
        npos = sum(len(v) for v in videos.values())
        if npos == 0:
            ap[:, c] = np.nan
            continue
        preds = sorted(det_of.get(c, []), key=lambda p: -det.score[p])  # stable
        if not preds:
            continue
        lock = [dict() for _ in thresholds]
        tp = [[0] * len(preds) for _ in thresholds]
        fp = [[0] * len(preds) for _ in thresholds]
        for idx, p in enumerate(preds):
            cands = videos.get(int(det.video[p]), [])
            if not cands:
                for k in range(len(thresholds)):
                    fp[k][idx] = 1
                continue
            tious = [_tiou(det.segments[p], gt.segments[g]) for g in cands]
            by_tiou = sorted(range(len(cands)), key=lambda j: -tious[j])
            for k, thr in enumerate(thresholds):
                for j in by_tiou:
                    if tious[j] < thr:
                        fp[k][idx] = 1
                        break
                    if cands[j] in lock[k]:
                        continue
                    tp[k][idx] = 1
                    lock[k][cands[j]] = idx
                    break
                if not fp[k][idx] and not tp[k][idx]:
                    fp[k][idx] = 1
        for k in range(len(thresholds)):
            tp_sum = np.cumsum(tp[k]).astype(float)
            fp_sum = np.cumsum(fp[k]).astype(float)
            ap[k, c] = _interpolated_ap(list(tp_sum / (tp_sum + fp_sum)), list(tp_sum / npos))
    return ap


def thumos14_ap_loop(det: Detections, gt: GroundTruth, thresholds) -> np.ndarray:
    """(K, C) AP by TH14evalDet_Updated.m's TH14eventdetpr, one threshold and class at a time."""
    num_classes = len(gt.classes)
    ap = np.zeros((len(thresholds), num_classes))
    gt_of, det_of = _by_class(det, gt)
    amb_of = defaultdict(list)
    for a in range(len(gt.ambiguous_video)):
        amb_of[int(gt.ambiguous_video[a])].append(gt.ambiguous_segments[a])
    name = det.video_ids
    # The kit's videonames = unique(ground-truth videos, detection videos), sorted by name.
    videos = sorted({*map(int, gt.video), *map(int, gt.ambiguous_video), *map(int, det.video)},
                    key=lambda v: name[v])
    for k, thr in enumerate(float(t) for t in thresholds):
        for c in range(num_classes):
            npos = sum(len(v) for v in gt_of.get(c, {}).values())
            if npos == 0:
                ap[k, c] = np.nan
                continue
            if not det_of.get(c):
                continue
            conf, flag = [], []
            for v in videos:
                dets = sorted((p for p in det_of[c] if det.video[p] == v), key=lambda p: -det.score[p])
                if not dets:
                    continue
                free = [True] * len(dets)
                for g in gt_of.get(c, {}).get(v, []):
                    ind = [j for j in range(len(dets)) if free[j]]
                    if not ind:
                        continue
                    ov = [_kit_overlap(gt.segments[g], det.segments[dets[j]]) for j in ind]
                    best = max(ov)
                    if best > thr:
                        free[ind[ov.index(best)]] = False
                for j, p in enumerate(dets):
                    ambiguous = sum(_kit_overlap(a, det.segments[p]) for a in amb_of.get(v, [])) > 0
                    if not free[j]:
                        conf.append(det.score[p])
                        flag.append(1)
                    elif not ambiguous:
                        conf.append(det.score[p])
                        flag.append(2)
            ranked = sorted(range(len(conf)), key=lambda i: -conf[i])
            hits = 0
            total = 0.0
            for n, i in enumerate(ranked, start=1):
                if flag[i] == 1:
                    hits += 1
                    total += hits / n
            ap[k, c] = total / npos
    return ap


def average_recall_loop(det: Detections, gt: GroundTruth, thresholds, max_proposals: int) -> np.ndarray:
    """(K, N) recall with the top 1..N proposals of each video, one instance at a time."""
    proposals = defaultdict(list)
    for p in range(len(det)):
        proposals[int(det.video[p])].append(p)
    for v in proposals:
        proposals[v].sort(key=lambda p: -det.score[p])
    recall = np.zeros((len(thresholds), max_proposals))
    for k, thr in enumerate(float(t) for t in thresholds):
        for n in range(1, max_proposals + 1):
            hits = 0
            for g in range(len(gt.video)):
                top = proposals.get(int(gt.video[g]), [])[:n]
                hits += any(_tiou(det.segments[p], gt.segments[g]) >= thr for p in top)
            recall[k, n - 1] = hits / max(len(gt.video), 1)
    return recall
