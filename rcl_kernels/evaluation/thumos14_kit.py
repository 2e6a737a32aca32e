"""The official THUMOS14 evaluation kit's file formats (TH14evalDet.m and its groundtruth folder), read and written.

- Class list, `detclasslist.txt`: lines `class_id ClassName` (the 20 detection classes with their
  THUMOS ids, 7 BaseballPitch .. 97 VolleyballSpiking). A copy ships with the package
  (rcl_kernels/data/annotations/thumos14/detclasslist.txt, see SOURCES.md there).
- Detection file: whitespace-separated lines `video start end class_id score` (seconds). As the
  kit does, a `.mp4` / `.mpeg` suffix of the video name is stripped, and a line whose class id is
  not in the class list is left out with a warning (here: counted, and unknown_class_ids="error"
  makes it an error naming the file and line).
- Groundtruth folder: `<ClassName>_<subset>.txt` for every class of the list and
  `Ambiguous_<subset>.txt` (subset "test" or "val"), lines `video start end`; the kit needs all
  of them, and so does this reader.

Reversed intervals (end < start) in the groundtruth are ordered, as the kit's overlap function
does ([min, max] of each interval); GroundTruth.num_reordered counts them. Detections' reversed
intervals are handled by the caller's policy (rcl_kernels.evaluation.io.load_detections).
"""

from __future__ import annotations

import os
import warnings
from typing import Mapping

import numpy as np

from rcl_kernels.data.annotations import (
    AMBIGUOUS_LABEL,
    THUMOS14_CLASS_LIST,
    AnnotationError,
    GroundTruth,
    VideoAnnotation,
    check_segments,
    read_json,
)

KIT_SUBSETS = {"test": "test", "val": "val", "validation": "val"}
VIDEO_SUFFIXES = (".mp4", ".mpeg")
UNKNOWN_CLASS_ID_POLICIES = ("warn", "error")


def read_class_list(path: str | os.PathLike | None = None) -> tuple[tuple[int, str], ...]:
    """((class_id, name), ...) from a detclasslist.txt (default: the copy shipped with the package)."""
    path = os.fspath(THUMOS14_CLASS_LIST if path is None else path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"THUMOS14 class list not found: {path}")
    entries = []
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not _is_int(parts[0]):
                raise AnnotationError(f"{path} line {line_no}: expected 'class_id ClassName', got {line.strip()!r}")
            entries.append((int(parts[0]), parts[1]))
    ids = [i for i, _ in entries]
    names = [n for _, n in entries]
    if not entries or len(set(ids)) != len(ids) or len(set(names)) != len(names):
        raise AnnotationError(f"{path}: the class list must name at least one class, each id and name once")
    return tuple(entries)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def is_detection_file(path) -> bool:
    """True for a path that names a kit detection file (a .txt file)."""
    return os.fspath(path).lower().endswith(".txt")


def strip_video_suffix(name: str) -> str:
    for suffix in VIDEO_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_detections(path: str | os.PathLike, *, class_list=None,
                    unknown_class_ids: str = "warn") -> tuple[dict, int]:
    """A kit detection file as an arrays mapping {"video", "label" (names), "score", "segment" (P, 2),
    "line"} (the form rcl_kernels.evaluation.io reads), and the number of lines left out for a class
    id outside the class list (unknown_class_ids="warn", the kit's behaviour; "error" raises)."""
    if unknown_class_ids not in UNKNOWN_CLASS_ID_POLICIES:
        raise ValueError(f"unknown_class_ids must be one of {UNKNOWN_CLASS_ID_POLICIES}, got {unknown_class_ids!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"detection file not found: {path}")
    names = dict(read_class_list(class_list))
    videos, labels, numbers, lines = [], [], [], []
    unknown: dict[int, int] = {}
    first_unknown = None
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise AnnotationError(f"{path} line {line_no}: expected 5 fields 'video start end class_id score', "
                                      f"got {len(parts)}: {line.strip()!r}")
            try:
                start, end, score = float(parts[1]), float(parts[2]), float(parts[4])
                class_id = int(parts[3])
            except ValueError:
                raise AnnotationError(f"{path} line {line_no}: expected 'video start end class_id score' with numbers "
                                      f"(an integer class id), got {line.strip()!r}") from None
            label = names.get(class_id)
            if label is None:
                if unknown_class_ids == "error":
                    raise AnnotationError(f"{path} line {line_no}: class id {class_id} is not in the THUMOS14 class "
                                          f"list (ids {sorted(names)})")
                unknown[class_id] = unknown.get(class_id, 0) + 1
                first_unknown = first_unknown or line_no
                continue
            videos.append(strip_video_suffix(parts[0]))
            labels.append(label)
            numbers.append((start, end, score))
            lines.append(line_no)
    left_out = sum(unknown.values())
    if left_out:
        warnings.warn(f"{path}: {left_out} detections have class ids not among the THUMOS14 detection classes "
                      f"({sorted(unknown)}; first at line {first_unknown}); they are left out, as the kit does",
                      stacklevel=2)
    table = np.asarray(numbers, dtype=np.float64).reshape(-1, 3)
    return {"video": videos, "label": labels, "score": table[:, 2], "segment": table[:, :2],
            "line": np.asarray(lines, dtype=np.int64)}, left_out


def write_detections(path: str | os.PathLike, results, *, class_list=None) -> None:
    """Write detections as a kit detection file.

    results: `{video: [{"label", "score", "segment"}]}` or `{"results": ...}` (ActivityNet's
    submission format) or a path to such a json; labels are class names of the class list.
    """
    if isinstance(results, (str, os.PathLike)):
        results = read_json(results)
    results = results.get("results", results) if isinstance(results, Mapping) else results
    if not isinstance(results, Mapping):
        raise AnnotationError("write_detections: results must map video ids to lists of detections")
    ids = {name: i for i, name in read_class_list(class_list)}
    rows = []
    for video, entries in results.items():
        for j, e in enumerate(entries):
            class_id = ids.get(e.get("label") if isinstance(e, Mapping) else None)
            if class_id is None:
                raise AnnotationError(f"write_detections: video {video!r} entry {j}: label must be one of the "
                                      f"{len(ids)} THUMOS14 classes, got {e!r}")
            start, end = e["segment"]
            rows.append(f"{video} {float(start)!r} {float(end)!r} {class_id} {float(e['score'])!r}\n")
    with open(path, "w") as fh:
        fh.writelines(rows)


def kit_subset(subset: str | None, folder: str) -> str:
    """"test" / "val" for a kit folder; None picks test when its files are there, else val."""
    if subset is None:
        return "test" if any(n.endswith("_test.txt") for n in os.listdir(folder)) else "val"
    name = KIT_SUBSETS.get(subset.lower()) if isinstance(subset, str) else None
    if name is None:
        raise ValueError(f"THUMOS14 kit subset must be one of {sorted(KIT_SUBSETS)}, got {subset!r}")
    return name


def _read_intervals(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(videos, (N, 2) intervals, line numbers) of a `video start end` file."""
    videos, pairs, lines = [], [], []
    with open(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            parts = line.split()
            if not parts:
                continue
            try:
                if len(parts) != 3:
                    raise ValueError
                pairs.append((float(parts[1]), float(parts[2])))
            except ValueError:
                raise AnnotationError(f"{path} line {line_no}: expected 'video start end' (seconds), "
                                      f"got {line.strip()!r}") from None
            videos.append(strip_video_suffix(parts[0]))
            lines.append(line_no)
    return videos, np.asarray(pairs, dtype=np.float64).reshape(-1, 2), np.asarray(lines, dtype=np.int64)


def read_ground_truth(folder: str | os.PathLike, *, subset: str | None = None, class_list=None) -> GroundTruth:
    """The kit's groundtruth folder as a GroundTruth (classes in class-list order, Ambiguous regions
    included; videos in order of first appearance, class file by class file).

    class_list: default the folder's detclasslist.txt, else the copy shipped with the package.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"THUMOS14 groundtruth folder not found: {folder}")
    if class_list is None and os.path.isfile(os.path.join(folder, "detclasslist.txt")):
        class_list = os.path.join(folder, "detclasslist.txt")
    classes = tuple(name for _, name in read_class_list(class_list))
    subset = kit_subset(subset, folder)
    per_video: dict[str, tuple[list, list, list]] = {}
    reordered = 0
    for label in (*classes, AMBIGUOUS_LABEL):
        path = os.path.join(folder, f"{label}_{subset}.txt")
        if not os.path.isfile(path):
            raise AnnotationError(f"{path}: class file missing from the THUMOS14 groundtruth folder (class {label!r}, "
                                  f"subset {subset!r}); the kit needs one file per class and Ambiguous_{subset}.txt")
        videos, pairs, lines = _read_intervals(path)
        checked = check_segments(pairs, lambda i: f"{path} line {lines[i]}", reversed="swap")
        reordered += checked.num_swapped
        for video, seg in zip(videos, checked.segments):
            segments, labels, ambiguous = per_video.setdefault(video, ([], [], []))
            if label == AMBIGUOUS_LABEL:
                ambiguous.append(seg)
            else:
                segments.append(seg)
                labels.append(label)
    records = [VideoAnnotation(video, None, np.asarray(seg, dtype=np.float64).reshape(-1, 2), tuple(lab),
                               ambiguous=np.asarray(amb, dtype=np.float64).reshape(-1, 2))
               for video, (seg, lab, amb) in per_video.items()]
    return GroundTruth.from_annotations(records, classes, num_reordered=reordered)


def write_ground_truth(folder: str | os.PathLike, ground_truth: GroundTruth, *, subset: str = "test",
                       class_list=None) -> None:
    """Write a GroundTruth as a kit groundtruth folder: detclasslist.txt, `<Class>_<subset>.txt` for
    each class of the list (empty when it has no instance) and `Ambiguous_<subset>.txt`."""
    folder = os.fspath(folder)
    subset = kit_subset(subset, folder)
    entries = read_class_list(class_list)
    index = {name: i for i, name in enumerate(ground_truth.classes)}
    missing = sorted(set(index) - {name for _, name in entries})
    if missing:
        raise AnnotationError(f"write_ground_truth: classes {missing} are not in the THUMOS14 class list")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "detclasslist.txt"), "w") as fh:
        fh.writelines(f"{i} {name}\n" for i, name in entries)
    videos = np.asarray(ground_truth.video_ids, dtype=object)

    def write(name: str, video: np.ndarray, segments: np.ndarray) -> None:
        with open(os.path.join(folder, f"{name}_{subset}.txt"), "w") as fh:
            fh.writelines(f"{v} {float(s)!r} {float(e)!r}\n" for v, (s, e) in zip(videos[video], segments))

    for _, name in entries:
        rows = ground_truth.label == index.get(name, -1)
        write(name, ground_truth.video[rows], ground_truth.segments[rows])
    write(AMBIGUOUS_LABEL, ground_truth.ambiguous_video, ground_truth.ambiguous_segments)


__all__ = ["read_class_list", "read_detections", "read_ground_truth", "write_detections", "write_ground_truth"]
