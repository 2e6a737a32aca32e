"""Reporting a run: metrics as JSON, and as a markdown table."""

from __future__ import annotations

import json
import os


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)


def metrics_table(metrics: dict) -> str:
    """Markdown: mAP (%) per tIoU and average, then per length bin."""
    t = metrics["tiou_thresholds"]
    lines = ["| tIoU | " + " | ".join(f"{x:g}" for x in t) + " | avg |", "|---" * (len(t) + 2) + "|",
             "| mAP | " + " | ".join(f"{100 * m:.2f}" for m in metrics["map"])
             + f" | {100 * metrics['average_map']:.2f} |"]
    for row in metrics.get("by_length", []):
        lines.append(f"| len {row['bin']} ({row['instances']}) | " + " | ".join(f"{100 * m:.2f}" for m in row["map"])
                     + f" | {100 * row['average_map']:.2f} |")
    return "\n".join(lines)
