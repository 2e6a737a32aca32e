"""The main job: every op benchmark and the end-to-end model against pure PyTorch, in one run.

    python benchmarks/run.py                 # all benchmarks on the default device
    python benchmarks/run.py --only soft_nms # one benchmark (repeatable flag)
    python benchmarks/run.py --compare benchmarks/results/<dir>/results.json

Writes benchmarks/results/<device>-<date>/: results.json (environment, ceilings, problem sizes,
every row; with a CUDA device or --triton-compile also "triton_compile", the registers and spills
of every Triton kernel for sm_90, benchmarks/triton_compile.py), summary.md (ratio tables) and
PNG plots (benchmarks/plots.py). On a CPU the problem
sizes are reduced so the whole run ends within about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
import warnings

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, default_results_dir, environment, ratio_table, write_results  # noqa: E402
from ceilings import measure_ceilings  # noqa: E402
from triton_compile import compile_report, markdown as compile_markdown

from rcl_kernels import keep_freed_memory  # noqa: E402

# name -> module with run(cfg) (and optionally sweep(cfg) for the plots)
BENCHMARKS = {
    "segment_interp": "bench_segment_interp",
    "score_anchors": "bench_score_anchors",
    "soft_nms": "bench_soft_nms",
    "roi_align_1d": "bench_roi_align_1d",
    "boundary_matching": "bench_boundary_matching",
    "evaluation": "bench_evaluation",
    "model": "bench_model",
    "detect_command": "bench_detect_command",
    "mmaction2": "bench_mmaction2",
}
# Benchmark names of an earlier release, accepted by --only for one release with a warning.
RENAMED_BENCHMARKS = {"anchor_scoring": "score_anchors"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", action="append", default=[], choices=sorted(BENCHMARKS) + sorted(RENAMED_BENCHMARKS),
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--full", action="store_true", help="full problem sizes even on a CPU")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 10 on GPU, 3 on CPU)")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the size sweeps behind the plots")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--compare", metavar="OLD_JSON", help="report what got slower than in OLD_JSON")
    parser.add_argument("--out", default=None, help="output folder (default benchmarks/results/<device>-<date>)")
    parser.add_argument("--triton-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="report registers and spills of every Triton kernel for sm_90 (compile-only, about a "
                             "minute; default: on with a CUDA device)")
    args = parser.parse_args(argv)
    # As the package's commands do: large tensors reuse resident pages instead of faulting fresh
    # ones in at every call (rcl_kernels/_freed_memory.py); rows that need fresh pages ask for them.
    keep_freed_memory()
    for i, name in enumerate(args.only):
        if name in RENAMED_BENCHMARKS:
            warnings.warn(f"benchmark {name!r} is now called {RENAMED_BENCHMARKS[name]!r}", DeprecationWarning,
                          stacklevel=1)
            args.only[i] = RENAMED_BENCHMARKS[name]

    device = torch.device(args.device)
    quick = device.type == "cpu" and not args.full
    reps = args.reps or (10 if device.type == "cuda" else 3)
    cfg = BenchConfig(device=device, quick=quick, warmup=3 if device.type == "cuda" else 1, reps=reps,
                      only=set(args.only))
    env = environment(device)
    print(f"rcl_kernels benchmarks on {env['device']} (torch {env['torch']}, triton {env['triton']}, "
          f"{'reduced CPU sizes' if quick else 'full sizes'})", flush=True)

    ceilings = measure_ceilings(cfg)
    names = args.only or list(BENCHMARKS)
    out_dir = args.out or default_results_dir(env)
    os.makedirs(out_dir, exist_ok=True)
    result = {"environment": env, "ceilings": ceilings, "problems": {}, "skipped_benchmarks": {}, "rows": [],
              "sweeps": [], "wall_s": 0.0}
    t_start = time.time()
    for name in tqdm(names, desc="benchmarks", unit="op"):
        t0 = time.time()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            rows = module.run(cfg)
            sweeps = module.sweep(cfg) if not args.no_sweeps and hasattr(module, "sweep") else []
        except Exception as exc:  # one broken benchmark must not cost the others' results
            traceback.print_exc()
            result["skipped_benchmarks"][name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            continue
        add_ceiling_fractions(rows, ceilings)
        result["rows"] += rows
        result["sweeps"] += sweeps
        if hasattr(module, "problems"):
            result["problems"][name] = module.problems(quick)
        result["wall_s"] = time.time() - t_start
        # Written after every benchmark, so a run stopped by a time limit keeps what it finished.
        write_results(out_dir, "results", result, "summary", summary_markdown(result))
        tqdm.write(f"  {name}: {time.time() - t0:.0f} s")

    if args.triton_compile if args.triton_compile is not None else device.type == "cuda":
        result["triton_compile"] = compile_report()
        tqdm.write(f"  triton_compile: {result['triton_compile'].get('wall_s', 0):.0f} s")
    result["wall_s"] = time.time() - t_start
    write_results(out_dir, "results", result, "summary", summary_markdown(result))
    print(summary_markdown(result))
    if not args.no_plots:
        from plots import make_plots

        for path in make_plots(result, out_dir):
            print("plot:", path)
    print(f"results written to {out_dir} ({time.time() - t_start:.0f} s)")
    if args.compare:
        print(compare(args.compare, result["rows"]))
    return 1 if result["skipped_benchmarks"] else 0


def add_ceiling_fractions(rows: list[dict], ceilings: dict) -> None:
    """Each row that reports GB/s or TFLOP/s also gets its fraction of the measured ceiling: the
    copy bandwidth measured next to the row where the benchmark did (copy_gbps_same_run), else
    the one measured at the start of the run. Rows with a rate of their own work and a measured
    ceiling of it (rate_per_s, ceiling_rate_per_s) get that fraction."""
    for r in rows:
        copy = r.get("copy_gbps_same_run") or ceilings.get("copy_gbps")
        if r.get("gbps") and copy:
            r["fraction_of_copy_bandwidth"] = r["gbps"] / copy
        if r.get("rate_per_s") and r.get("ceiling_rate_per_s"):
            r["fraction_of_rate_ceiling"] = r["rate_per_s"] / r["ceiling_rate_per_s"]
        if r.get("tflops") and ceilings.get("matmul_tflops"):
            key = "bf16" if r["dtype"] == "bfloat16" else "fp32"
            ceiling = ceilings["matmul_tflops"].get(key)
            if ceiling:
                r["fraction_of_matmul_peak"] = r["tflops"] / ceiling


def summary_markdown(result: dict) -> str:
    env, ceil = result["environment"], result["ceilings"]
    lines = [f"# rcl_kernels benchmarks: {env['device']}", "",
             f"torch {env['torch']} (CUDA {env['cuda']}), triton {env['triton']}, commit {env['git_commit']}, "
             f"{env['date']}, {env['cpu_threads']} CPU threads", "",
             "Ceilings measured in this run: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in ceil.items()), ""]
    for name, why in result["skipped_benchmarks"].items():
        lines.append(f"- benchmark {name} skipped: {why}")
    lines += ["", "Our kernels against the ceilings measured in this run:", "", ceiling_table(result["rows"]), "",
              "Speed-up = baseline time / our time, memory ratio = baseline peak / our peak (CUDA only).", "",
              ratio_table(result["rows"]), ""]
    if "triton_compile" in result:
        lines += [compile_markdown(result["triton_compile"]), ""]
    return "\n".join(lines)


def ceiling_table(rows: list[dict]) -> str:
    """Markdown: each of our rows with a rate, the rate and its fraction of the ceiling."""
    lines = ["| op | problem | impl | mode | dtype | ms | achieved | ceiling | fraction |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["ours"] or r["ms"] is None:
            continue
        head = f"| {r['op']} | {r['problem']} | {r['impl']} | {r['mode']} | {r['dtype']} | {r['ms']:.3f} |"
        if "fraction_of_copy_bandwidth" in r:
            copy = r["gbps"] / r["fraction_of_copy_bandwidth"]
            lines.append(f"{head} {r['gbps']:.1f} GB/s | copy {copy:.1f} GB/s | {r['fraction_of_copy_bandwidth']:.0%} |")
        if "fraction_of_matmul_peak" in r:
            peak = r["tflops"] / r["fraction_of_matmul_peak"]
            lines.append(f"{head} {r['tflops']:.3f} TFLOP/s | matmul {peak:.3f} TFLOP/s | "
                         f"{r['fraction_of_matmul_peak']:.0%} |")
        if "fraction_of_rate_ceiling" in r:
            lines.append(f"{head} {r['rate_per_s'] / 1e6:.2f} M {r['rate_unit']}/s | {r['ceiling_name']} "
                         f"{r['ceiling_rate_per_s'] / 1e6:.2f} M/s | {r['fraction_of_rate_ceiling']:.0%} |")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {x:.1f}" for k, x in v.items()) + "}"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def compare(old_path: str, rows: list[dict]) -> str:
    """Rows slower than in the old run by more than the run-to-run spread (the wider of the two
    runs' 20-80 % ranges), as text."""
    with open(old_path) as fh:
        old_rows = json.load(fh)["rows"]
    key = lambda r: (r["op"], r["problem"], r["impl"], r["mode"], r["dtype"])  # noqa: E731
    old = {key(r): r for r in old_rows if r.get("ms") is not None}
    lines = [f"compared with {old_path}:"]
    for r in rows:
        o = old.get(key(r))
        if o is None or r.get("ms") is None or not r["ours"]:
            continue
        spread = max(o["ms_p80"] - o["ms_p20"], r["ms_p80"] - r["ms_p20"])
        if r["ms"] - o["ms"] > spread:
            lines.append(f"  SLOWER {'/'.join(map(str, key(r)))}: {o['ms']:.3f} -> {r['ms']:.3f} ms "
                         f"(spread {spread:.3f} ms)")
    if len(lines) == 1:
        lines.append("  nothing got slower by more than the run-to-run spread")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
