"""DETAD's three figures, drawn with matplotlib from a Diagnosis, as DETAD's plot functions lay them out
(HumamAlwassel/DETAD src/sensitivity_analysis.py plot_sensitivity_analysis, false_positive_analysis.py
plot_fp_analysis, false_negative_analysis.py plot_fn_analysis), without LaTeX text rendering.

Each *_data function returns the numbers behind the bars (percent), and each *_figure draws exactly
those, so a test can compare the figure's bars with the data and the data with the Diagnosis.
"""

from __future__ import annotations

import os

import numpy as np

from rcl_kernels._optional import require
from rcl_kernels.evaluation.diagnose import ERROR_TYPES, Diagnosis

# The object API: no pyplot state, no backend choice imposed.
Figure = require("matplotlib.figure", "DETAD's figures (rcl_kernels.evaluation.diagnose_figures)").Figure

# DETAD's colours: characteristics (sensitivity, false negatives) and error types.
CHARACTERISTIC_COLORS = {"context-size": "#7fc97f", "context-distance": "#beaed4", "agreement": "#fdc086",
                         "coverage": "#386cb0", "length": "#f0027f", "num-instances": "#bf5b17"}
CHARACTERISTIC_TITLES = {"context-size": "Context Size", "context-distance": "Context Distance",
                         "agreement": "Agreement", "coverage": "Coverage", "length": "Length",
                         "num-instances": "# Instances"}
ERROR_COLORS = ("#33a02c", "#b2df8a", "#1f78b4", "#fb9a99", "#e31a1c", "#a6cee3")
FIGURE_NAMES = ("sensitivity_analysis", "false_positive_analysis", "false_negative_analysis")


def sensitivity_data(diag: Diagnosis) -> dict:
    """{"base": average-mAP_N %, "bars": [(characteristic, bin, average-mAP_N %)],
    "relative": {characteristic: (min / base, max / base)}} (empty bins left out, as DETAD's groupby)."""
    base = 100 * diag.average_map_n
    bars = [(name, label, 100 * v) for name, bins in diag.sensitivity.items() for label, v in bins.items()
            if not np.isnan(v)]
    relative = {}
    for name in diag.sensitivity:
        values = [v for n, _, v in bars if n == name]
        if values:
            relative[name] = (min(values) / base, max(values) / base)
    return {"base": base, "bars": bars, "relative": relative}


def false_positive_data(diag: Diagnosis) -> dict:
    """{"profile": (10, 6) cumulative % per group 1G..10G (stacked bars), "labels", "gains": {type: %}}."""
    return {"profile": np.cumsum(np.nan_to_num(diag.false_positive_profile) * 100, axis=1),
            "labels": [f"{g + 1}G" for g in range(len(diag.false_positive_profile))],
            "gains": {k: 100 * v for k, v in diag.average_map_gain.items()}}


def false_negative_data(diag: Diagnosis) -> dict:
    """{"bars": [(characteristic, bin, false-negative %)]}."""
    return {"bars": [(name, label, 100 * v) for name, bins in diag.false_negative.items() for label, v in bins.items()]}


def _grouped_bars(ax, bars, fontsize: float) -> None:
    """Bars grouped by characteristic with a gap and a dotted line between groups, as DETAD draws them."""
    x, ticks, names = 0, [], list(dict.fromkeys(n for n, _, _ in bars))
    for j, name in enumerate(names):
        group = [(label, v) for n, label, v in bars if n == name]
        xs = np.arange(x, x + len(group))
        rects = ax.bar(xs, [v for _, v in group], color=CHARACTERISTIC_COLORS.get(name, "#999999"),
                       label=CHARACTERISTIC_TITLES.get(name, name))
        for r in rects:
            ax.text(r.get_x() + r.get_width() / 2, r.get_height() + 2.5, f"{r.get_height():.1f}", ha="center",
                    fontsize=fontsize / 1.15)
        ax.annotate(CHARACTERISTIC_TITLES.get(name, name), xy=(x, 100), fontsize=fontsize)
        if j < len(names) - 1:
            ax.axvline(xs[-1] + 1, linewidth=1.5, color="gray", linestyle="dotted")
        ticks += [(xi, label) for xi, (label, _) in zip(xs, group)]
        x = xs[-1] + 2
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.yaxis.grid(True, linestyle="dotted")
    ax.set_axisbelow(True)


def sensitivity_figure(diag: Diagnosis, fontsize: float = 14):
    data = sensitivity_data(diag)
    fig = Figure(figsize=(17.5, 6))
    grid = fig.add_gridspec(1, 4)
    ax = fig.add_subplot(grid[:-1])
    _grouped_bars(ax, data["bars"], fontsize)
    ax.axhline(data["base"], linestyle="--", color="k")
    ax.set_ylabel("Average-mAP$_N$ (%)", fontsize=fontsize)
    ax.set_ylim(0, 100)
    rel = fig.add_subplot(grid[-1:])
    for i, (name, (lo, hi)) in enumerate(data["relative"].items()):
        rel.plot([i, i], [lo, hi], linestyle="-", marker="_", mew=5, markersize=25, lw=8,
                 color=CHARACTERISTIC_COLORS.get(name, "#999999"))
        for y in (lo, hi):
            rel.annotate(f"{y:.1f}", xy=(i + 0.1, y + 0.05), fontsize=fontsize / 1.1)
    rel.axhline(1.0, linestyle="--", color="k", zorder=0)
    if data["relative"]:
        lows, highs = zip(*data["relative"].values())
        rel.set_ylim(min(lows) * 0.8, max(highs) * 1.2)  # as DETAD
        rel.set_xlim(-0.5, len(data["relative"]) - 0.1)
    rel.set_xticks(range(len(data["relative"])), [CHARACTERISTIC_TITLES.get(n, n) for n in data["relative"]],
                   rotation=90)
    rel.set_ylabel("Average-mAP$_N$\nRelative Change", fontsize=fontsize)
    fig.tight_layout()
    return fig, data


def false_positive_figure(diag: Diagnosis, fontsize: float = 14):
    data = false_positive_data(diag)
    fig = Figure(figsize=(10, 4.42))
    grid = fig.add_gridspec(1, 5, wspace=1.75)
    ax = fig.add_subplot(grid[:-2])
    profile = data["profile"]
    index = np.linspace(0, 0.85 * len(profile), len(profile))
    for i in range(profile.shape[1])[::-1]:  # tallest (cumulative) first, the others drawn over it
        ax.bar(index, profile[:, i], 1, color=ERROR_COLORS[i], label=ERROR_TYPES[i], zorder=0)
    ax.legend(loc=(-0.15, 1.15), ncol=3, fontsize=fontsize / 1.2, edgecolor="k")
    ax.set_xticks(index, data["labels"], rotation=90)
    ax.set_ylim(0, 100)
    ax.set_xlabel("Top Predictions", fontsize=fontsize)
    ax.set_ylabel("Error Breakdown (%)", fontsize=fontsize)
    ax.set_title("False Positive Profile", fontsize=fontsize)
    impact = fig.add_subplot(grid[-2:])
    gains = list(data["gains"].values())
    for i, (name, value) in enumerate(data["gains"].items()):
        rect = impact.bar([i * 1.1], [value], 1, color=ERROR_COLORS[i + 1], label=name)[0]
        impact.text(rect.get_x() + rect.get_width() / 2, value + 0.1, f"{value:.1f}", ha="center",
                    fontsize=fontsize / 1.1)
    impact.set_xticks([])
    top = np.ceil(max(gains) * 1.1) if gains and max(gains) > 0 else 1.0
    impact.set_ylim(0, top)
    impact.set_xlabel("Error Type", fontsize=fontsize)
    impact.set_ylabel("Average-mAP$_N$\nImprovement (%)", fontsize=fontsize)
    impact.set_title("Removing Error Impact", fontsize=fontsize)
    return fig, data


def false_negative_figure(diag: Diagnosis, fontsize: float = 14):
    data = false_negative_data(diag)
    fig = Figure(figsize=(10, 3.5))
    ax = fig.subplots()
    _grouped_bars(ax, data["bars"], fontsize)
    ax.set_ylabel("False Negative (%)", fontsize=fontsize)
    ax.set_ylim(0, 110)
    fig.tight_layout()
    return fig, data


def save_figures(diag: Diagnosis, folder: str | os.PathLike, formats=("png", "pdf")) -> list[str]:
    """Write the three figures to folder/<name>.<format>; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, draw in zip(FIGURE_NAMES, (sensitivity_figure, false_positive_figure, false_negative_figure)):
        fig, _ = draw(diag)
        for fmt in formats:
            path = os.path.join(os.fspath(folder), f"{name}.{fmt}")
            fig.savefig(path, bbox_inches="tight")
            paths.append(path)
    return paths
