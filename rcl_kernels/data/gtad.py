"""THUMOS14 in G-TAD's layout: the `video,type,type_idx,start,end,...` csv (Ambiguous regions kept
for the thumos14 protocol) with per-video `<video>.npy` (T, D) features.

The csv has no durations or frame rates; they come from an ActivityNet-format json (by default
the THUMOS14 file shipped in the package). Long videos are usually cut into windows
(rcl_kernels.data.windows.WindowedDataset).
"""

from __future__ import annotations

import os
from typing import Sequence

from rcl_kernels.data import builtin
from rcl_kernels.data.actionformer import NpyFeatureDataset
from rcl_kernels.data.annotations import AnnotationError, VideoAnnotation, load_annotations


def gtad_thumos14_dataset(annotation_csv: str, feature_dir: str, *, video_info_json: str | None = None,
                          classes: Sequence[str] | None = None, feature_stride: float = 4, clip_frames: float = 16,
                          suffix: str = ".npy", max_steps: int | None = None) -> NpyFeatureDataset:
    """Videos of the csv that have instances; classes default to the 20 THUMOS14 classes."""
    info_path = video_info_json or builtin.THUMOS14_JSON
    info = {r.video_id: r for r in load_annotations(info_path)}
    records = []
    for r in load_annotations(annotation_csv):
        if not r.num_instances:
            continue  # e.g. a video with only Ambiguous regions
        known = info.get(r.video_id)
        if known is None:
            raise AnnotationError(f"{os.fspath(annotation_csv)}: video {r.video_id!r} has no duration/fps "
                                  f"in {info_path}")
        records.append(VideoAnnotation(r.video_id, known.duration, r.segments, r.labels, known.subset,
                                       known.fps, ambiguous=r.ambiguous))
    return NpyFeatureDataset(records, classes or builtin.thumos14_classes(), feature_dir,
                             feature_stride=feature_stride, clip_frames=clip_frames, suffix=suffix, max_steps=max_steps)
