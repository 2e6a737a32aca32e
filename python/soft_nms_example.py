"""Soft-NMS over many videos in one call: fixed-size outputs, no host synchronisation.

    python python/soft_nms_example.py
"""

import torch

import rcl_kernels

device = "cuda" if torch.cuda.is_available() else "cpu"
V, P = 8, 500  # videos, candidates per video
start = torch.rand(V, P, device=device) * 90
segments = torch.stack([start, start + torch.rand(V, P, device=device) * 10 + 0.5], -1)  # (V, P, 2)
scores = torch.rand(V, P, device=device)
labels = torch.randint(0, 20, (V, P), device=device)
lengths = torch.tensor([P, P, 300, 0, P, 17, P, P], device=device)  # valid candidates per video

kept = rcl_kernels.soft_nms(segments, scores, labels=labels, lengths=lengths, method="gaussian", sigma=0.5,
                            top_k=100)
print("kept per video:", kept.counts.tolist())
print("video 0, best 3:", kept.segments[0, :3].tolist(), kept.scores[0, :3].tolist(), kept.labels[0, :3].tolist())
