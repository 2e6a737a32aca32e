"""`rcl-kernels eval`: evaluate a results file against ground truth and print the table."""

from __future__ import annotations

import argparse
import json
import sys

from rcl_kernels.data.annotations import AnnotationError
from rcl_kernels.evaluation.detection import PROTOCOLS, average_recall, detection_map
from rcl_kernels.evaluation.io import UNKNOWN_VIDEO_POLICIES, EvaluationInputError, load_ground_truth

BUILTIN_GROUND_TRUTH = ("thumos14:train", "thumos14:test", "activitynet:train", "activitynet:validation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ground-truth", required=True, metavar="FILE",
                        help="annotation file (.json: ActivityNet/ActionFormer/BSN; .csv: G-TAD THUMOS14), or a "
                             f"set shipped with the package: {', '.join(BUILTIN_GROUND_TRUTH)}")
    parser.add_argument("--predictions", required=True, metavar="FILE",
                        help='results json: {"results": {video: [{"label", "score", "segment"}]}}')
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="activitynet",
                        help="matching and AP rules (default: activitynet)")
    parser.add_argument("--tiou", type=float, nargs="+", metavar="T",
                        help="tIoU thresholds (default: 0.5:0.05:0.95 activitynet, 0.3:0.1:0.7 thumos14)")
    parser.add_argument("--subset", help="ground-truth subset to keep, e.g. validation or Test")
    parser.add_argument("--video-info", metavar="CSV", help="BSN's video_info_new.csv (subsets of a BSN json)")
    parser.add_argument("--ambiguous", metavar="CSV",
                        help="G-TAD csv whose Ambiguous regions to add (thumos14 protocol)")
    parser.add_argument("--proposals", action="store_true", help="report AR@AN of proposals instead of mAP")
    parser.add_argument("--max-proposals", type=int, default=100, help="largest AN (default 100)")
    parser.add_argument("--per-class", action="store_true", help="also print the AP of each class")
    parser.add_argument("--unknown-videos", choices=UNKNOWN_VIDEO_POLICIES, default="error",
                        help="detections on videos absent from the ground truth (default: error)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to this json file")


def _ground_truth(args: argparse.Namespace):
    if args.ground_truth in BUILTIN_GROUND_TRUTH:
        from rcl_kernels.data import builtin

        if args.subset or args.video_info or args.ambiguous:
            raise EvaluationInputError("--subset, --video-info and --ambiguous do not apply to a shipped set")
        dataset, split = args.ground_truth.split(":")
        return getattr(builtin, f"{dataset}_ground_truth")(split)
    return load_ground_truth(args.ground_truth, subset=args.subset, video_info=args.video_info,
                             ambiguous=args.ambiguous)


def run(args: argparse.Namespace) -> int:
    try:
        gt = _ground_truth(args)
        if args.proposals:
            result = average_recall(args.predictions, gt, args.max_proposals, args.tiou,
                                    unknown_videos=args.unknown_videos)
            print(result.table())
            numbers = {"average_recall": result.average_recall.tolist(), "auc": result.auc,
                       "num_proposals": result.num_proposals.tolist()}
        else:
            result = detection_map(args.predictions, gt, args.tiou, args.protocol,
                                   unknown_videos=args.unknown_videos)
            print(result.table(per_class=args.per_class))
            numbers = result.to_dict()
    except (EvaluationInputError, AnnotationError, FileNotFoundError, ValueError) as exc:
        print(f"rcl-kernels eval: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(numbers, fh, indent=1)
    return 0
