"""`rcl-kernels diagnose`: DETAD's error analyses of a detections file, as tables, json and figures."""

from __future__ import annotations

import argparse
import json
import sys

from rcl_kernels._optional import MissingOptionalDependency, require
from rcl_kernels.data.annotations import AnnotationError
from rcl_kernels.evaluation.characteristics import DETAD_BINS
from rcl_kernels.evaluation.command import add_input_arguments, ground_truth_from_args
from rcl_kernels.evaluation.detad_order import TIE_ORDERS
from rcl_kernels.evaluation.diagnose import diagnose


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--dataset", choices=sorted(DETAD_BINS), required=True,
                        help="DETAD's bins and tIoU thresholds for this dataset "
                             "(activitynet: 0.5:0.05:0.95; thumos14: 0.5)")
    parser.add_argument("--tiou", type=float, nargs="+", metavar="T", help="tIoU thresholds instead of DETAD's")
    parser.add_argument("--extra-characteristics", metavar="JSON",
                        help="a DETAD extra-characteristics file (agreement, context size and distance, ...)")
    parser.add_argument("--average-instances", type=float, metavar="N",
                        help="N of the normalized AP (default: DETAD's instances // classes)")
    parser.add_argument("--ties", choices=TIE_ORDERS, default="input",
                        help="order of equal scores: input order, the same on every machine (default), or detad: "
                             "DETAD's own unstable numpy/pandas sorts, which reproduce its numbers where it runs")
    parser.add_argument("--output", metavar="DIR", help="write the three figures here (PNG and PDF)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to this json file")


def run(args: argparse.Namespace) -> int:
    try:
        if args.output:  # before the analysis, not after it
            require("matplotlib.figure", "rcl-kernels diagnose --output")
        gt = ground_truth_from_args(args)
        result = diagnose(args.predictions, gt, args.dataset, tiou_thresholds=args.tiou,
                          extra_characteristics=args.extra_characteristics,
                          average_instances=args.average_instances, class_list=args.class_list,
                          reversed=args.reversed or ("swap" if args.dataset == "thumos14" else "error"),
                          ties=args.ties)
    except (AnnotationError, FileNotFoundError, ValueError, MissingOptionalDependency) as exc:
        print(f"rcl-kernels diagnose: error: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    if args.output:
        from rcl_kernels.evaluation.diagnose_figures import save_figures  # deferred: matplotlib only when figures are asked for

        for path in save_figures(result, args.output):
            print(f"wrote {path}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result.to_dict(), fh, indent=1)
    return 0
