"""BMN's boundary-matching layer and its convolutions, three ways (time and peak memory):

  dense_mask  (baseline) OpenTAD's BMNExtractor: tensordot with the precomputed (T, N, D, T) mask
              into a (B, C, N, D, T) map, Conv2d over N + ReLU, 1x1 Conv2d + ReLU. The mask is
              built before timing and is resident throughout (mask_mib); it is not in peak_mib.
  bm_soi      rcl_kernels.nn.BoundaryMatching: the same map from segment_interp(padding="bmn"),
              no mask, then the same convolutions.
  bm_fused    BoundaryMatching.project: the convolutions through score_anchors on SoI samples;
              neither the mask nor the map exists.
  bm_soi_linear  project_method="soi_linear": SoI blocks of 1024 cells, convolutions as matmuls.

Problems: OpenTAD's default BMNExtractor (T = D = 128, N = 32, 3 samples per bin, 128 channels
into the layer, 512 after the conv over N, 128 out) and BMN's ActivityNet setting (T = D = 100,
256 channels in). Batch 16 on a GPU; 1 video on the CPU (the dense path needs 256 MiB of map per
video plus the mask). peak_mib is device memory on CUDA and resident host memory on the CPU
(benchmarks/cpu_memory.py).
"""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, row, standalone_main  # noqa: E402
from cpu_memory import try_measure_with_memory  # noqa: E402

from rcl_kernels.nn import BoundaryMatching  # noqa: E402
from rcl_kernels.reference.boundary_matching import bmn_sample_mask, boundary_matching_dense  # noqa: E402

OP = "boundary_matching"


def problems(quick: bool) -> dict:
    batch = 1 if quick else 16
    return {
        "opentad_default": dict(B=batch, C=128, T=128, D=128, N=32, S=3, ratio=0.5, hidden=512, out=128),
        "bmn_anet": dict(B=batch, C=256, T=100, D=100, N=32, S=3, ratio=0.5, hidden=512, out=128),
    }


def _convolutions(bm_map, w1, b1, w2, b2):
    """OpenTAD's head on a (B, C, N, D, T) map: Conv2d (N, 1) stride (N, 1) + ReLU, 1x1 + ReLU."""
    B, C, N, D, T = bm_map.shape
    h = F.relu(F.conv2d(bm_map.flatten(3), w1, b1, stride=(N, 1)))
    return F.relu(F.conv2d(h, w2, b2)).view(B, -1, D, T)


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    dtypes = [torch.float32, torch.bfloat16] if cfg.is_cuda else [torch.float32]
    modes = ("fwd", "fwd+bwd") if cfg.is_cuda else ("fwd",)
    for pname, p in problems(cfg.quick).items():
        B, C, T, D, N, S, ratio, H, O = (p[k] for k in ("B", "C", "T", "D", "N", "S", "ratio", "hidden", "out"))
        layer = BoundaryMatching(T, D, N, S, ratio).to(cfg.device)
        linear_layer = BoundaryMatching(T, D, N, S, ratio, project_method="soi_linear").to(cfg.device)
        mask32 = bmn_sample_mask(T, D, N, S, ratio, device=cfg.device)
        for dtype in dtypes:
            dname = str(dtype).replace("torch.", "")
            x = torch.randn(B, C, T, generator=gen).to(cfg.device, dtype)
            w1 = (torch.randn(H, C, N, 1, generator=gen) / (C * N) ** 0.5).to(cfg.device, dtype)
            b1 = (torch.randn(H, generator=gen) * 0.1).to(cfg.device, dtype)
            w2 = (torch.randn(O, H, 1, 1, generator=gen) / H ** 0.5).to(cfg.device, dtype)
            b2 = (torch.randn(O, generator=gen) * 0.1).to(cfg.device, dtype)
            mask = mask32.to(dtype)
            impls = {
                "dense_mask": (False, lambda x, w1, b1, w2, b2: _convolutions(boundary_matching_dense(x, mask),
                                                                              w1, b1, w2, b2)),
                "bm_soi": (True, lambda x, w1, b1, w2, b2: _convolutions(layer(x), w1, b1, w2, b2)),
                "bm_fused": (True, lambda x, w1, b1, w2, b2: layer.project(x, w1, b1, w2, b2)),
                "bm_soi_linear": (True, lambda x, w1, b1, w2, b2: linear_layer.project(x, w1, b1, w2, b2)),
            }
            outputs = {}
            for impl, (ours, fn) in impls.items():
                for mode in modes:
                    if mode == "fwd":
                        def call(fn=fn):
                            with torch.no_grad():
                                return fn(x, w1, b1, w2, b2)
                    else:
                        leaves = [t.detach().requires_grad_() for t in (x, w1, b1, w2, b2)]

                        def call(fn=fn, leaves=leaves):
                            out = fn(*leaves)
                            return torch.autograd.grad(out, leaves, torch.ones_like(out))
                    timing, skipped = try_measure_with_memory(call, cfg)
                    if mode == "fwd" and timing is not None:
                        with torch.no_grad():
                            outputs[impl] = fn(x, w1, b1, w2, b2).float()
                    rows.append(row(OP, pname, impl, mode, timing, ours=ours, dtype=dname, skipped=skipped,
                                    mask_mib=mask.numel() * mask.element_size() / 2**20 if impl == "dense_mask" else 0,
                                    **p))
            # Every implementation computes the same numbers: record how closely (relative to the scale).
            if "dense_mask" in outputs:
                scale = outputs["dense_mask"].abs().max().item() or 1.0
                for r in rows[-len(impls) * len(modes):]:
                    if r["impl"] in outputs and r["mode"] == "fwd":
                        r["max_rel_diff_vs_dense"] = (outputs[r["impl"]] - outputs["dense_mask"]).abs().max().item() / scale
            del mask
    return rows


if __name__ == "__main__":
    standalone_main(OP, run, problems(True))
