"""OpenTAD drop-ins: BMN's boundary-matching extractor without its dense mask, loaded from an
OpenTAD-shaped checkpoint, and registered in OpenTAD's model registry when OpenTAD is installed.

    python python/opentad_example.py
"""

import torch

from rcl_kernels.integrations import opentad

# OpenTAD's defaults except a shorter sequence, so the example runs in a second on a CPU.
extractor = opentad.BMNExtractor(in_channels=256, tscale=64, dscale=64)
checkpoint = {k: torch.randn_like(v) * 0.05 for k, v in extractor.state_dict().items()}  # stands in for a .pth
extractor.load_state_dict(checkpoint, strict=True)  # OpenTAD's parameter names and shapes
with torch.no_grad():
    bm_map = extractor(torch.randn(2, 256, 64))
print("BM map", tuple(bm_map.shape), "(B, out_channels, dscale, tscale); no (T, N, D, T) mask was built")

proposals = torch.tensor([[[3.0, 20.5], [40.2, 60.0]], [[0.0, 63.0], [10.0, 12.5]]], requires_grad=True)
roi_feats = opentad.ROIAlignExtractor(roi_size=8)(torch.randn(2, 256, 64), proposals)
roi_feats.square().mean().backward()
print("RoI features", tuple(roi_feats.shape), "and proposal gradients (torchvision's trick has none):\n",
      proposals.grad)

registered = opentad.register_in_opentad()
if registered is None:
    print("OpenTAD is not installed: nothing registered (configs can still build these classes directly)")
else:
    print("registered in OpenTAD's ROI_EXTRACTORS:", ", ".join(registered),
          "(register_in_opentad(replace=True) overrides OpenTAD's own names)")
