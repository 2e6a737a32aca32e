"""`rcl-kernels eval`: evaluate a results file against ground truth and print the table."""

from __future__ import annotations

import argparse
import json
import sys

from rcl_kernels.data import builtin
from rcl_kernels.data.annotations import REVERSED_POLICIES, AnnotationError
from rcl_kernels.evaluation import thumos14_kit
from rcl_kernels.evaluation.detection import PROTOCOLS, average_recall, detection_map
from rcl_kernels.evaluation.io import UNKNOWN_VIDEO_POLICIES, load_ground_truth

BUILTIN_GROUND_TRUTH = ("thumos14:train", "thumos14:test", "activitynet:train", "activitynet:validation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="activitynet",
                        help="matching and AP rules (default: activitynet)")
    parser.add_argument("--tiou", type=float, nargs="+", metavar="T",
                        help="tIoU thresholds (default: 0.5:0.05:0.95 activitynet, 0.3:0.1:0.7 thumos14)")
    parser.add_argument("--proposals", action="store_true", help="report AR@AN of proposals instead of mAP")
    parser.add_argument("--max-proposals", type=int, default=100, help="largest AN (default 100)")
    parser.add_argument("--per-class", action="store_true", help="also print the AP of each class")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers to this json file")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The ground-truth and prediction arguments `eval` and `diagnose` share."""
    parser.add_argument("--ground-truth", required=True, metavar="PATH",
                        help="annotation file (.json: ActivityNet/ActionFormer/BSN; .csv: G-TAD THUMOS14), a THUMOS14 "
                             "kit groundtruth folder (<Class>_test.txt, Ambiguous_test.txt, detclasslist.txt), or a "
                             f"set shipped with the package: {', '.join(BUILTIN_GROUND_TRUTH)}")
    parser.add_argument("--predictions", required=True, metavar="FILE",
                        help='results json ({"results": {video: [{"label", "score", "segment"}]}}) or a THUMOS14 kit '
                             "detection file (.txt lines 'video start end class_id score')")
    parser.add_argument("--subset", help="ground-truth subset to keep, e.g. validation or Test (kit folder: test, val)")
    parser.add_argument("--video-info", metavar="CSV", help="BSN's video_info_new.csv (subsets of a BSN json)")
    parser.add_argument("--ambiguous", metavar="CSV",
                        help="G-TAD csv whose Ambiguous regions to add (thumos14 protocol)")
    parser.add_argument("--class-list", metavar="TXT",
                        help="THUMOS14 detclasslist.txt for kit files "
                             "(default: the kit folder's, else the shipped copy)")
    parser.add_argument("--unknown-class-ids", choices=thumos14_kit.UNKNOWN_CLASS_ID_POLICIES, default="warn",
                        help="kit detection lines with a class id outside the class list: left out with a warning, as "
                             "the kit does (default), or an error")
    parser.add_argument("--unknown-videos", choices=UNKNOWN_VIDEO_POLICIES,
                        help="detections on videos absent from the ground truth (default: error; false_positive for a "
                             "kit detection file, as the kit scores them)")
    parser.add_argument("--reversed", choices=REVERSED_POLICIES,
                        help="detections with end < start (default: swap under thumos14, as the kit; error under "
                             "activitynet)")


def unknown_videos_policy(args: argparse.Namespace) -> str:
    if args.unknown_videos is not None:
        return args.unknown_videos
    return "false_positive" if thumos14_kit.is_detection_file(args.predictions) else "error"


def ground_truth_from_args(args: argparse.Namespace):
    if args.ground_truth in BUILTIN_GROUND_TRUTH:
        if args.subset or args.video_info or args.ambiguous:
            raise AnnotationError("--subset, --video-info and --ambiguous do not apply to a shipped set")
        dataset, split = args.ground_truth.split(":")
        return getattr(builtin, f"{dataset}_ground_truth")(split)
    return load_ground_truth(args.ground_truth, subset=args.subset, video_info=args.video_info,
                             ambiguous=args.ambiguous, class_list=args.class_list)


def run(args: argparse.Namespace) -> int:
    try:
        gt = ground_truth_from_args(args)
        if args.proposals:
            result = average_recall(args.predictions, gt, args.max_proposals, args.tiou,
                                    unknown_videos=unknown_videos_policy(args))
            print(result.table())
            numbers = {"average_recall": result.average_recall.tolist(), "auc": result.auc,
                       "num_proposals": result.num_proposals.tolist()}
        else:
            result = detection_map(args.predictions, gt, args.tiou, args.protocol,
                                   unknown_videos=unknown_videos_policy(args), reversed=args.reversed,
                                   class_list=args.class_list, unknown_class_ids=args.unknown_class_ids)
            print(result.table(per_class=args.per_class))
            numbers = result.to_dict()
    except (AnnotationError, FileNotFoundError, ValueError) as exc:
        print(f"rcl-kernels eval: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(numbers, fh, indent=1)
    return 0
