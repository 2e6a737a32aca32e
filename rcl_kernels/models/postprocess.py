"""Candidates -> per-video Soft-NMS -> ActivityNet-format results in seconds.

Candidates come per item (a whole video, or a window of one, rcl_kernels.data.windows) in the
item's steps; to_seconds() of an item's coordinates gives video seconds (a window item carries its
own time_offset). All candidates of a video, from every window, go through one class-aware
Soft-NMS (rcl_kernels.soft_nms, batched over videos), which keeps the top_k of the video.
"""

from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

import torch

from rcl_kernels.data.dataset import to_seconds
from rcl_kernels.models.rcl import Candidates
from rcl_kernels.ops.soft_nms import soft_nms


class DetectionCollector:
    """Accumulates candidates batch by batch, per video, in seconds (on the CPU)."""

    def __init__(self):
        self.segments: dict[str, list[torch.Tensor]] = {}
        self.scores: dict[str, list[torch.Tensor]] = {}
        self.labels: dict[str, list[torch.Tensor]] = {}
        self.durations: dict[str, float] = {}

    def add(self, candidates: Candidates, batch: Mapping) -> None:
        seconds = to_seconds(candidates.segments.detach().cpu().to(torch.float64), _time_fields(batch))
        scores, labels, valid = (t.detach().cpu() for t in (candidates.scores, candidates.labels, candidates.valid))
        for b, video in enumerate(batch["video_id"]):
            keep = valid[b]
            self.segments.setdefault(video, []).append(seconds[b][keep].to(torch.float32))
            self.scores.setdefault(video, []).append(scores[b][keep].float())
            self.labels.setdefault(video, []).append(labels[b][keep])
            self.durations[video] = float(batch["duration"][b])

    def results(self, classes: Sequence[str], *, top_k: int, sigma: float = 0.5, min_score: float = 0.0,
                backend: str = "auto",
                class_agnostic: bool = False, video_ids: Sequence[str] | None = None) -> dict[str, list[dict]]:
        """{video_id: [{"label", "score", "segment": [start, end] seconds}]}, best first.

        Soft-NMS: Gaussian decay (sigma), class-aware (class_agnostic: one class, "action"); a
        candidate whose decayed score falls below min_score is dropped;
        segments are clipped to [0, duration]. Videos in video_ids without candidates get [].
        """
        videos = list(self.segments)
        out: dict[str, list[dict]] = {v: [] for v in (video_ids or [])}
        if not videos:
            return out
        counts = [sum(len(s) for s in self.scores[v]) for v in videos]
        P = max(max(counts), 1)
        V = len(videos)
        seg = torch.zeros(V, P, 2)
        score = torch.zeros(V, P)
        label = torch.zeros(V, P, dtype=torch.int64)
        for i, v in enumerate(videos):
            n = counts[i]
            if n:
                seg[i, :n] = torch.cat(self.segments[v]).clamp(0, self.durations[v])
                score[i, :n] = torch.cat(self.scores[v])
                label[i, :n] = 0 if class_agnostic else torch.cat(self.labels[v])
        kept = soft_nms(seg, score, labels=label, lengths=torch.tensor(counts), method="gaussian", sigma=sigma,
                        min_score=min_score, top_k=top_k, backend=backend)
        names = ("action",) if class_agnostic else tuple(classes)
        for i, v in enumerate(videos):
            n = int(kept.counts[i])
            out[v] = [{"label": names[int(kept.labels[i, j])], "score": float(kept.scores[i, j]),
                       "segment": [float(kept.segments[i, j, 0]), float(kept.segments[i, j, 1])]} for j in range(n)]
        return out


def _time_fields(batch: Mapping) -> dict:
    return {"time_offset": batch["time_offset"], "seconds_per_step": batch["seconds_per_step"]}


def write_results_json(path: str, results: Mapping[str, list[dict]], **extra) -> None:
    """ActivityNet's submission format: {"version", "results", "external_data"}."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = {"version": "rcl_kernels RCL", "results": dict(results), "external_data": {}}
    payload.update(extra)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(payload, fh)
    os.replace(tmp, path)
