"""The short example scripts in python/ run as documented."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ["segment_interp_example.py", "soft_nms_example.py", "score_anchors_example.py", "roi_align_1d_example.py",
            "opentad_example.py"]


@pytest.mark.parametrize("script", EXAMPLES)
def test_example_runs(script):
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # the examples use the default (fast) backends
    result = subprocess.run([sys.executable, os.path.join(ROOT, "python", script)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip(), "the example printed nothing"
