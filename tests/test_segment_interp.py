"""SoI (rcl_kernels.segment_interp): every available backend against the float64 reference."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import backend_params
from tolerances import assert_close_to_reference

import rcl_kernels
from rcl_kernels.ops.segment_interp import SEGMENT_INTERP_BACKENDS
from rcl_kernels.reference.segment_interp import segment_interp_reference

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
PADDINGS = ["zeros", "border", "bmn"]


def is_interpreted(device: str, backend: str) -> bool:
    return backend == "triton" and device == "cpu"


def random_segments(B: int, K: int, T: int, *, generator=None) -> torch.Tensor:
    """A mix of the cases the op must handle: inside [0, T-1], partly or wholly outside, very
    short (< 1e-3), zero-length (some on integers) and reversed (end < start)."""
    s = torch.rand(B, K, generator=generator) * (T + 4) - 2
    length = torch.rand(B, K, generator=generator) * T * 0.6
    kind = torch.randint(0, 6, (B, K), generator=generator)
    length = torch.where(kind == 1, torch.rand(B, K, generator=generator) * 1e-3, length)
    length = torch.where(kind == 2, torch.zeros_like(length), length)
    s = torch.where(kind == 2, s.round(), s)
    length = torch.where(kind == 3, -length, length)
    s = torch.where(kind == 4, s - T, s)  # mostly left of the features
    return torch.stack([s, s + length], dim=-1).float()


def make_inputs(B, C, T, K, device, *, noncontiguous=False):
    if noncontiguous:
        features = torch.randn(B, T, 2 * C + 1).transpose(1, 2)[:, 1::2, :]
    else:
        features = torch.randn(B, C, T)
    assert features.shape == (B, C, T)
    return features.to(device), random_segments(B, K, T).to(device)


# ---------------------------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("padding", PADDINGS)
def test_forward_matches_reference(device, backend, dtype, padding):
    configs = [(1, 0.0, False), (3, 0.5, True)]
    if is_interpreted(device, backend):
        B, C, T, K, N = 2, 3, 9, 6, 3
    else:
        B, C, T, K, N = 3, 13, 37, 41, 7
    for S, context, noncontiguous in configs:
        features, segments = make_inputs(B, C, T, K, device, noncontiguous=noncontiguous)
        kw = dict(samples_per_point=S, context=context, padding=padding)
        ours = rcl_kernels.segment_interp(features.to(dtype), segments, N, backend=backend, **kw)
        assert ours.dtype == dtype and ours.shape == (B, K, C, N)
        exact = segment_interp_reference(features.double(), segments.double(), N, S, context, padding)
        same = segment_interp_reference(features.to(dtype), segments, N, S, context, padding)
        assert_close_to_reference(ours, exact, same, dtype, what=f"forward S={S} context={context}")


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS))
def test_forward_equals_reference_float64_exactly_enough(device, backend):
    """In float64 every backend computes the same sums: agreement to ~1e-12."""
    features, segments = make_inputs(2, 5, 23, 17, device)
    for padding in PADDINGS:
        ours = rcl_kernels.segment_interp(features.double(), segments.double(), 6, samples_per_point=3,
                                          context=0.25, padding=padding, backend=backend)
        exact = segment_interp_reference(features.double(), segments.double(), 6, 3, 0.25, padding)
        torch.testing.assert_close(ours, exact, rtol=0, atol=1e-12)


def test_reference_hand_computed_values():
    """A case small enough to do by hand: F = [0, 10, 20, 30], one segment [0.5, 2.5], N = 3."""
    features = torch.tensor([[[0.0, 10.0, 20.0, 30.0]]])
    segments = torch.tensor([[[0.5, 2.5]]])
    out = segment_interp_reference(features, segments, 3)
    torch.testing.assert_close(out, torch.tensor([[[[5.0, 15.0, 25.0]]]]))
    # S = 2: sub-samples at 0.5, 0.9, 1.3, 1.7, 2.1, 2.5 -> pairwise means 7, 15, 23
    out = segment_interp_reference(features, segments, 3, samples_per_point=2)
    torch.testing.assert_close(out, torch.tensor([[[[7.0, 15.0, 23.0]]]]))
    # N*S = 1 reads the middle of the window; context 0.5 widens [1, 2] to [0.5, 2.5]
    out = segment_interp_reference(features, torch.tensor([[[1.0, 2.0]]]), 1, context=0.5)
    torch.testing.assert_close(out, torch.tensor([[[[15.0]]]]))
    # Padding at x = -0.5 and x = 3.5: zeros -> 0 and 15; border -> 0 and 30; bmn -> 0 (F[0]) and 15
    seg = torch.tensor([[[-0.5, 3.5]]])
    torch.testing.assert_close(segment_interp_reference(features, seg, 2, padding="zeros"),
                               torch.tensor([[[[0.0, 15.0]]]]))
    torch.testing.assert_close(segment_interp_reference(features, seg, 2, padding="border"),
                               torch.tensor([[[[0.0, 30.0]]]]))
    torch.testing.assert_close(segment_interp_reference(features + 1, seg, 2, padding="bmn"),
                               torch.tensor([[[[1.0, 31.0 * 0.5]]]]))


# ---------------------------------------------------------------------------------------------
# backward


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("padding", PADDINGS)
def test_gradients_match_reference(device, backend, dtype, padding):
    if is_interpreted(device, backend):
        B, C, T, K, N, S, context = 2, 3, 8, 5, 3, 3, 0.5
    else:
        B, C, T, K, N, S, context = 2, 11, 29, 23, 5, 3, 0.5
    features, segments = make_inputs(B, C, T, K, device, noncontiguous=True)
    grad_out = torch.randn(B, K, C, N, device=device)

    def grads(fn, f, s):
        f = f.detach().requires_grad_()
        s = s.detach().requires_grad_()
        out = fn(f, s)
        gf, gs = torch.autograd.grad(out, (f, s), grad_out.to(out.dtype))
        return gf, gs

    kw = dict(samples_per_point=S, context=context, padding=padding)
    ours = grads(lambda f, s: rcl_kernels.segment_interp(f, s, N, backend=backend, **kw), features.to(dtype), segments)
    exact = grads(lambda f, s: segment_interp_reference(f, s, N, S, context, padding), features.double(),
                  segments.double())
    same = grads(lambda f, s: segment_interp_reference(f, s, N, S, context, padding), features.to(dtype), segments)
    assert ours[0].dtype == dtype and ours[1].dtype == torch.float32
    # The features gradient sums over up to K*N*S/T taps per step, the segment gradient over C*N*S
    # terms: scale the absolute floors accordingly.
    assert_close_to_reference(ours[0], exact[0], same[0], dtype, scale=math.sqrt(K * N * S), what="grad features")
    assert_close_to_reference(ours[1], exact[1], same[1], dtype, scale=math.sqrt(C * N * S) * T,
                              what="grad segments")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_gradcheck_float64(backend, padding):
    if backend not in SEGMENT_INTERP_BACKENDS.available("cpu"):
        pytest.skip(f"{backend} backend not built")
    features = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    # Keep positions away from integers, where the slope jumps (finite differences straddle it).
    segments = (torch.tensor([[[0.3, 4.45], [5.2, 1.15], [-1.6, 2.1]], [[2.05, 2.37], [-3.3, -0.4], [4.3, 8.6]]],
                             dtype=torch.float64)).requires_grad_()
    for S, context in [(1, 0.0), (3, 0.5)]:
        def fn(f, s):
            return rcl_kernels.segment_interp(f, s, 4, samples_per_point=S, context=context, padding=padding,
                                              backend=backend)

        assert torch.autograd.gradcheck(fn, (features, segments), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS))
def test_only_requested_gradients(device, backend):
    features, segments = make_inputs(1, 4, 10, 5, device)
    f = features.clone().requires_grad_()
    out = rcl_kernels.segment_interp(f, segments, 3, backend=backend)
    out.sum().backward()
    assert segments.grad is None
    fr = features.double().requires_grad_()
    segment_interp_reference(fr, segments.double(), 3).sum().backward()
    torch.testing.assert_close(f.grad.double(), fr.grad, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# BMN equivalence


def bmn_sample_mask(tscale: int, num_sample: int, num_sample_perbin: int, prop_boundary_ratio: float) -> np.ndarray:
    """BMN's boundary-matching sample mask (T, N, D, T), rebuilt from the algorithm published with
    BMN (Lin et al., ICCV 2019): for each proposal (start, duration) with end < T, the window is
    widened by prop_boundary_ratio * (duration + 1) on each side, N*S sub-samples are spread over it
    with both ends included, and each sub-sample is split between floor and ceil with math.modf."""
    mask = np.zeros((tscale, num_sample, tscale, tscale))
    for start in range(tscale):
        for duration in range(tscale):
            end = start + duration
            if end >= tscale:
                continue
            center_len = float(end - start) + 1
            xmin = start - center_len * prop_boundary_ratio
            xmax = end + center_len * prop_boundary_ratio
            step = (xmax - xmin) / (num_sample * num_sample_perbin - 1.0)
            samples = [xmin + step * i for i in range(num_sample * num_sample_perbin)]
            for n in range(num_sample):
                vec = np.zeros(tscale)
                for x in samples[n * num_sample_perbin:(n + 1) * num_sample_perbin]:
                    frac, down = math.modf(x)
                    up = math.ceil(x)
                    if 0 <= int(down) <= tscale - 1:
                        vec[int(down)] += 1 - frac
                    if 0 <= int(up) <= tscale - 1:
                        vec[int(up)] += frac
                mask[:, n, duration, start] = vec / num_sample_perbin
    return mask


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bmn_boundary_matching_equivalence(backend):
    if backend not in SEGMENT_INTERP_BACKENDS.available("cpu"):
        pytest.skip(f"{backend} backend not built")
    T, N, S, ratio, C = 12, 5, 3, 0.5, 4
    mask = torch.from_numpy(bmn_sample_mask(T, N, S, ratio))  # (T, N, D, T)
    features = torch.randn(2, C, T, dtype=torch.float64)
    bm = torch.matmul(features, mask.reshape(T, -1)).reshape(2, C, N, T, T)  # (B, C, N, D, start)
    starts, durations = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    keep = starts + durations < T
    s, d = starts[keep].double(), durations[keep].double()
    center = d + 1
    segments = torch.stack([s - center * ratio, s + d + center * ratio], -1).expand(2, -1, -1).contiguous()
    ours = rcl_kernels.segment_interp(features, segments, N, samples_per_point=S, padding="bmn", backend=backend)
    expected = bm[:, :, :, durations[keep], starts[keep]].permute(0, 3, 1, 2)  # (B, K, C, N)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    # The zeros padding differs from BMN exactly at the positions in (-1, 0).
    zeros = rcl_kernels.segment_interp(features, segments, N, samples_per_point=S, padding="zeros", backend=backend)
    assert not torch.allclose(zeros, expected)


# ---------------------------------------------------------------------------------------------
# edge cases


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS))
@pytest.mark.parametrize("shape", [(0, 3, 5, 4), (2, 3, 5, 0), (2, 0, 5, 4), (1, 2, 1, 3)])
def test_empty_and_tiny_shapes(device, backend, shape):
    B, C, T, K = shape
    features = torch.randn(B, C, T, device=device, requires_grad=True)
    segments = (torch.rand(B, K, 2, device=device) * 3 - 1).requires_grad_()
    out = rcl_kernels.segment_interp(features, segments, 2, samples_per_point=3, backend=backend)
    assert out.shape == (B, K, C, 2)
    expected = segment_interp_reference(features.double(), segments.double(), 2, 3)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert features.grad.shape == features.shape and segments.grad.shape == segments.shape


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS) + [pytest.param("cpu", "reference", id="cpu-ref")])
@pytest.mark.parametrize("padding", PADDINGS)
def test_non_finite_coordinates_stay_in_bounds(device, backend, padding):
    T = 6
    features = torch.randn(1, 3, T, device=device, requires_grad=True)
    good = [0.5, 3.5]
    bad = [[float("nan"), 2.0], [1.0, float("inf")], [-float("inf"), 2.0], [1e30, 2e30], [-1e30, 1e30],
           [float("inf"), float("inf")]]
    segments = torch.tensor([[good] + bad + [good]], device=device, requires_grad=True)
    out = rcl_kernels.segment_interp(features, segments, 4, padding=padding, backend=backend)
    ref = segment_interp_reference(features.double(), segments.double(), 4, padding=padding)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert torch.isnan(out[0, 1]).all(), "a NaN start makes every position NaN"
    assert torch.isfinite(out[0, 0]).all() and torch.isfinite(out[0, -1]).all(), "other segments are untouched"
    assert torch.isfinite(out[0, 4]).all(), "huge finite coordinates read padding, not garbage"
    out.nan_to_num().sum().backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(segments.grad).all()


def test_zero_length_and_reversed_segments_follow_the_formula():
    features = torch.randn(1, 2, 8, dtype=torch.float64)
    seg = torch.tensor([[[3.0, 3.0], [5.0, 1.0]]], dtype=torch.float64)
    out = rcl_kernels.segment_interp(features, seg, 3, backend="reference")
    torch.testing.assert_close(out[0, 0], features[0, :, 3:4].expand(2, 3))  # all points at x = 3
    torch.testing.assert_close(out[0, 1], features[0, :, [5, 3, 1]])  # reversed: 5, 3, 1


# ---------------------------------------------------------------------------------------------
# registration, compile, errors, info


@pytest.mark.skipif(not rcl_kernels._extension.has_kernel("segment_interp", "CPU"), reason="CPU kernels not built")
def test_opcheck_cpu_op():
    features = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    segments = random_segments(2, 5, 9).double().requires_grad_()
    for args in [(features, segments, 4, 1, 0.0, "zeros"), (features, segments, 3, 3, 0.5, "bmn"),
                 (features.float(), segments.float(), 2, 2, 0.0, "border")]:
        torch.library.opcheck(torch.ops.rcl_kernels.segment_interp.default, args)


@pytest.mark.parametrize("device,backend", backend_params(SEGMENT_INTERP_BACKENDS))
def test_torch_compile_fullgraph(device, backend):
    features, segments = make_inputs(2, 4, 11, 6, device)
    features.requires_grad_()
    segments.requires_grad_()

    def model(f, s):
        return (rcl_kernels.segment_interp(f, s, 3, samples_per_point=2, context=0.5, backend=backend) ** 2).sum()

    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss_c = compiled(features, segments)
    grads_c = torch.autograd.grad(loss_c, (features, segments))
    loss_e = model(features, segments)
    grads_e = torch.autograd.grad(loss_e, (features, segments))
    torch.testing.assert_close(loss_c, loss_e)
    for a, b in zip(grads_c, grads_e):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(features=torch.randn(3, 4)), "features must be a tensor of shape"),
        (dict(segments=torch.randn(2, 5, 3)), "segments must be a tensor of shape"),
        (dict(segments=torch.randn(3, 5, 2)), "batch size"),
        (dict(features=torch.randint(0, 3, (2, 4, 9))), "features must be float16"),
        (dict(segments=torch.zeros(2, 5, 2, dtype=torch.float16)), "segments must be float32 or float64"),
        (dict(num_samples=0), "num_samples"),
        (dict(samples_per_point=0), "samples_per_point"),
        (dict(context=-0.1), "context"),
        (dict(context=float("nan")), "context"),
        (dict(padding="reflect"), "padding"),
        (dict(backend="magic"), "backend must be one of"),
        (dict(features=torch.randn(2, 4, 0)), "at least one time step"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = dict(features=torch.randn(2, 4, 9), segments=torch.rand(2, 5, 2), num_samples=3)
    args.update(kwargs)
    features, segments, num_samples = args.pop("features"), args.pop("segments"), args.pop("num_samples")
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        rcl_kernels.segment_interp(features, segments, num_samples, **args)


def test_backend_unavailable_for_device_is_an_error():
    with pytest.raises(RuntimeError, match="not available for cpu tensors"):
        rcl_kernels.segment_interp(torch.randn(1, 2, 5), torch.rand(1, 3, 2), 2, backend="cuda")


@pytest.mark.skipif(not rcl_kernels._extension.has_kernel("segment_interp", "CPU"), reason="CPU kernels not built")
def test_cpp_op_checks_name_the_argument():
    with pytest.raises(RuntimeError, match="padding must be"):
        torch.ops.rcl_kernels.segment_interp(torch.randn(1, 2, 5), torch.rand(1, 3, 2), 2, 1, 0.0, "reflect")
    with pytest.raises(RuntimeError, match="num_samples must be >= 1"):
        torch.ops.rcl_kernels.segment_interp(torch.randn(1, 2, 5), torch.rand(1, 3, 2), 0, 1, 0.0, "zeros")


def test_import_does_not_initialise_cuda_and_info_reports():
    code = ("import torch, rcl_kernels; r = rcl_kernels.info(file=False); "
            "assert not torch.cuda.is_initialized(), 'import initialised CUDA'; "
            "print(r['ops']['segment_interp']['cpu']['auto'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = "cpu" if rcl_kernels._extension.has_kernel("segment_interp", "CPU") else "reference"
    assert out.stdout.strip().splitlines()[-1] == expected


@pytest.mark.parametrize("triton_version, numpy_version, usable", [
    ("3.6.0", "2.4.1", False), ("3.6.0", "2.3.5", True), ("3.7.0", "2.5.2", True), ("3.8.0+git1234", "2.4.6", True),
])
def test_triton_interpreter_known_bad_combination_is_reported(monkeypatch, triton_version, numpy_version, usable):
    import numpy

    from rcl_kernels import _triton_support

    monkeypatch.setattr(_triton_support, "TRITON_VERSION", triton_version)
    monkeypatch.setattr(numpy, "__version__", numpy_version)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    problem = _triton_support.interpreter_problem()
    assert (problem is None) == usable
    assert _triton_support.triton_usable("cpu") == usable and _triton_support.triton_usable("cuda")
    if not usable:
        assert triton_version in problem and numpy_version in problem
