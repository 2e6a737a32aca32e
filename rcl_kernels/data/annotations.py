"""Temporal action annotations: one record per video, read from the community's file layouts.

Layouts understood:
- ActivityNet / ActionFormer json: `{"database": {video: {"subset", "duration", "fps"?,
  "annotations": [{"label", "segment": [start, end]}]}}}` (seconds).
- BSN / BMN json: `{video: {"duration_second", "duration_frame", "feature_frame", "annotations"}}`,
  with the subsets and frame rates in a separate `video_info_new.csv`.
- G-TAD / BSN THUMOS14 csv: `video,type,type_idx,start,end,startFrame,endFrame`.

Instances labelled "Ambiguous" (THUMOS14's ignored regions, as the official kit and the G-TAD csv
mark them) never become instances of a class: they go to `VideoAnnotation.ambiguous`.

This is the one module that rcl_kernels.data and rcl_kernels.evaluation share: the records, the
evaluation's flat GroundTruth built from them, and the segment check both use (check_segments).

Every malformed entry raises AnnotationError (a ValueError) naming the file, the video and the field.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

AMBIGUOUS_LABEL = "Ambiguous"
ANNOTATION_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "annotations")
# The THUMOS14 kit's detclasslist.txt (class id and name of the 20 detection classes; SOURCES.md).
THUMOS14_CLASS_LIST = os.path.join(ANNOTATION_DIR, "thumos14", "detclasslist.txt")


def _empty_segments() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.float64)


@dataclass(frozen=True)
class VideoAnnotation:
    """The annotation of one video. Times are in seconds; instances keep their file order."""

    video_id: str
    duration: float | None
    segments: np.ndarray  # (G, 2) float64, [start, end] seconds
    labels: tuple[str, ...]  # (G,) class names
    subset: str | None = None
    fps: float | None = None
    num_frames: int | None = None
    feature_frames: int | None = None  # BSN: frames the extracted features cover
    ambiguous: np.ndarray = field(default_factory=_empty_segments)  # (A, 2) seconds

    @property
    def num_instances(self) -> int:
        return len(self.labels)


class AnnotationError(ValueError):
    """Malformed annotations, ground truth or detections; the message names the source (file and
    line, or video and entry) and the field."""


# What to do with a segment whose end is before its start: raise, order its two ends (what the
# THUMOS14 kit does: its overlap function takes [min, max] of each interval), or leave it out.
REVERSED_POLICIES = ("error", "swap", "drop")


@dataclass(frozen=True)
class SegmentCheck:
    """The outcome of check_segments: the segments with reversed ones ordered, which rows to keep."""

    segments: np.ndarray  # (N, 2) float64
    keep: np.ndarray  # (N,) bool: False only for reversed segments under reversed="drop"
    num_swapped: int
    num_dropped: int


def check_segments(segments, where: Callable[[int], str], reversed: str = "error") -> SegmentCheck:
    """Check (N, 2) [start, end] segments: finite always; end >= start per `reversed` (REVERSED_POLICIES).

    where(i) says where row i came from ("file line 7", "video 'v' entry 3") for the error message.
    """
    if reversed not in REVERSED_POLICIES:
        raise ValueError(f"reversed must be one of {REVERSED_POLICIES}, got {reversed!r}")
    arr = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise AnnotationError(f"{where(i)}: field 'segment' must be finite, got {arr[i].tolist()}")
    flipped = arr[:, 1] < arr[:, 0]
    keep = np.ones(len(arr), dtype=bool)
    count = int(flipped.sum())
    if count == 0:
        return SegmentCheck(arr, keep, 0, 0)
    if reversed == "error":
        i = int(np.argmax(flipped))
        raise AnnotationError(f"{where(i)}: field 'segment' has negative length (end < start): {arr[i].tolist()} "
                              f"({count} such segments; reversed='swap' orders them, 'drop' leaves them out)")
    if reversed == "swap":
        return SegmentCheck(np.sort(arr, axis=1), keep, count, 0)
    return SegmentCheck(arr, ~flipped, 0, count)


def check_segment(value, where: str) -> tuple[float, float]:
    """[start, end] as two finite floats with end >= start, else an AnnotationError saying `where`."""
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: field 'segment' must be two numbers [start, end], got {value!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and end >= start):
        check_segments([[start, end]], lambda _: where)  # raises with the shared message
    return start, end


def _optional_number(entry: Mapping, key: str, where: str, kind=float):
    value = entry.get(key)
    if value is None:
        return None
    try:
        number = kind(float(value)) if kind is int else float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: field {key!r} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise AnnotationError(f"{where}: field {key!r} must be finite and >= 0, got {value!r}")
    return number


def _instances(entries, where: str) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    if not isinstance(entries, list):
        raise AnnotationError(f"{where}: field 'annotations' must be a list, got {type(entries).__name__}")
    segments, labels, ambiguous = [], [], []
    for i, entry in enumerate(entries):
        at = f"{where} annotation {i}"
        if not isinstance(entry, Mapping) or "segment" not in entry or "label" not in entry:
            raise AnnotationError(f"{at}: must be an object with fields 'segment' and 'label', got {entry!r}")
        label = entry["label"]
        if not isinstance(label, str) or not label:
            raise AnnotationError(f"{at}: field 'label' must be a non-empty string, got {label!r}")
        segment = check_segment(entry["segment"], at)
        if label == AMBIGUOUS_LABEL:
            ambiguous.append(segment)
        else:
            segments.append(segment)
            labels.append(label)
    return _as_segments(segments), tuple(labels), _as_segments(ambiguous)


def _as_segments(pairs: Sequence[tuple[float, float]]) -> np.ndarray:
    return np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


def parse_database(data: Mapping, source: str = "annotations") -> list[VideoAnnotation]:
    """Records from a parsed ActivityNet/ActionFormer (`{"database": ...}`) or BSN json object."""
    if not isinstance(data, Mapping):
        raise AnnotationError(f"{source}: expected a json object at the top level, got {type(data).__name__}")
    bsn_layout = "database" not in data
    videos = data if bsn_layout else data["database"]
    if not isinstance(videos, Mapping):
        raise AnnotationError(f"{source}: field 'database' must be an object mapping video ids to videos")
    records = []
    for video_id, entry in videos.items():
        where = f"{source}: video {video_id!r}"
        if not isinstance(entry, Mapping) or "annotations" not in entry:
            raise AnnotationError(f"{where}: must be an object with a field 'annotations'")
        segments, labels, ambiguous = _instances(entry["annotations"], where)
        subset = entry.get("subset")
        if subset is not None and not isinstance(subset, str):
            raise AnnotationError(f"{where}: field 'subset' must be a string, got {subset!r}")
        if bsn_layout:
            duration = _optional_number(entry, "duration_second", where)
            num_frames = _optional_number(entry, "duration_frame", where, int)
            feature_frames = _optional_number(entry, "feature_frame", where, int)
        else:
            duration = _optional_number(entry, "duration", where)
            num_frames = feature_frames = None
        records.append(VideoAnnotation(
            video_id=str(video_id), duration=duration, segments=segments, labels=labels, subset=subset,
            fps=_optional_number(entry, "fps", where), num_frames=num_frames, feature_frames=feature_frames,
            ambiguous=ambiguous,
        ))
    return records


def read_json(path: str | os.PathLike) -> object:
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{os.fspath(path)}: malformed JSON ({exc})") from None


def read_gtad_csv(path: str | os.PathLike) -> list[VideoAnnotation]:
    """Records from a G-TAD/BSN THUMOS14 csv (`video,type,type_idx,start,end,...`), in row order.

    The csv has no durations or frame rates (None here; `with_video_info` can add them).
    """
    source = os.fspath(path)
    rows: dict[str, list[tuple[str, tuple[float, float]]]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"video", "type", "start", "end"} - set(reader.fieldnames or ())
        if missing:
            raise AnnotationError(f"{source}: missing csv column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{source} line {line}: video {row['video']!r}"
            segment = check_segment((row["start"], row["end"]), where)
            if not row["type"]:
                raise AnnotationError(f"{where}: field 'type' is empty")
            rows.setdefault(row["video"], []).append((row["type"], segment))
    records = []
    for video_id, entries in rows.items():
        instances = [(label, seg) for label, seg in entries if label != AMBIGUOUS_LABEL]
        records.append(VideoAnnotation(
            video_id=video_id, duration=None,
            segments=_as_segments([seg for _, seg in instances]),
            labels=tuple(label for label, _ in instances),
            ambiguous=_as_segments([seg for label, seg in entries if label == AMBIGUOUS_LABEL]),
        ))
    return records


@dataclass(frozen=True)
class VideoInfo:
    """One row of BSN's video_info_new.csv."""

    subset: str
    duration: float
    fps: float
    num_frames: int
    feature_frames: int | None


def read_video_info_csv(path: str | os.PathLike) -> dict[str, VideoInfo]:
    """BSN's `video,numFrame,seconds,fps,rfps,subset,featureFrame` table, by video id."""
    source = os.fspath(path)
    table = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"video", "numFrame", "seconds", "fps", "subset"} - set(reader.fieldnames or ())
        if missing:
            raise AnnotationError(f"{source}: missing csv column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{source} line {line}: video {row['video']!r}"
            table[row["video"]] = VideoInfo(
                subset=row["subset"],
                duration=_optional_number(row, "seconds", where),
                fps=_optional_number(row, "fps", where),
                num_frames=_optional_number(row, "numFrame", where, int),
                feature_frames=_optional_number(row, "featureFrame", where, int),
            )
    return table


def with_video_info(records: Iterable[VideoAnnotation], info: Mapping[str, VideoInfo],
                    source: str = "video info") -> list[VideoAnnotation]:
    """Fill subset, duration, fps and frame counts from `info` (its values win over the records')."""
    out = []
    for r in records:
        row = info.get(r.video_id)
        if row is None:
            raise AnnotationError(f"{source}: no row for video {r.video_id!r}")
        # Built directly: dataclasses.replace is several times slower on the 19,228 ActivityNet videos.
        out.append(VideoAnnotation(r.video_id, row.duration, r.segments, r.labels, row.subset, row.fps,
                                   row.num_frames, row.feature_frames or r.feature_frames, r.ambiguous))
    return out


def with_ambiguous(records: Iterable[VideoAnnotation], regions: Iterable[VideoAnnotation]) -> list[VideoAnnotation]:
    """Add the Ambiguous regions of `regions` (e.g. from a G-TAD csv) to the records of the same videos."""
    by_video = {r.video_id: r.ambiguous for r in regions if len(r.ambiguous)}
    return [replace(r, ambiguous=np.concatenate([r.ambiguous, by_video[r.video_id]]))
            if r.video_id in by_video else r for r in records]


def load_annotations(path: str | os.PathLike, video_info: str | os.PathLike | None = None) -> list[VideoAnnotation]:
    """Records from any supported file (.json: ActivityNet/ActionFormer/BSN; .csv: G-TAD THUMOS14).

    video_info: BSN's video_info_new.csv, for the subsets and frame rates a BSN json lacks.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"annotation file not found: {source}")
    if source.lower().endswith(".csv"):
        records = read_gtad_csv(source)
    else:
        records = parse_database(read_json(source), source)
    if video_info is not None:
        records = with_video_info(records, read_video_info_csv(video_info), os.fspath(video_info))
    return records


def select_subset(records: Iterable[VideoAnnotation], subset: str | Sequence[str] | None,
                  source: str = "annotations") -> list[VideoAnnotation]:
    """The records whose subset matches (case-insensitive; a list matches any); None keeps all."""
    records = list(records)
    if subset is None:
        return records
    wanted = {subset.lower()} if isinstance(subset, str) else {s.lower() for s in subset}
    if any(r.subset is None for r in records):
        raise AnnotationError(f"{source}: subset {subset!r} requested, but the annotations name no subsets "
                              "(a BSN json needs its video_info csv)")
    chosen = [r for r in records if r.subset.lower() in wanted]
    if not chosen:
        found = sorted({r.subset for r in records})
        raise AnnotationError(f"{source}: no video in subset {subset!r}; the subsets are {found}")
    return chosen


def class_names(records: Iterable[VideoAnnotation]) -> tuple[str, ...]:
    """The sorted set of the records' labels."""
    return tuple(sorted({label for r in records for label in r.labels}))


@dataclass(frozen=True)
class GroundTruth:
    """Instances of a set of videos as flat arrays, the form the metrics take. `video` and `label`
    index `video_ids` and `classes`; instances of one video and class keep their annotation order."""

    video_ids: tuple[str, ...]  # every evaluated video, including those without instances
    classes: tuple[str, ...]
    video: np.ndarray  # (G,) int64
    label: np.ndarray  # (G,) int64
    segments: np.ndarray  # (G, 2) float64 seconds
    ambiguous_video: np.ndarray  # (A,) int64: THUMOS14's ignored regions
    ambiguous_segments: np.ndarray  # (A, 2) float64 seconds
    durations: np.ndarray | None = None  # (V,) float64 seconds per video, NaN where unknown
    num_reordered: int = 0  # reversed segments of the source whose ends were ordered (THUMOS14 kit files)

    @property
    def num_instances(self) -> np.ndarray:
        """(C,) instances per class."""
        return np.bincount(self.label, minlength=len(self.classes))

    @classmethod
    def from_annotations(cls, records: Iterable[VideoAnnotation], classes: Sequence[str] | None = None, *,
                         num_reordered: int = 0) -> GroundTruth:
        """From annotation records; classes default to the sorted set of their labels."""
        records = list(records)
        video_ids = tuple(r.video_id for r in records)
        if len(set(video_ids)) != len(video_ids):
            raise AnnotationError("ground truth: a video id appears twice")
        classes = class_names(records) if classes is None else tuple(classes)
        index = {name: i for i, name in enumerate(classes)}
        labels = []
        for r in records:
            for i, label in enumerate(r.labels):
                if label not in index:
                    raise AnnotationError(
                        f"ground truth: video {r.video_id!r} annotation {i}: field 'label' {label!r} "
                        f"is not one of the {len(classes)} classes")
                labels.append(index[label])
        counts = [r.num_instances for r in records]
        amb_counts = [len(r.ambiguous) for r in records]
        return cls(
            video_ids=video_ids, classes=classes,
            video=np.repeat(np.arange(len(records), dtype=np.int64), counts),
            label=np.asarray(labels, dtype=np.int64),
            segments=concat_segments([r.segments for r in records]),
            ambiguous_video=np.repeat(np.arange(len(records), dtype=np.int64), amb_counts),
            ambiguous_segments=concat_segments([r.ambiguous for r in records]),
            durations=np.array([np.nan if r.duration is None else r.duration for r in records], dtype=np.float64),
            num_reordered=num_reordered,
        )

    @classmethod
    def from_arrays(cls, video: Sequence, label: Sequence, segment, *, video_ids: Sequence[str] | None = None,
                    classes: Sequence[str] | None = None) -> GroundTruth:
        """From parallel arrays; instances labelled "Ambiguous" become ambiguous regions.

        video_ids adds videos without instances; the order of first appearance is kept otherwise.
        """
        video = [str(v) for v in video]
        label = list(label)
        segment = segment_array(segment, len(video), "ground truth")
        if len(label) != len(video):
            raise AnnotationError(f"ground truth: 'label' has {len(label)} entries but 'video' has {len(video)}")
        check_segments(segment, lambda i: f"ground truth: video {video[i]!r} entry {i}")
        order = list(dict.fromkeys([*(video_ids or ()), *video]))
        per_video: dict[str, list] = {v: [] for v in order}
        for i, (v, lab) in enumerate(zip(video, label)):
            per_video[v].append((lab, segment[i]))
        records = []
        for v in order:
            entries = per_video[v]
            inst = [(str(lab), seg) for lab, seg in entries if lab != AMBIGUOUS_LABEL]
            records.append(VideoAnnotation(
                video_id=v, duration=None,
                segments=concat_segments([s.reshape(1, 2) for _, s in inst]),
                labels=tuple(lab for lab, _ in inst),
                ambiguous=concat_segments([s.reshape(1, 2) for lab, s in entries if lab == AMBIGUOUS_LABEL]),
            ))
        return cls.from_annotations(records, classes)


def concat_segments(parts: Sequence[np.ndarray]) -> np.ndarray:
    """One (N, 2) float64 array from (n_i, 2) parts ((0, 2) for none)."""
    if not parts:
        return _empty_segments()
    return np.concatenate(parts).astype(np.float64, copy=False).reshape(-1, 2)


def segment_array(segment, n: int, source: str) -> np.ndarray:
    """`segment` as an (n, 2) float64 array, else an AnnotationError naming `source`."""
    try:
        arr = np.asarray(segment, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(f"{source}: field 'segment' must be numbers of shape ({n}, 2)") from None
    if arr.size == 0 and n == 0:
        return arr.reshape(0, 2)
    if arr.shape != (n, 2):
        raise AnnotationError(f"{source}: field 'segment' must have shape ({n}, 2), got {arr.shape}")
    return arr
