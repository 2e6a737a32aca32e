"""The feature-blind prior baseline: the same top-N segments for every video, in coordinates relative
to the video's duration, ranked by how often they match a training instance.

Candidates are the cells [s / G, e / G], 0 <= s < e <= G, of a G-step grid (every start <= end
cell, BMN's anchors at G = T). A training instance matches a cell when their tIoU (relative
coordinates) reaches `match_tiou`; a cell's score is its matches over the training instances.
The top_n cells are every test video's detections, scaled to its duration. With `nms_sigma`, the
ranking is Gaussian Soft-NMS's over the counts (rcl_kernels.soft_nms), so the top_n are not near
copies of the most frequent cell: the stronger baseline, the one a detector must beat. Nothing here looks at
features: a detector that does not beat this baseline has learnt the dataset's length and position
statistics, not to detect.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from rcl_kernels.data.dataset import VideoDataset
from rcl_kernels.evaluation.tiou import pairwise_tiou
from rcl_kernels.ops.soft_nms import soft_nms

PAIRS_PER_CHUNK = 2_000_000  # bound on the (cells x instances) tIoU block held at once


class Prior(NamedTuple):
    segments: np.ndarray  # (N, 2) relative start, end in [0, 1]
    scores: np.ndarray  # (N,) fraction of training instances each matches


def relative_instances(videos: VideoDataset) -> np.ndarray:
    """(G, 2) every instance of the dataset as (start, end) / its video's duration, in [0, 1]."""
    out = []
    for video in videos.videos:
        if len(video.segments) and video.duration:
            out.append(np.clip(np.asarray(video.segments, dtype=np.float64) / float(video.duration), 0.0, 1.0))
    return np.concatenate(out) if out else np.zeros((0, 2))


def fit_prior(train: VideoDataset, *, grid: int = 100, top_n: int = 100, match_tiou: float = 0.5,
              nms_sigma: float | None = None) -> Prior:
    """The top_n grid cells by match frequency with the training instances (ties: shorter first),
    or, with nms_sigma, by Soft-NMS of those frequencies."""
    if grid < 1 or top_n < 1 or not 0 < match_tiou <= 1:
        raise ValueError(f"fit_prior: grid and top_n must be >= 1 and match_tiou in (0, 1], "
                         f"got {grid}, {top_n}, {match_tiou}")
    start, end = np.triu_indices(grid + 1, k=1)
    cells = np.stack([start, end], axis=1) / grid
    instances = relative_instances(train)
    counts = np.zeros(len(cells))
    chunk = max(1, PAIRS_PER_CHUNK // max(1, len(cells)))
    for i in range(0, len(instances), chunk):
        counts += (pairwise_tiou(cells, instances[i:i + chunk]) >= match_tiou).sum(axis=1)
    frequency = counts / max(1, len(instances))
    if nms_sigma is not None:
        kept = soft_nms(torch.from_numpy(cells).float()[None], torch.from_numpy(frequency).float()[None],
                        method="gaussian", sigma=nms_sigma, min_score=0.0, top_k=top_n)
        n = int(kept.counts[0])
        return Prior(kept.segments[0, :n].double().numpy(), kept.scores[0, :n].double().numpy())
    order = np.lexsort((cells[:, 1] - cells[:, 0], -counts))[:top_n]
    return Prior(cells[order], frequency[order])


def prior_detections(prior: Prior, videos: VideoDataset, label: str = "action") -> dict[str, list[dict]]:
    """ActivityNet-format results: the prior's segments scaled to each video's duration."""
    out = {}
    for video in videos.videos:
        duration = float(video.duration)
        out[video.video_id] = [{"label": label, "score": float(score), "segment": [float(s * duration),
                                                                                   float(e * duration)]}
                               for (s, e), score in zip(prior.segments, prior.scores)]
    return out
