"""Ablation arms x seeds with an honest protocol, as markdown (mean +- std over seeds) and JSON.

    python python/ablations.py --profile anet-cpu --arms prior,bmn,bmn_control,grid,uniform,sis,car,car_rrm \
        --seeds 0,1,2 --output runs/ablations/anet.json

Protocol:
  - the training split's first --train-videos videos train; the next --heldout-videos are held out;
  - the final Soft-NMS sigma is chosen per run on the held-out videos (best average mAP over
    --sigmas), never on the test split, and recorded with the run;
  - every table has the feature-blind prior (rcl_kernels.models.prior_baseline) and the
    features-without-signal control (feature_control = other-video) beside the models;
  - per-length rows: DETAD's length bins in seconds (XS <= 30 < S <= 60 < M <= 120 < L <= 180 < XL)
    on ActivityNet, length quartiles (in feature steps) on THUMOS14.
Arms change one thing against their neighbour; `params` is reported so capacity can be checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rcl_kernels.data.synthetic import SyntheticDataset  # noqa: E402
from rcl_kernels.evaluation import detection_map  # noqa: E402
from rcl_kernels.models.config import build_configs, replace  # noqa: E402
from rcl_kernels.models.data_setup import load_videos, split_data  # noqa: E402
from rcl_kernels.models.inference import detect, ground_truth  # noqa: E402
from rcl_kernels.models.length_bins import map_by_length  # noqa: E402
from rcl_kernels.models.prior_baseline import fit_prior, prior_detections  # noqa: E402
from rcl_kernels.models.training import train  # noqa: E402

DETAD_EDGES_SECONDS = (0.0, 30.0, 60.0, 120.0, 180.0, np.inf)

# CPU-sized configurations (reduced from the paper's: see docs/model_results.md).
PROFILES = {
    "anet-cpu": dict(dataset="activitynet-synthetic", temporal_scale=50, max_duration=50, feature_dim=32, hidden=32,
                     num_samples=8, scorer_hidden=64, refine_state=32, refine_train_segments=64, candidates=100,
                     batch_size=8, max_steps=150, warmup_steps=15, lr=2e-3, class_agnostic=True, progress=False,
                     device="cpu", eval_batch_size=32),
}
PROFILE_VIDEOS = {"anet-cpu": dict(train=600, heldout=100, test=300)}

# Each arm: flags over the profile. BMN's PEM sizes are set so its parameter count is within 10 %
# of the RCL arms' (checked in the table's params column).
ARMS = {
    "bmn": dict(variant="bmn", pem_channels=48, pem_hidden=32),
    "bmn_control": dict(variant="bmn", pem_channels=48, pem_hidden=32, feature_control="other-video"),
    # Table 5: RCL's scorer trained on grid cells / + uniform random samples / + scale-invariant samples
    "grid": dict(variant="rcl", sampling=("grid",), refine_steps=0, use_offsets=False, inference_resolution=1.0),
    "uniform": dict(variant="rcl", sampling=("grid", "random"), refine_steps=0, use_offsets=False,
                    inference_resolution=1.0),
    "sis": dict(variant="rcl", sampling=("grid", "random", "sis"), refine_steps=0, use_offsets=False,
                inference_resolution=1.0),
    # Table 3: continuous anchoring (samples, offsets, sub-step inference grid), then + refinement
    "car": dict(variant="rcl", refine_steps=0),
    # the same at the grid arms' capacity: offsets from the confidence scorer's MLP (no second scorer)
    "car_shared": dict(variant="rcl", refine_steps=0, offset_head="shared"),
    "car_rrm": dict(variant="rcl", refine_steps=2),
    "car_control": dict(variant="rcl", refine_steps=0, feature_control="other-video"),
}


def subset(videos: SyntheticDataset, lo: int, hi: int) -> SyntheticDataset:
    return SyntheticDataset(videos.videos[lo:hi], videos.classes, videos.timelines[lo:hi], videos.config, cache=True)


def scores(results: dict, data, protocol: str) -> dict:
    gt = ground_truth(data, True)
    overall = detection_map(results, gt, protocol=protocol)
    if protocol == "activitynet":
        by_length = map_by_length(results, gt, {v.video_id: 1.0 for v in data.videos.videos},
                                  edges=DETAD_EDGES_SECONDS, protocol=protocol)
    else:
        by_length = map_by_length(results, gt, data.seconds_per_step(), protocol=protocol)
    return {"map": overall.map.tolist(), "average_map": overall.average_map,
            "tiou_thresholds": overall.tiou_thresholds.tolist(),
            "by_length": [{k: r[k] for k in ("bin", "instances", "average_map")} for r in by_length]}


def run_arm(profile: str, arm: str, seed: int, sigmas: list[float], out_dir: str, max_steps: int | None = None) -> dict:
    videos_n = PROFILE_VIDEOS[profile]
    steps = {} if max_steps is None else {"max_steps": max_steps}
    flags = {**PROFILES[profile], **ARMS.get(arm, {}), **steps, "seed": seed,
             "max_train_videos": videos_n["train"] + videos_n["heldout"], "max_test_videos": videos_n["test"],
             "output_dir": os.path.join(out_dir, f"{arm}_seed{seed}")}
    if arm in ("prior", "prior_nms"):
        flags = {**PROFILES[profile], "max_train_videos": videos_n["train"] + videos_n["heldout"],
                 "max_test_videos": videos_n["test"]}
    model_cfg, run_cfg = build_configs(flag_values=flags)
    every = load_videos(run_cfg, "train", model_cfg.feature_dim)
    n = videos_n["train"]
    train_data = split_data(subset(every, 0, n), run_cfg, "train")
    heldout = split_data(subset(every, n, len(every)), run_cfg, "test")
    test = split_data(load_videos(run_cfg, "test", model_cfg.feature_dim), run_cfg, "test")
    protocol = run_cfg.effective_protocol
    if arm in ("prior", "prior_nms"):
        # prior_nms: Soft-NMS over the frequencies, sigma as the models' default (not tuned)
        prior = fit_prior(train_data.videos, grid=run_cfg.temporal_scale, top_n=run_cfg.effective_top_k,
                          nms_sigma=run_cfg.effective_nms[0] if arm == "prior_nms" else None)
        return {"arm": arm, "seed": seed, "params": 0, "sigma": None, "train_seconds": 0.0,
                "heldout": scores(prior_detections(prior, heldout.videos), heldout, protocol),
                "test": scores(prior_detections(prior, test.videos), test, protocol)}
    torch.manual_seed(seed)
    result = train(model_cfg, run_cfg, train_data=train_data)
    device = torch.device("cpu")
    chosen, best = None, -1.0
    heldout_by_sigma = {}
    for sigma in sigmas:
        trial = replace(run_cfg, nms_sigma=sigma)
        heldout_by_sigma[sigma] = scores(detect(result.model, trial, heldout, device)[0], heldout, protocol)
        if heldout_by_sigma[sigma]["average_map"] > best:
            chosen, best = sigma, heldout_by_sigma[sigma]["average_map"]
    final = replace(run_cfg, nms_sigma=chosen)
    results, seconds = detect(result.model, final, test, device)
    return {"arm": arm, "seed": seed, "params": sum(p.numel() for p in result.model.parameters()),
            "sigma": chosen, "train_seconds": result.seconds, "inference_seconds": seconds,
            "final_terms": result.final_terms, "heldout": heldout_by_sigma[chosen],
            "heldout_by_sigma": {str(k): v["average_map"] for k, v in heldout_by_sigma.items()},
            "test": scores(results, test, protocol)}


def mean_std(values) -> str:
    values = 100 * np.asarray(values, dtype=np.float64)
    return f"{values.mean():.1f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.1f}"


def table(runs: list[dict]) -> str:
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    first = runs[0]["test"]
    t = first["tiou_thresholds"]
    mid = t.index(0.5) if 0.5 in t else len(t) // 2
    bins = [b["bin"] for b in first["by_length"]]
    head = ["arm", "seeds", "params", "σ (held-out)", "avg mAP", f"mAP@{t[mid]:g}"] + \
        [f"avg, len {b} ({n['instances']})" for b, n in zip(bins, first["by_length"])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm]
        cells = [arm, str(len(rs)), f"{rs[0]['params']:,}", ",".join(str(r["sigma"]) for r in rs),
                 mean_std([r["test"]["average_map"] for r in rs]), mean_std([r["test"]["map"][mid] for r in rs])]
        cells += [mean_std([r["test"]["by_length"][i]["average_map"] for r in rs]) for i in range(len(bins))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="anet-cpu")
    parser.add_argument("--arms", default="prior,bmn,bmn_control,car,car_rrm")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sigmas", default="0.3,0.5,0.9", help="final Soft-NMS sigmas tried on held-out videos")
    parser.add_argument("--output", default="runs/ablations/results.json")
    parser.add_argument("--table-only", action="store_true", help="print the table of --output (comma-separated: "
                        "several files, merged)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the profile's (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.table_only:
        runs = [r for path in args.output.split(",") for r in json.load(open(path))]
    else:
        runs = json.load(open(args.output)) if os.path.isfile(args.output) else []
        sigmas = [float(s) for s in args.sigmas.split(",")]
        for arm in args.arms.split(","):
            if arm not in ("prior", "prior_nms") and arm not in ARMS:
                parser.error(f"--arms: unknown arm {arm!r}; known: prior, prior_nms, {', '.join(ARMS)}")
            for seed in ([0] if arm in ("prior", "prior_nms") else [int(s) for s in args.seeds.split(",")]):
                if any(r["arm"] == arm and r["seed"] == seed for r in runs):
                    continue  # resumable: an interrupted sweep skips what it has
                began = time.perf_counter()
                runs.append(run_arm(args.profile, arm, seed, sigmas, os.path.dirname(os.path.abspath(args.output)),
                                    args.max_steps))
                print(f"{arm} seed {seed}: test avg mAP {100 * runs[-1]['test']['average_map']:.1f} "
                      f"({time.perf_counter() - began:.0f} s)", flush=True)
                os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
                with open(args.output, "w") as fh:
                    json.dump(runs, fh, indent=1)
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
