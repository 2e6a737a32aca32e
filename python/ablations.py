"""Ablation arms x seeds with an honest protocol, as markdown (mean +- std over seeds) and JSON.

    python python/ablations.py --profile anet-cpu --arms prior,bmn,bmn_control,grid,uniform,sis,car,car_rrm \
        --seeds 0,1,2 --output runs/ablations/anet.json

Protocol:
  - the training split's first --train-videos videos train; the next --heldout-videos are held out;
  - the final Soft-NMS sigma is chosen per run on the held-out videos (best average mAP over
    --sigmas), never on the test split, and recorded with the run;
  - every table has the feature-blind prior (rcl_kernels.models.prior_baseline) and the
    features-without-signal control (feature_control = other-video) beside the models;
  - on windowed data (THUMOS14) each test segment is scored by the one window of the video where
    it is most central (--window-scoring once, the default; every: each window scores all of its
    segments and Soft-NMS merges the copies), for every arm alike;
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
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rcl_kernels.data.synthetic import SyntheticDataset  # noqa: E402
from rcl_kernels.evaluation import detection_map  # noqa: E402
from rcl_kernels.models.config import WINDOW_SCORINGS, build_configs, replace  # noqa: E402
from rcl_kernels.models.checkpoints import load_checkpoint  # noqa: E402
from rcl_kernels.models.data_setup import load_videos, split_data  # noqa: E402
from rcl_kernels.models.energy_baseline import EnergyContrast  # noqa: E402
from rcl_kernels.models.matched_filter import MatchedFilter  # noqa: E402
from rcl_kernels.models.candidates import OP_BACKEND  # noqa: E402
from rcl_kernels.models.data_setup import batch_tensors, scoring_neighbours  # noqa: E402
from rcl_kernels.models.inference import ground_truth  # noqa: E402
from rcl_kernels.models.postprocess import DetectionCollector  # noqa: E402
from rcl_kernels.models.length_bins import map_by_length, recall_by_length  # noqa: E402
from rcl_kernels.models.prior_baseline import fit_prior, prior_detections  # noqa: E402
from rcl_kernels.models.profiles import PROFILES  # noqa: E402
from rcl_kernels.models.rcl import build_model  # noqa: E402
from rcl_kernels.models.training import prepare_model_config, train  # noqa: E402

DETAD_EDGES_SECONDS = (0.0, 30.0, 60.0, 120.0, 180.0, np.inf)

PROFILE_VIDEOS = {"anet-cpu": dict(train=600, heldout=100, test=300),
                  "thumos-cpu": dict(train=160, heldout=40, test=60)}
# Per length bin beside its mAP: recall at tIoU 0.5 of each video's top RECALL_AT detections
# (whether the bin's instances are found at all, whatever the false positives ranked above them).
RECALL_AT = 100
PROFILE_SIGMAS = {"anet-cpu": "0.3,0.5,0.9", "thumos-cpu": "0.1,0.2,0.4"}

_BMN = dict(variant="bmn", pem_channels=48, pem_hidden=32)
_CAR = dict(variant="rcl", refine_steps=0)
# the refine module at CAR's capacity: an 8-unit GRU state and an 8-unit SoI embedding (60,516
# parameters against CAR's 56,048 at anet-cpu, +8 %; the full-size refiner has +57 %)
_RRM_MATCHED = dict(variant="rcl", refine_state=8, refine_hidden=8)
# Each arm: flags over the profile. BMN's PEM sizes are set so its parameter count is within 10 %
# of the RCL arms' (checked in the table's params column).
ARMS = {
    "bmn": _BMN,
    "bmn_control": dict(_BMN, feature_control="other-video"),
    # Table 4's naive ways of raising BMN's resolution: the input features interpolated to k T
    # (maps k T x k T: max_duration is scaled with it in run_arm), or the maps bilinearly upsampled
    "bmn_rescale2": dict(_BMN, input_scale=2),
    "bmn_rescale3": dict(_BMN, input_scale=3),
    "bmn_upsample2": dict(_BMN, map_upsample=2),
    "bmn_upsample3": dict(_BMN, map_upsample=3),
    # Table 5: RCL's scorer trained on grid cells / + uniform random samples / + scale-invariant samples
    "grid": dict(variant="rcl", sampling=("grid",), refine_steps=0, use_offsets=False, inference_resolution=1.0),
    "uniform": dict(variant="rcl", sampling=("grid", "random"), refine_steps=0, use_offsets=False,
                    inference_resolution=1.0),
    "sis": dict(variant="rcl", sampling=("grid", "random", "sis"), refine_steps=0, use_offsets=False,
                inference_resolution=1.0),
    # Table 5's fourth row: uniform samples with TSI's scale-invariant loss instead of SIS
    "uniform_siloss": dict(variant="rcl", sampling=("grid", "random"), refine_steps=0, use_offsets=False,
                           inference_resolution=1.0, classification_loss="scale-invariant"),
    # Table 3: continuous anchoring (samples, offsets, sub-step inference grid), then + refinement
    "car": _CAR,
    # the same at the grid arms' capacity: offsets from the confidence scorer's MLP (no second scorer)
    "car_shared": dict(_CAR, offset_head="shared"),
    # Table 4's last naive row: CAR without the offset branch (the grid arms' capacity, car_shared's neighbour)
    "car_no_offset": dict(_CAR, use_offsets=False),
    "car_rrm": dict(variant="rcl", refine_steps=2),
    # the paper's M = 10 refine steps (loss weights alpha^m), otherwise car_rrm
    "car_rrm_m10": dict(variant="rcl", refine_steps=10),
    "car_rrm_matched": dict(_RRM_MATCHED, refine_steps=2),
    "car_rrm_matched_m1": dict(_RRM_MATCHED, refine_steps=1),
    "car_rrm_matched_m4": dict(_RRM_MATCHED, refine_steps=4),
    "car_control": dict(_CAR, feature_control="other-video"),
}
# Arms without training: feature-blind priors, the untrained energy-contrast detector and the
# matched filter that knows the generator's class patterns (the upper reference).
UNTRAINED = ("prior", "prior_nms", "energy", "matched")
# Arms whose training is another arm's (they differ at inference only): its checkpoint is reused.
TRAINED_AS = {"bmn_upsample3": "bmn_upsample2"}


def subset(videos: SyntheticDataset, lo: int, hi: int) -> SyntheticDataset:
    return SyntheticDataset(videos.videos[lo:hi], videos.classes, videos.timelines[lo:hi], videos.config, cache=True)


def scores(results: dict, data, protocol: str) -> dict:
    gt = ground_truth(data, True)
    overall = detection_map(results, gt, protocol=protocol)
    if protocol == "activitynet":
        steps, edges = {v.video_id: 1.0 for v in data.videos.videos}, DETAD_EDGES_SECONDS
    else:
        steps, edges = data.seconds_per_step(), None
    by_length = map_by_length(results, gt, steps, edges=edges, protocol=protocol)
    recall = recall_by_length(results, gt, steps, edges=edges, max_proposals=RECALL_AT, tiou_thresholds=(0.5,))
    return {"map": overall.map.tolist(), "average_map": overall.average_map,
            "tiou_thresholds": overall.tiou_thresholds.tolist(),
            "by_length": [{k: r[k] for k in ("bin", "instances", "average_map")} | {"recall": q["average_recall"]}
                          for r, q in zip(by_length, recall)]}


def detect_with_sigmas(model, run_cfg, data, sigmas: list[float]) -> dict[float, dict]:
    """{sigma: detections}: the model runs once over the videos, the final Soft-NMS once per sigma
    (what rcl_kernels.models.inference.detect gives for each sigma, without repeating the model)."""
    loader = DataLoader(data.items, batch_size=run_cfg.eval_batch_size, shuffle=False, collate_fn=data.collate)
    model.eval()
    collector = DetectionCollector()
    with torch.no_grad():
        for batch in loader:
            features, mask, _, _ = batch_tensors(batch, torch.device("cpu"))
            candidates = model.detect(features, mask, class_agnostic=run_cfg.class_agnostic,
                                      neighbours=scoring_neighbours(batch, run_cfg, torch.device("cpu")))
            collector.add(candidates, batch)
    min_score = run_cfg.effective_nms[1]
    return {sigma: collector.results(data.videos.classes, top_k=run_cfg.effective_top_k, sigma=sigma,
                                     min_score=min_score, backend=OP_BACKEND[model.config.backend],
                                     class_agnostic=run_cfg.class_agnostic,
                                     video_ids=[v.video_id for v in data.videos.videos])
            for sigma in sigmas}


def arm_flags(profile: str, arm: str, seed: int, out_dir: str, max_steps: int | None = None,
              window_scoring: str | None = None) -> dict:
    """The config flags of one run: the profile's, the arm's, the seed and the video counts."""
    videos_n = PROFILE_VIDEOS.get(profile)
    flags = {**PROFILES[profile], **({} if arm in UNTRAINED else ARMS[arm])}
    if "input_scale" in flags:  # the maps grow with the input: k T x k T
        flags["max_duration"] = PROFILES[profile]["max_duration"] * flags["input_scale"]
    if max_steps is not None:
        flags["max_steps"] = max_steps
    if window_scoring is not None:
        flags["window_scoring"] = window_scoring
    flags["seed"] = seed
    flags["output_dir"] = os.path.join(out_dir, f"{arm}_seed{seed}")
    if videos_n is not None:
        flags.update(max_train_videos=videos_n["train"] + videos_n["heldout"], max_test_videos=videos_n["test"])
    return flags


def load_data(profile: str, run_cfg, feature_dim: int):
    """(train, held-out, test) SplitData of a profile's protocol."""
    every = load_videos(run_cfg, "train", feature_dim)
    n = PROFILE_VIDEOS[profile]["train"]
    train_data = split_data(subset(every, 0, n), run_cfg, "train")
    heldout = split_data(subset(every, n, len(every)), run_cfg, "test")
    test = split_data(load_videos(run_cfg, "test", feature_dim), run_cfg, "test")
    return train_data, heldout, test


def trained_model(arm: str, seed: int, model_cfg, run_cfg, train_data, out_dir: str):
    """(model, train seconds, final loss terms): trained, or another arm's checkpoint (TRAINED_AS)."""
    base = TRAINED_AS.get(arm)
    path = os.path.join(out_dir, f"{base}_seed{seed}", "last.pt") if base else None
    if path and os.path.isfile(path):
        state = load_checkpoint(path)
        model = build_model(prepare_model_config(model_cfg, train_data))
        model.load_state_dict(state["model"])
        return model, 0.0, {"trained_as": base}
    torch.manual_seed(seed)
    result = train(model_cfg, run_cfg, train_data=train_data)
    return result.model, result.seconds, result.final_terms


def run_arm(profile: str, arm: str, seed: int, sigmas: list[float], out_dir: str, max_steps: int | None = None,
            window_scoring: str | None = None) -> dict:
    model_cfg, run_cfg = build_configs(flag_values=arm_flags(profile, arm, seed, out_dir, max_steps, window_scoring))
    train_data, heldout, test = load_data(profile, run_cfg, model_cfg.feature_dim)
    protocol = run_cfg.effective_protocol
    if arm in ("prior", "prior_nms"):
        # prior_nms: Soft-NMS over the frequencies, sigma as the models' default (not tuned)
        prior = fit_prior(train_data.videos, grid=run_cfg.temporal_scale, top_n=run_cfg.effective_top_k,
                          nms_sigma=run_cfg.effective_nms[0] if arm == "prior_nms" else None)
        return {"arm": arm, "seed": seed, "params": 0, "sigma": None, "train_seconds": 0.0, "window_scoring": None,
                "heldout": scores(prior_detections(prior, heldout.videos), heldout, protocol),
                "test": scores(prior_detections(prior, test.videos), test, protocol)}
    if arm in ("energy", "matched"):
        # the cells of the input grid: max_duration in input steps
        model_cfg = replace(model_cfg, max_duration=model_cfg.max_duration * model_cfg.encoder_stride)
        generator = test.videos
        model = EnergyContrast(model_cfg) if arm == "energy" else \
            MatchedFilter(model_cfg, generator.onset, generator.offset,
                          sharpness=generator.config.boundary_sharpness, noise=generator.config.noise)
        train_seconds, final_terms = 0.0, {}
    else:
        model, train_seconds, final_terms = trained_model(arm, seed, model_cfg, run_cfg, train_data, out_dir)
    heldout_by_sigma = {sigma: scores(results, heldout, protocol)
                        for sigma, results in detect_with_sigmas(model, run_cfg, heldout, sigmas).items()}
    chosen = max(sigmas, key=lambda sigma: heldout_by_sigma[sigma]["average_map"])  # first of equals
    began = time.perf_counter()
    results = detect_with_sigmas(model, run_cfg, test, [chosen])[chosen]
    seconds = time.perf_counter() - began
    return {"arm": arm, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "sigma": chosen, "train_seconds": train_seconds, "inference_seconds": seconds,
            "window_scoring": run_cfg.window_scoring if run_cfg.effective_window else None,
            "final_terms": final_terms, "heldout": heldout_by_sigma[chosen],
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


def recall_table(runs: list[dict]) -> str:
    """Recall@RECALL_AT (tIoU 0.5) per length bin, mean +- std over seeds, for the runs that have it."""
    runs = [r for r in runs if all("recall" in b for b in r["test"]["by_length"])]
    if not runs:
        return ""
    bins = runs[0]["test"]["by_length"]
    head = ["arm", "seeds"] + [f"R@{RECALL_AT}, len {b['bin']} ({b['instances']})" for b in bins]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in dict.fromkeys(r["arm"] for r in runs):
        rs = [r for r in runs if r["arm"] == arm]
        lines.append("| " + " | ".join([arm, str(len(rs))] + [
            mean_std([r["test"]["by_length"][i]["recall"] for r in rs]) for i in range(len(bins))]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILE_VIDEOS), default="anet-cpu")
    parser.add_argument("--arms", default="prior,bmn,bmn_control,car,car_rrm")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sigmas", default=None, help="final Soft-NMS sigmas tried on held-out videos (default: "
                        "the profile's, PROFILE_SIGMAS)")
    parser.add_argument("--output", default="runs/ablations/results.json")
    parser.add_argument("--table-only", action="store_true", help="print the table of --output (comma-separated: "
                        "several files, merged)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the profile's (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--window-scoring", choices=WINDOW_SCORINGS, default=None,
                        help="where test windows overlap: once (the default) or every (rcl-kernels train's option)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.table_only:
        runs = [r for path in args.output.split(",") for r in json.load(open(path))]
    else:
        runs = json.load(open(args.output)) if os.path.isfile(args.output) else []
        sigmas = [float(s) for s in (args.sigmas or PROFILE_SIGMAS[args.profile]).split(",")]
        for arm in args.arms.split(","):
            if arm not in UNTRAINED and arm not in ARMS:
                parser.error(f"--arms: unknown arm {arm!r}; known: {', '.join(UNTRAINED)}, {', '.join(ARMS)}")
            for seed in ([0] if arm in UNTRAINED else [int(s) for s in args.seeds.split(",")]):
                if any(r["arm"] == arm and r["seed"] == seed for r in runs):
                    continue  # resumable: an interrupted sweep skips what it has
                began = time.perf_counter()
                runs.append(run_arm(args.profile, arm, seed, sigmas, os.path.dirname(os.path.abspath(args.output)),
                                    args.max_steps, args.window_scoring))
                print(f"{arm} seed {seed}: test avg mAP {100 * runs[-1]['test']['average_map']:.1f} "
                      f"({time.perf_counter() - began:.0f} s)", flush=True)
                os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
                with open(args.output, "w") as fh:
                    json.dump(runs, fh, indent=1)
    print(table(runs))
    print(recall_table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
