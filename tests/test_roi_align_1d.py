"""1D RoIAlign (rcl_kernels.roi_align_1d): torchvision, an Align1D written from its published rules,
the float64 reference, gradients (with roi coordinates), determinism, compile and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import backend_params, require_torchvision
from test_segment_interp_kernels import assert_compiled_matches_eager
from tolerances import assert_close_to_reference

import rcl_kernels
from rcl_kernels.ops.roi_align_1d import ROI_ALIGN_1D_BACKENDS
from rcl_kernels.reference.roi_align_1d import roi_align_1d_reference

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
HAS_CPU_KERNEL = rcl_kernels._extension.has_kernel("roi_align_1d", "CPU")


def interpreted(device: str, backend: str) -> bool:
    return device == "cpu" and backend == "triton"


def random_rois(B: int, R: int, T: int, *, generator=None) -> torch.Tensor:
    """(R, 3) rois mixing inside, partly or wholly outside (negative and beyond T), reversed,
    zero-length (some on integers) and very long ones."""
    start = torch.rand(R, generator=generator) * (T + 8) - 4
    length = torch.rand(R, generator=generator) * T * 0.7
    kind = torch.randint(0, 6, (R,), generator=generator)
    length = torch.where(kind == 1, -length, length)  # reversed
    length = torch.where(kind == 2, torch.zeros_like(length), length)  # zero length
    start = torch.where(kind == 2, start.round(), start)
    start = torch.where(kind == 3, start - T - 2, start)  # left of the input
    length = torch.where(kind == 4, length * 4, length)  # long, runs past T
    batch = torch.randint(0, B, (R,), generator=generator).float()
    return torch.stack([batch, start, start + length], dim=1)


def torchvision_1d(x, rois, P, scale, sampling_ratio, aligned):
    """OpenTAD's trick: torchvision's 2D roi_align on the (B, C, T, 1) layout, boxes
    (b, 0, start, 1 / scale, end) so that the scaled width is exactly one column."""
    boxes = torch.stack([rois[:, 0], torch.zeros_like(rois[:, 0]), rois[:, 1],
                         torch.full_like(rois[:, 0], 1 / scale), rois[:, 2]], dim=1)
    torchvision = require_torchvision()
    return torchvision.ops.roi_align(x.unsqueeze(-1), boxes, (P, 1), scale, sampling_ratio, aligned).squeeze(-1)


def align1d_published(x: np.ndarray, rois: np.ndarray, P: int, ratio: int, scale: float = 1.0) -> np.ndarray:
    """G-TAD's Align1D forward, written from the CUDA kernel published with G-TAD (Xu et al., CVPR
    2020; Align1D_cuda_kernal.cu): per output bin, the roi (length at least 1) is cut into P bins,
    each sampled at `grid` evenly spaced points (ratio, or ceil(length / P) when ratio <= 0)
    that are linearly interpolated (zero outside [-1, T], clamped to the first and last step
    inside), and averaged."""
    R, (B, C, T) = rois.shape[0], x.shape
    out = np.zeros((R, C, P))
    for r in range(R):
        b = int(rois[r, 0])
        start, end = rois[r, 1] * scale, rois[r, 2] * scale
        height = max(end - start, 1.0)
        bin_size = height / P
        grid = ratio if ratio > 0 else int(math.ceil(height / P))
        for p in range(P):
            total = np.zeros(C)
            for it in range(grid):
                t = start + p * bin_size + (it + 0.5) * bin_size / grid
                if t < -1.0 or t > T:
                    continue
                t = max(t, 0.0)
                low = int(t)
                if low >= T - 1:
                    total += x[b, :, T - 1]
                    continue
                frac = t - low
                total += (1 - frac) * x[b, :, low] + frac * x[b, :, low + 1]
            out[r, :, p] = total / grid
    return out


# ---------------------------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS, include_reference=True))
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2])
def test_matches_torchvision(device, backend, aligned, sampling_ratio):
    B, C, T, R, P = (2, 3, 11, 10, 3) if interpreted(device, backend) else (3, 5, 23, 64, 7)
    for dtype, scale in [(torch.float64, 1.0), (torch.float32, 0.5)]:
        x = torch.randn(B, C, T, dtype=dtype)
        rois = random_rois(B, R, T).to(dtype)
        if aligned and sampling_ratio <= 0:
            # torchvision cannot size the sampling grid of a reversed roi here (it raises); ours
            # gives zeros there, checked in test_aligned_adaptive_reversed_rois_are_zero.
            rois[:, 2] = torch.maximum(rois[:, 1], rois[:, 2])
        expected = torchvision_1d(x, rois, P, scale, sampling_ratio, aligned)
        ours = rcl_kernels.roi_align_1d(x.to(device), rois.to(device), P, scale, sampling_ratio, aligned,
                                        backend=backend)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(ours.cpu(), expected, rtol=tol, atol=tol)


def test_aligned_adaptive_reversed_rois_are_zero():
    x = torch.randn(1, 2, 9)
    rois = torch.tensor([[0.0, 6.0, 2.0], [0.0, 3.0, 3.0]])
    out = rcl_kernels.roi_align_1d(x, rois, 4, aligned=True)
    assert torch.equal(out, torch.zeros_like(out))
    # aligned=False treats them as length-1 rois starting at `start`
    flat = rcl_kernels.roi_align_1d(x, rois, 1, aligned=False)
    torch.testing.assert_close(flat[0, :, 0], 0.5 * (x[0, :, 6] + x[0, :, 7]))
    torch.testing.assert_close(flat[1, :, 0], 0.5 * (x[0, :, 3] + x[0, :, 4]))


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS, include_reference=True))
@pytest.mark.parametrize("ratio", [0, 1, 2])
def test_matches_align1d_published_rules(device, backend, ratio):
    B, C, T, R, P = 2, 3, 10, 9, 4
    x = torch.randn(B, C, T, dtype=torch.float64)
    rois = random_rois(B, R, T).double()
    expected = align1d_published(x.numpy(), rois.numpy(), P, ratio, 0.5)
    ours = rcl_kernels.roi_align_1d(x.to(device), rois.to(device), P, 0.5, ratio, False, backend=backend)
    np.testing.assert_allclose(ours.cpu().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_reference_hand_computed_values():
    """F = [0, 10, 20, 30, 40]; roi [0.5, 2.5] in 2 bins, 2 sub-samples each: 0.75, 1.25 | 1.75, 2.25."""
    x = torch.tensor([[[0.0, 10.0, 20.0, 30.0, 40.0]]])
    out = roi_align_1d_reference(x, torch.tensor([[0.0, 0.5, 2.5]]), 2, sampling_ratio=2)
    torch.testing.assert_close(out, torch.tensor([[[10.0, 20.0]]]))
    # aligned shifts by half a step: the same roi samples 0.25, 0.75 | 1.25, 1.75
    out = roi_align_1d_reference(x, torch.tensor([[0.0, 0.5, 2.5]]), 2, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(out, torch.tensor([[[5.0, 15.0]]]))
    # beyond the end: t in [T-1, T] reads F[T-1], t > T reads 0
    out = roi_align_1d_reference(x, torch.tensor([[0.0, 3.0, 7.0]]), 2, sampling_ratio=1)
    torch.testing.assert_close(out, torch.tensor([[[40.0, 0.0]]]))


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes_against_float64_reference(device, backend, dtype):
    B, C, T, R, P = (2, 3, 12, 8, 3) if interpreted(device, backend) else (2, 17, 31, 40, 8)
    x = torch.randn(B, T, 2 * C).transpose(1, 2)[:, ::2]  # non-contiguous
    rois = random_rois(B, R, T)
    for sampling_ratio, aligned in [(0, False), (2, True)]:
        ours = rcl_kernels.roi_align_1d(x.to(device, dtype), rois.to(device), P, 1.0, sampling_ratio, aligned,
                                        backend=backend)
        assert ours.dtype == dtype and ours.shape == (R, C, P)
        exact = roi_align_1d_reference(x.double(), rois.double(), P, 1.0, sampling_ratio, aligned)
        same = roi_align_1d_reference(x.to(dtype), rois, P, 1.0, sampling_ratio, aligned)
        assert_close_to_reference(ours.cpu(), exact, same, dtype, what=f"forward sr={sampling_ratio}")


def test_segments_layout_equals_rois_layout():
    B, K, T = 3, 5, 14
    x = torch.randn(B, 4, T)
    segments = torch.rand(B, K, 2) * T
    batch = torch.arange(B, dtype=torch.float32).repeat_interleave(K).unsqueeze(1)
    rois = torch.cat([batch, segments.reshape(-1, 2)], dim=1)
    out = rcl_kernels.roi_align_1d(x, segments, 6, aligned=True)
    assert out.shape == (B, K, 4, 6)
    torch.testing.assert_close(out.reshape(B * K, 4, 6), rcl_kernels.roi_align_1d(x, rois, 6, aligned=True))
    # torchvision's (P, 1) output size is accepted for the (B, C, T, 1) habit
    torch.testing.assert_close(rcl_kernels.roi_align_1d(x, rois, (6, 1)), rcl_kernels.roi_align_1d(x, rois, 6))


# ---------------------------------------------------------------------------------------------
# backward


def _grads(fn, x, rois, grad_out):
    x = x.detach().requires_grad_()
    rois = rois.detach().requires_grad_()
    gx, gr = torch.autograd.grad(fn(x, rois), (x, rois), grad_out)
    return gx, gr


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_match_reference(device, backend, dtype):
    B, C, T, R, P = (2, 3, 9, 6, 3) if interpreted(device, backend) else (2, 11, 29, 30, 5)
    x = torch.randn(B, C, T)
    rois = random_rois(B, R, T)
    for sampling_ratio, aligned in [(0, False), (2, True), (1, False)]:
        grad_out = torch.randn(R, C, P)
        kw = (P, 0.5, sampling_ratio, aligned)
        ours = _grads(lambda f, r: rcl_kernels.roi_align_1d(f, r, *kw, backend=backend),
                      x.to(device, dtype), rois.to(device), grad_out.to(device, dtype))
        exact = _grads(lambda f, r: roi_align_1d_reference(f, r, *kw), x.double(), rois.double(), grad_out.double())
        same = _grads(lambda f, r: roi_align_1d_reference(f, r, *kw), x.to(dtype), rois, grad_out.to(dtype))
        assert ours[0].dtype == dtype and ours[1].dtype == torch.float32
        assert torch.all(ours[1][:, 0] == 0), "the batch index has no gradient"
        assert_close_to_reference(ours[0].cpu(), exact[0], same[0], dtype, scale=math.sqrt(R * P), what="grad input")
        assert_close_to_reference(ours[1].cpu(), exact[1], same[1], dtype, scale=math.sqrt(C * P) * T,
                                  what="grad rois")


@pytest.mark.parametrize("backend", ["reference", "cpu", "triton"])
@pytest.mark.parametrize("aligned", [False, True])
def test_gradcheck_float64(backend, aligned):
    if backend not in ROI_ALIGN_1D_BACKENDS.available("cpu"):
        pytest.skip(f"{backend} backend not available")
    x = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    # Coordinates chosen so that no sub-sample sits on an integer or a boundary and the adaptive
    # grid is not at a jump (finite differences straddling a kink would disagree).
    rois = torch.tensor([[0, 1.13, 6.71], [1, -0.61, 3.37], [1, 5.29, 11.43], [0, 7.31, 2.77], [0, 2.21, 2.63]],
                        dtype=torch.float64)
    index, coords = rois[:, :1], rois[:, 1:].clone().requires_grad_()  # the batch index is not differentiable
    # Each gradcheck call runs the op ~100 times: under the Triton interpreter, one ratio and the
    # fast (random-projection) mode keep it to seconds.
    interpreted_triton = backend == "triton"
    for sampling_ratio in ((2,) if interpreted_triton else (0, 2)):
        def fn(f, c):
            return rcl_kernels.roi_align_1d(f, torch.cat([index, c], 1), 3, 1.0, sampling_ratio, aligned,
                                            backend=backend)

        assert torch.autograd.gradcheck(fn, (x, coords), eps=1e-6, atol=1e-7, fast_mode=interpreted_triton)


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS))
def test_backward_is_bitwise_deterministic(device, backend):
    B, C, T, R, P = (2, 4, 10, 12, 3) if interpreted(device, backend) else (3, 33, 40, 300, 8)
    x = torch.randn(B, C, T, device=device)
    rois = random_rois(B, R, T).to(device)
    # Many rois on the same steps: an atomic-add backward would vary in its last bits.
    rois[: R // 2, 1:] = rois[0, 1:]
    rois[: R // 2, 0] = 0
    grad_out = torch.randn(R, C, P, device=device)

    def run():
        return _grads(lambda f, r: rcl_kernels.roi_align_1d(f, r, P, 1.0, 0, False, backend=backend), x, rois, grad_out)

    first = run()
    for _ in range(2):
        again = run()
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    if device == "cpu" and backend == "cpu":
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            single = run()
        finally:
            torch.set_num_threads(threads)
        assert torch.equal(first[0], single[0]) and torch.equal(first[1], single[1])


# ---------------------------------------------------------------------------------------------
# edge cases


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS, include_reference=True))
def test_non_finite_coordinates_give_nan_and_no_gradient(device, backend):
    x = torch.randn(1, 3, 8, device=device, requires_grad=True)
    rois = torch.tensor([[0, 1.0, 5.0], [0, float("nan"), 2.0], [0, 1.0, float("inf")], [0, -1e30, 1e30],
                         [0, 2.5, 6.5]], device=device, requires_grad=True)
    out = rcl_kernels.roi_align_1d(x, rois, 3, sampling_ratio=2, backend=backend)
    assert torch.isnan(out[1]).all() and torch.isnan(out[2]).all()
    assert torch.isfinite(out[[0, 3, 4]]).all()
    out.nan_to_num().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(rois.grad).all()


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS, include_reference=True))
@pytest.mark.parametrize("shape", [(0, 3, 5, 0), (2, 3, 5, 0), (2, 0, 5, 4), (1, 2, 1, 3)])
def test_empty_and_tiny_shapes(device, backend, shape):
    B, C, T, R = shape
    x = torch.randn(B, C, T, device=device, requires_grad=True)
    rois = random_rois(max(B, 1), R, T).to(device).requires_grad_()
    out = rcl_kernels.roi_align_1d(x, rois, 2, backend=backend)
    assert out.shape == (R, C, 2)
    torch.testing.assert_close(out.cpu().double(), roi_align_1d_reference(x.double(), rois.double(), 2).cpu(),
                               rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert x.grad.shape == x.shape and rois.grad.shape == rois.shape


# ---------------------------------------------------------------------------------------------
# registration, compile, errors


@pytest.mark.skipif(not HAS_CPU_KERNEL, reason="CPU kernels not built")
def test_opcheck_cpu_op():
    x = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    rois = random_rois(2, 5, 9).double().requires_grad_()
    for args in [(x, rois, 4, 1.0, 0, False), (x, rois, 3, 0.5, 2, True), (x.float(), rois.float(), 2, 1.0, -1, True)]:
        torch.library.opcheck(torch.ops.rcl_kernels.roi_align_1d.default, args)


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS))
def test_torch_compile_fullgraph(device, backend):
    x = torch.randn(2, 4, 11, device=device)
    segments = torch.rand(2, 3, 2, device=device) * 11

    def loss(f, s):
        return (rcl_kernels.roi_align_1d(f, s, 3, 1.0, 2, True, backend=backend) ** 2).sum()

    assert_compiled_matches_eager(loss, x, segments, backend="aot_eager")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input=torch.randn(3, 4)), "input must be a tensor of shape"),
        (dict(rois=torch.randn(5, 4)), "rois must be a tensor of shape"),
        (dict(rois=torch.rand(3, 5, 3)), "segments must have shape"),
        (dict(rois=torch.rand(3, 5, 2)), "batch size"),
        (dict(input=torch.randint(0, 3, (2, 4, 9))), "input must be float16"),
        (dict(rois=torch.zeros(5, 3, dtype=torch.int64)), "rois must be a floating-point"),
        (dict(output_size=0), "output_size"),
        (dict(output_size=(3, 2)), "output_size"),
        (dict(spatial_scale=0.0), "spatial_scale"),
        (dict(spatial_scale=float("inf")), "spatial_scale"),
        (dict(sampling_ratio=1.5), "sampling_ratio"),
        (dict(aligned=1), "aligned"),
        (dict(backend="magic"), "backend must be one of"),
        (dict(input=torch.randn(2, 4, 0)), "at least one time step"),
        (dict(rois=torch.tensor([[2.0, 0.0, 1.0]])), r"rois\[:, 0\]"),
        (dict(rois=torch.tensor([[-1.0, 0.0, 1.0]])), r"rois\[:, 0\]"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    args = dict(input=torch.randn(2, 4, 9), rois=torch.tensor([[0.0, 1.0, 4.0], [1.0, 2.0, 3.0]]), output_size=3)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        rcl_kernels.roi_align_1d(args.pop("input"), args.pop("rois"), args.pop("output_size"), **args)


@pytest.mark.skipif(not HAS_CPU_KERNEL, reason="CPU kernels not built")
def test_cpp_op_checks_name_the_argument():
    with pytest.raises(RuntimeError, match="output_size must be >= 1"):
        torch.ops.rcl_kernels.roi_align_1d(torch.randn(1, 2, 5), torch.rand(3, 3), 0, 1.0, 0, False)
    with pytest.raises(RuntimeError, match="rois must have shape"):
        torch.ops.rcl_kernels.roi_align_1d(torch.randn(1, 2, 5), torch.rand(3, 2), 2, 1.0, 0, False)


def test_cpp_and_python_adaptive_caps_agree():
    """The adaptive sub-sample cap lives in the reference and in csrc/roi_align_1d_common.h."""
    from pathlib import Path

    from rcl_kernels.reference.roi_align_1d import MAX_ADAPTIVE_SAMPLES

    header = (Path(__file__).resolve().parents[1] / "csrc" / "roi_align_1d_common.h").read_text()
    assert "kRoiAlignMaxAdaptiveSamples = int64_t(1) << 16" in header and MAX_ADAPTIVE_SAMPLES == 1 << 16


# ---------------------------------------------------------------------------------------------
# GPU backends at the sizes detectors run: the Triton launcher's edge cases, the deterministic
# paths, and the launch plans (blocks and work against the work needed) of the size matrix


@pytest.mark.skipif(not ROI_ALIGN_1D_BACKENDS.available("cpu") or "triton" not in ROI_ALIGN_1D_BACKENDS.available("cpu"),
                    reason="triton backend not available")
def test_triton_forward_with_no_videos_reads_nothing():
    """B = 0 with a fixed ratio: every roi is invalid (NaN), and nothing may be read from the
    empty input (the kernel used to load through its null pointer: a segfault when interpreted,
    an illegal address on a GPU). In a subprocess, so that a crash fails this test only."""
    import os
    import subprocess
    import sys

    code = ("import torch; from rcl_kernels.triton.roi_align_1d import roi_align_1d_triton_op as op; "
            "out = op(torch.empty(0, 4, 8), torch.tensor([[0.0, 1.0, 5.0]]), 3, 1.0, 2, False); "
            "assert out.shape == (1, 4, 3) and out.isnan().all(), out; "
            "g = torch.ops.rcl_kernels.roi_align_1d_triton_backward(torch.ones(1, 4, 3), torch.empty(0, 4, 8), "
            "torch.tensor([[0.0, 1.0, 5.0]]), 3, 1.0, 2, False, True, True); "
            "assert g[0].shape == (0, 4, 8) and not g[1].any(); print('ok')")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


@pytest.mark.parametrize("device,backend", backend_params(ROI_ALIGN_1D_BACKENDS))
def test_deterministic_mode_backward_matches_default(device, backend):
    """torch.use_deterministic_algorithms(True) takes the gather input gradient (Triton, CUDA):
    the same gradient as the default scatter one up to summation order, bitwise equal run to run."""
    B, C, T, R, P = (2, 3, 20, 9, 3) if interpreted(device, backend) else (2, 5, 40, 50, 4)
    x = torch.randn(B, C, T, device=device)
    rois = random_rois(B, R, T).to(device)
    rois[: R // 2, 1:] = rois[0, 1:]
    grad_out = torch.randn(R, C, P, device=device)

    def run(ratio):
        return _grads(lambda f, r: rcl_kernels.roi_align_1d(f, r, P, 1.0, ratio, False, backend=backend), x, rois,
                      grad_out)

    for ratio in (0, 2):
        default = run(ratio)
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True)
        try:
            first, again = run(ratio), run(ratio)
        finally:
            torch.use_deterministic_algorithms(previous)
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
        torch.testing.assert_close(first[0], default[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(first[1], default[1], rtol=1e-5, atol=1e-5)


def size_matrix():
    """(B, C, T, R, P, sampling_ratio, roi_length) at the sizes detectors run: BMN ActivityNet
    (C = 400 and 256, T = 100, a D x T = 100 x 100 proposal map, 32 bins), OpenTAD's BMN and
    G-TAD defaults (C = 128..512, T = 128, 128 x 128 proposals), ActionFormer-style rois
    (T = 2,304 and 4,096, K = 10^4 and 10^5, C = 512, P = 8..32), adaptive and fixed sampling;
    B = 1 and 16."""
    for B in (1, 16):
        for C in (256, 400):
            for ratio in (-1, 3):
                yield B, C, 100, B * 100 * 100, 32, ratio, 20.0
        for C in (128, 256, 512):
            for ratio in (-1, 2):
                yield B, C, 128, B * 128 * 128, 32, ratio, 32.0
        for T in (2304, 4096):
            for K in (10_000, 100_000):
                for P in (8, 16, 32):
                    for ratio in (-1, 2):
                        for length in (T / 64, T / 4):
                            yield B, 512, T, B * K, P, ratio, length


SMS = 132  # an H100 / H200


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_launch_plans_do_the_work_needed_and_fill_the_gpu(dtype):
    """Every default-path GPU launch of roi_align_1d (Triton and CUDA, forward and backward) does
    at most twice the work needed, counting masked lanes, and has at least 4 blocks per SM at B = 1."""
    from rcl_kernels._roi_align_1d_launch import roi_align_1d_cuda_launch_plans
    from rcl_kernels.triton.roi_align_1d import roi_align_1d_launch_plans

    for B, C, T, R, P, ratio, length in size_matrix():
        kw = dict(sampling_ratio=ratio, roi_length=length)
        plans = roi_align_1d_launch_plans(B, C, T, R, P, dtype, **kw) + roi_align_1d_cuda_launch_plans(B, C, T, R, P,
                                                                                                        **kw)
        assert len(plans) == 6
        for plan in plans:
            where = (plan.kernel, B, C, T, R, P, ratio, length)
            assert plan.work_needed > 0 and plan.work_ratio <= 2.0, (where, plan.work_ratio)
            if B == 1:
                assert plan.blocks >= 4 * SMS, (where, plan.blocks)


def test_launch_plans_before_the_redesign_would_fail():
    """The plan of the deterministic paths (the old design's loops) shows why they are not the
    default: the Triton gather does about BLOCK_T / 2 the work needed, and the CUDA row walk has
    B C threads (2 blocks at B = 1, C = 512)."""
    from rcl_kernels._roi_align_1d_launch import roi_align_1d_cuda_launch_plans
    from rcl_kernels.triton.roi_align_1d import roi_align_1d_launch_plans

    triton_gather = roi_align_1d_launch_plans(1, 512, 4096, 100_000, 8, roi_length=1024.0, deterministic=True)[1]
    assert triton_gather.kernel == "roi_align_1d_input_grad_gather_kernel" and triton_gather.work_ratio > 4
    cuda_rows = roi_align_1d_cuda_launch_plans(1, 512, 4096, 100_000, 8, deterministic=True)[1]
    assert cuda_rows.kernel == "input_grad_rows_kernel" and cuda_rows.blocks == 2
