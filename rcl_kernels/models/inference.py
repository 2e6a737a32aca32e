"""Inference and evaluation: detections of every video of a split (model, then Soft-NMS per
video), and their mAP overall and per instance-length bin."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rcl_kernels.evaluation import detection_map
from rcl_kernels.models.config import RunConfig
from rcl_kernels.models.data_setup import SplitData, batch_tensors, scoring_neighbours
from rcl_kernels.models.distributed import autocast
from rcl_kernels.models.length_bins import map_by_length
from rcl_kernels.models.postprocess import DetectionCollector
from rcl_kernels.models.candidates import OP_BACKEND
from rcl_kernels.models.rcl import Detector


@dataclass
class Evaluation:
    results: dict  # ActivityNet-format {video: [detections]}
    metrics: dict  # protocol, tiou_thresholds, map, average_map, by_length, timing


def detect(model: Detector, run: RunConfig, data: SplitData, device: torch.device) -> tuple[dict, float]:
    """Detections of every video of `data`, and the wall time it took (model + Soft-NMS)."""
    loader = DataLoader(data.items, batch_size=run.eval_batch_size, shuffle=False, collate_fn=data.collate,
                        num_workers=run.num_workers)
    model.eval()
    collector = DetectionCollector()
    began = time.perf_counter()
    with torch.no_grad():
        for batch in tqdm(loader, desc="detect", unit="batch", disable=not run.progress, dynamic_ncols=True):
            features, mask, _, _ = batch_tensors(batch, device)
            with autocast(run, device):
                candidates = model.detect(features, mask, class_agnostic=run.class_agnostic,
                                          neighbours=scoring_neighbours(batch, run, device))
            collector.add(candidates, batch)
    sigma, min_score = run.effective_nms
    results = collector.results(data.videos.classes, top_k=run.effective_top_k, sigma=sigma, min_score=min_score,
                                backend=OP_BACKEND[model.config.backend], class_agnostic=run.class_agnostic,
                                video_ids=[v.video_id for v in data.videos.videos])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return results, time.perf_counter() - began


def ground_truth(data: SplitData, class_agnostic: bool):
    gt = data.videos.ground_truth()
    if class_agnostic:
        gt = dataclasses.replace(gt, classes=("action",), label=np.zeros_like(gt.label))
    return gt


def evaluate(model: Detector, run: RunConfig, data: SplitData, device: torch.device, *,
             length_edges=None) -> Evaluation:
    results, seconds = detect(model, run, data, device)
    gt = ground_truth(data, run.class_agnostic)
    protocol = run.effective_protocol
    overall = detection_map(results, gt, protocol=protocol)
    by_length = map_by_length(results, gt, data.seconds_per_step(), edges=length_edges, protocol=protocol)
    metrics = {
        "protocol": protocol,
        "class_agnostic": run.class_agnostic,
        "tiou_thresholds": overall.tiou_thresholds.tolist(),
        "map": overall.map.tolist(),
        "average_map": overall.average_map,
        "by_length": by_length,
        "videos": len(data.videos),
        "items": len(data.items),
        "inference_seconds": seconds,
    }
    return Evaluation(results, metrics)


