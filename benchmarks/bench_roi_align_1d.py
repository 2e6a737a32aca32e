"""1D RoIAlign benchmark: rcl_kernels.roi_align_1d against what OpenTAD and G-TAD run today.

Baselines, measured in the same run:
  torchvision_2d      torchvision.ops.roi_align on the (B, C, T, 1) image with boxes (b, 0, s, 1, e),
                      OpenTAD's method="torchvision" (aligned=True); no gradient for the boxes
  align1d_float64     Align1D's numbers the way OpenTAD makes them deterministic: inputs rounded
                      to float16, computed in float64 (torchvision's aligned=False kernel, which
                      follows the same rules), cast back
Ours: every built backend (the Triton interpreter is not timed). In fwd+bwd ours also computes
the roi-coordinate gradient, which the baselines do not have.

Problems: "proposals", a two-stage detector's second stage (OpenTAD's ROIAlignExtractor: a few
hundred proposals per video, 16 bins, aligned=True, adaptive sampling); "gtad", G-TAD's anchors
(every (start, duration) cell of a 100-step grid, 32 bins, aligned=False, adaptive). The CPU
runs a reduced batch and channel count.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, row, standalone_main, torchvision_ops  # noqa: E402
from cpu_memory import try_measure_with_memory  # noqa: E402

import rcl_kernels  # noqa: E402
from rcl_kernels.ops.roi_align_1d import ROI_ALIGN_1D_BACKENDS  # noqa: E402

OP = "roi_align_1d"


def problems(quick: bool) -> dict:
    if quick:
        return {
            "proposals": dict(B=2, C=256, T=256, K=200, P=16, aligned=True),
            "gtad": dict(B=1, C=64, T=100, K=5050, P=32, aligned=False),
        }
    return {
        "proposals": dict(B=16, C=512, T=256, K=200, P=16, aligned=True),
        "gtad": dict(B=16, C=256, T=100, K=5050, P=32, aligned=False),
    }


def make_rois(B: int, K: int, T: int, gen: torch.Generator) -> torch.Tensor:
    """(B * K, 3) rois: random proposals, or every start <= end cell of the grid when K = T (T + 1) / 2,
    widened by half their length on both sides as OpenTAD's and G-TAD's extractors do."""
    if K == T * (T + 1) // 2:
        start, end = torch.triu_indices(T, T)
        seg = torch.stack([start, end + 1], -1).float().expand(B, -1, -1)
    else:
        start = torch.rand(B, K, generator=gen) * (T - 2)
        length = torch.rand(B, K, generator=gen) * (T - start) + 0.5
        seg = torch.stack([start, start + length], -1)
    length = seg[..., 1] - seg[..., 0]
    seg = torch.stack([seg[..., 0] - 0.5 * length, seg[..., 1] + 0.5 * length], -1)
    batch = torch.arange(B, dtype=torch.float32).view(B, 1, 1).expand(B, K, 1)
    return torch.cat([batch, seg], -1).reshape(B * K, 3)


def torchvision_1d(tv_ops, x, rois, P, aligned):
    boxes = torch.stack([rois[:, 0], torch.zeros_like(rois[:, 0]), rois[:, 1], torch.ones_like(rois[:, 0]),
                         rois[:, 2]], dim=1)
    return tv_ops.roi_align(x.unsqueeze(-1), boxes, (P, 1), 1.0, -1, aligned).squeeze(-1)


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    tv_ops, tv_missing = torchvision_ops()
    dtypes = [torch.float32, torch.bfloat16] if cfg.is_cuda else [torch.float32]
    for pname, p in problems(cfg.quick).items():
        B, C, T, K, P, aligned = (p[k] for k in ("B", "C", "T", "K", "P", "aligned"))
        rois32 = make_rois(B, K, T, gen).to(cfg.device)
        for dtype in dtypes:
            dname = str(dtype).replace("torch.", "")
            x = torch.randn(B, C, T, generator=gen).to(cfg.device, dtype)
            rois = rois32.to(dtype) if dtype != torch.bfloat16 else rois32  # torchvision wants one dtype

            impls = {}
            for backend in ROI_ALIGN_1D_BACKENDS.available(cfg.device.type):
                if backend == "reference" or (backend == "triton" and not cfg.is_cuda):
                    continue
                impls[backend] = (True, lambda f, r, b=backend: rcl_kernels.roi_align_1d(
                    f, r, P, 1.0, -1, aligned, backend=b), True)
            if tv_ops is not None:
                impls["torchvision_2d"] = (False, lambda f, r: torchvision_1d(tv_ops, f, r.to(f.dtype), P, True), False)
                impls["align1d_float64"] = (False, lambda f, r: torchvision_1d(
                    tv_ops, f.half().double(), r.half().double(), P, False).to(f.dtype), False)

            for impl, (ours, fn, coord_grad) in impls.items():
                for mode in ("fwd", "fwd+bwd"):
                    if mode == "fwd":
                        def call(fn=fn):
                            with torch.no_grad():
                                return fn(x, rois)
                    else:
                        xf = x.detach().requires_grad_()
                        rf = rois.detach().requires_grad_(coord_grad)

                        def call(fn=fn, xf=xf, rf=rf):
                            out = fn(xf, rf)
                            wrt = [xf, rf] if rf.requires_grad else [xf]
                            return torch.autograd.grad(out, wrt, torch.ones_like(out))
                    try:
                        timing, skipped = try_measure_with_memory(call, cfg)
                    except RuntimeError as exc:  # e.g. a dtype torchvision's kernel lacks
                        timing, skipped = None, f"failed: {str(exc).splitlines()[0][:120]}"
                    rows.append(row(OP, pname, impl, mode, timing, ours=ours, dtype=dname, skipped=skipped,
                                    coordinate_gradient=coord_grad, **p))
            if tv_ops is None:
                rows.append(row(OP, pname, "torchvision_2d", "fwd", None, ours=False, dtype=dname, skipped=tv_missing))
    return rows


if __name__ == "__main__":
    standalone_main(OP, run, problems(True))
