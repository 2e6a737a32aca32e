"""Evaluation speed: rcl_kernels.evaluation (vectorised numpy) against the per-prediction loops
that follow the official scripts' control flow (rcl_kernels.evaluation.reference).

Problems are built from the real annotations shipped in the package, with random predictions:
half of them jittered copies of a ground-truth instance of the video, half uniform; labels the
video's class half of the time. Timed from the ActivityNet-format results dict (parsing included).
The target of the evaluation issue: ActivityNet validation with 100 predictions per video
(472,800 predictions, 200 classes) in under 2 s on the 2-core CPU machine; of the diagnosis
(DETAD's three analyses, rcl_kernels.evaluation.diagnose) on the same problem, under 5 s. The
diagnosis rows' baseline is detection_map on the same problem, timed in the same run (DETAD
itself is Python 2 and pandas, not runnable here); ties="detad" (DETAD's own unstable sorts) is
timed beside ties="input" on a tie-heavy THUMOS14 problem, with the difference in the numbers.

The command-line rows run `rcl-kernels eval` in fresh interpreters (the start-up a script scoring
the files of a sweep pays per file): `--help`, and a THUMOS14 kit detection file scored end to end,
against the same command after `import torch` (what it cost when the commands imported torch) and
against a bare `import numpy` (the floor). Target: --help < 0.5 s and < 100 MB, the kit file < 1.5 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, Timing, row, standalone_main, try_measure  # noqa: E402

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
    "thumos-diag-ties": "THUMOS14 Test, 212 videos x 60 predictions, scores rounded to 2 decimals: diagnose ties=input / detad",
    "cli-help": "a fresh `rcl-kernels eval --help`",
    "cli-kit-file": "a fresh `rcl-kernels eval` of a THUMOS14 kit detection file (212 videos x 60 detections)",
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run in a fresh interpreter: the body, then print its wall time and peak RSS (VmHWM) as json.
_CHILD = """
import json, sys, time
t0 = time.perf_counter()
{body}
seconds = time.perf_counter() - t0
with open("/proc/self/status") as fh:
    hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
print(json.dumps({{"seconds": seconds, "max_rss_mb": hwm}}))
"""


def _fresh_process(body: str, reps: int) -> tuple[Timing, float]:
    """Median wall time (whole process, start-up included) and peak RSS of `body` in fresh interpreters."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    times, rss = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _CHILD.format(body=body)], capture_output=True, text=True,
                             env=env, check=True)
        times.append((time.perf_counter() - t0) * 1e3)
        rss.append(json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"])
    times.sort()
    q = statistics.quantiles(times, n=5) if len(times) >= 2 else [times[0]] * 4
    return Timing(ms=statistics.median(times), ms_p20=q[0], ms_p80=q[3], peak_mib=None), max(rss)


def _cli(argv: list[str]) -> str:
    return (f"from rcl_kernels.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n")


def _kit_file(gt: GroundTruth, results: dict, folder: str) -> str:
    from rcl_kernels.evaluation import thumos14_kit

    ids = {name: cid for cid, name in thumos14_kit.read_class_list()}
    path = os.path.join(folder, "detections.txt")
    with open(path, "w") as fh:
        for video, preds in results["results"].items():
            for p in preds:
                fh.write(f"{video} {p['segment'][0]:.1f} {p['segment'][1]:.1f} {ids[p['label']]} {p['score']:.2f}\n")
    return path


def cli_rows(cfg: BenchConfig, thumos, thumos_classes) -> list[dict]:
    rows = []
    reps = 3 if cfg.quick else 5
    help_timing, help_rss = _fresh_process(_cli(["eval", "--help"]), reps)
    rows.append(row("eval-cli", "cli-help", "rcl-kernels eval --help", "fresh process", help_timing, ours=True,
                    dtype="-", max_rss_mb=help_rss))
    floor, floor_rss = _fresh_process("import numpy", reps)
    rows.append(row("eval-cli", "cli-help", "python -c 'import numpy' (floor)", "fresh process", floor, ours=False,
                    dtype="-", max_rss_mb=floor_rss))
    gt, pred = _case("cli-kit-file", thumos, thumos_classes, 60)
    with tempfile.TemporaryDirectory() as folder:
        argv = ["eval", "--ground-truth", "thumos14:test", "--predictions", _kit_file(gt, pred, folder),
                "--protocol", "thumos14"]
        timing, rss = _fresh_process("import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n    "
                                     + _cli(argv).replace("\n", "\n    "), reps)
        rows.append(row("eval-cli", "cli-kit-file", "rcl-kernels eval", "fresh process", timing, ours=True,
                        dtype="-", max_rss_mb=rss))
        timing, rss = _fresh_process("import torch, rcl_kernels._extension, contextlib, io\n"
                                     "with contextlib.redirect_stdout(io.StringIO()):\n    "
                                     + _cli(argv).replace("\n", "\n    "), reps)
        rows.append(row("eval-cli", "cli-kit-file", "same, after import torch + extension (before)", "fresh process",
                        timing, ours=False, dtype="-", max_rss_mb=rss))
    return rows


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

    # Tie-heavy: how far DETAD's tie order moves the numbers, and what reproducing it costs.
    gt, pred = _case("thumos-diag-ties", thumos, thumos_classes, 60)
    for preds in pred["results"].values():
        for p in preds:
            p["score"] = round(p["score"], 2)
    by_order = {ties: diagnose(pred, gt, "thumos14", ties=ties) for ties in ("detad", "input")}
    for ties, result in by_order.items():
        timing, skip = try_measure(lambda: diagnose(pred, gt, "thumos14", ties=ties), cfg, reps=min(cfg.reps, 3),
                                   warmup=0)
        other = by_order["input" if ties == "detad" else "detad"]
        rows.append(row("diagnose", "thumos-diag-ties", f"ties={ties}", "DETAD", timing, ours=ties == "detad",
                        dtype="float64", skipped=skip, limited_average_map_n=result.limited_average_map_n,
                        limited_average_map_n_minus_other=result.limited_average_map_n - other.limited_average_map_n,
                        largest_gain_difference=max(abs(result.average_map_gain[k] - other.average_map_gain[k])
                                                    for k in result.average_map_gain)))
    rows += cli_rows(cfg, thumos, thumos_classes)
    return rows


if __name__ == "__main__":
    standalone_main("bench_evaluation", run, PROBLEMS)
