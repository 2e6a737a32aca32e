"""mmaction2's BMN (open-mmlab/mmaction2 1.2.0) against rcl_kernels.integrations.mmaction2.BMN, same
weights, at the published ActivityNet config (T = 100, N = 32 x 3, 400-dim features, 256 / 128 /
512 channels). Every figure comes from a fresh process (benchmarks/cpu_memory.py reads its peak
resident memory: the first call's VmHWM above what the built model and inputs hold).

Rows (op "mmaction2_bmn"):
  train_step_B{2,8}   loss (labels included) + backward + Adam step; mmaction2 vs ours
  inference_B{2,8}    forward (mode "tensor") under no_grad
  postprocess_500     proposals + Soft-NMS from the same 500 synthetic confidence maps: mmaction2's
                      per-video predict code (its forward replaced by the given maps) against
                      mmaction2_proposals.bmn_proposals on batches of 8; the proposals are compared
  test_pipeline_500   the whole test path on 500 videos: mmaction2's predict one video per call
                      against ours on batches of 8 (forward + batched post-processing)
Where mmaction2 is slow, it runs on the first videos only (timed_videos) and is scaled to the set;
every pipeline row also projects its time to ActivityNet validation's 4,728 videos. On the CPU
(quick) each mmaction2 figure is one call (ours: median of 3) and fewer videos are timed; --full
runs the median of 3 everywhere. Where mmaction2 is not installed, every row says so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import torch

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)

from common import BenchConfig, Timing, row, standalone_main  # noqa: E402
from cpu_memory import cpu_peak_mib  # noqa: E402


def _load_support():
    """tests/mmaction2_support.py (the stand-in for the 1.2.0 wheel's missing drn subpackage), by
    path: tests/ is not put on sys.path here."""
    path = os.path.join(ROOT, "tests", "mmaction2_support.py")
    spec = importlib.util.spec_from_file_location("mmaction2_support", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


support = _load_support()

OP = "mmaction2_bmn"
ANET_VALIDATION_VIDEOS = 4728
# configs/_base_/models/bmn_400x100.py, with BMN's default hidden sizes (256 / 128 / 512)
PUBLISHED = dict(temporal_dim=100, boundary_ratio=0.5, num_samples=32, num_samples_per_bin=3, feat_dim=400,
                 soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9, post_process_top_k=100)
IMPLS = {"mmaction2": False, "rcl_kernels": True}  # impl -> ours
WORKER_TIMEOUT_S = 900


def problems(quick: bool) -> dict:
    return {
        "model": dict(config=PUBLISHED, batches=(2, 8), tasks=("train_step", "inference"),
                      reps={"mmaction2": 1 if quick else 3, "rcl_kernels": 3}),
        "pipeline": dict(config=PUBLISHED, videos=500, batch=8, postprocess_stock_videos=100 if quick else 500,
                         pipeline_stock_videos=4 if quick else 50, pipeline_ours_videos=16 if quick else 500),
    }


def run(cfg: BenchConfig) -> list[dict]:
    p = problems(cfg.quick)
    missing = support.mmaction2_missing()
    rows = []
    for task in p["model"]["tasks"]:
        for batch in p["model"]["batches"]:
            for impl, ours in IMPLS.items():
                spec = dict(kind="model", impl=impl, task=task, batch=batch, config=p["model"]["config"],
                            reps=p["model"]["reps"][impl], device=str(cfg.device))
                result, skipped = (None, missing) if missing else _in_fresh_process(spec)
                timing = None if result is None else Timing(ms=result["ms"], ms_p20=min(result["times_ms"]),
                                                            ms_p80=max(result["times_ms"]), peak_mib=result["peak_mib"])
                rows.append(row(OP, f"{task}_B{batch}", impl, task, timing, ours=ours, skipped=skipped,
                                batch=batch, reps=spec["reps"], times_ms=result and result["times_ms"]))
    pipe = p["pipeline"]
    spec = dict(kind="pipeline", device=str(cfg.device), **pipe)
    result, skipped = (None, missing) if missing else _in_fresh_process(spec)
    for mode in ("postprocess", "test_pipeline"):
        for impl, ours in IMPLS.items():
            r = result and result[mode][impl]
            timing = None if r is None else Timing(ms=r["ms"], ms_p20=r["ms"], ms_p80=r["ms"], peak_mib=None)
            extra = {} if r is None else {k: v for k, v in r.items() if k != "ms"}
            if r is not None:
                extra["projected_4728_s"] = r["ms"] / pipe["videos"] * ANET_VALIDATION_VIDEOS / 1e3
            rows.append(row(OP, f"{mode}_{pipe['videos']}", impl, mode, timing, ours=ours, skipped=skipped,
                            videos=pipe["videos"], **extra))
    return rows


def _in_fresh_process(spec: dict) -> tuple[dict | None, str | None]:
    """Run one figure in a new interpreter; (its result, None) or (None, why it failed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return None, f"worker ran past {WORKER_TIMEOUT_S} s"
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):]), None
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return None, f"worker failed (exit {proc.returncode}): {tail[:200]}"


# ----------------------------------------------------------------- in the fresh process

def _models(config: dict, impls, device):
    """{impl: model} with the same weights (mmaction2's, copied into ours)."""
    stock_cls = support.import_mmaction_models().localizers.BMN
    from rcl_kernels.integrations.mmaction2 import BMN

    models = {}
    for impl in impls:
        torch.manual_seed(0)
        models[impl] = (stock_cls if impl == "mmaction2" else BMN)(**config)
    if "mmaction2" in models and "rcl_kernels" in models:
        models["rcl_kernels"].load_state_dict(models["mmaction2"].state_dict(), strict=True)
    return {k: m.to(device) for k, m in models.items()}


def _samples(batch: int, seed: int = 0, *, start: int = 0):
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(seed)
    out = []
    for v in range(start, start + batch):
        sample = ActionDataSample()
        sample.gt_instances = InstanceData(
            gt_bbox=torch.rand(1 + v % 3, 2, generator=gen, dtype=torch.float64).sort(dim=1).values)
        frames = 1500 + 37 * v
        sample.set_metainfo(dict(video_name=f"v_{v:05d}", duration_frame=frames, duration_second=frames / 30.0,
                                 feature_frame=frames // 16 * 16))
        out.append(sample)
    return out


def _model_figure(spec: dict) -> dict:
    device = torch.device(spec["device"])
    model = _models(spec["config"], [spec["impl"]], device)[spec["impl"]]
    B, C, T = spec["batch"], spec["config"]["feat_dim"], spec["config"]["temporal_dim"]
    inputs = list(torch.randn(B, C, T, generator=torch.Generator().manual_seed(1)).to(device))
    samples = _samples(B)
    if spec["task"] == "train_step":
        model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)

        def call():
            loss = model(inputs, samples, mode="loss")["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()
    else:
        model.eval()

        def call():
            with torch.no_grad():
                return model(inputs, None, mode="tensor")

    times, peak = [], None
    for i in range(spec["reps"]):
        t0 = time.perf_counter()
        if i == 0 and device.type == "cpu":
            peak = cpu_peak_mib(call)  # the first call of a fresh process: nothing freed is reused yet
        else:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            call()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        times.append((time.perf_counter() - t0) * 1e3)
    return dict(ms=statistics.median(times), times_ms=times, peak_mib=peak)


def _synthetic_maps(videos: int, T: int, seed: int = 2):
    """Confidence maps (V, 2, T, T), start and end (V, T) in (0, 1), as BMN's sigmoids give."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(videos, 2, T, T, generator=gen), torch.rand(videos, T, generator=gen),
            torch.rand(videos, T, generator=gen))


def _same_proposals(a: dict, b: dict) -> tuple[bool, float]:
    """Same video, the same proposals in the same order (segments to 1e-5 s); the largest score gap."""
    pa, pb = a["proposal_list"], b["proposal_list"]
    if a["video_name"] != b["video_name"] or len(pa) != len(pb):
        return False, float("inf")
    gap = max((abs(x["score"] - y["score"]) for x, y in zip(pa, pb)), default=0.0)
    same = all(max(abs(u - v) for u, v in zip(x["segment"], y["segment"])) <= 1e-5 for x, y in zip(pa, pb))
    return same and gap <= 1e-6, gap


def _pipeline_figures(spec: dict) -> dict:
    from rcl_kernels.integrations.mmaction2_proposals import bmn_proposals

    device = torch.device(spec["device"])
    config, V, B = spec["config"], spec["videos"], spec["batch"]
    models = _models(config, list(IMPLS), device)
    stock, ours = models["mmaction2"].eval(), models["rcl_kernels"].eval()
    metas = [s.metainfo for s in _samples(V)]
    post_kw = dict(soft_nms_alpha=config["soft_nms_alpha"], soft_nms_low_threshold=config["soft_nms_low_threshold"],
                   soft_nms_high_threshold=config["soft_nms_high_threshold"],
                   post_process_top_k=config["post_process_top_k"], feature_extraction_interval=16)
    samples = _samples(V)
    out = {}

    # post-processing alone, on the same maps
    cm, start, end = _synthetic_maps(V, config["temporal_dim"])
    n_stock = min(spec["postprocess_stock_videos"], V)
    t0 = time.perf_counter()
    stock_props = []
    for v in range(n_stock):
        stock._forward = lambda x, v=v: (cm[v:v + 1], start[v:v + 1], end[v:v + 1])  # predict's own code after it
        stock_props += stock.predict(None, [samples[v]])
    stock_ms = (time.perf_counter() - t0) * 1e3
    del stock._forward
    t0 = time.perf_counter()
    ours_props = []
    for b0 in range(0, V, B):
        ours_props += bmn_proposals(cm[b0:b0 + B], start[b0:b0 + B], end[b0:b0 + B], metas[b0:b0 + B], **post_kw)
    ours_ms = (time.perf_counter() - t0) * 1e3
    checks = [_same_proposals(a, b) for a, b in zip(stock_props, ours_props)]
    out["postprocess"] = {
        "mmaction2": dict(ms=stock_ms * V / n_stock, timed_videos=n_stock),
        "rcl_kernels": dict(ms=ours_ms, timed_videos=V, videos_compared=len(checks),
                            videos_with_same_proposals=sum(same for same, _ in checks),
                            max_score_gap=max((gap for _, gap in checks), default=0.0)),
    }

    # the whole test path: forward + post-processing
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(max(spec["pipeline_stock_videos"], spec["pipeline_ours_videos"]), config["feat_dim"],
                        config["temporal_dim"], generator=gen).to(device)
    n_stock = min(spec["pipeline_stock_videos"], V)
    t0 = time.perf_counter()
    with torch.no_grad():
        for v in range(n_stock):
            stock([feats[v]], [samples[v]], mode="predict")
    stock_ms = (time.perf_counter() - t0) * 1e3
    n_ours = min(spec["pipeline_ours_videos"], V)
    t0 = time.perf_counter()
    with torch.no_grad():
        for b0 in range(0, n_ours, B):
            ours(list(feats[b0:b0 + B]), samples[b0:b0 + B], mode="predict")
    ours_ms = (time.perf_counter() - t0) * 1e3
    out["test_pipeline"] = {"mmaction2": dict(ms=stock_ms * V / n_stock, timed_videos=n_stock, batch=1),
                            "rcl_kernels": dict(ms=ours_ms * V / n_ours, timed_videos=n_ours, batch=B)}
    return out


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = _model_figure(spec) if spec["kind"] == "model" else _pipeline_figures(spec)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        standalone_main(OP, run, problems(True))
