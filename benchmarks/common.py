"""Timing, memory and result-writing helpers shared by every benchmark script.

A benchmark module exposes `run(cfg: BenchConfig) -> list[dict]` (rows made by `row()`), and can
be run alone (`python benchmarks/bench_X.py`) or from benchmarks/run.py, the main job.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from rcl_kernels import keep_freed_memory

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclass
class BenchConfig:
    device: torch.device
    quick: bool = False  # reduced problem sizes (the CPU run, and smoke tests)
    warmup: int = 3
    reps: int = 10
    only: set[str] = field(default_factory=set)  # benchmark names to run; empty = all

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class Timing:
    ms: float  # median
    ms_p20: float
    ms_p80: float
    peak_mib: float | None  # peak extra device memory during one call (CUDA only)

    def scaled(self, factor: float) -> "Timing":
        """The times of a subset's run scaled to the whole (peak memory is per call: unchanged)."""
        return Timing(ms=self.ms * factor, ms_p20=self.ms_p20 * factor, ms_p80=self.ms_p80 * factor,
                      peak_mib=self.peak_mib)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], object], cfg: BenchConfig, *, reps: int | None = None,
            warmup: int | None = None) -> Timing:
    """Median wall time of fn() over reps runs after warmups (CUDA events on a GPU), plus the
    peak memory allocated beyond what was live before the call."""
    reps = cfg.reps if reps is None else reps
    warmup = cfg.warmup if warmup is None else warmup
    for _ in range(warmup):
        fn()
    _sync(cfg.device)
    peak = None
    if cfg.is_cuda:
        gc.collect()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(cfg.device)
        torch.cuda.reset_peak_memory_stats(cfg.device)
        fn()
        torch.cuda.synchronize(cfg.device)
        peak = (torch.cuda.max_memory_allocated(cfg.device) - base) / 2**20
    times = []
    for _ in range(reps):
        if cfg.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    q = statistics.quantiles(times, n=5) if len(times) >= 2 else [times[0]] * 4
    return Timing(ms=statistics.median(times), ms_p20=q[0], ms_p80=q[3], peak_mib=peak)


def row(op: str, problem: str, impl: str, mode: str, timing: Timing | None, *, ours: bool,
        dtype: str = "float32", skipped: str | None = None, **extra) -> dict:
    """One result: `impl` of `op` on `problem` in `mode` ("fwd", "fwd+bwd", ...). ours=False marks
    a baseline. A skipped row (timing None) says why in `skipped`."""
    out = {"op": op, "problem": problem, "impl": impl, "mode": mode, "dtype": dtype, "ours": ours,
           "ms": None, "ms_p20": None, "ms_p80": None, "peak_mib": None, "skipped": skipped}
    if timing is not None:
        out.update(ms=timing.ms, ms_p20=timing.ms_p20, ms_p80=timing.ms_p80, peak_mib=timing.peak_mib)
    out.update(extra)
    return out


def try_measure(fn: Callable[[], object], cfg: BenchConfig, **kw) -> tuple[Timing | None, str | None]:
    """measure(), turning out-of-memory into a skip reason instead of a crash."""
    try:
        return measure(fn, cfg, **kw), None
    except torch.OutOfMemoryError as exc:
        gc.collect()
        if cfg.is_cuda:
            torch.cuda.empty_cache()
        return None, f"out of memory ({str(exc).splitlines()[0][:120]})"


def torchvision_ops():
    """(torchvision.ops, None), or (None, why not): a torchvision built for another torch raises
    RuntimeError at import, not ImportError."""
    try:
        import torchvision.ops
    except ImportError:
        return None, "torchvision not installed"
    except RuntimeError as exc:
        return None, f"torchvision unusable with torch {torch.__version__}: {str(exc).splitlines()[0][:100]}"
    return torchvision.ops, None


def environment(device: torch.device) -> dict:
    env = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "device_type": device.type,
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "git_commit": _git_commit(),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["sm_count"] = props.multi_processor_count
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["driver"] = _driver_version()
    return env


def _git_commit() -> str | None:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.check_output(["git", "-C", root, "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _driver_version() -> str | None:
    try:
        return subprocess.check_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       text=True, stderr=subprocess.DEVNULL).strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None


def ratio_table(rows: list[dict]) -> str:
    """Markdown: for each (op, problem, mode, dtype), each of our implementations against each
    baseline, as speed-up (baseline time / ours) and memory ratio (baseline peak / ours)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["op"], r["problem"], r["mode"], r["dtype"]), []).append(r)
    lines = ["| op | problem | mode | dtype | ours | ms | baseline | ms | speed-up | memory ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (op, problem, mode, dtype), rs in groups.items():
        ours = [r for r in rs if r["ours"] and r["ms"] is not None]
        bases = [r for r in rs if not r["ours"]]
        for o in ours:
            for b in bases:
                if b["ms"] is None:
                    lines.append(f"| {op} | {problem} | {mode} | {dtype} | {o['impl']} | {o['ms']:.3f} | "
                                 f"{b['impl']} | skipped: {b['skipped']} | | |")
                    continue
                mem = ""
                if o.get("peak_mib") and b.get("peak_mib"):
                    mem = f"{b['peak_mib'] / max(o['peak_mib'], 1e-3):.1f}x"
                lines.append(f"| {op} | {problem} | {mode} | {dtype} | {o['impl']} | {o['ms']:.3f} | {b['impl']} | "
                             f"{b['ms']:.3f} | {b['ms'] / o['ms']:.2f}x | {mem} |")
    return "\n".join(lines)


def default_results_dir(env: dict) -> str:
    """benchmarks/results/<device>-<date>: the GPU's name, or "cpu"."""
    tag = env["device"].replace(" ", "_").replace("/", "_") if env["device_type"] == "cuda" else "cpu"
    return os.path.join(RESULTS_DIR, f"{tag}-{env['date'][:10]}")


def write_results(out_dir: str, json_name: str, payload: dict, md_name: str, markdown: str) -> str:
    """Write payload as out_dir/<json_name>.json and markdown as out_dir/<md_name>.md (the folder
    is created); returns the folder. Every benchmark writes its results through this."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{json_name}.json"), "w") as fh:
        json.dump(payload, fh, indent=1)
    with open(os.path.join(out_dir, f"{md_name}.md"), "w") as fh:
        fh.write(markdown)
    return out_dir


def standalone_main(name: str, run: Callable[[BenchConfig], list[dict]], problems: dict | None = None) -> None:
    """Command line for running one benchmark module on its own."""
    parser = argparse.ArgumentParser(description=f"rcl_kernels benchmark: {name}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="reduced sizes (default on the CPU)")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results/<device>-<date>)")
    args = parser.parse_args()
    keep_freed_memory()  # as benchmarks/run.py and the package's commands do
    device = torch.device(args.device)
    cfg = BenchConfig(device=device, quick=args.quick or device.type == "cpu", reps=args.reps)
    rows = run(cfg)
    print(ratio_table(rows))
    env = environment(device)
    markdown = (f"# {name}\n\n{env['device']}, torch {env['torch']}, triton {env['triton']}, "
                f"commit {env['git_commit']}, {env['date']}\n\n{ratio_table(rows)}\n")
    payload = {"environment": env, "problems": problems or {}, "rows": rows}
    print("written to", write_results(args.out or default_results_dir(env), name, payload, name, markdown))
