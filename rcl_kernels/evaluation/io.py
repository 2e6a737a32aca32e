"""Ground truth and detections as flat numpy arrays, from every input form the metrics accept.

Ground truth: a GroundTruth, a list of rcl_kernels.data.annotations.VideoAnnotation, an
ActivityNet/ActionFormer `{"database": ...}` object, a BSN json object, an arrays mapping
`{"video": (G,) ids, "label": (G,) names, "segment": (G, 2)}`, a path to a .json / G-TAD .csv, or
the THUMOS14 kit's groundtruth folder (rcl_kernels.evaluation.thumos14_kit).

Detections: `{"results": {video: [{"label", "score", "segment"}]}}` (ActivityNet's submission
format; "label" is omitted for proposals), the bare `{video: [...]}` mapping, an arrays mapping
`{"video": (P,), "label": (P,), "score": (P,), "segment": (P, 2)}`, a path to a .json file, or a
THUMOS14 kit detection file (.txt lines `video start end class_id score`).
Labels are class names, or integer indices into the ground truth's classes.

Nothing is dropped silently: an unknown video or label, a missing field, or a non-finite score or
segment raises AnnotationError (alias EvaluationInputError, a ValueError) naming the video and
entry (or file and line) and the field; a segment with end < start too, unless the reversed policy
says "swap" or "drop", and then Detections.report counts them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable, Mapping, Sequence

import numpy as np

from rcl_kernels.data.annotations import (
    REVERSED_POLICIES,
    AnnotationError,
    GroundTruth,
    VideoAnnotation,
    check_segments,
    load_annotations,
    parse_database,
    read_json,
    read_video_info_csv,
    segment_array,
    select_subset,
    with_ambiguous,
    with_video_info,
)
from rcl_kernels.evaluation import thumos14_kit

UNKNOWN_VIDEO_POLICIES = ("error", "false_positive")


# One error type for every malformed input, shared with rcl_kernels.data (the name is kept for callers).
EvaluationInputError = AnnotationError


@dataclass(frozen=True)
class InputReport:
    """What loading the detections changed or left out, so that nothing is dropped silently."""

    reordered: int = 0  # reversed intervals whose ends were ordered (reversed="swap")
    dropped: int = 0  # reversed intervals left out (reversed="drop")
    unknown_class_ids: int = 0  # THUMOS14 kit lines whose class id is not in the class list (left out)
    unknown_video_detections: int = 0  # detections on videos without ground truth (false positives)

    def merged(self, other: InputReport) -> InputReport:
        return InputReport(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable notes for the nonzero counts."""
        text = {"reordered": "reversed intervals (end < start) ordered",
                "dropped": "reversed intervals (end < start) left out",
                "unknown_class_ids": "detections with a class id outside the class list left out",
                "unknown_video_detections": "detections on videos without ground truth counted as false positives"}
        return [f"{getattr(self, k)} {v}" for k, v in text.items() if getattr(self, k)]


def load_ground_truth(source, *, subset: str | Sequence[str] | None = None, video_info=None, ambiguous=None,
                      classes: Sequence[str] | None = None, class_list=None) -> GroundTruth:
    """A GroundTruth from any accepted form (module docstring).

    subset: keep the videos of this subset (e.g. "validation", "Test"; case-insensitive); for a
        THUMOS14 kit folder, "test" or "val" (default: test if its files are there).
    video_info: BSN's video_info_new.csv, which gives a BSN json its subsets.
    ambiguous: a G-TAD csv (or annotation records) whose Ambiguous regions to add, for the
        THUMOS14 protocol when the ground truth file itself has none (ActionFormer's json).
    classes: the class list (default: the sorted labels of the selected videos).
    class_list: a THUMOS14 kit folder's detclasslist.txt (default: the folder's own, else the shipped one).
    """
    if isinstance(source, GroundTruth):
        if subset is not None or video_info is not None or ambiguous is not None:
            raise EvaluationInputError("ground truth: subset, video_info and ambiguous apply to files and "
                                       "dicts, not to a GroundTruth")
        return source
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        if video_info is not None or ambiguous is not None or classes is not None:
            raise EvaluationInputError(f"{os.fspath(source)}: a THUMOS14 kit folder takes subset and class_list only")
        return thumos14_kit.read_ground_truth(source, subset=subset, class_list=class_list)
    if isinstance(source, (str, os.PathLike)):
        records = load_annotations(source, video_info=video_info)
        name = os.fspath(source)
    elif isinstance(source, Mapping) and _is_array_mapping(source):
        gt = GroundTruth.from_arrays(source["video"], source["label"], source["segment"],
                                     video_ids=source.get("video_ids"), classes=classes)
        if subset is not None or ambiguous is not None:
            raise EvaluationInputError("ground truth: subset and ambiguous do not apply to arrays")
        return gt
    elif isinstance(source, Mapping):
        records = parse_database(source, "ground truth")
        name = "ground truth"
        if video_info is not None:
            records = with_video_info(records, read_video_info_csv(video_info), os.fspath(video_info))
    elif isinstance(source, Iterable):
        records = list(source)
        name = "ground truth"
        if not all(isinstance(r, VideoAnnotation) for r in records):
            raise EvaluationInputError("ground truth: a list must hold VideoAnnotation records")
    else:
        raise EvaluationInputError(f"ground truth: unsupported input of type {type(source).__name__}")
    records = select_subset(records, subset, name)
    if ambiguous is not None:
        regions = load_annotations(ambiguous) if isinstance(ambiguous, (str, os.PathLike)) else ambiguous
        records = with_ambiguous(records, regions)
    return GroundTruth.from_annotations(records, classes)


def _is_array_mapping(obj: Mapping) -> bool:
    return "video" in obj and "segment" in obj and not isinstance(obj.get("video"), Mapping)


@dataclass(frozen=True)
class Detections:
    """Detections (or proposals) aligned with a GroundTruth, in input order.

    `video` indexes `video_ids`, which extends the ground truth's with the unknown videos kept by
    unknown_videos="false_positive"; `label` indexes the ground truth's classes (-1 for proposals).
    `report` counts what loading reordered or left out.
    """

    video_ids: tuple[str, ...]
    video: np.ndarray  # (P,) int64
    label: np.ndarray  # (P,) int64
    segments: np.ndarray  # (P, 2) float64 seconds
    score: np.ndarray  # (P,) float64
    report: InputReport = field(default_factory=InputReport)

    def __len__(self) -> int:
        return len(self.score)


def load_detections(source, ground_truth: GroundTruth, *, with_labels: bool = True,
                    unknown_videos: str = "error", reversed: str = "error", class_list=None,
                    unknown_class_ids: str = "warn") -> Detections:
    """Detections from any accepted form (module docstring), checked against `ground_truth`.

    with_labels=False reads proposals (labels ignored, -1).
    unknown_videos: "error" (default) raises for a video the ground truth does not list;
        "false_positive" keeps its detections, which then can only be false positives (what the
        official ActivityNet and THUMOS14 scripts do).
    reversed: a segment with end < start: "error" (default), "swap" (order its ends, as the
        THUMOS14 kit does) or "drop"; Detections.report counts them.
    class_list, unknown_class_ids: for a THUMOS14 kit detection file (.txt): its detclasslist.txt
        (default: the shipped one), and "warn" (the kit's behaviour: the line is left out, counted
        and warned about) or "error" for a class id outside it.
    """
    if unknown_videos not in UNKNOWN_VIDEO_POLICIES:
        raise ValueError(f"unknown_videos must be one of {UNKNOWN_VIDEO_POLICIES}, got {unknown_videos!r}")
    if reversed not in REVERSED_POLICIES:
        raise ValueError(f"reversed must be one of {REVERSED_POLICIES}, got {reversed!r}")
    if isinstance(source, Detections):
        return source
    report = InputReport()
    if isinstance(source, (str, os.PathLike)) and thumos14_kit.is_detection_file(source):
        name = os.fspath(source)
        source, unknown = thumos14_kit.read_detections(name, class_list=class_list,
                                                        unknown_class_ids=unknown_class_ids)
        report = InputReport(unknown_class_ids=unknown)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        source = read_json(name)
    else:
        name = "predictions"
    if not isinstance(source, Mapping):
        raise EvaluationInputError(f"{name}: expected an object, got {type(source).__name__}")
    if _is_array_mapping(source):
        flat = _flat_from_arrays(source, name, with_labels)
    else:
        results = source.get("results", source)
        if not isinstance(results, Mapping):
            raise EvaluationInputError(f"{name}: field 'results' must map video ids to lists of detections")
        flat = _flat_from_results(results, name, with_labels)
    det = _align(flat, ground_truth, name, with_labels, unknown_videos, reversed)
    return dataclasses.replace(det, report=det.report.merged(report))


@dataclass
class _Flat:
    videos: list[str]  # per-video names, in input order
    counts: np.ndarray  # detections per entry of `videos`
    labels: list  # (P,) raw labels, or None
    score: np.ndarray
    segments: np.ndarray
    original: np.ndarray | None = None  # arrays input: each entry's index in the input arrays
    lines: np.ndarray | None = None  # arrays input with a "line" field (text files): each entry's line

    def where(self, i: int) -> str:
        """'video X entry j' (or 'video X, array index k') for flat index i."""
        ends = np.cumsum(self.counts)
        v = int(np.searchsorted(ends, i, side="right"))
        if self.lines is not None:
            return f"line {int(self.lines[i])}: video {self.videos[v]!r}"
        if self.original is not None:
            return f"video {self.videos[v]!r}, array index {int(self.original[i])}"
        return f"video {self.videos[v]!r} entry {i - (int(ends[v - 1]) if v else 0)}"


def _flat_from_results(results: Mapping, source: str, with_labels: bool) -> _Flat:
    videos, counts, scores, segments, labels = [], [], [], [], []
    for video, entries in results.items():
        if not isinstance(entries, list):
            raise EvaluationInputError(f"{source}: video {video!r}: expected a list of detections, "
                                       f"got {type(entries).__name__}")
        videos.append(str(video))
        counts.append(len(entries))
        try:
            scores.extend([e["score"] for e in entries])
            segments.extend([e["segment"] for e in entries])
            if with_labels:
                labels.extend([e["label"] for e in entries])
        except (KeyError, TypeError, IndexError):
            _raise_first_bad_entry(video, entries, source, with_labels)
    try:
        score = np.asarray(scores, dtype=np.float64)
        segment = np.asarray(segments, dtype=np.float64).reshape(-1, 2) if not segments else \
            np.asarray(segments, dtype=np.float64)
        if segment.shape != (len(score), 2):
            raise ValueError
    except (TypeError, ValueError):
        for video, entries in results.items():
            _raise_first_bad_entry(video, entries, source, with_labels)
        raise
    return _Flat(videos, np.asarray(counts, dtype=np.int64), labels if with_labels else None, score,
                 segment.reshape(-1, 2))


def _raise_first_bad_entry(video, entries, source: str, with_labels: bool) -> None:
    """Slow path, only on malformed input: find the first bad entry of one video and say what is wrong."""
    for j, e in enumerate(entries):
        where = f"{source}: video {video!r} entry {j}"
        if not isinstance(e, Mapping):
            raise EvaluationInputError(f"{where}: expected an object, got {e!r}")
        for key in ("score", "segment", "label") if with_labels else ("score", "segment"):
            if key not in e:
                raise EvaluationInputError(f"{where}: missing field {key!r}")
        try:
            float(e["score"])
        except (TypeError, ValueError):
            raise EvaluationInputError(f"{where}: field 'score' must be a number, got {e['score']!r}") from None
        try:
            seg = np.asarray(e["segment"], dtype=np.float64)
        except (TypeError, ValueError):
            seg = None
        if seg is None or seg.shape != (2,):
            raise EvaluationInputError(f"{where}: field 'segment' must be two numbers [start, end], "
                                       f"got {e['segment']!r}")


def _flat_from_arrays(source: Mapping, name: str, with_labels: bool) -> _Flat:
    video = np.asarray(source["video"])
    n = len(video)
    if with_labels and "label" not in source:
        raise EvaluationInputError(f"{name}: missing field 'label'")
    if "score" not in source:
        raise EvaluationInputError(f"{name}: missing field 'score'")
    try:
        score = np.asarray(source["score"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise EvaluationInputError(f"{name}: field 'score' must be numbers") from None
    if len(score) != n:
        raise EvaluationInputError(f"{name}: field 'score' has {len(score)} entries but 'video' has {n}")
    segment = segment_array(source["segment"], n, name)
    labels = None
    if with_labels:
        labels = list(np.asarray(source["label"]).tolist())
        if len(labels) != n:
            raise EvaluationInputError(f"{name}: field 'label' has {len(labels)} entries but 'video' has {n}")
    # Group by video (stable, so each video's entries keep their input order).
    names, inverse = np.unique(video.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(names))
    return _Flat([str(v) for v in names], counts, [labels[i] for i in order] if labels is not None else None,
                 score[order], segment[order], original=order,
                 lines=np.asarray(source["line"])[order] if "line" in source else None)


def _align(flat: _Flat, gt: GroundTruth, source: str, with_labels: bool, unknown_videos: str,
           reversed: str) -> Detections:
    bad = ~np.isfinite(flat.score)
    if bad.any():
        i = int(np.argmax(bad))
        raise EvaluationInputError(f"{source}: {flat.where(i)}: field 'score' must be finite, got {flat.score[i]}")
    checked = check_segments(flat.segments, lambda i: f"{source}: {flat.where(i)}", reversed)
    flat.segments = checked.segments

    video_index = {v: i for i, v in enumerate(gt.video_ids)}
    video_ids = list(gt.video_ids)
    per_video = np.empty(len(flat.videos), dtype=np.int64)
    for k, v in enumerate(flat.videos):
        idx = video_index.get(v)
        if idx is None:
            if unknown_videos == "error" and flat.counts[k] > 0:
                raise EvaluationInputError(
                    f"{source}: video {v!r} is not in the ground truth ({len(gt.video_ids)} videos); pass "
                    "unknown_videos='false_positive' to count its detections as false positives")
            idx = video_index[v] = len(video_ids)
            video_ids.append(v)
        per_video[k] = idx
    video = np.repeat(per_video, flat.counts)

    if with_labels:
        lookup: dict = {name: i for i, name in enumerate(gt.classes)}
        lookup.update({i: i for i in range(len(gt.classes))})
        try:
            label = np.fromiter(map(lookup.__getitem__, flat.labels), dtype=np.int64, count=len(flat.labels))
        except (KeyError, TypeError):
            for i, x in enumerate(flat.labels):
                if not isinstance(x, (str, int)) or isinstance(x, bool) or x not in lookup:
                    raise EvaluationInputError(
                        f"{source}: {flat.where(i)}: field 'label' {x!r} is not a class of the ground truth "
                        f"(one of {len(gt.classes)} names, or an index below {len(gt.classes)})") from None
            raise
    else:
        label = np.full(len(flat.score), -1, dtype=np.int64)
    keep = checked.keep
    on_unknown = int(np.count_nonzero(keep & (video >= len(gt.video_ids))))
    report = InputReport(reordered=checked.num_swapped, dropped=checked.num_dropped,
                         unknown_video_detections=on_unknown)
    if checked.num_dropped:
        return Detections(tuple(video_ids), video[keep], label[keep], flat.segments[keep], flat.score[keep], report)
    return Detections(tuple(video_ids), video, label, flat.segments, flat.score, report)


def write_results(path: str | os.PathLike, detections: Mapping[str, list[Mapping]], *,
                  version: str = "rcl_kernels") -> None:
    """Write `{video: [{"label", "score", "segment"}]}` as an ActivityNet-format results file."""
    with open(path, "w") as fh:
        json.dump({"version": version, "results": detections, "external_data": {}}, fh)
