"""Evaluation speed: rcl_kernels.evaluation (vectorised numpy) against the per-prediction loops
that follow the official scripts' control flow (rcl_kernels.evaluation.reference).

Problems are built from the real annotations shipped in the package, with random predictions:
half of them jittered copies of a ground-truth instance of the video, half uniform; labels the
video's class half of the time. Timed from the ActivityNet-format results dict (parsing included).
The target of the evaluation issue: ActivityNet validation with 100 predictions per video
(472,800 predictions, 200 classes) in under 2 s on the 2-core CPU machine; of the diagnosis
(DETAD's three analyses, rcl_kernels.evaluation.diagnose) on the same problem, under 5 s. The
diagnosis rows' baseline is detection_map on the same problem, timed in the same run (DETAD
itself is Python 2 and pandas, not runnable here).
"""

from __future__ import annotations

import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, row, standalone_main, try_measure  # noqa: E402

from rcl_kernels.data import builtin  # noqa: E402
from rcl_kernels.evaluation import average_recall, detection_map, load_detections  # noqa: E402
from rcl_kernels.evaluation.detection import ACTIVITYNET_TIOU_THRESHOLDS, THUMOS14_TIOU_THRESHOLDS  # noqa: E402
from rcl_kernels.evaluation.diagnose import diagnose  # noqa: E402
from rcl_kernels.evaluation.io import GroundTruth  # noqa: E402
from rcl_kernels.evaluation.reference import activitynet_ap_loop, average_recall_loop, thumos14_ap_loop  # noqa: E402

PROBLEMS = {
    "anet-val-100": "ActivityNet v1.3 validation, 4728 videos x 100 predictions (472,800), 200 classes",
    "anet-val-500v": "ActivityNet validation, first 500 videos x 100 predictions",
    "thumos-test-200": "THUMOS14 Test, 212 videos x 200 predictions, thumos14 protocol",
    "thumos-test-40v": "THUMOS14 Test, first 40 videos x 200 predictions, thumos14 protocol",
    "anet-ar-100": "ActivityNet validation, AR@AN for AN = 1..100",
    "anet-ar-50v": "ActivityNet validation, first 50 videos, AR@AN for AN = 1..100",
    "anet-diag-100": "ActivityNet validation x 100 predictions: DETAD's diagnosis (10 tIoUs, 3 characteristics)",
    "anet-diag-500v": "ActivityNet validation, first 500 videos x 100 predictions: DETAD's diagnosis",
}


def random_results(records, classes, per_video: int, seed: int) -> dict:
    """ActivityNet-format results for annotation records (module docstring)."""
    rng = np.random.default_rng(seed)
    out = {}
    for r in records:
        duration = r.duration or float(r.segments.max(initial=1.0))
        starts = rng.uniform(0, duration, per_video)
        ends = np.minimum(starts + rng.exponential(0.2 * duration, per_video), duration)
        labels = rng.integers(0, len(classes), per_video)
        if r.num_instances:
            pick = rng.integers(0, r.num_instances, per_video)
            near = rng.random(per_video) < 0.5
            length = r.segments[pick, 1] - r.segments[pick, 0]
            jitter = rng.normal(0, 0.15, (per_video, 2)) * length[:, None]
            starts = np.where(near, r.segments[pick, 0] + jitter[:, 0], starts)
            ends = np.where(near, np.maximum(r.segments[pick, 1] + jitter[:, 1], starts), ends)
            own = np.array([classes.index(lab) for lab in r.labels])[pick]
            labels = np.where(rng.random(per_video) < 0.5, own, labels)
        scores = rng.random(per_video)
        out[r.video_id] = [{"label": classes[labels[j]], "score": float(scores[j]),
                            "segment": [float(starts[j]), float(ends[j])]} for j in range(per_video)]
    return {"results": out}


def _case(name: str, records, classes, per_video: int):
    gt = GroundTruth.from_annotations(records, classes)
    return gt, random_results(records, classes, per_video, seed=zlib.crc32(name.encode()))


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    anet = list(builtin.activitynet_annotations("validation"))
    anet_classes = list(builtin.activitynet_classes())
    thumos = list(builtin.thumos14_annotations("test"))
    thumos_classes = list(builtin.thumos14_classes())
    cases = [
        ("anet-val-100", anet, anet_classes, 100, "activitynet", not cfg.quick),
        ("anet-val-500v", anet[:500], anet_classes, 100, "activitynet", True),
        ("thumos-test-200", thumos, thumos_classes, 200, "thumos14", False),
        ("thumos-test-40v", thumos[:40], thumos_classes, 200, "thumos14", True),
    ]
    for problem, records, classes, per_video, protocol, with_baseline in cases:
        gt, pred = _case(problem, records, classes, per_video)
        thresholds = ACTIVITYNET_TIOU_THRESHOLDS if protocol == "activitynet" else THUMOS14_TIOU_THRESHOLDS
        result = detection_map(pred, gt, thresholds, protocol)
        timing, skip = try_measure(lambda: detection_map(pred, gt, thresholds, protocol), cfg,
                                   reps=min(cfg.reps, 5), warmup=1)
        rows.append(row("detection_map", problem, "rcl_kernels numpy", protocol, timing, ours=True, dtype="float64",
                        skipped=skip, predictions=sum(len(v) for v in pred["results"].values()),
                        average_map=result.average_map))
        loop = activitynet_ap_loop if protocol == "activitynet" else thumos14_ap_loop
        if with_baseline:
            # The loop takes the aligned arrays: parsing is not in its time (it favours the loop).
            det = load_detections(pred, gt)
            want = loop(det, gt, thresholds)
            assert np.allclose(result.ap, want, rtol=0, atol=1e-9, equal_nan=True), problem
            timing, skip = try_measure(lambda: loop(det, gt, thresholds), cfg, reps=1, warmup=0)
        else:
            timing, skip = None, "too slow for this run (see the smaller problem)"
        rows.append(row("detection_map", problem, "per-prediction loop", protocol, timing, ours=False,
                        dtype="float64", skipped=skip))

    for problem, records, with_baseline in (("anet-ar-100", anet, False), ("anet-ar-50v", anet[:50], True)):
        gt, pred = _case(problem, records, anet_classes, 100)
        result = average_recall(pred, gt, 100)
        timing, skip = try_measure(lambda: average_recall(pred, gt, 100), cfg, reps=min(cfg.reps, 5), warmup=1)
        rows.append(row("average_recall", problem, "rcl_kernels numpy", "AR@1..100", timing, ours=True,
                        dtype="float64", skipped=skip, auc=result.auc))
        if with_baseline:
            det = load_detections(pred, gt, with_labels=False)
            assert np.allclose(result.recall, average_recall_loop(det, gt, ACTIVITYNET_TIOU_THRESHOLDS, 100)), problem
            timing, skip = try_measure(lambda: average_recall_loop(det, gt, ACTIVITYNET_TIOU_THRESHOLDS, 100), cfg,
                                       reps=1, warmup=0)
        else:
            timing, skip = None, "too slow for this run (see the smaller problem)"
        rows.append(row("average_recall", problem, "per-instance loop", "AR@1..100", timing, ours=False,
                        dtype="float64", skipped=skip))

    for problem, records in (("anet-diag-100", anet), ("anet-diag-500v", anet[:500])):
        gt, pred = _case(problem, records, anet_classes, 100)
        result = diagnose(pred, gt, "activitynet")
        reps = 1 if cfg.quick else min(cfg.reps, 3)
        timing, skip = try_measure(lambda: diagnose(pred, gt, "activitynet"), cfg, reps=reps, warmup=0)
        rows.append(row("diagnose", problem, "rcl_kernels numpy", "DETAD", timing, ours=True, dtype="float64",
                        skipped=skip, average_map_n=result.average_map_n))
        timing, skip = try_measure(lambda: detection_map(pred, gt), cfg, reps=reps, warmup=0)
        rows.append(row("diagnose", problem, "detection_map (same problem)", "DETAD", timing, ours=False,
                        dtype="float64", skipped=skip))
    return rows


if __name__ == "__main__":
    standalone_main("bench_evaluation", run, PROBLEMS)
