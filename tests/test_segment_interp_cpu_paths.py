"""SoI's two CPU kernels: the AVX-512 one (chosen at run time where the CPU has AVX-512) and the
portable one (every other CPU; forced with RCL_CPU_CAPABILITY=default). test_segment_interp.py
runs the kernel this machine picks; here the main checks of that file run on the portable kernel
too, and the two kernels are compared on the shapes that reach their vector tails."""

from __future__ import annotations

import math

import pytest
import torch

import rcl_kernels
import test_segment_interp as base
from rcl_kernels.reference.segment_interp import segment_interp_reference
from tolerances import assert_close_to_reference

pytestmark = pytest.mark.skipif(not rcl_kernels._extension.has_kernel("segment_interp", "CPU"),
                                reason="CPU kernels not built")

HAS_AVX512 = torch.backends.cpu.get_cpu_capability() == "AVX512"
needs_avx512 = pytest.mark.skipif(not HAS_AVX512, reason="this CPU has no AVX-512: only the portable kernel runs")


@pytest.fixture
def portable(monkeypatch):
    monkeypatch.setenv("RCL_CPU_CAPABILITY", "default")


def on_path(path: str, monkeypatch, fn):
    if path == "portable":
        monkeypatch.setenv("RCL_CPU_CAPABILITY", "default")
    else:
        monkeypatch.delenv("RCL_CPU_CAPABILITY", raising=False)
    return fn()


# The checks of test_segment_interp.py, on the portable kernel.


@pytest.mark.parametrize("dtype", base.DTYPES, ids=str)
@pytest.mark.parametrize("padding", base.PADDINGS)
def test_portable_forward_matches_reference(portable, dtype, padding):
    base.test_forward_matches_reference("cpu", "cpu", dtype, padding)


def test_portable_forward_float64_exactly_enough(portable):
    base.test_forward_equals_reference_float64_exactly_enough("cpu", "cpu")


@pytest.mark.parametrize("dtype", base.DTYPES, ids=str)
@pytest.mark.parametrize("padding", base.PADDINGS)
def test_portable_gradients_match_reference(portable, dtype, padding):
    base.test_gradients_match_reference("cpu", "cpu", dtype, padding)


@pytest.mark.parametrize("padding", base.PADDINGS)
def test_portable_gradcheck_float64(portable, padding):
    base.test_gradcheck_float64("cpu", padding)


def test_portable_bmn_equivalence(portable):
    base.test_bmn_boundary_matching_equivalence("cpu")


@pytest.mark.parametrize("padding", base.PADDINGS)
def test_portable_non_finite_coordinates(portable, padding):
    base.test_non_finite_coordinates_stay_in_bounds("cpu", "cpu", padding)


@pytest.mark.parametrize("shape", [(0, 3, 5, 4), (2, 3, 5, 0), (2, 0, 5, 4), (1, 2, 1, 3)])
def test_portable_empty_and_tiny_shapes(portable, shape):
    base.test_empty_and_tiny_shapes("cpu", "cpu", shape)


# The two kernels against each other and against the reference.


@needs_avx512
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("padding", base.PADDINGS)
def test_tap_weights_bit_identical(monkeypatch, dtype, padding):
    """With one-hot features (channel c = time step c) and one sub-sample per point, every
    output is one tap weight: both kernels and the reference must give the same bits, also at
    integer positions, where an FMA-contracted position would flip the interval."""
    T, K, N = 23, 64, 37
    gen = torch.Generator().manual_seed(1)
    segments = base.random_segments(1, K, T, generator=gen).to(dtype)
    segments[0, :8] = torch.tensor([[0.0, 22.0], [1.0, 7.0], [3.0, 3.0], [-1.0, 4.0], [2.5, 11.5], [22.0, 0.0],
                                    [-0.5, -0.25], [21.0, 23.0]], dtype=dtype)
    features = torch.eye(T, dtype=dtype).unsqueeze(0)
    for context in (0.0, 0.5, 0.1):
        outs = {path: on_path(path, monkeypatch, lambda: rcl_kernels.segment_interp(
            features, segments, N, samples_per_point=1, context=context, padding=padding, backend="cpu"))
            for path in ("native", "portable")}
        ref = segment_interp_reference(features, segments, N, 1, context, padding)
        assert torch.equal(outs["native"], outs["portable"]), f"context={context}"
        assert torch.equal(outs["native"], ref), f"context={context}"


@needs_avx512
@pytest.mark.parametrize("dtype", base.DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(2, 37, 19, 29, 35, 3), (1, 16, 50, 40, 64, 1), (1, 5, 9, 7, 40, 2),
                                   (1, 33, 12, 6, 16, 2)], ids=lambda s: "x".join(map(str, s)))
def test_kernels_agree_on_vector_tails(monkeypatch, dtype, shape):
    """Channel counts that are not whole vectors (37, 5, 33), point counts that are not whole
    blocks (35, 40) or are pairs of them (64, 16-bit stores), against the float64 reference."""
    B, C, T, K, N, S = shape
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(B, C, T, generator=gen)
    segments = base.random_segments(B, K, T, generator=gen)
    grad_out = torch.randn(B, K, C, N, generator=gen)

    def run(f, s, fn):
        f = f.detach().requires_grad_()
        s = s.detach().requires_grad_()
        out = fn(f, s)
        return (out, *torch.autograd.grad(out, (f, s), grad_out.to(out.dtype)))

    kernel = lambda f, s: rcl_kernels.segment_interp(f, s, N, samples_per_point=S, context=0.25,  # noqa: E731
                                                     padding="zeros", backend="cpu")
    reference = lambda f, s: segment_interp_reference(f, s, N, S, 0.25, "zeros")  # noqa: E731
    exact = run(features.double(), segments.double(), reference)
    same = run(features.to(dtype), segments, reference)
    scales = [1.0, math.sqrt(K * N * S), math.sqrt(C * N * S) * T]
    for path in ("native", "portable"):
        ours = on_path(path, monkeypatch, lambda: run(features.to(dtype), segments, kernel))
        for what, o, e, s_, scale in zip(("forward", "grad features", "grad segments"), ours, exact, same, scales):
            assert_close_to_reference(o, e, s_, dtype, scale=scale, what=f"{path} {what}")


@needs_avx512
@pytest.mark.parametrize("need", [(True, False), (False, True)])
def test_kernels_agree_on_one_gradient(monkeypatch, need):
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(2, 20, 31, dtype=torch.float64, generator=gen)
    segments = base.random_segments(2, 17, 31, generator=gen).double()
    grad_out = torch.randn(2, 17, 20, 9, dtype=torch.float64, generator=gen)
    op = torch.ops.rcl_kernels.segment_interp_backward.default
    got = {path: on_path(path, monkeypatch, lambda: op(grad_out, features, segments, 9, 3, 0.5, "border", *need))
           for path in ("native", "portable")}
    for a, b in zip(got["native"], got["portable"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
