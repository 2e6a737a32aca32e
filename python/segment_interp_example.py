"""SoI in a few lines: sample 16 feature vectors inside arbitrary continuous segments, and get
gradients for both the features and the segment coordinates.

    python python/segment_interp_example.py
"""

import torch

import rcl_kernels

device = "cuda" if torch.cuda.is_available() else "cpu"
features = torch.randn(2, 256, 100, device=device, requires_grad=True)  # (B, C, T)
segments = torch.tensor([[[10.3, 42.7], [0.0, 99.0], [55.5, 56.1]],  # (B, K, 2) in feature steps
                         [[-3.0, 20.0], [80.25, 120.0], [30.0, 30.0]]], device=device, requires_grad=True)

# BMN-style: 3 sub-samples averaged per point, window widened by half the length on each side.
points = rcl_kernels.segment_interp(features, segments, 16, samples_per_point=3, context=0.5)
print("output", tuple(points.shape), points.dtype, "backend:", rcl_kernels.info(file=False)["ops"]
      ["segment_interp"][device]["auto"])

points.square().mean().backward()
print("d loss / d segments:\n", segments.grad)
