"""The size matrix: every GPU kernel of the library at the sizes users run, without a GPU.

For each problem below (BMN on ActivityNet, OpenTAD's BMN / G-TAD defaults, ActionFormer-style
roi_align, the scorer's output and hidden sizes, Soft-NMS at realistic proposal counts):

  * the launches each GPU backend makes (blocks, threads, work per thread, work done against the
    work the problem needs), from the launch-plan functions the launchers themselves use:
    rcl_kernels.triton.segment_interp.segment_interp_launch_plans, roi_align_1d_launch_plans,
    score_anchors_launch_plans, and for CUDA the plan helpers of csrc/cuda/*_kernels.cuh built
    for the CPU (tests/cuda_emulation: the same header the .cu launchers call);
  * every Triton kernel compiled for sm_90 at that problem's constexprs (compile-only driver of
    tests/triton_hopper_compile.py, on meta tensors: no memory for the shapes) in float32 (TF32 on
    and off where tl.dot is used), bfloat16, float16 and float64 where supported, with ptxas -v's
    registers and spills, the shared memory, and the PTX's flush-to-zero instructions;
  * every CUDA kernel instantiation's ptxas -v (tests/cuda_ptx.py, the build's nvcc flags).

    python tests/size_matrix.py            # CI subset: every (kernel, dtype) at the largest sizes
    python tests/size_matrix.py --full     # every problem, every autotune config
    python tests/size_matrix.py --json     # one JSON record per line (tests/test_size_matrix.py)

Run with TRITON_INTERPRET unset. Compiles are shared: Triton's cache keys on the constexprs,
so the many problems that share a tile compile once; ptxas -v runs once per compiled kernel.
Launch plans of roi_align_1d and score_anchors come from their launchers' plan functions where
those exist; otherwise from the fallback models below (marked "fallback"), which describe the
launchers as issue 20 found them.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import importlib
import inspect
import json
import math
import os
import pathlib
import sys
import tempfile

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cuda_ptx  # noqa: E402
from cuda_emulation import kernels as emulation  # noqa: E402

from rcl_kernels._launch_plan import LaunchPlan  # noqa: E402

# Hopper (H100 / H200) limits the checks use.
SMS = 132
MAX_SHARED_BYTES = 227 * 1024  # per block, opted in
REGISTERS_PER_SM = 65_536
SPILL_LIMIT_BYTES = 64
DEFAULT_WORK_RATIO = 2.0

# ---------------------------------------------------------------------------------------------
# Problems. ci: in the CI subset (the largest of each op, so every kernel and dtype is compiled
# there at its biggest constexprs).


@dataclasses.dataclass(frozen=True)
class Problem:
    op: str
    name: str
    sizes: dict
    ci: bool = False


def _soi(name, ci=False, **sizes):
    return Problem("segment_interp", name, sizes, ci)


def _roi(T, K, P, sampling_ratio, ci=False):
    kind = "adaptive" if sampling_ratio <= 0 else f"ratio {sampling_ratio}"
    return Problem("roi_align_1d", f"T={T} K={K:.0e} P={P} {kind}",
                   dict(B=16, C=512, T=T, R=K, P=P, sampling_ratio=sampling_ratio, roi_length=T / 4), ci)


def _scorer(H, O, ci=False):
    # BMN's proposal map on ActivityNet: K = T * D = 10,000 segments of 32 x 3 samples, C = 256.
    return Problem("score_anchors", f"H={H} O={O}", dict(B=16, C=256, T=100, K=10_000, N=32, S=3, H=H, O=O), ci)


def _nms(V, P, labels, ci=False):
    return Problem("soft_nms", f"V={V} P={P}{' labels' if labels else ''}",
                   dict(V=V, P=P, labels=labels, top_k=100), ci)


PROBLEMS = (
    # BMN on ActivityNet: B = 16, T = D = 100 (K = 10,000 proposals), N = 32 points x S = 3.
    _soi("BMN ActivityNet C=400", B=16, C=400, T=100, K=10_000, N=32, S=3),
    _soi("BMN ActivityNet C=256", B=16, C=256, T=100, K=10_000, N=32, S=3),
    # OpenTAD's BMN and G-TAD defaults: T = D = 128, C = 128..512.
    _soi("OpenTAD T=D=128 C=128", B=16, C=128, T=128, K=16_384, N=32, S=3),
    _soi("OpenTAD T=D=128 C=512", ci=True, B=16, C=512, T=128, K=16_384, N=32, S=3),
    *(_roi(T, K, P, ratio, ci=(T == 4096 and K == 100_000 and P == 32))
      for T in (2304, 4096) for K in (10_000, 100_000) for P in (8, 16, 32) for ratio in (-1, 2)),
    *(_scorer(H, O, ci=(H, O) in ((512, 1024), (512, 2), (128, 128)))
      for H in (128, 256, 512) for O in (2, 128, 200, 512, 1024)),
    *(_nms(V, P, labels, ci=True) for V in (16, 4728) for P in (1000, 10_000) for labels in (False, True)),
)  # fmt: skip

# The Triton kernels' dtypes: (dtype, allow_tf32); TF32 only matters where tl.dot is used.
TRITON_DTYPES = {
    "segment_interp": ((torch.float32, False), (torch.bfloat16, False), (torch.float16, False), (torch.float64, False)),
    "roi_align_1d": ((torch.float32, False), (torch.bfloat16, False), (torch.float16, False), (torch.float64, False)),
    "score_anchors": ((torch.float32, False), (torch.float32, True), (torch.bfloat16, False), (torch.float16, False)),
}

# Where a kernel's work ratio may exceed DEFAULT_WORK_RATIO, and why.
WORK_RATIO_BOUNDS: dict[str, tuple[float, str]] = {
    # Two of its float32 "ieee" configs have BLOCK_T of 2-4x BLOCK_K, so a segment tile reaches
    # only part of each time tile; the same bound as tests/test_score_anchors.py's plan test.
    "bwd_projected_kernel": (3.1, "ieee configs with BLOCK_T > BLOCK_K"),
}

# ---------------------------------------------------------------------------------------------
# Launch plans


def _call(fn, **kwargs):
    """fn with the keyword arguments its signature takes (plan functions differ in extras)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def plan_function(module: str, name: str):
    """module.name, or None where that module (or Triton, for the Triton modules) lacks it."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


PLAN_FUNCTIONS = {
    ("segment_interp", "triton"): ("rcl_kernels.triton.segment_interp", "segment_interp_launch_plans"),
    ("roi_align_1d", "triton"): ("rcl_kernels.triton.roi_align_1d", "roi_align_1d_launch_plans"),
    ("roi_align_1d", "cuda"): ("rcl_kernels._roi_align_1d_launch", "roi_align_1d_cuda_launch_plans"),
    ("score_anchors", "triton"): ("rcl_kernels.triton.score_anchors", "score_anchors_launch_plans"),
}


def has_plan_function(op: str, backend: str) -> bool:
    return plan_function(*PLAN_FUNCTIONS[(op, backend)]) is not None


class EmulatedPlans:
    """The CUDA launch plans of SoI and Soft-NMS, from csrc/cuda/*_kernels.cuh built for the CPU."""

    def __init__(self, directory: pathlib.Path, soft_nms_static_bytes: int):
        self.soi = ctypes.CDLL(str(emulation.build("segment_interp_emulated", directory)))
        self.nms = ctypes.CDLL(str(emulation.build("soft_nms_emulated", directory)))
        self.soft_nms_static_bytes = soft_nms_static_bytes

    def segment_interp(self, B, C, T, K, N, S, dtype) -> list[LaunchPlan]:
        acc_bytes = 8 if dtype == torch.float64 else 4
        plan = emulation.segment_interp_plan(self.soi, B, C, T, K, N, S, acc_bytes=acc_bytes, multiprocessors=SMS)
        needed = B * K * C * N * S
        unit = "sub-sample x channel evaluations (two taps each)"
        fx, fy = plan.forward_block
        # Every block loops over its segments; a segment takes ceil(N / x) passes of x points
        # and ceil(C / y) channel rows of y.
        forward_done = B * K * _padded(N, fx) * _padded(C, fy) * S
        bx, by = plan.backward_block
        spg = plan.segments_per_group
        segment_lanes = (K // spg) * _padded(spg, by) + (_padded(K % spg, by) if K % spg else 0)
        backward_done = B * segment_lanes * _padded(N, bx) * C * S
        return [LaunchPlan("segment_interp_forward_kernel", plan.forward_grid, fx * fy, forward_done, needed, unit),
                LaunchPlan("segment_interp_backward_kernel", plan.backward_grid, bx * by, backward_done, needed,
                           unit + f"; slab {plan.slab_bytes} B")]  # fmt: skip

    def soft_nms(self, V, P, labels, top_k) -> list[LaunchPlan]:
        plan = emulation.soft_nms_plan(self.nms, P, V, labels, multiprocessors=SMS,
                                       static_bytes=self.soft_nms_static_bytes)
        steps = min(top_k, P)
        # A step decays every candidate of the video: each thread walks ceil(P / threads) of them.
        done = V * steps * _padded(P, plan.threads)
        where = "global scratch" if plan.global_scratch else f"{plan.dynamic_bytes} B shared"
        return [LaunchPlan("soft_nms_kernel", V, plan.threads, done, V * steps * P,
                           f"candidate decays ({steps} steps; {where}); one block per video by design",
                           parallel_limit=V)]


def _padded(n: int, block: int) -> int:
    return -(-n // block) * block


def _pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def fallback_roi_align_1d(backend, B, C, T, R, P, sampling_ratio, roi_length) -> list[LaunchPlan]:
    """roi_align_1d's launches as issue 20 found them (main before the redesign): until the
    launchers' plan functions are merged. G sub-samples per bin: the ratio, or ceil(length / P)."""
    G = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_length / P)
    needed = R * C * P * G
    unit = "sub-sample x channel evaluations (fallback model of the launcher before issue 20)"
    if backend == "cuda":
        def blocks(n):
            return min(-(-n // 256), 1 << 16)

        def lanes(n):
            return _padded(n, blocks(n) * 256)
        return [LaunchPlan("forward_kernel", blocks(R * C * P), 256, lanes(R * C * P) * G, needed, unit),
                LaunchPlan("input_grad_kernel", blocks(B * C), 256, lanes(B * C) / (B * C) * needed, needed, unit),
                LaunchPlan("rois_grad_kernel", blocks(R), 256, lanes(R) * C * P * G, needed, unit)]
    block_p = min(_pow2(P), 32)
    block_c = max(1, min(_pow2(C), 4096 // block_p))
    forward = LaunchPlan("roi_align_1d_forward_kernel", R * -(-C // block_c), 128,
                         R * _padded(C, block_c) * _padded(P, block_p) * G, needed, unit)
    gc, gp, gt = min(_pow2(C), 16), min(_pow2(P), 16), 16
    programs = B * -(-C // gc) * -(-T // gt)
    reaching = R / B * min(1.0, (roi_length + gt + 2) / T)
    grad = LaunchPlan("roi_align_1d_input_grad_kernel", programs, 128,
                      programs * reaching * gc * gt * _padded(P, gp) * G, needed, unit)
    rois = LaunchPlan("roi_align_1d_rois_grad_kernel", R, 128, R * _padded(C, block_c) * _padded(P, block_p) * G,
                      needed, unit)
    return [forward, grad, rois]


def launch_rows(problems, emulated: EmulatedPlans | None) -> list[dict]:
    rows = []
    for problem in problems:
        s = problem.sizes
        backends = []
        if problem.op == "segment_interp":
            fn = plan_function(*PLAN_FUNCTIONS[("segment_interp", "triton")])
            if fn is not None:
                backends.append(("triton", "plan", _call(fn, **s, dtype=torch.float32)))
            if emulated is not None:
                backends.append(("cuda", "plan", emulated.segment_interp(**s, dtype=torch.float32)))
        elif problem.op == "roi_align_1d":
            for backend in ("triton", "cuda"):
                fn = plan_function(*PLAN_FUNCTIONS[("roi_align_1d", backend)])
                if fn is not None:
                    backends.append((backend, "plan", _call(fn, **s, dtype=torch.float32)))
                else:
                    backends.append((backend, "fallback", fallback_roi_align_1d(backend, **s)))
        elif problem.op == "score_anchors":
            fn = plan_function(*PLAN_FUNCTIONS[("score_anchors", "triton")])
            if fn is not None:
                backends.append(("triton", "plan", _call(fn, **s, dtype=torch.float32)))
            else:
                backends.append(("triton", "missing", []))
        elif problem.op == "soft_nms" and emulated is not None:
            backends.append(("cuda", "plan", emulated.soft_nms(**s)))
        for backend, source, plans in backends:
            if not plans:
                rows.append({"record": "launch", "op": problem.op, "problem": problem.name, "backend": backend,
                             "source": source, "kernel": None})
            for plan in plans:
                rows.append({"record": "launch", "op": problem.op, "problem": problem.name, "backend": backend,
                             "source": source, **launch_fields(plan)})
    return rows


def launch_fields(plan: LaunchPlan) -> dict:
    threads = plan.blocks * plan.threads_per_block
    limit = getattr(plan, "parallel_limit", None)
    bound, why = WORK_RATIO_BOUNDS.get(plan.kernel, (DEFAULT_WORK_RATIO, ""))
    return {"kernel": plan.kernel, "blocks": plan.blocks, "threads_per_block": plan.threads_per_block,
            "work_per_thread": plan.work_done / threads if threads else 0.0, "work_done": plan.work_done,
            "work_needed": plan.work_needed, "work_ratio": plan.work_ratio, "note": plan.note,
            "blocks_wanted": min(SMS, limit) if limit else SMS, "ratio_bound": bound, "ratio_bound_reason": why}


# ---------------------------------------------------------------------------------------------
# Triton compiles


# One padding rule: the rules change a few selects, not the tiles (tests/triton_hopper_compile.py
# compiles the others), and "zeros" shares Triton's cache with that harness.
PADDING = "zeros"


def _meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device="meta")


def triton_launches(problem: Problem, dtype: torch.dtype) -> None:
    """One forward and one backward (every gradient) of the op's Triton launcher on meta
    tensors (the custom ops' own Python bodies, which a meta tensor would send to the fake)."""
    from rcl_kernels.triton import roi_align_1d, score_anchors, segment_interp  # deferred: needs Triton

    s = problem.sizes
    if problem.op == "segment_interp":
        f, seg = _meta(s["B"], s["C"], s["T"], dtype=dtype), _meta(s["B"], s["K"], 2)
        out = segment_interp.segment_interp_triton_op._init_fn(f, seg, s["N"], s["S"], 0.25, PADDING)
        segment_interp.segment_interp_triton_backward_op._init_fn(torch.empty_like(out), f, seg, s["N"], s["S"], 0.25,
                                                                  PADDING, True, True)  # fmt: skip
    elif problem.op == "roi_align_1d":
        f, rois = _meta(s["B"], s["C"], s["T"], dtype=dtype), _meta(s["R"], 3)
        out = roi_align_1d.roi_align_1d_triton_op._init_fn(f, rois, s["P"], 1.0, s["sampling_ratio"], True)
        roi_align_1d.roi_align_1d_triton_backward_op._init_fn(torch.empty_like(out), f, rois, s["P"], 1.0,
                                                              s["sampling_ratio"], True, True, True)  # fmt: skip
    elif problem.op == "score_anchors":
        B, C, T, K, N, S, H, O = (s[k] for k in "B C T K N S H O".split())
        f, seg = _meta(B, C, T, dtype=dtype), _meta(B, K, 2)
        w1, b1 = _meta(H, C * N + 3, dtype=dtype), _meta(H, dtype=dtype)
        w2, b2 = _meta(O, H, dtype=dtype), _meta(O, dtype=dtype)
        out, hidden = score_anchors.score_anchors_triton_op._init_fn(f, seg, w1, b1, w2, b2, N, S, 0.25, PADDING, "ses",
                                                                     "relu", float(T), True)  # fmt: skip
        score_anchors.score_anchors_triton_backward_op._init_fn(torch.empty_like(out), hidden, f, seg, w1, w2, N, S,
                                                                0.25, PADDING, "ses", "relu", float(T), True, True,
                                                                True)  # fmt: skip


def supports(op: str, dtype: torch.dtype) -> bool:
    if op == "score_anchors":
        from rcl_kernels.triton import score_anchors  # deferred: needs Triton

        return dtype in score_anchors.DTYPES
    return True


def compiled_in_ci(problem: Problem) -> bool:
    """The CI subset. The scorer's largest output count is left out until its launcher has a
    plan function (issue 20, item 4): its unfixed forward tile (BLOCK_O = 1,024) takes minutes
    of ptxas per dtype, and spills either way."""
    if problem.op == "score_anchors" and problem.sizes["O"] > 128:
        return has_plan_function("score_anchors", "triton")
    return problem.ci


def compile_rows(problems, full: bool) -> list[dict]:
    import triton_hopper_compile as harness  # deferred: swaps Triton's driver, needs TRITON_INTERPRET unset
    from triton.backends.compiler import GPUTarget

    target = GPUTarget("cuda", cuda_ptx.ARCH, 32)
    rows, seen = [], set()
    for problem in problems:
        if problem.op not in TRITON_DTYPES:
            continue
        for dtype, tf32 in TRITON_DTYPES[problem.op]:
            if not supports(problem.op, dtype):
                continue
            records: list[dict] = []
            old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            error = None
            try:
                with harness.compile_only(target, records, all_configs=full):
                    triton_launches(problem, dtype)
            except Exception as exc:  # a launcher that refuses the size is a finding, not a crash
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
            label = str(dtype).removeprefix("torch.") + ("+tf32" if tf32 else "")
            if error:
                rows.append({"record": "compile", "op": problem.op, "problem": problem.name, "dtype": label,
                             "kernel": None, "error": error})
            for r in records:
                key = (problem.name, label, r["kernel"], json.dumps(r["constexprs"], sort_keys=True), r["num_warps"])
                if key in seen:
                    continue
                seen.add(key)
                threads = 32 * r["num_warps"]
                rows.append({"record": "compile", "op": problem.op, "problem": problem.name, "dtype": label,
                             "backend": "triton", "kernel": r["kernel"], "constexprs": r["constexprs"],
                             "num_warps": r["num_warps"], "threads_per_block": threads,
                             "registers": r["registers"], "spill_store_bytes": r["spill_store_bytes"],
                             "shared_bytes": r["shared_bytes"], "ftz": r.get("ftz", 0),
                             "registers_x_threads": r["registers"] * threads})
    return rows


# ---------------------------------------------------------------------------------------------
# CUDA ptxas


# Threads per block of each CUDA kernel at most (its __launch_bounds__, or the launcher's block):
# what registers x threads is checked with.
CUDA_MAX_THREADS = {"segment_interp_forward_kernel": 128, "segment_interp_backward_kernel": 256,
                    "soft_nms_kernel": 1024}


def cuda_rows() -> tuple[list[dict], int | None]:
    """ptxas -v of every CUDA kernel instantiation, and soft_nms_kernel's static shared bytes
    (what cudaFuncGetAttributes gives its launcher); ([], None) without nvcc."""
    if cuda_ptx.nvcc() is None:
        return [], None
    rows, nms_static = [], 0
    for stem, ptx in cuda_ptx.compile_all().items():
        usage = cuda_ptx.ptxas_usage(ptx)
        readable = cuda_ptx.demangle(usage)
        for name, u in usage.items():
            full = readable[name].replace("(anonymous namespace)::", "")
            kernel = full.split("(")[0].split("<")[0].split("::")[-1].replace("void ", "")
            threads = CUDA_MAX_THREADS.get(kernel, 256)
            if kernel == "soft_nms_kernel":
                nms_static = max(nms_static, u.shared_bytes)
            rows.append({"record": "compile", "op": stem.removesuffix("_cuda"), "problem": "any", "backend": "cuda",
                         "kernel": kernel, "instantiation": full.split("(")[0].replace("void ", "")
                         .replace("rcl_kernels::", ""), "dtype": _cuda_dtype(full), "num_warps": threads // 32,
                         "threads_per_block": threads, "registers": u.registers,
                         "spill_store_bytes": u.spill_store_bytes, "shared_bytes": u.shared_bytes,
                         "ftz": len(cuda_ptx.ftz_instructions(cuda_ptx.kernels(ptx)[name])),
                         "registers_x_threads": u.registers * threads})  # fmt: skip
    return rows, nms_static


def _cuda_dtype(name: str) -> str:
    template = name.split("<", 1)[1] if "<" in name else ""
    for token, dtype in (("BFloat16", "bfloat16"), ("Half", "float16"), ("double", "float64"), ("float", "float32")):
        if token in template:
            return dtype
    return "float32"


# ---------------------------------------------------------------------------------------------
# Report


OPS = ("segment_interp", "roi_align_1d", "score_anchors", "soft_nms")


def collect(full: bool, ops=OPS, compile_triton: bool = True, cuda: bool = True) -> list[dict]:
    """Every record: launches at every problem of `ops` (plans are cheap), the Triton compiles of
    the CI subset (every problem with full) and, with cuda, every CUDA kernel's ptxas -v."""
    cuda_records, nms_static = cuda_rows() if cuda else ([], None)
    with tempfile.TemporaryDirectory() as tmp:
        emulated = None
        if cuda and emulation.compiler() is not None and {"segment_interp", "soft_nms"} & set(ops):
            emulated = EmulatedPlans(pathlib.Path(tmp), nms_static or emulation.STATIC_BYTES)
        rows = launch_rows([p for p in PROBLEMS if p.op in ops], emulated)
    if compile_triton:
        rows += compile_rows([p for p in PROBLEMS if p.op in ops and (full or compiled_in_ci(p))], full)
    return rows + [r for r in cuda_records if r["op"] in ops]


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def markdown(rows: list[dict], problems=None) -> str:
    """Two tables: each launch at each problem (float32; only `problems`, names, if given), and
    the compiled resources of each (kernel, dtype), the worst over problems and configs."""
    lines = ["| op | problem | backend | kernel | blocks | threads | work / thread | work done / needed | ratio |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["record"] != "launch" or (problems is not None and r["problem"] not in problems):
            continue
        if r["kernel"] is None:
            lines.append(f"| {r['op']} | {r['problem']} | {r['backend']} | (no plan function yet) | | | | | |")
            continue
        flag = " (fallback)" if r["source"] == "fallback" else ""
        lines.append(f"| {r['op']} | {r['problem']} | {r['backend']} | {r['kernel']}{flag} | {r['blocks']:,} | "
                     f"{r['threads_per_block']} | {_si(r['work_per_thread'])} | {_si(r['work_done'])} / "
                     f"{_si(r['work_needed'])} | {r['work_ratio']:.3g} |")
    worst: dict[tuple, dict] = {}
    for r in rows:
        if r["record"] != "compile" or r.get("kernel") is None:
            continue
        key = (r["backend"], r["kernel"], r["dtype"])
        w = worst.setdefault(key, {"registers": 0, "spill_store_bytes": 0, "shared_bytes": 0, "ftz": 0,
                                   "registers_x_threads": 0, "configs": 0})
        w["configs"] += 1
        for field in ("registers", "spill_store_bytes", "shared_bytes", "ftz", "registers_x_threads"):
            w[field] = max(w[field], r[field])
    lines += ["", "| backend | kernel | dtype | compiles | registers | spill stores (B) | shared (B) | "
                  "registers x threads | .ftz |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for (backend, kernel, dtype), w in sorted(worst.items()):
        lines.append(f"| {backend} | {kernel} | {dtype} | {w['configs']} | {w['registers']} | "
                     f"{w['spill_store_bytes']} | {w['shared_bytes']:,} | {w['registers_x_threads']:,} | {w['ftz']} |")
    errors = [r for r in rows if r.get("error")]
    for r in errors:
        lines.append(f"\n{r['op']} {r['problem']} {r['dtype']}: {r['error']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every problem and autotune config (CI: the subset)")
    parser.add_argument("--json", action="store_true", help="one JSON record per line instead of the tables")
    parser.add_argument("--plans-only", action="store_true", help="launch plans and CUDA ptxas only, no Triton")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {', '.join(OPS)}")
    parser.add_argument("--no-cuda", action="store_true", help="leave out the CUDA kernels (nvcc, emulated plans)")
    parser.add_argument("--readme", action="store_true", help="launch table of the CI problems only (README)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") == "1" and not args.plans_only:
        parser.error("unset TRITON_INTERPRET: the Triton kernels must be compiled, not interpreted")
    ops = tuple(op for op in args.ops.split(",") if op)
    unknown = set(ops) - set(OPS)
    if unknown:
        parser.error(f"--ops: unknown {sorted(unknown)}; choose from {', '.join(OPS)}")
    rows = collect(args.full, ops, compile_triton=not args.plans_only, cuda=not args.no_cuda)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(markdown(rows, {p.name for p in PROBLEMS if p.ci} if args.readme else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
