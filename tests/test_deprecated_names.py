"""Import paths and benchmark names of the previous release keep working, with a warning."""

import importlib
import subprocess
import sys

import pytest

import rcl_kernels
import rcl_kernels.cpu.score_anchors
import rcl_kernels.reference.score_anchors
import rcl_kernels.triton.score_anchors

MOVED = [
    ("rcl_kernels.ops.anchor_scoring", "score_anchors", rcl_kernels.ops.score_anchors.score_anchors),
    ("rcl_kernels.ops.anchor_scoring", "ANCHOR_SCORING_BACKENDS", rcl_kernels.ops.score_anchors.SCORE_ANCHORS_BACKENDS),
    ("rcl_kernels.reference.anchor_scoring", "anchor_scoring_reference",
     rcl_kernels.reference.score_anchors.score_anchors_reference),
    ("rcl_kernels.reference.anchor_scoring_factored", "anchor_scoring_factored",
     rcl_kernels.cpu.score_anchors.score_anchors_cpu),
    ("rcl_kernels.triton.anchor_scoring", "anchor_scoring_triton",
     rcl_kernels.triton.score_anchors.score_anchors_triton),
    ("rcl_kernels.nn.anchor_scorer", "AnchorScorer", rcl_kernels.AnchorScorer),
]


@pytest.mark.parametrize("old_module, name, new_object", MOVED)
def test_old_import_path_warns_and_gives_the_new_object(old_module, name, new_object):
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=f"{old_module}.{name} is deprecated"):
        assert getattr(module, name) is new_object


def test_old_module_has_no_invented_names():
    module = importlib.import_module("rcl_kernels.ops.anchor_scoring")
    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        module.not_there  # noqa: B018


def test_old_benchmark_name_is_accepted_with_a_warning(tmp_path):
    # --only anchor_scoring runs the score_anchors benchmark; --help is enough to see the choice
    out = subprocess.run([sys.executable, "benchmarks/run.py", "--help"], capture_output=True, text=True, check=True)
    assert "anchor_scoring" in out.stdout and "score_anchors" in out.stdout
