"""End-to-end RCL and BMN: a training step and whole-test-set inference, fast kernels against the
pure-PyTorch reference backend (the same model and weights, backend="fast" / "reference"; the
model of each problem is build_model's for its `variant`: RCL by default, BMN for "bmn").

Rows (op "model"):
  train_step_*   forward + backward + Adam step of one batch (bf16 autocast on the GPU)
  inference_*    every item of a test set: scoring, refinement, boundary lookup, then Soft-NMS of
                 all videos (batched) into the top detections; the features are collated in memory
                 before timing, so data generation and loading are not timed.
On the CPU (quick) the problems are the THUMOS14-structured small config, inference on the first
20 test videos cropped to 512 steps (a subset: the reference backend is slow there); on the GPU
the full THUMOS14 test set (212 videos, 128-step windows) and the 4,728 ActivityNet validation
videos at T = 100 (random features: inference cost does not depend on their values), the
reference backend timed there on the first 1,024 videos and scaled to the set (timed_videos).
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, row, standalone_main, try_measure  # noqa: E402

from rcl_kernels.data.dataset import collate_videos  # noqa: E402
from rcl_kernels.models import ModelConfig, build_model  # noqa: E402
from rcl_kernels.models.profiles import PROFILES  # noqa: E402
from rcl_kernels.models.rcl import Detector  # noqa: E402
from rcl_kernels.models.postprocess import DetectionCollector  # noqa: E402

OP = "model"
# Full-size inference with the reference backend is timed on the first batches holding this many
# videos, then scaled to the whole set: it would otherwise take most of a GPU session's minutes.
REFERENCE_VIDEOS_FULL = 1024
IMPLS = (("fast kernels", "fast", True), ("reference (pure PyTorch)", "reference", False))
MODEL_NAMES = {"bmn": "BMN"}  # variant -> the name in the rows (RCL otherwise)


def profile_model(name: str, num_classes: int) -> dict:
    """The ModelConfig values of a --profile (rcl_kernels/models/profiles.py)."""
    keys = set(ModelConfig.__dataclass_fields__)
    return dict({k: v for k, v in PROFILES[name].items() if k in keys}, num_classes=num_classes)


def problems(quick: bool) -> dict:
    """Model sizes and data of each problem."""
    # the paper-size profiles (anet-paper: T = 100, 400-dim input; thumos-paper: 256-step windows of
    # 2048-dim features; both hidden 256, N = 32, M = 10), at batch 2 on the CPU and the paper's 16 on the GPU
    paper = {"train_step_anet_paper": dict(model=profile_model("anet-paper", 200), temporal_scale=100,
                                           batch=2 if quick else PROFILES["anet-paper"]["batch_size"]),
             "train_step_thumos_paper": dict(model=profile_model("thumos-paper", 20), window=256,
                                             batch=2 if quick else PROFILES["thumos-paper"]["batch_size"])}
    for p in paper.values():
        # the reference's step took 51 s (anet) and 148 s (thumos) on 1 CPU thread (2026-12-02):
        # one warmup and one timed step in quick mode
        if quick:
            p["reps"] = 1
    # the small THUMOS14 config of docs/model_results.md
    small = dict(feature_dim=64, hidden=32, encoder_stride=2, max_duration=32, num_samples=16, samples_per_point=2,
                 scorer_hidden=64, num_classes=20)
    anet = dict(feature_dim=400, hidden=256, encoder_stride=1, max_duration=100, num_samples=32, samples_per_point=3,
                scorer_hidden=512, num_classes=200, refine_state=128, refine_train_segments=256, candidates=500)
    # BMN as published for ActivityNet (T = D = 100, N = 32 x 3 samples, 512 / 128 PEM channels) and
    # a CPU-sized BMN (the ablations' docs/model_results.md config)
    bmn_anet = dict(variant="bmn", feature_dim=400, hidden=256, max_duration=100, num_samples=32, samples_per_point=3,
                    pem_channels=512, pem_hidden=128, num_classes=1)
    bmn_small = dict(variant="bmn", feature_dim=32, hidden=32, max_duration=50, num_samples=8, samples_per_point=3,
                     pem_channels=48, pem_hidden=32, num_classes=1)
    if quick:
        return {
            "train_step_thumos_small": dict(model=small, batch=8, window=128),
            "inference_thumos_small": dict(model=small, videos=20, max_steps=512, window=128, batch=16),
            "train_step_bmn_anet_small": dict(model=bmn_small, batch=8, temporal_scale=50),
            "inference_bmn_anet_small": dict(model=bmn_small, videos=64, temporal_scale=50, batch=32),
            **paper,
        }
    return {
        "train_step_thumos_small": dict(model=small, batch=8, window=128),
        "train_step_anet": dict(model=anet, batch=16, temporal_scale=100),
        "inference_thumos_test": dict(model=small, videos=None, max_steps=None, window=128, batch=64),
        "inference_anet_4728": dict(model=anet, videos=4728, temporal_scale=100, batch=128),
        "train_step_bmn_anet": dict(model=bmn_anet, batch=16, temporal_scale=100),
        "inference_bmn_anet_4728": dict(model=bmn_anet, videos=4728, temporal_scale=100, batch=32),
        **paper,
    }


def _autocast(cfg: BenchConfig):
    if cfg.is_cuda:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib

    return contextlib.nullcontext()


def _models(model_kw: dict, device) -> dict[str, Detector]:
    torch.manual_seed(0)
    fast = build_model(ModelConfig(**model_kw, backend="fast")).to(device)
    reference = build_model(ModelConfig(**model_kw, backend="reference")).to(device)
    reference.load_state_dict(fast.state_dict())
    return {"fast": fast, "reference": reference}


def _train_batch(p: dict, device):
    """A batch with THUMOS14-like instances: 2 to 4 per item, 5 to 60 steps long."""
    g = torch.Generator().manual_seed(0)
    B, C = p["batch"], p["model"]["feature_dim"]
    T = p.get("window") or p["temporal_scale"]
    features = torch.randn(B, C, T, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    G = 4
    length = 5 + torch.rand(B, G, generator=g) * min(55, T // 2)
    start = torch.rand(B, G, generator=g) * (T - length)
    instances = torch.stack([start, start + length], -1)
    labels = torch.randint(0, p["model"]["num_classes"], (B, G), generator=g)
    labels[:, 3] = -1
    return [t.to(device) for t in (features, mask, instances, labels)]


def _impl_name(p: dict, impl: str) -> str:
    return f"{MODEL_NAMES.get(p['model'].get('variant'), 'RCL')} {impl}"


def _time_train_step(model: Detector, batch: list, cfg: BenchConfig, reps: int | None = None):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    generator = torch.Generator(device=cfg.device)

    def step():
        generator.manual_seed(0)
        with _autocast(cfg):
            loss = model(*batch, generator=generator)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return try_measure(step, cfg, reps=reps, warmup=None if reps is None else 1)


def _train_rows(name: str, p: dict, cfg: BenchConfig) -> list[dict]:
    rows = []
    batch = _train_batch(p, cfg.device)
    for impl, backend, ours in IMPLS:
        timing, skipped = _time_train_step(_models(p["model"], cfg.device)[backend], batch, cfg, p.get("reps"))
        rows.append(row(OP, name, _impl_name(p, impl), "train step", timing, ours=ours, skipped=skipped,
                        dtype="bfloat16" if cfg.is_cuda else "float32", batch=p["batch"]))
    return rows


def _test_batches(p: dict, cfg: BenchConfig) -> list[dict]:
    """The collated batches of the test set, in memory."""
    if "temporal_scale" in p:  # ActivityNet-sized: random features, one video per item
        g = torch.Generator().manual_seed(1)
        batches = []
        for first in range(0, p["videos"], p["batch"]):
            n = min(p["batch"], p["videos"] - first)
            T, C = p["temporal_scale"], p["model"]["feature_dim"]
            batches.append({"features": torch.randn(n, C, T, generator=g), "mask": torch.ones(n, T, dtype=torch.bool),
                            "video_id": [f"v{first + i}" for i in range(n)],
                            "time_offset": torch.zeros(n, dtype=torch.float64),
                            "seconds_per_step": torch.ones(n, dtype=torch.float64),
                            "duration": torch.full((n,), float(T), dtype=torch.float64)})
        return batches
    from rcl_kernels.data import synthetic
    from rcl_kernels.data.windows import WindowedDataset

    videos = synthetic.thumos14("test", feature_dim=p["model"]["feature_dim"], max_videos=p["videos"],
                                max_steps=p["max_steps"], cache=True)
    windows = WindowedDataset(videos, p["window"], p["window"] // 2)
    items = [windows[i] for i in range(len(windows))]
    return [collate_videos(items[i:i + p["batch"]], pad_to=p["window"]) for i in range(0, len(items), p["batch"])]


def _first_videos(batches: list[dict], videos: int) -> list[dict]:
    """The leading batches that hold at least `videos` videos (all of them if fewer)."""
    seen, out = set(), []
    for batch in batches:
        if len(seen) >= videos:
            break
        out.append(batch)
        seen.update(batch["video_id"])
    return out


def run_inference(model: Detector, batches: list[dict], device, top_k: int, autocast) -> int:
    """Detections of every batch, merged per video by Soft-NMS; returns the number kept."""
    collector = DetectionCollector()
    with torch.no_grad():
        for batch in batches:
            neighbours = batch.get("window_neighbours")  # windows score each segment once, as detect does
            with autocast():
                candidates = model.detect(batch["features"].to(device, non_blocking=True),
                                          batch["mask"].to(device, non_blocking=True),
                                          neighbours=None if neighbours is None else neighbours.to(device))
            collector.add(candidates, batch)
    backend = "auto" if model.config.backend == "fast" else "reference"
    results = collector.results([str(i) for i in range(model.config.num_classes)], top_k=top_k, backend=backend)
    return sum(len(v) for v in results.values())


def _inference_rows(name: str, p: dict, cfg: BenchConfig) -> list[dict]:
    rows = []
    batches = _test_batches(p, cfg)
    models = _models(p["model"], cfg.device)
    top_k = 100 if "temporal_scale" in p else 200
    videos = len({v for b in batches for v in b["video_id"]})
    for impl, backend, ours in IMPLS:
        model = models[backend].eval()
        timed = batches if ours or cfg.quick else _first_videos(batches, REFERENCE_VIDEOS_FULL)
        timed_videos = len({v for b in timed for v in b["video_id"]})
        # Whole test sets: one warm-up pass (also fills caches) and few timed passes.
        timing, skipped = try_measure(
            lambda m=model, t=timed: run_inference(m, t, cfg.device, top_k, lambda: _autocast(cfg)),
            cfg, reps=max(1, min(cfg.reps, 3)), warmup=1)
        if timing is not None and timed_videos < videos:
            timing = timing.scaled(videos / timed_videos)
        rows.append(row(OP, name, _impl_name(p, impl), "inference", timing, ours=ours, skipped=skipped,
                        dtype="bfloat16" if cfg.is_cuda else "float32", videos=videos, timed_videos=timed_videos,
                        items=sum(len(b["video_id"]) for b in batches),
                        videos_per_s=(videos / (timing.ms / 1e3)) if timing else None))
    return rows


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    for name, p in problems(cfg.quick).items():
        t0 = time.time()
        rows += _train_rows(name, p, cfg) if name.startswith("train_step") else _inference_rows(name, p, cfg)
        print(f"  {name}: {time.time() - t0:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    standalone_main("model", run, problems(False))
