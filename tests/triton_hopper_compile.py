"""Compile the library's Triton kernels for a Hopper GPU (sm_90) on a machine without one.

The interpreter (TRITON_INTERPRET=1) runs the kernels' Python semantics on the CPU, but never
lowers them: tl.dot shape and dtype rules, layouts, register and shared-memory allocation and ptxas
are only exercised by a real compile. This script runs the real launchers on small CPU tensors with
a compile-only stand-in for Triton's driver: every launch, and every config an autotuner would try,
is compiled for the target (Triton's own ptxas included) and recorded instead of run.

    python tests/triton_hopper_compile.py [--full]     # prints one JSON line per kernel compiled

Run with TRITON_INTERPRET unset (tests/test_triton_hopper_compile.py starts it in a subprocess).
Without --full: the configs a CI machine can afford (every autotune config in bfloat16, the first
in float32 and float16; the zeros and bmn paddings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import torch

assert os.environ.get("TRITON_INTERPRET", "0") != "1", "unset TRITON_INTERPRET: the kernels must be real JIT functions"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

import rcl_kernels  # noqa: E402
from rcl_kernels._vocabulary import COORD_FEATURES, PADDINGS  # noqa: E402
from rcl_kernels.triton import score_anchors as scoring  # noqa: E402
from rcl_kernels.triton import segment_interp as soi  # noqa: E402

# H100 / H200: the most dynamic shared memory one block may opt into (CUDA's per-block limit).
HOPPER_MAX_SHARED_BYTES = 227 * 1024


class CompileOnlyDriver:
    """The parts of Triton's driver that compiling needs: a target, device 0, a null stream."""

    def __init__(self, target: GPUTarget):
        self.target = target

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0


@contextlib.contextmanager
def compile_only(target: GPUTarget, records: list, all_configs: bool):
    """Launches compile (warmup=True) instead of running; an autotuner compiles each of its configs
    (or only its first, without all_configs) instead of timing them."""
    jit_run, tuner_run = JITFunction.run, Autotuner.run

    def run(self, *args, grid, warmup, **kwargs):
        kernel = jit_run(self, *args, grid=grid, warmup=True, **kwargs)
        constexprs = {k: v for k, v in kwargs.items() if isinstance(v, (int, bool, str)) and k.isupper()}
        records.append({"kernel": self.__name__, "shared_bytes": kernel.metadata.shared,
                        "num_warps": kernel.metadata.num_warps, "constexprs": constexprs})
        return kernel

    def tuned(self, *args, **kwargs):
        configs = self.configs if all_configs else self.configs[:1]
        for config in configs:
            self.fn.run(*args, **{**kwargs, **config.all_kwargs()})

    previous_driver = driver._active  # None until a real driver was needed; there is none here
    driver.set_active(CompileOnlyDriver(target))
    JITFunction.run, Autotuner.run = run, tuned
    # The anchor-scoring launcher takes its GPU path (autotuned tiles, GPU tl.dot precision) only
    # for tensors it does not interpret.
    interpreted, scoring._interpreted = scoring._interpreted, lambda device: False
    try:
        yield
    finally:
        JITFunction.run, Autotuner.run = jit_run, tuner_run
        scoring._interpreted = interpreted
        driver._active = previous_driver


def segment_interp_launches(dtype: torch.dtype, paddings) -> None:
    """Forward and backward (both gradients) of the Triton SoI launcher."""
    B, C, T, K, N = 2, 20, 37, 9, 5
    features = torch.randn(B, C, T, dtype=dtype)
    segments = torch.rand(B, K, 2) * T
    for padding in paddings:
        out = soi.segment_interp_triton_op(features, segments, N, 2, 0.25, padding)
        soi.segment_interp_triton_backward_op(torch.ones_like(out), features, segments, N, 2, 0.25, padding, True, True)


def score_anchors_launches(dtype: torch.dtype, paddings) -> None:
    """Forward (saving the hidden layer) and backward (every gradient) of the Triton scorer."""
    B, C, T, K, N, H, O = 2, 24, 41, 33, 4, 40, 3
    E = COORD_FEATURES["ses"]
    features = torch.randn(B, C, T, dtype=dtype)
    segments = torch.rand(B, K, 2) * T
    w1, b1 = torch.randn(H, C * N + E, dtype=dtype), torch.randn(H, dtype=dtype)
    w2, b2 = torch.randn(O, H, dtype=dtype), torch.randn(O, dtype=dtype)
    for padding in paddings:
        out, hidden = scoring._forward_impl(features, segments, w1, b1, w2, b2, N, 2, 0.25, padding, "ses", "relu",
                                            float(T), True)
        scoring._backward_impl(torch.ones_like(out), hidden, features, segments, w1, w2, N, 2, 0.25, padding, "ses",
                               "relu", float(T), True, True, True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every config in every dtype, every padding")
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args(argv)
    paddings = PADDINGS if args.full else ("zeros", "bmn")
    records: list[dict] = []
    target = GPUTarget("cuda", args.arch, 32)
    # The scorer takes 16- and 32-bit floats; SoI float64 too.
    for dtype in (torch.bfloat16, torch.float32, torch.float16, torch.float64):
        all_configs = args.full or dtype == torch.bfloat16
        with compile_only(target, records, all_configs):
            segment_interp_launches(dtype, paddings)
            if dtype != torch.float64:
                score_anchors_launches(dtype, paddings)
            if dtype == torch.float32:  # float32 operands with TF32 tl.dot, as allow_tf32 asks
                old = torch.backends.cuda.matmul.allow_tf32
                torch.backends.cuda.matmul.allow_tf32 = True
                try:
                    score_anchors_launches(dtype, paddings[:1])
                finally:
                    torch.backends.cuda.matmul.allow_tf32 = old
        for r in records:
            r.setdefault("dtype", str(dtype).removeprefix("torch."))
    for r in records:
        r["fits"] = r["shared_bytes"] <= HOPPER_MAX_SHARED_BYTES
        print(json.dumps(r))
    print(f"compiled {len(records)} kernels for sm_{args.arch} with triton {triton.__version__}, "
          f"rcl_kernels {rcl_kernels.__version__}", file=sys.stderr)
    return 0 if all(r["fits"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
