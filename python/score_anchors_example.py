"""Score every start <= end anchor of a 100-step video with RCL's continuous anchor MLP, without
materialising the (B, K, C, N) interpolated features.

    python python/score_anchors_example.py
"""

import torch

import rcl_kernels

device = "cuda" if torch.cuda.is_available() else "cpu"
B, C, T = 2, 128, 100
features = torch.randn(B, C, T, device=device)
start, end = torch.triu_indices(T, T)
anchors = torch.stack([start, end], -1).float().to(device).expand(B, -1, -1)  # (B, 5050, 2)

scorer = rcl_kernels.AnchorScorer(C, num_samples=16, hidden=256, out_channels=4, samples_per_point=3,
                                  context=0.5).to(device)
scores = scorer(features, anchors)  # (B, K, 4): 2 confidences + 2 offsets in RCL
print("scores", tuple(scores.shape))
scores[..., :2].sigmoid().mean().backward()
print("grad of W1:", tuple(scorer.w1.grad.shape))
