"""Real features in BSN/BMN's ActivityNet layout: anet_anno_action.json, video_info_new.csv and
`<feature_dir>/<video>.csv` (a header f0..f{D-1}, one row per snippet), rescaled to a fixed T.

Times follow BMN: the features cover feature_frame of the video's duration_frame frames, so the
covered length is duration x feature_frame / duration_frame seconds, and step t sits at t / T of
it. Rescaling interpolates linearly, output step t reading input row t x N / T (N rows).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from rcl_kernels.data.annotations import VideoAnnotation, class_names, load_annotations, select_subset
from rcl_kernels.data.dataset import Timeline, VideoDataset


def rescale_features(features: np.ndarray, num_steps: int) -> np.ndarray:
    """(N, D) rows -> (D, num_steps) by linear interpolation at rows t x N / num_steps."""
    n = features.shape[0]
    position = np.clip(np.arange(num_steps) * n / num_steps, 0, n - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    frac = (position - low)[:, None]
    return ((1 - frac) * features[low] + frac * features[high]).T


def read_feature_csv(path: str, video_id: str) -> np.ndarray:
    """(N, D) float array from a BSN feature csv, with errors naming the video and file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video {video_id!r}: feature file not found: {path}")
    try:
        array = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"video {video_id!r}: malformed feature csv {path}: {exc}") from None
    if array.shape[0] < 1 or not np.isfinite(array).all():
        raise ValueError(f"video {video_id!r}: feature csv {path} must have >= 1 finite rows, got shape {array.shape}")
    return array


def _timeline(video: VideoAnnotation, num_steps: int) -> Timeline:
    if not video.duration:
        raise ValueError(f"video {video.video_id!r}: field 'duration_second' is missing or 0")
    covered = video.duration
    if video.feature_frames and video.num_frames:
        covered = video.duration * video.feature_frames / video.num_frames
    return Timeline.rescaled(num_steps, covered, video.fps or 0.0)


class BSNFeatureDataset(VideoDataset):
    def __init__(self, videos: Sequence[VideoAnnotation], classes: Sequence[str], feature_dir: str, *,
                 temporal_scale: int = 100):
        self.feature_dir = os.fspath(feature_dir)
        self.temporal_scale = temporal_scale
        super().__init__(videos, classes, [_timeline(v, temporal_scale) for v in videos])

    def load_features(self, index: int) -> np.ndarray:
        video_id = self.videos[index].video_id
        rows = read_feature_csv(os.path.join(self.feature_dir, video_id + ".csv"), video_id)
        return rescale_features(rows, self.temporal_scale)


def bsn_dataset(annotation_file: str, video_info_file: str, feature_dir: str, subset: str, *,
                classes: Sequence[str] | None = None, temporal_scale: int = 100) -> BSNFeatureDataset:
    """BSN/BMN's layout; subset is "training" / "validation" (video_info_new.csv's names)."""
    records = select_subset(load_annotations(annotation_file, video_info=video_info_file), subset,
                            os.fspath(annotation_file))
    return BSNFeatureDataset(records, classes or class_names(records), feature_dir, temporal_scale=temporal_scale)
