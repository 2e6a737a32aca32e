"""What importing costs: the numpy-only evaluation and its commands never import torch or the
compiled extension, and `import rcl_kernels` itself loads the ops only on first use.

Each check runs in a fresh interpreter (this one has torch loaded already) and prints its start-up
time and peak resident memory; the speed targets (`--help` < 0.5 s and < 100 MB, a kit file scored
in < 1.5 s) are reported, never asserted, since the CI machine's load is not ours.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAVY = ("torch", "rcl_kernels._C", "triton")

# Run in the child: `body`, then report which heavy modules got loaded, the time it took and the
# peak RSS: VmHWM of /proc/self/status (getrusage's ru_maxrss would count the forking pytest's).
PROBE = """
import json, sys, time
start = time.perf_counter()
{body}
seconds = time.perf_counter() - start
try:
    with open("/proc/self/status") as fh:
        max_rss_mb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
except OSError:
    max_rss_mb = float("nan")
print(json.dumps({{"loaded": [m for m in {heavy!r} if m in sys.modules], "seconds": seconds,
                   "max_rss_mb": max_rss_mb}}))
"""


def _probe(body: str, label: str | None = None) -> dict:
    code = PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=_child_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{label or body!r}: {report['seconds']:.3f} s, {report['max_rss_mb']:.0f} MB peak RSS", end="")
    return report


def _child_env() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _run_cli(argv: list[str]) -> str:
    # main() returns the exit status; --help exits through SystemExit(0)
    return ("from rcl_kernels.cli import main\n"
            f"try:\n    status = main({argv!r})\nexcept SystemExit as exc:\n    status = exc.code\n"
            "assert status in (0, None), status\n")


@pytest.mark.parametrize("body", [
    "import rcl_kernels",
    "import rcl_kernels.evaluation",
    "import rcl_kernels.cli",
    "import rcl_kernels.evaluation.command, rcl_kernels.evaluation.diagnose_command",
])
def test_import_loads_no_torch(body):
    assert _probe(body)["loaded"] == []


@pytest.mark.parametrize("command", ["eval", "diagnose"])
def test_help_loads_no_torch(command):
    assert _probe(_run_cli([command, "--help"]), f"rcl-kernels {command} --help")["loaded"] == []


def _kit_file(tmp_path) -> str:
    # a THUMOS14 kit detection file on the shipped Test ground truth: a hit and a miss per class
    from rcl_kernels.data import builtin
    from rcl_kernels.evaluation import thumos14_kit

    gt = builtin.thumos14_ground_truth("test")
    ids = dict((name, cid) for cid, name in thumos14_kit.read_class_list())
    lines = []
    for c, name in enumerate(gt.classes):
        i = int((gt.label == c).nonzero()[0][0])
        video = gt.video_ids[gt.video[i]]
        start, end = gt.segments[i]
        lines += [f"{video} {start:.1f} {end:.1f} {ids[name]} 0.9", f"{video} {end + 50:.1f} {end + 60:.1f} {ids[name]} 0.8"]
    path = tmp_path / "detections.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_kit_file_scored_end_to_end_without_torch(tmp_path):
    argv = ["eval", "--ground-truth", "thumos14:test", "--predictions", _kit_file(tmp_path), "--protocol", "thumos14"]
    assert _probe(_run_cli(argv), "rcl-kernels eval (kit file)")["loaded"] == []


def test_diagnose_end_to_end_without_torch(tmp_path):
    argv = ["diagnose", "--ground-truth", "thumos14:test", "--predictions", _kit_file(tmp_path), "--dataset", "thumos14"]
    assert _probe(_run_cli(argv), "rcl-kernels diagnose (kit file)")["loaded"] == []


def test_first_use_of_a_public_name_registers_every_op():
    # through `import rcl_kernels.ops`, which is what code calling torch.ops.rcl_kernels.* imports
    body = ("import rcl_kernels, sys\n"
            "assert 'torch' not in sys.modules\n"
            "assert rcl_kernels.soft_nms.__module__ == 'rcl_kernels.ops.soft_nms'\n"
            "assert {'rcl_kernels.ops.segment_interp', 'rcl_kernels.ops.score_anchors', 'rcl_kernels.ops.roi_align_1d'} "
            "<= set(sys.modules)\n"
            "import torch\n"
            "from rcl_kernels import segment_interp\n"
            "assert segment_interp is rcl_kernels.ops.segment_interp.segment_interp\n"
            "torch.ops.rcl_kernels.segment_interp_triton, torch.ops.rcl_kernels.score_anchors_triton\n"
            "if rcl_kernels._extension.EXTENSION_LOADED: torch.ops.rcl_kernels.soft_nms.default\n"
            "assert rcl_kernels.info(file=False)['rcl_kernels'] == rcl_kernels.__version__\n"
            "assert not torch.cuda.is_initialized()\n")
    assert "torch" in _probe(body, "first use of rcl_kernels.soft_nms")["loaded"]


def test_unknown_attribute_is_an_attribute_error():
    import rcl_kernels

    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        rcl_kernels.not_there  # noqa: B018
    assert {"segment_interp", "info", "soft_nms"} <= set(dir(rcl_kernels))
