"""The THUMOS14 and ActivityNet v1.3 annotations shipped inside the package (annotations/SOURCES.md).

Splits follow the community's use: THUMOS14 trains on its Validation videos and tests on its
Test videos; ActivityNet trains on "training" and reports on "validation".
"""

from __future__ import annotations

import csv
import os
from functools import lru_cache

from rcl_kernels.data.annotations import (
    ANNOTATION_DIR,
    AnnotationError,
    GroundTruth,
    VideoAnnotation,
    load_annotations,
    read_json,
    select_subset,
    with_ambiguous,
)

THUMOS14_JSON = os.path.join(ANNOTATION_DIR, "thumos14", "thumos14.json")
THUMOS14_CSV = {"Validation": os.path.join(ANNOTATION_DIR, "thumos14", "val_Annotation.csv"),
                "Test": os.path.join(ANNOTATION_DIR, "thumos14", "test_Annotation.csv")}
ACTIVITYNET_JSON = os.path.join(ANNOTATION_DIR, "activitynet", "anet_anno_action.json")
ACTIVITYNET_VIDEO_INFO = os.path.join(ANNOTATION_DIR, "activitynet", "video_info_new.csv")
ACTIVITYNET_CLASSES = os.path.join(ANNOTATION_DIR, "activitynet", "action_name.csv")

THUMOS14_SPLITS = {"train": "Validation", "validation": "Validation", "val": "Validation", "test": "Test"}
ACTIVITYNET_SPLITS = {"train": "training", "training": "training", "val": "validation",
                      "validation": "validation", "test": "testing", "testing": "testing"}

# ActionFormer's released THUMOS14 features: one per 16-frame clip, every 4 frames.
THUMOS14_FEATURE_STRIDE = 4
THUMOS14_CLIP_FRAMES = 16
# BMN's ActivityNet features are rescaled to 100 steps per video.
ACTIVITYNET_TEMPORAL_SCALE = 100


def _split_name(split: str, table: dict[str, str], dataset: str) -> str:
    name = table.get(split.lower()) if isinstance(split, str) else None
    if name is None:
        raise ValueError(f"{dataset}: split must be one of {sorted(table)}, got {split!r}")
    return name


def thumos14_subset(split: str) -> str:
    """"train" -> "Validation", "test" -> "Test" (the subset names in thumos14.json)."""
    return _split_name(split, THUMOS14_SPLITS, "THUMOS14")


def activitynet_subset(split: str) -> str:
    """"train" -> "training", "val"/"validation" -> "validation", "test" -> "testing"."""
    return _split_name(split, ACTIVITYNET_SPLITS, "ActivityNet")


@lru_cache(maxsize=1)
def _thumos14_records() -> tuple[VideoAnnotation, ...]:
    return tuple(load_annotations(THUMOS14_JSON))


@lru_cache(maxsize=1)
def thumos14_classes() -> tuple[str, ...]:
    """The 20 class names, in the order of ActionFormer's label_id (0..19)."""
    database = read_json(THUMOS14_JSON)["database"]
    ids = {a["label"]: a["label_id"] for v in database.values() for a in v["annotations"]}
    return tuple(sorted(ids, key=ids.__getitem__))


@lru_cache(maxsize=2)
def thumos14_annotations(split: str) -> tuple[VideoAnnotation, ...]:
    """The videos of a THUMOS14 split, from thumos14.json (durations, fps, instances), with the
    Ambiguous regions of the G-TAD csv of the same subset."""
    subset = thumos14_subset(split)
    records = select_subset(_thumos14_records(), subset, THUMOS14_JSON)
    return tuple(with_ambiguous(records, load_annotations(THUMOS14_CSV[subset])))


@lru_cache(maxsize=1)
def _activitynet_records() -> tuple[VideoAnnotation, ...]:
    return tuple(load_annotations(ACTIVITYNET_JSON, video_info=ACTIVITYNET_VIDEO_INFO))


@lru_cache(maxsize=1)
def activitynet_classes() -> tuple[str, ...]:
    """The 200 class names, in the order of BSN/BMN's action_name.csv."""
    with open(ACTIVITYNET_CLASSES, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0] != ["action"]:
        raise AnnotationError(f"{ACTIVITYNET_CLASSES}: expected a single column 'action'")
    return tuple(row[0] for row in rows[1:])


@lru_cache(maxsize=3)
def activitynet_annotations(split: str) -> tuple[VideoAnnotation, ...]:
    """The videos of an ActivityNet v1.3 split (BSN's json with its video_info_new.csv)."""
    return tuple(select_subset(_activitynet_records(), activitynet_subset(split), ACTIVITYNET_JSON))


def thumos14_ground_truth(split: str = "test") -> GroundTruth:
    """The THUMOS14 split as an evaluation GroundTruth (20 classes, Ambiguous regions included)."""
    return GroundTruth.from_annotations(thumos14_annotations(split), classes=thumos14_classes())


def activitynet_ground_truth(split: str = "validation") -> GroundTruth:
    """The ActivityNet split as an evaluation GroundTruth (200 classes)."""
    return GroundTruth.from_annotations(activitynet_annotations(split), classes=activitynet_classes())
