"""Registers and spills of every Triton kernel as compiled for sm_90, for the main job's results.

The records come from tests/triton_hopper_compile.py (compile-only: no GPU needed, ptxas -v of
each kernel and autotune config), run in a subprocess because it needs TRITON_INTERPRET unset and
swaps Triton's driver for a stand-in. Skipped, with the reason, where Triton cannot compile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(ROOT, "tests", "triton_hopper_compile.py")
# Fields of each record kept in results.json (the harness reports a few more).
FIELDS = ("kernel", "dtype", "problem", "constexprs", "num_warps", "num_stages", "registers",
          "spill_store_bytes", "spill_load_bytes", "stack_frame_bytes", "shared_bytes")


def compile_report(timeout_s: float = 1200) -> dict:
    """{"records": [...], "wall_s": ...}, or {"skipped": why}."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return {"skipped": "triton is not installed"}
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, HARNESS], capture_output=True, text=True, env=env,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"compiling took more than {timeout_s:.0f} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"skipped": f"the compile harness failed: {last[:300]}"}
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {"target": "sm_90", "records": [{k: r.get(k) for k in FIELDS} for r in records],
            "wall_s": time.time() - t0}


def markdown(report: dict) -> str:
    """The report as a table: one row per kernel, dtype, problem and config."""
    if "skipped" in report:
        return f"Triton kernels for sm_90: skipped ({report['skipped']})"
    lines = [f"## Triton kernels for {report['target']} (ptxas -v; compiled, not run)", "",
             "| kernel | dtype | problem | config | warps | stages | registers | spill stores / loads (B) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["records"]:
        config = ", ".join(f"{k}={v}" for k, v in r["constexprs"].items() if k.startswith("BLOCK") or k == "PREC")
        lines.append(f"| {r['kernel']} | {r['dtype']} | {r['problem']} | {config} | {r['num_warps']} | "
                     f"{r['num_stages']} | {r['registers']} | {r['spill_store_bytes']} / {r['spill_load_bytes']} |")
    return "\n".join(lines)
