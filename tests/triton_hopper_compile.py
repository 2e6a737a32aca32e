"""Compile the library's Triton kernels for a Hopper GPU (sm_90) on a machine without one.

The interpreter (TRITON_INTERPRET=1) runs the kernels' Python semantics on the CPU, but never
lowers them: tl.dot shape and dtype rules, layouts, register and shared-memory allocation and ptxas
are only exercised by a real compile. This script runs the real launchers on small CPU tensors with
a compile-only stand-in for Triton's driver: every launch, and every config an autotuner would try,
is compiled for the target (Triton's own ptxas included) and recorded instead of run.

    python tests/triton_hopper_compile.py [--full]     # prints one JSON line per kernel compiled

Each record names the kernel, dtype, problem and constexprs (the autotune config), and reports what
a GPU run would depend on: shared memory, the registers and spill bytes ptxas reports (its -v log,
from Triton's own ptxas command), and counts of float32 instructions in the PTX that decide
numerics (fused multiply-adds, approximate divisions).

Run with TRITON_INTERPRET unset (tests/test_triton_hopper_compile.py starts it in a subprocess).
Without --full: the configs a CI machine can afford (every autotune config of the scorer's two
candidate lists, "tf32" in bfloat16 and "ieee" in float32; the first in float16 and in TF32
float32; the zeros and bmn paddings, the largest SoI tile in one).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys

import torch

assert os.environ.get("TRITON_INTERPRET", "0") != "1", "unset TRITON_INTERPRET: the kernels must be real JIT functions"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler.compiler import make_backend
from triton.runtime import driver  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

import rcl_kernels  # noqa: E402
from rcl_kernels._vocabulary import COORD_FEATURES, PADDINGS  # noqa: E402
from rcl_kernels.triton import score_anchors as scoring  # noqa: E402
from rcl_kernels.triton import roi_align_1d as roi_align_1d_triton  # noqa: E402
from rcl_kernels.triton import segment_interp as soi  # noqa: E402

# H100 / H200: the most dynamic shared memory one block may opt into (CUDA's per-block limit).
HOPPER_MAX_SHARED_BYTES = 227 * 1024

# PTX instructions counted per kernel. With fp fusion off, LLVM writes every float32 multiply
# and add as mul.rn / add.rn, which ptxas may not contract (and Triton passes --fmad=false), so an
# fma.rn.f32 left in the PTX is one the source asked for. div.full.f32 is Triton's approximate
# float32 "/" (up to 2 ulp), div.rn.f32 the correctly rounded tl.math.div_rn.
# ".ftz": instructions that flush subnormals to zero (the CUDA build has none, tests/test_cuda_ptx.py).
PTX_COUNTS = {"fma_f32": "fma.rn.f32", "div_full_f32": "div.full.f32", "div_rn_f32": "div.rn.f32", "ftz": ".ftz"}

# A pointer offset computed in 32 bits (tt.addptr with an i32 offset in the TTIR): it wraps once
# the offset passes 2^31, so kernels whose offsets are products of sizes keep them in int64.
# Constant offsets (a field of a row) cannot wrap and are not counted.
_I32_POINTER_OFFSET = re.compile(r"tt\.addptr %[\w.]+, (%[\w.]+) : [^\n]*, (?:tensor<[\dx]+xi32>|i32)(?: loc\(|$)",
                                 re.MULTILINE)
_CONSTANT = re.compile(r"(%[\w.]+) = arith\.constant")
_PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


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


_USAGE: dict[str, dict] = {}  # ptxas_usage per compiled kernel (its hash): many launches share one


def ptxas_usage(backend, kernel, arch: int) -> dict:
    """Registers per thread and local-memory bytes of a compiled kernel, from ptxas -v. Triton
    discards that log (and a cached kernel never reaches ptxas), so the kernel's PTX goes through
    Triton's own ptxas step once more, with its options and TRITON_DUMP_PTXAS_LOG on."""
    if kernel.hash in _USAGE:
        return _USAGE[kernel.hash]
    options = backend.parse_options(kernel.metadata._asdict())
    log = io.StringIO()
    previous = triton.knobs.nvidia.dump_ptxas_log
    triton.knobs.nvidia.dump_ptxas_log = True
    try:
        with contextlib.redirect_stdout(log):
            backend.make_cubin(kernel.asm["ptx"], {}, options, arch)
    finally:
        triton.knobs.nvidia.dump_ptxas_log = previous
    text = log.getvalue()
    registers, frame = _PTXAS_REGISTERS.search(text), _PTXAS_FRAME.search(text)
    if registers is None or frame is None:
        raise RuntimeError(f"unexpected ptxas -v log for {kernel.metadata.name}:\n{text}")
    stack, stores, loads = map(int, frame.groups())
    _USAGE[kernel.hash] = {"registers": int(registers.group(1)), "stack_frame_bytes": stack,
                           "spill_store_bytes": stores, "spill_load_bytes": loads}
    return _USAGE[kernel.hash]


def i32_pointer_offsets(ttir: str) -> int:
    """How many pointer offsets of a kernel's TTIR are computed in 32 bits (constants aside)."""
    constants = set(_CONSTANT.findall(ttir))
    return sum(offset not in constants for offset in _I32_POINTER_OFFSET.findall(ttir))


@contextlib.contextmanager
def compile_only(target: GPUTarget, records: list, all_configs: bool):
    """Launches compile (warmup=True) instead of running; an autotuner compiles each of its configs
    (or only its first, without all_configs) instead of timing them. Each compile is recorded
    with its resources (ptxas_usage) and PTX_COUNTS."""
    jit_run, tuner_run = JITFunction.run, Autotuner.run
    backend = make_backend(target)

    def run(self, *args, grid, warmup, **kwargs):
        kernel = jit_run(self, *args, grid=grid, warmup=True, **kwargs)
        constexprs = {k: v for k, v in kwargs.items() if isinstance(v, (int, bool, str)) and k.isupper()}
        ptx = kernel.asm["ptx"]
        records.append({"kernel": self.__name__, "constexprs": constexprs,
                        "num_warps": kernel.metadata.num_warps, "num_stages": kernel.metadata.num_stages,
                        "enable_fp_fusion": kernel.metadata.enable_fp_fusion,
                        "shared_bytes": kernel.metadata.shared, **ptxas_usage(backend, kernel, target.arch),
                        **{name: ptx.count(instruction) for name, instruction in PTX_COUNTS.items()},
                        "i32_pointer_offsets": i32_pointer_offsets(kernel.asm["ttir"])})
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


# SoI sizes: odd small ones, and the benchmarks' "anet" channels and points (C = 256, N = 32),
# for which the launcher picks its largest tile. The scorer's tiles come from its autotune
# configs, whatever the sizes.
SOI_PROBLEMS = {"small": {"C": 20, "N": 5}, "anet": {"C": 256, "N": 32}}


def segment_interp_launches(dtype: torch.dtype, paddings, C: int, N: int) -> None:
    """Forward and backward (both gradients) of the Triton SoI launcher."""
    B, T, K = 2, 37, 9
    features = torch.randn(B, C, T, dtype=dtype)
    segments = torch.rand(B, K, 2) * T
    for padding in paddings:
        out = soi.segment_interp_triton_op(features, segments, N, 2, 0.25, padding)
        soi.segment_interp_triton_backward_op(torch.ones_like(out), features, segments, N, 2, 0.25, padding, True, True)


# roi_align_1d sizes: odd small ones, and the detectors' widest (C = 512 channels, P = 32 bins,
# ActionFormer-style), for which the launchers pick their largest tiles.
ROI_ALIGN_1D_PROBLEMS = {"small": {"C": 19, "P": 5}, "wide": {"C": 512, "P": 32}}


def roi_align_1d_launches(dtype: torch.dtype, C: int, P: int) -> None:
    """Forward and backward (both gradients; the scatter input gradient, and the gather one that
    torch.use_deterministic_algorithms selects) of the Triton roi_align_1d launcher, fixed and
    adaptive sampling, both aligned rules."""
    B, T, R = 2, 37, 7
    features = torch.randn(B, C, T, dtype=dtype)
    rois = torch.cat([torch.randint(0, B, (R, 1)).float(), torch.rand(R, 2) * T], dim=1)
    for sampling_ratio, aligned in ((2, True), (-1, False)):
        out = roi_align_1d_triton.roi_align_1d_triton_op(features, rois, P, 0.5, sampling_ratio, aligned)
        for deterministic in (False, True):
            previous = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(deterministic)
            try:
                roi_align_1d_triton.roi_align_1d_triton_backward_op(torch.ones_like(out), features, rois, P, 0.5,
                                                                     sampling_ratio, aligned, True, not deterministic)
            finally:
                torch.use_deterministic_algorithms(previous)


def score_anchors_launches(dtype: torch.dtype, paddings, H: int = 40, O: int = 3, backward: bool = True) -> None:
    """Forward (saving the hidden layer) and backward (every gradient, unless backward is False)
    of the Triton scorer, with H hidden units and O outputs (the tiles depend on both)."""
    B, C, T, K, N = 2, 24, 41, 33, 4
    E = COORD_FEATURES["ses"]
    features = torch.randn(B, C, T, dtype=dtype)
    segments = torch.rand(B, K, 2) * T
    w1, b1 = torch.randn(H, C * N + E, dtype=dtype), torch.randn(H, dtype=dtype)
    w2, b2 = torch.randn(O, H, dtype=dtype), torch.randn(O, dtype=dtype)
    for padding in paddings:
        out, hidden = scoring._forward_impl(features, segments, w1, b1, w2, b2, N, 2, 0.25, padding, "ses", "relu",
                                            float(T), True)
        if backward:
            scoring._backward_impl(torch.ones_like(out), hidden, features, segments, w1, w2, N, 2, 0.25, padding, "ses",
                                   "relu", float(T), True, True, True)


def compile_all(arch: int = 90, full: bool = False) -> list[dict]:
    """One record per kernel compiled (see the module docstring for what is compiled)."""
    paddings = PADDINGS if full else ("zeros", "bmn")
    records: list[dict] = []
    target = GPUTarget("cuda", arch, 32)

    def label(**fields):
        for r in records:
            for k, v in fields.items():
                r.setdefault(k, v)

    # The scorer takes 16- and 32-bit floats; SoI float64 too.
    for dtype in (torch.bfloat16, torch.float32, torch.float16, torch.float64):
        with compile_only(target, records, all_configs=full or dtype in (torch.bfloat16, torch.float32)):
            for problem, sizes in SOI_PROBLEMS.items():
                # The large tile in one padding: the paddings change a few selects, not the tile.
                segment_interp_launches(dtype, paddings if problem == "small" or full else paddings[:1], **sizes)
                label(problem=f"segment_interp {problem}")
            for problem, sizes in ROI_ALIGN_1D_PROBLEMS.items():
                roi_align_1d_launches(dtype, **sizes)
                label(problem=f"roi_align_1d {problem}")
            if dtype != torch.float64:
                score_anchors_launches(dtype, paddings)
        if dtype == torch.float32:  # float32 operands with TF32 tl.dot, as allow_tf32 asks
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = True
            try:
                with compile_only(target, records, all_configs=full):
                    score_anchors_launches(dtype, paddings[:1])
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
        label(problem="score_anchors small", dtype=str(dtype).removeprefix("torch."))
    for r in records:
        r["fits"] = r["shared_bytes"] <= HOPPER_MAX_SHARED_BYTES
    return records


# The scorer's tl.dot precisions for each operand dtype: float32 with and without TF32.
SCORE_ANCHORS_PRECISIONS = ((torch.float32, False), (torch.float32, True), (torch.bfloat16, False),
                            (torch.float16, False))


def compile_score_anchors_sizes(sizes, arch: int = 90, backward: bool = True, precisions=SCORE_ANCHORS_PRECISIONS,
                                all_configs: bool = True) -> list[dict]:
    """The scorer's kernels at the given (hidden, out_channels) sizes, every autotune config,
    in each (dtype, allow_tf32) of precisions; one record per kernel compiled, labelled with
    its problem ("score_anchors H=.. O=.."), dtype and tf32."""
    records: list[dict] = []
    target = GPUTarget("cuda", arch, 32)
    for dtype, tf32 in precisions:
        for H, O in sizes:
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                first = len(records)
                with compile_only(target, records, all_configs=all_configs):
                    score_anchors_launches(dtype, ("zeros",), H=H, O=O, backward=backward)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
            for r in records[first:]:
                r.update(problem=f"score_anchors H={H} O={O}", dtype=str(dtype).removeprefix("torch."), tf32=tf32)
    for r in records:
        r["fits"] = r["shared_bytes"] <= HOPPER_MAX_SHARED_BYTES
    return records


def _sizes(text: str) -> list[tuple[int, int]]:
    """"H:O,H:O" -> [(H, O), ...]."""
    return [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every config in every dtype, every padding")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--score-anchors-sizes", type=_sizes, metavar="H:O,...",
                        help="instead: only the scorer's kernels at these (hidden, out_channels) sizes, "
                             "every config, float32 (TF32 off and on), bfloat16, float16")
    parser.add_argument("--forward-only", action="store_true", help="with --score-anchors-sizes: no backward")
    args = parser.parse_args(argv)
    if args.score_anchors_sizes:
        records = compile_score_anchors_sizes(args.score_anchors_sizes, args.arch, backward=not args.forward_only)
    else:
        records = compile_all(args.arch, args.full)
    for r in records:
        print(json.dumps(r))
    print(f"compiled {len(records)} kernels for sm_{args.arch} with triton {triton.__version__}, "
          f"rcl_kernels {rcl_kernels.__version__}", file=sys.stderr)
    return 0 if all(r["fits"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
