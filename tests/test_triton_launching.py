"""What the Triton launchers of SoI and score_anchors do around each launch
(rcl_kernels/triton/_launching.py), checked on the CPU with stand-in kernels: every launch runs
inside the device guard of its tensors' device, and every grid stays inside CUDA's limits
(x < 2**31, y and z <= 65,535) for batches at and beyond 65,535 videos."""

from __future__ import annotations

import contextlib
import math
import types

import pytest
import torch

pytest.importorskip("triton")

from rcl_kernels.triton import _launching
from rcl_kernels.triton import score_anchors as scoring
from rcl_kernels.triton import segment_interp as soi

# A GPU config of each scorer kernel (the grids depend on its block sizes).
GPU_META = {"BLOCK_K": 64, "BLOCK_T": 32, "BLOCK_H": 64}


class Launches:
    """Stands in for Triton kernels (kernel[grid](*args, **kwargs)) and for the device guard:
    records, per launch, the kernel, its grid and the devices of the guards it runs inside."""

    def __init__(self):
        self.guards: list[torch.device] = []
        self.calls: list[dict] = []

    @contextlib.contextmanager
    def guard(self, device):
        self.guards.append(device)
        try:
            yield
        finally:
            self.guards.pop()

    def kernel(self, name: str):
        launches = self

        class Kernel:
            def __getitem__(self, grid):
                grid = grid(GPU_META) if callable(grid) else grid  # an autotuner calls grid(config)

                def launch(*args, **kwargs):
                    launches.calls.append({"kernel": name, "grid": tuple(grid), "guards": list(launches.guards),
                                           "meta": {**GPU_META, **kwargs}, "fusion": kwargs.get("enable_fp_fusion")})

                return launch

        return Kernel()

    def tuned(self, name: str) -> dict:
        return {prec: self.kernel(name) for prec in ("tf32", "ieee")}


@pytest.fixture
def launches(monkeypatch):
    record = Launches()
    monkeypatch.setattr(_launching, "device_guard", record.guard)
    kernels = types.SimpleNamespace(
        fwd_kernel=record.kernel("fwd"), fwd_tuned=record.tuned("fwd"),
        bwd_projected_kernel=record.kernel("bwd_projected"), bwd_projected_tuned=record.tuned("bwd_projected"),
        bwd_segments_kernel=record.kernel("bwd_segments"), bwd_segments_tuned=record.tuned("bwd_segments"),
        segment_interp_forward_kernel=record.kernel("soi_forward"),
        segment_interp_backward_kernel=record.kernel("soi_backward"),
    )
    monkeypatch.setattr(scoring, "_kernels", kernels, raising=False)
    monkeypatch.setattr(soi, "_kernels", kernels, raising=False)
    return record


def scorer_launches(B=2, C=3, T=5, K=7, N=4, H=6, O=2):
    """Forward and backward (every gradient) of the Triton scorer's launcher."""
    features = torch.randn(B, C, T)
    segments = torch.rand(B, K, 2) * T
    w1, b1 = torch.randn(H, C * N + 3), torch.randn(H)
    w2, b2 = torch.randn(O, H), torch.randn(O)
    out, hidden = scoring._forward_impl(features, segments, w1, b1, w2, b2, N, 1, 0.0, "zeros", "ses", "relu",
                                        float(T), True)
    scoring._backward_impl(torch.ones_like(out), hidden.zero_(), features, segments, w1, w2, N, 1, 0.0, "zeros",
                           "ses", "relu", float(T), True, True, True)
    return features.device


@pytest.mark.parametrize("interpreted", [True, False], ids=["interpreter", "gpu_path"])
def test_every_scorer_launch_runs_inside_the_device_guard(launches, monkeypatch, interpreted):
    monkeypatch.setattr(scoring, "_interpreted", lambda device: interpreted)
    device = scorer_launches()
    assert [c["kernel"] for c in launches.calls] == ["fwd", "bwd_projected", "bwd_segments"]
    for call in launches.calls:
        assert call["guards"] == [device], call["kernel"]
        assert call["fusion"] is False, call["kernel"]  # positions rounded as on the CPU


def test_every_segment_interp_launch_runs_inside_the_device_guard(launches):
    features, segments = torch.randn(2, 3, 9), torch.rand(2, 4, 2) * 9
    out = soi.segment_interp_triton_op(features, segments, 5, 2, 0.25, "zeros")
    soi.segment_interp_triton_backward_op(torch.ones_like(out), features, segments, 5, 2, 0.25, "zeros", True, True)
    assert [c["kernel"] for c in launches.calls] == ["soi_forward", "soi_backward"]
    assert all(c["guards"] == [features.device] for c in launches.calls)


def test_device_guard_selects_the_tensors_cuda_device():
    """For a CUDA tensor the guard makes its device current for the launch (torch.cuda.device;
    built here without entering it, so no CUDA is needed); CPU tensors need none."""
    guard = _launching.device_guard(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(_launching.device_guard(torch.device("cpu")), contextlib.nullcontext)


@pytest.mark.parametrize("B", [2047, 2048, 65_535, 65_536, 70_001])
def test_scorer_grids_stay_inside_cuda_limits(launches, monkeypatch, B):
    """B >= 2,048 at N = 32 put more than 65,535 programs on the projected backward's grid z,
    and B > 65,535 on the forward's and segment backward's grid y; all now sit on x, and every
    (video, tile) still gets exactly one program."""
    monkeypatch.setattr(scoring, "_interpreted", lambda device: False)
    T, K, N, H = 3, 70, 32, 1  # 70,001 x 70 x 1 hidden values, 70,001 x 3 x 32 projected ones
    scorer_launches(B=B, C=1, T=T, K=K, N=N, H=H, O=1)
    for call in launches.calls:
        grid, meta = call["grid"], call["meta"]
        assert grid[0] <= _launching.MAX_GRID_X and all(d <= _launching.MAX_GRID_YZ for d in grid[1:]), call
        if call["kernel"] == "bwd_projected":
            expected = B * N * math.ceil(T / meta["BLOCK_T"]) * math.ceil(H / meta["BLOCK_H"])
        else:
            expected = B * math.ceil(K / meta["BLOCK_K"])
        assert math.prod(grid) == expected, call


def test_launch_grid_rejects_what_cuda_cannot_launch():
    assert _launching.launch_grid("op", 2**31 - 1, 65_535, 65_535) == (2**31 - 1, 65_535, 65_535)
    for grid in [(2**31,), (1, 65_536), (1, 1, 65_536)]:
        with pytest.raises(ValueError, match=r"op: the problem needs a launch grid of .* beyond CUDA's limits"):
            _launching.launch_grid("op", *grid)
