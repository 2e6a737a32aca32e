"""The item format shared by every dataset in rcl_kernels.data, the base Dataset, and collate.

An item is a dict:
    video_id          str
    features          float32 tensor (C, T)
    segments          float32 tensor (G, 2): [start, end] of each instance in feature steps, where
                      coordinate t is feature index t (the convention of rcl_kernels.segment_interp);
                      instances may reach slightly outside [0, T - 1]
    labels            int64 tensor (G,): indices into dataset.classes
    duration          float: video length in seconds
    fps               float: video frames per second
    feature_stride    float: video frames between consecutive features
    seconds_per_step  float
    time_offset       float: seconds at coordinate 0 (the centre of the first feature's clip)
Windowed items (rcl_kernels.data.windows) add `window_start` (int, the window's first step in its
video) and `window_neighbours` (the steps back to the previous window's start and on to the next
one's, inf where none), and carry the window's own time_offset, so that to_seconds() of window coordinates gives
video seconds directly.

seconds = time_offset + steps * seconds_per_step, for items and for collated batches alike
(to_seconds / to_steps). A dataset's ground_truth() is in the form
rcl_kernels.evaluation.detection_map accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from rcl_kernels.data.annotations import GroundTruth, VideoAnnotation

TIME_FIELDS = ("duration", "fps", "feature_stride", "seconds_per_step", "time_offset")


@dataclass(frozen=True)
class Timeline:
    """How a video's feature steps map to seconds."""

    num_steps: int
    seconds_per_step: float
    time_offset: float
    fps: float
    feature_stride: float

    @classmethod
    def from_clips(cls, num_steps: int, fps: float, feature_stride: float, clip_frames: float) -> Timeline:
        """Features of `clip_frames`-frame clips every `feature_stride` frames (ActionFormer: the time
        of step t is (t * stride + clip / 2) / fps)."""
        return cls(num_steps, feature_stride / fps, 0.5 * clip_frames / fps, fps, feature_stride)

    @classmethod
    def rescaled(cls, num_steps: int, duration: float, fps: float) -> Timeline:
        """Features resampled to num_steps over the video (BMN: step t at t / T of its duration)."""
        return cls(num_steps, duration / num_steps, 0.0, fps, duration * fps / num_steps)

    def to_seconds(self, steps):
        return self.time_offset + np.asarray(steps, dtype=np.float64) * self.seconds_per_step

    def to_steps(self, seconds):
        return (np.asarray(seconds, dtype=np.float64) - self.time_offset) / self.seconds_per_step

    def cropped(self, max_steps: int | None) -> Timeline:
        if max_steps is None or max_steps >= self.num_steps:
            return self
        return Timeline(max_steps, self.seconds_per_step, self.time_offset, self.fps, self.feature_stride)


def _time_field(item: dict, name: str):
    value = item[name]
    return value.to(torch.float64).unsqueeze(-1) if isinstance(value, torch.Tensor) else value


def to_seconds(steps, item: dict):
    """Feature-step coordinates -> seconds, for an item or (with (B, ...) steps) a collated batch."""
    offset, sps = _time_field(item, "time_offset"), _time_field(item, "seconds_per_step")
    if isinstance(steps, torch.Tensor):
        if isinstance(offset, torch.Tensor) and steps.dim() > 1:
            shape = (-1,) + (1,) * (steps.dim() - 1)
            offset, sps = offset.reshape(shape), sps.reshape(shape)
        return offset + steps.to(torch.float64) * sps
    return offset + np.asarray(steps, dtype=np.float64) * sps


def to_steps(seconds, item: dict):
    """Seconds -> feature-step coordinates (inverse of to_seconds)."""
    offset, sps = _time_field(item, "time_offset"), _time_field(item, "seconds_per_step")
    if isinstance(seconds, torch.Tensor):
        if isinstance(offset, torch.Tensor) and seconds.dim() > 1:
            shape = (-1,) + (1,) * (seconds.dim() - 1)
            offset, sps = offset.reshape(shape), sps.reshape(shape)
        return (seconds.to(torch.float64) - offset) / sps
    return (np.asarray(seconds, dtype=np.float64) - offset) / sps


def clip_instances(segments: np.ndarray, labels: np.ndarray, low: float, high: float,
                   min_coverage: float) -> tuple[np.ndarray, np.ndarray]:
    """Instances (G, 2) clipped to [low, high], keeping those with at least `min_coverage` of their
    length inside (a zero-length instance: if it lies inside)."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    length = segments[:, 1] - segments[:, 0]
    inside = np.clip(np.minimum(segments[:, 1], high) - np.maximum(segments[:, 0], low), 0, None)
    point_inside = (segments[:, 0] >= low) & (segments[:, 0] <= high)
    with np.errstate(invalid="ignore", divide="ignore"):
        keep = np.where(length > 0, inside / np.where(length > 0, length, 1) >= min_coverage, point_inside)
    return np.clip(segments[keep], low, high), np.asarray(labels)[keep]


class VideoDataset(Dataset):
    """Videos with annotations in seconds, a class list, and a Timeline per video; subclasses
    provide `load_features(index) -> (C, T) array` for T = the timeline's steps (or more: the
    extra steps are cropped, which is how max_steps works)."""

    def __init__(self, videos: Sequence[VideoAnnotation], classes: Sequence[str], timelines: Sequence[Timeline],
                 *, max_steps: int | None = None, min_coverage: float = 0.5):
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"max_steps must be an int >= 1 or None, got {max_steps!r}")
        if not 0 <= min_coverage <= 1:
            raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage!r}")
        self.classes = tuple(classes)
        self.class_index = {name: i for i, name in enumerate(self.classes)}
        self.videos: list[VideoAnnotation] = []
        self.timelines: list[Timeline] = []
        self._segments: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        for video, timeline in zip(videos, timelines, strict=True):
            for i, label in enumerate(video.labels):
                if label not in self.class_index:
                    raise ValueError(f"video {video.video_id!r} annotation {i}: field 'label' {label!r} is not "
                                     f"one of the dataset's {len(self.classes)} classes")
            labels = np.array([self.class_index[x] for x in video.labels], dtype=np.int64)
            steps = timeline.to_steps(video.segments)
            if max_steps is not None and timeline.num_steps > max_steps:
                timeline = timeline.cropped(max_steps)
                steps, labels = clip_instances(steps, labels, 0.0, max_steps - 1.0, min_coverage)
                video = _cropped_record(video, timeline, steps, labels, self.classes)
            self.videos.append(video)
            self.timelines.append(timeline)
            self._segments.append(steps)
            self._labels.append(labels)

    def __len__(self) -> int:
        return len(self.videos)

    def load_features(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def instances(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, 2) segments in feature steps and (G,) label indices, without loading features."""
        return self._segments[index], self._labels[index]

    def __getitem__(self, index: int) -> dict:
        video, timeline = self.videos[index], self.timelines[index]
        features = self.load_features(index)[:, : timeline.num_steps]
        if features.shape[1] < timeline.num_steps:
            raise ValueError(f"video {video.video_id!r}: features have {features.shape[1]} steps, "
                             f"expected {timeline.num_steps}")
        segments, labels = self.instances(index)
        return {
            "video_id": video.video_id,
            "features": torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32)),
            "segments": torch.as_tensor(segments, dtype=torch.float32).reshape(-1, 2),
            "labels": torch.as_tensor(labels, dtype=torch.int64),
            "duration": float(video.duration) if video.duration is not None else float(
                timeline.to_seconds(timeline.num_steps)),
            "fps": float(timeline.fps),
            "feature_stride": float(timeline.feature_stride),
            "seconds_per_step": float(timeline.seconds_per_step),
            "time_offset": float(timeline.time_offset),
        }

    def ground_truth(self) -> GroundTruth:
        """The dataset's instances (cropped ones as cropped) as an evaluation GroundTruth."""
        return GroundTruth.from_annotations(self.videos, classes=self.classes)


def _cropped_record(video: VideoAnnotation, timeline: Timeline, steps: np.ndarray, labels: np.ndarray,
                    classes: tuple[str, ...]) -> VideoAnnotation:
    # The cropped video ends at the last step's time, where its instances were clipped.
    end = float(timeline.to_seconds(timeline.num_steps - 1))
    ambiguous = np.minimum(video.ambiguous, end)
    ambiguous = ambiguous[ambiguous[:, 1] > ambiguous[:, 0]]
    return VideoAnnotation(video.video_id, end, timeline.to_seconds(steps).reshape(-1, 2),
                           tuple(classes[i] for i in labels), video.subset, video.fps, video.num_frames,
                           video.feature_frames, ambiguous)


def collate_videos(items: Sequence[dict], *, pad_to: int | None = None, pad_multiple: int = 1) -> dict:
    """Batch items: features zero-padded to the longest (or pad_to, rounded up to pad_multiple).

    Returns features (B, C, T), lengths (B,), mask (B, T) bool (True on real steps), segments
    (B, G, 2) zero-padded, labels (B, G) padded with -1, num_instances (B,), video_id (list), and
    the time fields as float64 (B,) tensors (window_start as int64 and window_neighbours (B, 2) as
    float32 when present).
    """
    if not items:
        raise ValueError("collate_videos: no items")
    channels = {it["features"].shape[0] for it in items}
    if len(channels) != 1:
        raise ValueError(f"collate_videos: items have different feature dims {sorted(channels)}")
    lengths = torch.tensor([it["features"].shape[1] for it in items], dtype=torch.int64)
    longest = int(lengths.max())
    if pad_to is not None:
        if longest > pad_to:
            worst = items[int(lengths.argmax())]["video_id"]
            raise ValueError(f"collate_videos: video {worst!r} has {longest} steps, more than pad_to={pad_to}")
        longest = pad_to
    if pad_multiple > 1:
        longest = -(-longest // pad_multiple) * pad_multiple
    batch, dim = len(items), channels.pop()
    features = items[0]["features"].new_zeros((batch, dim, longest))
    num_instances = torch.tensor([len(it["labels"]) for it in items], dtype=torch.int64)
    most = int(num_instances.max()) if batch else 0
    segments = torch.zeros((batch, most, 2), dtype=torch.float32)
    labels = torch.full((batch, most), -1, dtype=torch.int64)
    for b, it in enumerate(items):
        features[b, :, : it["features"].shape[1]] = it["features"]
        segments[b, : num_instances[b]] = it["segments"]
        labels[b, : num_instances[b]] = it["labels"]
    out = {
        "video_id": [it["video_id"] for it in items],
        "features": features,
        "lengths": lengths,
        "mask": torch.arange(longest)[None, :] < lengths[:, None],
        "segments": segments,
        "labels": labels,
        "num_instances": num_instances,
    }
    for name in TIME_FIELDS:
        out[name] = torch.tensor([it[name] for it in items], dtype=torch.float64)
    if "window_start" in items[0]:
        out["window_start"] = torch.tensor([it["window_start"] for it in items], dtype=torch.int64)
    if "window_neighbours" in items[0]:
        out["window_neighbours"] = torch.tensor([it["window_neighbours"] for it in items], dtype=torch.float32)
    return out
