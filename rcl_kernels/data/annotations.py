"""Temporal action annotations: one record per video, read from the community's file layouts.

Layouts understood (shared/data/README.md describes them):
- ActivityNet / ActionFormer json: `{"database": {video: {"subset", "duration", "fps"?,
  "annotations": [{"label", "segment": [start, end]}]}}}` (seconds).
- BSN / BMN json: `{video: {"duration_second", "duration_frame", "feature_frame", "annotations"}}`,
  with the subsets and frame rates in a separate `video_info_new.csv`.
- G-TAD / BSN THUMOS14 csv: `video,type,type_idx,start,end,startFrame,endFrame`.

Instances labelled "Ambiguous" (THUMOS14's ignored regions, as the official kit and the G-TAD csv
mark them) never become instances of a class: they go to `VideoAnnotation.ambiguous`.

Every malformed entry raises ValueError naming the file, the video and the field.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

AMBIGUOUS_LABEL = "Ambiguous"


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
    """A malformed annotation entry; the message names the source, the video and the field."""


def check_segment(value, where: str) -> tuple[float, float]:
    """[start, end] as two finite floats with end >= start, else an AnnotationError saying `where`."""
    try:
        start, end = (float(v) for v in value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: field 'segment' must be two numbers [start, end], got {value!r}") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise AnnotationError(f"{where}: field 'segment' must be finite, got {value!r}")
    if end < start:
        raise AnnotationError(f"{where}: field 'segment' has negative length (end < start): {value!r}")
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
