"""Every Triton kernel of the library compiles for sm_90 (H100 / H200), as its launchers would
launch it there, and fits a Hopper block's shared memory: checked without a GPU by
tests/triton_hopper_compile.py, in a subprocess because that needs TRITON_INTERPRET unset."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "triton_hopper_compile.py")


def test_every_triton_kernel_compiles_for_hopper():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all(r["fits"] for r in records)
    compiled = {(r["kernel"], r["dtype"]) for r in records}
    soi = {"segment_interp_forward_kernel", "segment_interp_backward_kernel"}
    scoring = {"fwd_kernel", "bwd_projected_kernel", "bwd_segments_kernel"}
    for dtype in ("bfloat16", "float16", "float32"):
        assert {(k, dtype) for k in soi | scoring} <= compiled, dtype
    assert {(k, "float64") for k in soi} <= compiled
    # bfloat16 compiles every autotune config; float32 also with TF32 tl.dot
    bf16_fwd = {tuple(sorted(r["constexprs"].items())) for r in records
                if r["kernel"] == "fwd_kernel" and r["dtype"] == "bfloat16"}
    assert len(bf16_fwd) >= 3
    assert {r["constexprs"].get("PREC") for r in records if r["kernel"] == "fwd_kernel" and r["dtype"] == "float32"} \
        == {"ieee", "tf32"}
