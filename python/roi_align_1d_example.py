"""1D RoIAlign in a few lines: torchvision's numbers (aligned=True) or G-TAD's Align1D
(aligned=False) on a (B, C, T) sequence, with gradients for the roi coordinates.

    python python/roi_align_1d_example.py
"""

import torch

import rcl_kernels

device = "cuda" if torch.cuda.is_available() else "cpu"
features = torch.randn(2, 256, 100, device=device, requires_grad=True)  # (B, C, T)
rois = torch.tensor([[0, 10.3, 42.7], [0, 0.0, 99.0], [1, 55.5, 56.1], [1, -3.0, 20.0]],  # (batch, start, end)
                    device=device, requires_grad=True)

out = rcl_kernels.roi_align_1d(features, rois, 16, sampling_ratio=2, aligned=True)  # (R, C, 16)
print("output", tuple(out.shape), "backend:", rcl_kernels.info(file=False)["ops"]["roi_align_1d"][device]["auto"])

out.square().mean().backward()
print("d loss / d (start, end):\n", rois.grad[:, 1:])

# Segments per video work too: (B, K, 2) -> (B, K, C, P)
segments = torch.tensor([[[10.0, 30.0]], [[50.0, 90.0]]], device=device)
print("segments layout", tuple(rcl_kernels.roi_align_1d(features, segments, 8).shape))
