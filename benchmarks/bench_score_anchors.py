"""Anchor scoring benchmark: rcl_kernels.score_anchors backends against the plain composition.

score(x) = Linear2(relu(Linear1(cat(flatten(SoI(F; x)), phi(x))))), phi = "ses" (3 columns).
Baselines, measured in the same run:
  eager    the reference composition (rcl_kernels/reference/score_anchors.py) in eager PyTorch
  compile  the same under torch.compile (what a user gets today without this library)
Modes: fwd (under no_grad) and fwd+bwd (gradients for the features and all four weights).
dtypes: float32 (TF32 off, PyTorch's default), tf32 (float32 with allow_tf32 on, GPU only) and
bfloat16 (GPU only). Rows carry time, peak extra memory and two rates (3x the forward FLOPs for
fwd+bwd):
  effective_tflops  the composition's FLOPs (2 * multiply-adds of the two linear layers: the work
                    the baselines do) per second, comparable across implementations;
  tflops            the FLOPs the implementation itself executes per second: the composition's
                    for the baselines, the factored formulation's for ours (Linear1 applied to
                    the features once per point, then interpolated: far fewer FLOPs when K >> T;
                    a lower bound for the Triton kernel, whose tiles share time windows).
benchmarks/run.py turns tflops into a fraction of the card's matmul rate it measures.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_segment_interp import grid_anchors  # noqa: E402
from common import BenchConfig, row, standalone_main, try_measure  # noqa: E402

import rcl_kernels  # noqa: E402
from rcl_kernels.ops.score_anchors import SCORE_ANCHORS_BACKENDS  # noqa: E402
from rcl_kernels.reference.score_anchors import score_anchors_reference  # noqa: E402

OP = "score_anchors"
E = 3  # "ses" coordinate features


def problems(quick: bool) -> dict:
    """anet: BMN's ActivityNet setting, all start <= end cells of a 100-step grid, jittered.
    dense: every start <= end pair of a 1,000-step grid in one video (500,500 segments);
    dense8: eight such videos at once (forward only: the baselines would need ~126 GB).
    Quick (CPU): one video, fewer channels, points, hidden units (and steps for "dense")."""
    if quick:
        return {
            "anet": dict(B=1, C=128, T=100, N=16, K=5050, H=256, O=4),
            "dense": dict(B=1, C=32, T=200, N=8, K=20_100, H=64, O=4),
        }
    return {
        "anet": dict(B=16, C=256, T=100, N=32, K=5050, H=512, O=4),
        "dense": dict(B=1, C=256, T=1000, N=32, K=500_500, H=512, O=4),
        "dense8": dict(B=8, C=256, T=1000, N=32, K=500_500, H=512, O=4, fwd_only=True),
    }


def forward_flops(p: dict) -> float:
    """The composition: Linear1 on K segments' (C * N + E) inputs, then Linear2."""
    return 2.0 * p["B"] * p["K"] * p["H"] * (p["C"] * p["N"] + E + p["O"])


def factored_forward_flops(p: dict) -> float:
    """The factored formulation: Linear1's point-n slice on all T feature steps (B*N*H*C*T
    multiply-adds), a two-tap lerp per segment, point and hidden unit, then phi and Linear2."""
    B, C, T, N, K, H, O = (p[k] for k in ("B", "C", "T", "N", "K", "H", "O"))
    return 2.0 * B * N * H * C * T + 4.0 * B * K * N * H + 2.0 * B * K * H * (E + O)


def _tf32(enabled: bool):
    @contextlib.contextmanager
    def ctx():
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = enabled
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old
    return ctx()


def _weights(p: dict, dtype, device, gen):
    fan1, H = p["C"] * p["N"] + E, p["H"]
    w1 = (torch.rand(H, fan1, generator=gen) * 2 - 1) / math.sqrt(fan1)
    b1 = (torch.rand(H, generator=gen) * 2 - 1) / math.sqrt(fan1)
    w2 = (torch.rand(p["O"], H, generator=gen) * 2 - 1) / math.sqrt(H)
    b2 = (torch.rand(p["O"], generator=gen) * 2 - 1) / math.sqrt(H)
    return [t.to(device, dtype) for t in (w1, b1, w2, b2)]


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    # (label, dtype, allow_tf32)
    precisions = [("float32", torch.float32, False)]
    if cfg.is_cuda:
        precisions += [("tf32", torch.float32, True), ("bfloat16", torch.bfloat16, False)]
    ours = [b for b in SCORE_ANCHORS_BACKENDS.available(cfg.device.type)
            if b != "reference" and not (b == "triton" and not cfg.is_cuda)]  # the interpreter is no speed path
    for pname, p in problems(cfg.quick).items():
        B, C, T, N, K = (p[k] for k in ("B", "C", "T", "N", "K"))
        segments = grid_anchors(B, T, K, cfg.device, gen)
        fwd_flops, factored_flops = forward_flops(p), factored_forward_flops(p)
        for label, dtype, tf32 in precisions:
            features = torch.randn(B, C, T, generator=gen).to(cfg.device, dtype)
            weights = _weights(p, dtype, cfg.device, gen)
            shape = {k: v for k, v in p.items() if k != "fwd_only"}

            def add(impl, fn, is_ours, skip_reason=None):
                for mode in ("fwd",) if p.get("fwd_only") else ("fwd", "fwd+bwd"):
                    if skip_reason:
                        rows.append(row(OP, pname, impl, mode, None, ours=is_ours, dtype=label, skipped=skip_reason,
                                        **shape))
                        continue
                    if mode == "fwd":
                        def call(fn=fn):
                            with torch.no_grad():
                                return fn(features, segments, *weights)
                    else:
                        leaves = [t.detach().requires_grad_() for t in (features, *weights)]

                        def call(fn=fn, leaves=leaves):
                            out = fn(leaves[0], segments, *leaves[1:])
                            return torch.autograd.grad(out, leaves, torch.ones_like(out))
                    with _tf32(tf32):
                        timing, skip = try_measure(call, cfg)
                    r = row(OP, pname, impl, mode, timing, ours=is_ours, dtype=label, skipped=skip, **shape)
                    if timing is not None:
                        passes = 1 if mode == "fwd" else 3
                        r["effective_tflops"] = fwd_flops * passes / timing.ms / 1e9
                        r["tflops"] = (factored_flops if is_ours else fwd_flops) * passes / timing.ms / 1e9
                    rows.append(r)

            for backend in ours:
                add(backend, lambda f, s, *w, b=backend: rcl_kernels.score_anchors(f, s, *w, num_samples=N,
                                                                                    backend=b), True)

            def reference(f, s, w1, b1, w2, b2):
                return score_anchors_reference(f, s, w1, b1, w2, b2, N)

            too_big = "baseline skipped: needs ~126 GB (B=8 x 500,500 segments)" if p.get("fwd_only") else None
            add("eager", reference, False, too_big)
            add("compile", torch.compile(reference, dynamic=False), False, too_big)
            del features, weights
    return rows


if __name__ == "__main__":
    standalone_main("score_anchors", run, problems=problems(False))
