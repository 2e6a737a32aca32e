"""What limits the shortest instances: their time scales and their share of the training samples.

    python python/short_instances.py --profile anet-cpu

For the training videos of a profile (python/ablations.py's split), per length bin (DETAD's bins
in seconds on ActivityNet, quartiles in steps on THUMOS14):
  - instances: count and share;
  - time scales: median length in seconds and in feature steps, and the mean of the generator's
    envelope over the instance (rcl_kernels.data.synthetic: sigmoid ramps of about 4 / k steps at
    each boundary; 1.0 for a box, lower where the ramps take most of the instance);
  - the grid's resolution: the best tIoU any grid cell reaches with the instance (median), the
    ceiling of a detector that scores grid cells without moving them;
  - training samples: for each sampling source (grid, random, sis) the share of its positive
    samples (tIoU* > positive_tiou) whose nearest instance is in the bin, and positives per
    instance.
Grid cells and samples are on the encoder's grid (encoder_stride input steps a step) over whole
videos (THUMOS14's windows are not cut: a cell crossing a window boundary is counted). Nothing is
trained; the numbers are those of the data and the samplers.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ablations import DETAD_EDGES_SECONDS, PROFILE_VIDEOS, arm_flags, subset  # noqa: E402
from rcl_kernels.models.config import build_configs  # noqa: E402
from rcl_kernels.models.data_setup import load_videos  # noqa: E402
from rcl_kernels.models.length_bins import quartile_edges  # noqa: E402
from rcl_kernels.models.sampling import grid_segments, training_samples  # noqa: E402
from rcl_kernels.models.targets import anchor_targets, pairwise_tiou  # noqa: E402

DETAD_NAMES = ("XS", "S", "M", "L", "XL")


def mean_envelope(length_steps: float, sharpness: float) -> float:
    """Mean over [s, s + L] of sigmoid(k (t - s)) sigmoid(k (s + L - t)) (fine sampling)."""
    t = torch.linspace(0.0, length_steps, 201, dtype=torch.float64)
    return float(torch.mean(torch.sigmoid(sharpness * t) * torch.sigmoid(sharpness * (length_steps - t))))


def analyse(profile: str, seed: int = 0) -> dict:
    model_cfg, run_cfg = build_configs(flag_values=arm_flags(profile, "car", seed, "runs/short_instances"))
    videos = subset(load_videos(run_cfg, "train", model_cfg.feature_dim), 0, PROFILE_VIDEOS[profile]["train"])
    sharpness = videos.config.boundary_sharpness
    per_video = [np.asarray(videos.instances(i)[0], dtype=np.float64).reshape(-1, 2) for i in range(len(videos))]
    steps = np.concatenate([g[:, 1] - g[:, 0] for g in per_video])
    seconds = np.concatenate([(g[:, 1] - g[:, 0]) * t.seconds_per_step for g, t in zip(per_video, videos.timelines)])
    if run_cfg.effective_protocol == "activitynet":
        edges, values, names = np.asarray(DETAD_EDGES_SECONDS), seconds, DETAD_NAMES
    else:
        edges = quartile_edges(steps)
        values, names = steps, tuple(f"Q{i + 1}" for i in range(len(edges) - 1))
    bin_of = np.clip(np.searchsorted(edges, values, side="left") - 1, 0, len(names) - 1)  # (lo, hi] bins

    generator = torch.Generator().manual_seed(seed)
    positives = {source: np.zeros(len(names)) for source in model_cfg.sampling}
    best_cell = []
    first = np.cumsum([0] + [len(g) for g in per_video])
    stride = model_cfg.encoder_stride
    for i, segments in enumerate(per_video):
        # on the encoder's grid (encoder_stride input steps a step), over whole videos
        instances = torch.as_tensor(segments, dtype=torch.float32)[None] / stride
        if instances.shape[1] == 0:
            continue
        T = -(-min(videos.timelines[i].num_steps, run_cfg.max_video_steps or 2**62) // stride)
        valid = torch.ones(1, instances.shape[1], dtype=torch.bool)
        cells = grid_segments(T, model_cfg.max_duration)[None]
        best_cell.extend(pairwise_tiou(cells, instances)[0].max(dim=0).values.tolist())
        for source in model_cfg.sampling:
            samples, sample_valid = training_samples(
                (source,), T, model_cfg.max_duration, instances, valid, jitter=model_cfg.random_jitter,
                per_instance=model_cfg.sis_per_instance, spread=model_cfg.sis_spread,
                lengths=torch.tensor([T]), generator=generator)
            targets = anchor_targets(samples, instances, torch.zeros(1, instances.shape[1], dtype=torch.int64), valid)
            hit = (targets.tiou[0] > model_cfg.positive_tiou) & sample_valid[0]
            nearest = targets.instance[0][hit].numpy() + first[i]
            np.add.at(positives[source], bin_of[nearest], 1)
    best_cell = np.asarray(best_cell)
    rows = []
    for b, name in enumerate(names):
        inside = bin_of == b
        n = int(inside.sum())
        row = {"bin": name, "instances": n, "instance_share": n / len(steps),
               "median_seconds": float(np.median(seconds[inside])) if n else float("nan"),
               "median_steps": float(np.median(steps[inside])) if n else float("nan"),
               "mean_envelope": mean_envelope(float(np.median(steps[inside])), sharpness) if n else float("nan"),
               "best_cell_tiou": float(np.median(best_cell[inside])) if n else float("nan")}
        for source, counts in positives.items():
            row[f"{source}_positive_share"] = counts[b] / max(counts.sum(), 1)
            row[f"{source}_positives_per_instance"] = counts[b] / max(n, 1)
        rows.append(row)
    return {"profile": profile, "sharpness": sharpness, "positive_tiou": model_cfg.positive_tiou,
            "ramp_steps": 4.0 / sharpness, "rows": rows}


def table(result: dict) -> str:
    sources = [k[: -len("_positive_share")] for k in result["rows"][0] if k.endswith("_positive_share")]
    head = ["bin", "instances (share)", "median s", "median steps", "mean envelope", "best cell tIoU"] + \
        [f"{s}: positives share (per instance)" for s in sources]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["rows"]:
        cells = [r["bin"], f"{r['instances']} ({100 * r['instance_share']:.0f} %)", f"{r['median_seconds']:.1f}",
                 f"{r['median_steps']:.1f}", f"{r['mean_envelope']:.2f}", f"{r['best_cell_tiou']:.2f}"]
        cells += [f"{100 * r[f'{s}_positive_share']:.0f} % ({r[f'{s}_positives_per_instance']:.1f})" for s in sources]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILE_VIDEOS), default="anet-cpu")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random and SIS samples")
    args = parser.parse_args(argv)
    print(table(analyse(args.profile, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
