"""The CUDA roi_align_1d kernels (csrc/cuda/roi_align_1d_kernels.cuh) run on the CPU through
tests/cuda_emulation, thread by thread with their block barriers: the forward and the
deterministic input gradient equal the C++ CPU kernel bit for bit, the atomic input gradient and
the roi gradient match the float64 reference; grid-stride loops that take several passes give
the same results. And the launch plans: the CUDA header's plan_* equals
rcl_kernels._roi_align_1d_launch's, whose work ratio and block count the size matrix asserts."""

from __future__ import annotations

import ctypes
import itertools

import pytest
import torch
from cuda_emulation import kernels as emulation
from test_roi_align_1d import random_rois

from rcl_kernels._extension import has_kernel
from rcl_kernels._roi_align_1d_launch import roi_align_1d_cuda_launch_plans
from rcl_kernels.reference.roi_align_1d import roi_align_1d_reference

CONFIGS = [(-1, False), (0, True), (2, True), (1, False), (3, False)]  # (sampling_ratio, aligned)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if emulation.compiler() is None:
        pytest.skip("no C++ compiler for the CUDA emulation")
    return ctypes.CDLL(str(emulation.build("roi_align_1d_emulated", tmp_path_factory.mktemp("cuda_emulation"))))


def needs_cpu_kernel():
    if not has_kernel("roi_align_1d", "CPU"):
        pytest.skip("the C++ CPU kernel was not built")


def same_bits_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def case(B, C, T, R, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, T, generator=g, dtype=torch.float64).to(dtype)
    rois = random_rois(B, R, T, generator=g).to(dtype)
    # Many rois on the same steps (the atomic adds collide), and invalid ones.
    rois[: R // 4, :] = rois[0]
    rois[R // 4, 1] = float("nan")
    rois[R // 4 + 1, 0] = B + 3.0  # batch index out of range: NaN output, no gradient
    return x, rois


def reference_grads(x, rois, grad_out, P, scale, ratio, aligned):
    f = x.double().requires_grad_()
    r = rois.double().requires_grad_()
    out = roi_align_1d_reference(f, r, P, scale, ratio, aligned)
    keep = ~out.isnan()
    gf, gr = torch.autograd.grad(out[keep], (f, r), grad_out.double()[keep])
    gr = torch.where(rois.isfinite().all(1, keepdim=True) & (rois[:, :1] < x.shape[0]), gr, torch.zeros_like(gr))
    gr[:, 0] = 0
    return gf, gr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("ratio,aligned", CONFIGS)
def test_forward_and_deterministic_input_grad_equal_cpu_kernel(lib, dtype, ratio, aligned):
    needs_cpu_kernel()
    B, C, T, R, P = 3, 5, 23, 37, 6
    x, rois = case(B, C, T, R, dtype, seed=ratio + 10 * aligned)
    scale = 0.5
    want = torch.ops.rcl_kernels.roi_align_1d.default(x, rois, P, scale, ratio, aligned)
    for max_blocks in (1 << 30, 2):
        got = emulation.roi_align_1d_forward(lib, x, rois, P, scale, ratio, aligned, max_blocks=max_blocks)
        assert same_bits_nan(got, want), (max_blocks, (got - want).abs().nan_to_num().max())
    grad = torch.randn(R, C, P, dtype=dtype)
    want_f, _ = torch.ops.rcl_kernels.roi_align_1d_backward.default(grad, x, rois, P, scale, ratio, aligned, True,
                                                                     False)  # fmt: skip
    for max_blocks in (1 << 30, 1):
        got_f, got_r = emulation.roi_align_1d_backward(lib, grad, x, rois, P, scale, ratio, aligned,
                                                       deterministic=True, need=(True, False), max_blocks=max_blocks)
        assert emulation.same_bits(got_f, want_f) and not got_r.any()


@pytest.mark.parametrize("ratio,aligned", CONFIGS)
def test_backward_matches_float64_reference(lib, ratio, aligned):
    B, C, T, R, P = 2, 7, 19, 29, 5
    x, rois = case(B, C, T, R, torch.float64, seed=100 + ratio + 10 * aligned)
    grad = torch.randn(R, C, P, dtype=torch.float64)
    want_f, want_r = reference_grads(x, rois, grad, P, 0.75, ratio, aligned)
    for deterministic, max_blocks in [(False, 1 << 30), (False, 3), (True, 1 << 30)]:
        got_f, got_r = emulation.roi_align_1d_backward(lib, grad, x, rois, P, 0.75, ratio, aligned,
                                                       deterministic=deterministic, max_blocks=max_blocks)
        torch.testing.assert_close(got_f, want_f, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_r, want_r, rtol=1e-10, atol=1e-10)
    # float32: close to float64 within float32 rounding of sums over up to R P G terms
    got_f, got_r = emulation.roi_align_1d_backward(lib, grad.float(), x.float(), rois.float(), P, 0.75, ratio, aligned)
    torch.testing.assert_close(got_f.double(), want_f, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_r.double(), want_r, rtol=1e-3, atol=1e-3)


def test_one_gradient_at_a_time(lib):
    x, rois = case(2, 3, 11, 9, torch.float64, seed=7)
    grad = torch.randn(9, 3, 4, dtype=torch.float64)
    both = emulation.roi_align_1d_backward(lib, grad, x, rois, 4, 1.0, 2, False)
    only_f = emulation.roi_align_1d_backward(lib, grad, x, rois, 4, 1.0, 2, False, need=(True, False))
    only_r = emulation.roi_align_1d_backward(lib, grad, x, rois, 4, 1.0, 2, False, need=(False, True))
    torch.testing.assert_close(only_f[0], both[0], rtol=1e-14, atol=1e-14)
    assert torch.equal(only_r[1], both[1]) and not only_f[1].any() and not only_r[0].any()


# --------------------------------------------------------------------------------------------
# Launch plans


def test_python_plans_are_the_cuda_headers(lib):
    """rcl_kernels._roi_align_1d_launch's blocks and threads are plan_* of the header."""
    for B, C, T, R, P in itertools.product((1, 16), (1, 19, 512), (100, 4096), (1, 300, 100_000), (1, 3, 8, 32)):
        for deterministic in (False, True):
            for plan in roi_align_1d_cuda_launch_plans(B, C, T, R, P, deterministic=deterministic):
                assert (plan.blocks, plan.threads_per_block) == emulation.roi_align_1d_plan(lib, plan.kernel, B, C, T,
                                                                                              R, P), (plan, B, C, R, P)
