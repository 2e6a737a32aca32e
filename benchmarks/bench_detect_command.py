"""`rcl-kernels detect` as a user runs it: wall, user and system time of the whole command on the
first 10 THUMOS14 test videos (synthetic features for the real annotations, the command's
defaults), in a fresh process, with freed memory kept (what the command does,
rcl_kernels.keep_freed_memory()) and with glibc's defaults (RCL_KEEP_FREED_MEMORY=0), where every
large tensor is a fresh mmap whose pages fault in. The checkpoint is a one-step training run of
the default model (detection's cost does not depend on the weights: Soft-NMS keeps top_k per
video either way); its training is not timed.

Rows (op "detect_command"): impl "freed memory kept" (ours) and "glibc defaults" (baseline), ms =
the command's wall time, with user_s, sys_s and sys_over_user (target < 0.1).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, Timing, row, standalone_main  # noqa: E402

OP = "detect_command"
VIDEOS = 10
SETTINGS = (("freed memory kept", {}, True), ("glibc defaults", {"RCL_KEEP_FREED_MEMORY": "0"}, False))
TIMEOUT_S = 900


def problems(quick: bool) -> dict:
    return {"thumos14-10v": dict(videos=VIDEOS, checkpoint="rcl-kernels train --max-steps 1 --no-eval")}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rcl_kernels.cli", *args]


def _timed_child(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall s, user s, sys s) of one child process run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=TIMEOUT_S)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def run(cfg: BenchConfig) -> list[dict]:
    if cfg.is_cuda:
        return [row(OP, "thumos14-10v", impl, "detect", None, ours=ours, skipped="a CPU row (page faults of host memory)")
                for impl, _, ours in SETTINGS]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ)
        subprocess.run(_cli("train", "--max-steps", "1", "--no-eval", "--output-dir", work), env=env, check=True,
                       capture_output=True, timeout=TIMEOUT_S)
        checkpoint = os.path.join(work, "last.pt")
        for impl, extra_env, ours in SETTINGS:
            cmd = _cli("detect", "--checkpoint", checkpoint, "--max-test-videos", str(VIDEOS), "--no-eval",
                       "--output", os.path.join(work, "detections.json"))
            wall, user, system = _timed_child(cmd, {**env, **extra_env})
            ms = wall * 1e3
            rows.append(row(OP, "thumos14-10v", impl, "detect", Timing(ms=ms, ms_p20=ms, ms_p80=ms, peak_mib=None),
                            ours=ours, videos=VIDEOS, user_s=user, sys_s=system, sys_over_user=system / user))
            print(f"  rcl-kernels detect, {VIDEOS} videos, {impl}: {wall:.1f} s wall, {user:.1f} s user, "
                  f"{system:.1f} s sys ({system / user:.0%} of user)", flush=True)
    return rows


if __name__ == "__main__":
    standalone_main(OP, run, problems(True))
