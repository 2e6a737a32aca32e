"""PNG plots from a benchmarks/run.py result: time and memory against problem size per backend
(the sweeps), and each kernel's position against the measured ceilings."""

from __future__ import annotations

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def make_plots(result: dict, out_dir: str) -> list[str]:
    paths = []
    sweeps = result.get("sweeps", [])
    # One figure per (op, swept variable, mode, dtype): time (and memory when measured) per impl.
    groups: dict[tuple, list[dict]] = {}
    for r in sweeps:
        if r.get("ms") is None:
            continue
        groups.setdefault((r["op"], r["sweep"], r["mode"], r["dtype"]), []).append(r)
    for (op, var, mode, dtype), rs in sorted(groups.items()):
        has_mem = any(r.get("peak_mib") for r in rs)
        fig, axes = plt.subplots(1, 2 if has_mem else 1, figsize=(11 if has_mem else 6, 4), squeeze=False)
        for impl in sorted({r["impl"] for r in rs}):
            pts = sorted((r[var], r["ms"], r.get("peak_mib")) for r in rs if r["impl"] == impl)
            style = "-o" if any(r["ours"] for r in rs if r["impl"] == impl) else "--s"
            axes[0][0].plot([p[0] for p in pts], [p[1] for p in pts], style, label=impl)
            if has_mem:
                axes[0][1].plot([p[0] for p in pts], [p[2] or 0 for p in pts], style, label=impl)
        for ax, ylabel in zip(axes[0], ["time (ms)", "peak extra memory (MiB)"]):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(var)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{op} {mode} {dtype} on {result['environment']['device']}")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{op}_{var}_{mode.replace('+', '_')}_{dtype}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    ceiling_path = _ceiling_plot(result, out_dir)
    if ceiling_path:
        paths.append(ceiling_path)
    return paths


def _ceiling_plot(result: dict, out_dir: str) -> str | None:
    """Bars: each of our kernels' achieved fraction of copy bandwidth or matmul peak."""
    items = []
    for r in result["rows"]:
        if not r["ours"]:
            continue
        for key, label in (("fraction_of_copy_bandwidth", "of copy GB/s"), ("fraction_of_matmul_peak", "of matmul peak")):
            if r.get(key):
                items.append((f"{r['op']} {r['problem']} {r['impl']} {r['mode']} {r['dtype']}\n({label})", r[key]))
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(items) + 1.5))
    ax.barh([i[0] for i in items], [100 * i[1] for i in items])
    ax.set_xlabel("% of the ceiling measured in the same run")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"Kernels against the ceilings on {result['environment']['device']}")
    fig.tight_layout()
    path = os.path.join(out_dir, "ceilings.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        res = json.load(fh)
    for p in make_plots(res, os.path.dirname(os.path.abspath(sys.argv[1]))):
        print(p)
