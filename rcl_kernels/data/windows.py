"""Overlapping fixed-length windows over long videos (as G-TAD does on THUMOS14), and back.

A window item is a normal item (rcl_kernels.data.dataset) of at most `window` steps, plus
`window_start`; its time_offset is the window's, so to_seconds(window coordinates, item) gives
video seconds, and window_to_video() gives video steps. Detections from overlapping windows then
need merging (e.g. Soft-NMS) per video.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from rcl_kernels.data.dataset import VideoDataset, clip_instances


def window_starts(num_steps: int, window: int, stride: int) -> list[int]:
    """First steps of windows of `window` steps every `stride` steps; the last window is aligned to
    the video's end so that every step is covered; one window if the video is not longer."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    if num_steps <= window:
        return [0]
    starts = list(range(0, num_steps - window + 1, stride))
    if starts[-1] + window < num_steps:
        starts.append(num_steps - window)
    return starts


def window_to_video(segments, window_start):
    """Window coordinates -> video coordinates (steps)."""
    if isinstance(segments, torch.Tensor) and isinstance(window_start, torch.Tensor):
        return segments + window_start.reshape((-1,) + (1,) * (segments.dim() - 1)).to(segments.dtype)
    return segments + window_start


class WindowedDataset(Dataset):
    """The windows of every video of `dataset`.

    Instances are clipped to the window's steps [0, length - 1] and kept if at least
    `min_coverage` of their length lies inside. keep_empty=False drops windows without instances
    (for training).
    """

    def __init__(self, dataset: VideoDataset, window: int, stride: int | None = None, *,
                 min_coverage: float = 0.5, keep_empty: bool = True):
        self.dataset = dataset
        self.window = window
        self.stride = stride if stride is not None else max(1, window // 2)
        self.min_coverage = min_coverage
        self.classes = dataset.classes
        self.index: list[tuple[int, int]] = []
        for v, timeline in enumerate(dataset.timelines):
            segments, _ = dataset.instances(v)
            for start in window_starts(timeline.num_steps, window, self.stride):
                if keep_empty or len(self._instances(segments, np.zeros(len(segments)), start, timeline.num_steps)[0]):
                    self.index.append((v, start))

    def __len__(self) -> int:
        return len(self.index)

    def _instances(self, segments, labels, start: int, num_steps: int):
        length = min(self.window, num_steps - start)
        clipped, kept = clip_instances(segments, labels, start, start + length - 1.0, self.min_coverage)
        return clipped - start, kept

    def __getitem__(self, i: int) -> dict:
        v, start = self.index[i]
        item = self.dataset[v]
        num_steps = item["features"].shape[1]
        segments, labels = self._instances(item["segments"].numpy(), item["labels"].numpy(), start, num_steps)
        item["features"] = item["features"][:, start:start + self.window].contiguous()
        item["segments"] = torch.as_tensor(segments, dtype=torch.float32).reshape(-1, 2)
        item["labels"] = torch.as_tensor(labels, dtype=torch.int64)
        item["time_offset"] = item["time_offset"] + start * item["seconds_per_step"]
        item["window_start"] = start
        return item

    def ground_truth(self):
        """The whole videos' ground truth (evaluate merged detections against it)."""
        return self.dataset.ground_truth()
