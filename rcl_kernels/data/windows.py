"""Overlapping fixed-length windows over long videos (as G-TAD does on THUMOS14), and back.

A window item is a normal item (rcl_kernels.data.dataset) of at most `window` steps, plus
`window_start` and `window_neighbours`; its time_offset is the window's, so to_seconds(window
coordinates, item) gives video seconds, and window_to_video() gives video steps. Detections from
overlapping windows then need merging (e.g. Soft-NMS) per video.

Overlapping windows see most segments twice. `owned_by_window` splits the segments among them:
a segment belongs to the window, among those that contain it, whose centre is nearest to the
segment's midpoint (the earlier window on a tie), so a detector that scores only its window's own
segments scores each segment once, in the window that gives it the most context on both sides.
"""

from __future__ import annotations

import math

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


def neighbour_gaps(starts: list[int], i: int) -> tuple[float, float]:
    """Steps from window i's start back to the previous window's and on to the next window's
    (inf where there is none), for windows starting at `starts` (window_starts' list)."""
    previous = starts[i] - starts[i - 1] if i > 0 else math.inf
    following = starts[i + 1] - starts[i] if i + 1 < len(starts) else math.inf
    return float(previous), float(following)


def owned_by_window(segments: torch.Tensor, length: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: whether segments (B, K, 2) or (K, 2), in the coordinates of windows of `length`
    (B,) steps, belong to their window rather than to one of its neighbours, which start
    neighbours[:, 0] steps earlier and neighbours[:, 1] steps later (inf: none).

    In these coordinates the previous window is centred at length / 2 - gap, so it is nearer to a
    midpoint at most (length - gap) / 2 (a tie goes to it, the earlier window); the next window,
    centred at length / 2 + gap, is nearer to a midpoint beyond (length + gap) / 2. The windows of
    a video that has several all have the same length, so a neighbour that is nearer also contains
    the segment whole (its midpoint at most (length - gap) / 2 and its start at least 0 put its
    end at most length - gap), and the window nearest to the midpoint among those containing the
    segment is the one that does not lose it to either neighbour (the distance to the centres
    falls, then rises along the windows).
    """
    if segments.dim() == 2:
        segments = segments[None]
    B = length.shape[0] if length.dim() == 1 else -1
    if segments.dim() != 3 or segments.shape[-1] != 2 or segments.shape[0] not in (1, B):
        raise ValueError(f"owned_by_window: segments must have shape (B, K, 2) or (K, 2) with B = {B} windows, "
                         f"got {tuple(segments.shape)}")
    if length.dim() != 1 or tuple(neighbours.shape) != (B, 2):
        raise ValueError(f"owned_by_window: length must have shape (B,) and neighbours (B, 2), got "
                         f"{tuple(length.shape)} and {tuple(neighbours.shape)}")
    if bool((torch.isnan(neighbours) | (neighbours < 0)).any()):
        raise ValueError("owned_by_window: neighbours must be gaps in steps, >= 0 (inf: no neighbour), got "
                         f"{neighbours.tolist() if neighbours.numel() <= 8 else 'NaN or negative values'}")
    length = length.to(segments.dtype)[:, None]
    before, after = (neighbours.to(segments.dtype)[:, i, None] for i in (0, 1))
    middle = 0.5 * (segments[..., 0] + segments[..., 1])
    return (middle > 0.5 * (length - before)) & (middle <= 0.5 * (length + after))


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
        self.index: list[tuple[int, int, tuple[float, float]]] = []
        for v, timeline in enumerate(dataset.timelines):
            segments, _ = dataset.instances(v)
            starts = window_starts(timeline.num_steps, window, self.stride)
            for i, start in enumerate(starts):
                if keep_empty or len(self._instances(segments, np.zeros(len(segments)), start, timeline.num_steps)[0]):
                    self.index.append((v, start, neighbour_gaps(starts, i)))

    def __len__(self) -> int:
        return len(self.index)

    def _instances(self, segments, labels, start: int, num_steps: int):
        length = min(self.window, num_steps - start)
        clipped, kept = clip_instances(segments, labels, start, start + length - 1.0, self.min_coverage)
        return clipped - start, kept

    def __getitem__(self, i: int) -> dict:
        v, start, gaps = self.index[i]
        item = self.dataset[v]
        num_steps = item["features"].shape[1]
        segments, labels = self._instances(item["segments"].numpy(), item["labels"].numpy(), start, num_steps)
        item["features"] = item["features"][:, start:start + self.window].contiguous()
        item["segments"] = torch.as_tensor(segments, dtype=torch.float32).reshape(-1, 2)
        item["labels"] = torch.as_tensor(labels, dtype=torch.int64)
        item["time_offset"] = item["time_offset"] + start * item["seconds_per_step"]
        item["window_start"] = start
        item["window_neighbours"] = gaps
        return item

    def ground_truth(self):
        """The whole videos' ground truth (evaluate merged detections against it)."""
        return self.dataset.ground_truth()
