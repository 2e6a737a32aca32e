"""Markdown table comparing training runs: mAP per tIoU, average, and average mAP per length bin.

    python python/compare_runs.py runs/grid runs/rcl runs/rcl_norefine
(each argument: a run's output folder holding metrics.json, or the metrics.json itself)
"""

import argparse
import json
import os


def load(path: str) -> dict:
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.json")
    with open(path) as fh:
        return json.load(fh)


def table(names, runs) -> str:
    first = runs[0]
    t = first["tiou_thresholds"]
    bins = [row["bin"] for row in first["by_length"]]
    head = ["run"] + [f"mAP@{x:g}" for x in t] + ["avg"] + [f"avg, len {b} ({row['instances']})"
                                                             for b, row in zip(bins, first["by_length"])]
    head += ["train s", "test s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in zip(names, runs):
        cells = [name] + [f"{100 * v:.1f}" for v in m["map"]] + [f"{100 * m['average_map']:.1f}"]
        cells += [f"{100 * row['average_map']:.1f}" for row in m["by_length"]]
        cells += [f"{m.get('train_seconds', float('nan')):.0f}", f"{m['inference_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or metrics.json files")
    args = parser.parse_args(argv)
    names = [os.path.basename(os.path.normpath(p)) for p in args.runs]
    print(table(names, [load(p) for p in args.runs]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
