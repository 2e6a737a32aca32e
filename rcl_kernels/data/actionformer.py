"""Real features in ActionFormer's layout: an annotation json and one `<video>.npy` (T, D) per video.

Unit conversion follows ActionFormer's THUMOS14 convention: feature t is the clip of `clip_frames`
frames starting at frame t * feature_stride, so its time is (t * stride + clip / 2) / fps.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from rcl_kernels.data.annotations import (
    VideoAnnotation,
    class_names,
    load_annotations,
    parse_database,
    read_json,
    select_subset,
    with_ambiguous,
)
from rcl_kernels.data.dataset import Timeline, VideoDataset


class NpyFeatureDataset(VideoDataset):
    """Videos whose features are `<feature_dir>/<video_id><suffix>` arrays of shape (T, D)."""

    def __init__(self, videos: Sequence[VideoAnnotation], classes: Sequence[str], feature_dir: str, *,
                 feature_stride: float = 4, clip_frames: float = 16, default_fps: float | None = None,
                 suffix: str = ".npy", max_steps: int | None = None, min_coverage: float = 0.5):
        self.feature_dir = os.fspath(feature_dir)
        self.suffix = suffix
        timelines = []
        for video in videos:
            fps = video.fps or default_fps
            if not fps:
                raise ValueError(f"video {video.video_id!r}: field 'fps' is missing; pass default_fps")
            num_steps = self._read(video.video_id, mmap=True).shape[0]
            timelines.append(Timeline.from_clips(num_steps, fps, feature_stride, clip_frames))
        super().__init__(videos, classes, timelines, max_steps=max_steps, min_coverage=min_coverage)

    def feature_path(self, video_id: str) -> str:
        return os.path.join(self.feature_dir, video_id + self.suffix)

    def _read(self, video_id: str, mmap: bool = False) -> np.ndarray:
        path = self.feature_path(video_id)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"video {video_id!r}: feature file not found: {path}")
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise ValueError(f"video {video_id!r}: cannot read feature file {path}: {exc}") from None
        if array.ndim != 2 or array.shape[0] < 1:
            raise ValueError(f"video {video_id!r}: feature file {path} must hold a (T, D) array with T >= 1, "
                             f"got shape {array.shape}")
        return array

    def load_features(self, index: int) -> np.ndarray:
        video_id = self.videos[index].video_id
        features = self._read(video_id).T
        if not np.isfinite(features).all():
            raise ValueError(f"video {video_id!r}: feature file {self.feature_path(video_id)} has NaN or inf values")
        return features


def _classes_by_label_id(database: dict) -> tuple[str, ...] | None:
    """Class names ordered by ActionFormer's label_id, if every annotation has one."""
    ids = {}
    for video in database.values():
        for a in video.get("annotations", []):
            if "label_id" not in a:
                return None
            ids[a["label"]] = a["label_id"]
    return tuple(sorted(ids, key=ids.__getitem__))


def actionformer_dataset(annotation_file: str, feature_dir: str, subset: str | Sequence[str], *,
                         classes: Sequence[str] | None = None, feature_stride: float = 4, clip_frames: float = 16,
                         default_fps: float | None = None, suffix: str = ".npy", ambiguous_file: str | None = None,
                         max_steps: int | None = None) -> NpyFeatureDataset:
    """ActionFormer's layout. subset: e.g. "Validation" / "Test" (THUMOS14), case-insensitive.

    classes default to the json's label_id order (else its sorted labels); ambiguous_file (a G-TAD
    csv) adds THUMOS14's Ambiguous regions to ground_truth().
    """
    data = read_json(annotation_file)
    records = select_subset(parse_database(data, os.fspath(annotation_file)), subset, os.fspath(annotation_file))
    if classes is None:
        classes = (_classes_by_label_id(data.get("database", {})) if isinstance(data, dict) else None) \
            or class_names(records)
    if ambiguous_file is not None:
        records = with_ambiguous(records, load_annotations(ambiguous_file))
    return NpyFeatureDataset(records, classes, feature_dir, feature_stride=feature_stride, clip_frames=clip_frames,
                             default_fps=default_fps, suffix=suffix, max_steps=max_steps)
