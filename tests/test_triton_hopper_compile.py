"""Every Triton kernel of the library compiles for sm_90 (H100 / H200), as its launchers would
launch it there, fits a Hopper block's shared memory, computes sample positions without fused
multiply-adds or approximate divisions, and does not spill registers: checked without a GPU by
tests/triton_hopper_compile.py, in a subprocess because that needs TRITON_INTERPRET unset."""

import functools
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "triton_hopper_compile.py")

# The most bytes of spill stores ptxas may report for one kernel. What is left (up to 20 B
# with ptxas 13 from triton 3.8) is a few registers saved once, outside the tile loops; the
# spills this bound catches were 168 B (SoI forward, 128 x 32 tile) to 8.5 KB (the scorer's
# projected backward with float32 FMA tl.dot) per thread.
SPILL_LIMIT_BYTES = 64

SOI = {"segment_interp_forward_kernel", "segment_interp_backward_kernel"}
SCORING = {"fwd_kernel", "bwd_projected_kernel", "bwd_segments_kernel"}
ROI_ALIGN_1D = {"roi_align_1d_forward_kernel", "roi_align_1d_input_grad_scatter_kernel",
                "roi_align_1d_input_grad_gather_kernel", "roi_align_1d_rois_grad_kernel"}


@functools.cache
def compiled_records() -> tuple:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tuple(json.loads(line) for line in proc.stdout.splitlines())


def describe(r: dict) -> str:
    return f"{r['kernel']} {r['dtype']} ({r['problem']}, {r['constexprs']}, {r['num_warps']} warps)"


def test_every_triton_kernel_compiles_for_hopper():
    records = compiled_records()
    assert all(r["fits"] for r in records)
    compiled = {(r["kernel"], r["dtype"]) for r in records}
    for dtype in ("bfloat16", "float16", "float32"):
        assert {(k, dtype) for k in SOI | SCORING} <= compiled, dtype
    assert {(k, "float64") for k in SOI} <= compiled
    # bfloat16 compiles every autotune config; float32 also with TF32 tl.dot
    bf16_fwd = {tuple(sorted(r["constexprs"].items())) for r in records
                if r["kernel"] == "fwd_kernel" and r["dtype"] == "bfloat16"}
    assert len(bf16_fwd) >= 3
    assert {r["constexprs"].get("PREC") for r in records if r["kernel"] == "fwd_kernel" and r["dtype"] == "float32"} \
        == {"ieee", "tf32"}
    # SoI's largest tile (C = 256, N = 32) in every dtype
    assert {r["dtype"] for r in records if r["problem"] == "segment_interp anet"} == \
        {"bfloat16", "float16", "float32", "float64"}


def dot_multiply_adds_per_thread(r: dict) -> int:
    """The fma.rn.f32 instructions a kernel's own tl.dot calls account for: none where tl.dot
    is an MMA (16-bit operands, TF32); M N K / threads per call where float32 tl.dot runs on
    the FMA units (PREC "ieee"), which Triton lowers to explicit fused multiply-adds."""
    c = r["constexprs"]
    if r["kernel"] in SOI or c.get("PREC") != "ieee":
        return 0
    k, t, h = c["BLOCK_K"], c["BLOCK_T"], c["BLOCK_H"]
    products = {"fwd_kernel": k * t * h + k * h * c.get("BLOCK_O", 0),  # A_n @ G, then act @ W2^T
                "bwd_projected_kernel": t * k * h, "bwd_segments_kernel": k * h * t}[r["kernel"]]
    return products // (32 * r["num_warps"])


def test_no_contracted_or_approximate_position_arithmetic():
    """Sample positions x = a + (b - a) t are rounded after the multiply and after the add, as
    on the CPU (a fused x can land on the other side of an integer and read another interval):
    every kernel is compiled with fp fusion off, and the PTX holds no fused multiply-add but
    those of float32 FMA tl.dot, counted exactly. Divisions are correctly rounded (div.rn.f32,
    as the CPU rounds t = m / (M - 1) and phi = start / num_steps), never div.full.f32."""
    records = compiled_records()
    for r in records:
        assert r["enable_fp_fusion"] is False, describe(r)
        assert r["div_full_f32"] == 0, f"{describe(r)}: {r['div_full_f32']} approximate divisions"
        assert r["fma_f32"] == dot_multiply_adds_per_thread(r), \
            f"{describe(r)}: {r['fma_f32']} fma.rn.f32, tl.dot accounts for {dot_multiply_adds_per_thread(r)}"
    assert any(r["div_rn_f32"] > 0 for r in records if r["kernel"] in SCORING)  # the check looks at real PTX


def test_no_kernel_spills_registers():
    """ptxas -v for sm_90: spill stores per kernel stay within SPILL_LIMIT_BYTES."""
    records = compiled_records()
    spilling = [f"{describe(r)}: {r['registers']} registers, {r['spill_store_bytes']} B spill stores"
                for r in records if r["spill_store_bytes"] > SPILL_LIMIT_BYTES]
    assert not spilling, "\n".join(spilling)
    assert all(0 < r["registers"] <= 255 for r in records)


def test_roi_align_1d_kernels_compile_wide_and_offset_in_64_bits():
    """Every roi_align_1d kernel at the widest tiles (C = 512, P = 32) in every dtype, below the
    register file's 255 per thread (the forward needed all 255 with a 4,096-element tile), and no
    pointer offset computed in 32 bits (roi * C * P passes 2^31 at C = 512, P = 32, R > 131,072)."""
    records = [r for r in compiled_records() if r["kernel"] in ROI_ALIGN_1D]
    assert {(r["kernel"], r["dtype"]) for r in records if r["problem"] == "roi_align_1d wide"} == \
        {(k, d) for k in ROI_ALIGN_1D for d in ("bfloat16", "float16", "float32", "float64")}
    for r in records:
        assert r["i32_pointer_offsets"] == 0, f"{describe(r)}: {r['i32_pointer_offsets']} 32-bit pointer offsets"
        assert r["registers"] < 255, f"{describe(r)}: {r['registers']} registers"


def test_main_job_reports_registers_and_spills():
    """benchmarks/run.py writes these records into its results (benchmarks/triton_compile.py)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import triton_compile
    finally:
        sys.path.pop(0)
    records = compiled_records()
    table = triton_compile.markdown({"target": "sm_90", "records": [{k: r[k] for k in triton_compile.FIELDS}
                                                                     for r in records]})
    assert table.count("\n| ") == len(records) + 1  # header and one row per kernel compiled
    assert "| segment_interp_forward_kernel | float32 | segment_interp anet | BLOCK_C=32, BLOCK_N=32 | 4 |" in table
    assert "skipped (triton is not installed)" in triton_compile.markdown({"skipped": "triton is not installed"})
