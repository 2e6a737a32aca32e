"""Checks specific to the GPU kernels of SoI; tests/test_segment_interp.py runs every backend
through the public op.

- CUDA kernels on the CPU: csrc/cuda/segment_interp_kernels.cuh compiled with the host compiler
  on top of tests/cuda_emulation (each CUDA thread its own fiber and stack, real barriers), so
  the kernel code, including the paths only odd shapes reach (point tiles, pair overflow, the
  feature gradient without a shared-memory slab, blocks looping over work), runs in CI.
- Triton kernels and their torch.library operators: on CPU tensors under TRITON_INTERPRET=1
  (tiny shapes), on the GPU when there is one.
- GPU only (marked gpu): CUDA and Triton against the CPU kernel in every dtype, 64-bit index
  products, torch.compile with inductor, no host synchronisation, a side stream.
"""

from __future__ import annotations

import ctypes
import warnings

import pytest
import torch
from cuda_emulation import kernels as emulation
from cuda_emulation.edge_corpus import SegmentInterpCase, awkward_segments
from tolerances import assert_close_to_reference

import rcl_kernels
from rcl_kernels._extension import has_kernel
from rcl_kernels._triton_support import triton_usable
from rcl_kernels._vocabulary import PADDING_CODES, PADDINGS
from rcl_kernels.reference.segment_interp import segment_interp_reference
from rcl_kernels.triton import segment_interp as triton_soi

HAS_CUDA = torch.cuda.is_available()


def reference_with_grads(features, segments, grad_output, *args):
    """Expected output and gradients (as float64) on the values a kernel sees.

    Output and feature gradient come from the reference. The segment gradient comes from the
    CPU kernel: at positions exactly on 0 or T-1 with border padding the reference's gradient
    is PyTorch's clamp gradient, 0 at the bounds, while the kernels (CPU, CUDA, Triton) take the
    slope between floor(x) and floor(x) + 1 as the spec says; integer anchors hit those points.
    Positions are computed in the accumulation dtype (float32 unless the features are float64)
    like the kernels do: a position rounded differently could flip the slope at an integer.
    """
    acc = torch.float64 if features.dtype == torch.float64 else torch.float32
    f = features.detach().to(acc).requires_grad_()
    s = segments.detach().to(acc).requires_grad_()
    out = segment_interp_reference(f, s, *args)
    grad_f, grad_s = torch.autograd.grad(out, (f, s), grad_output.to(acc))
    if has_kernel("segment_interp", "CPU"):
        grad_s = torch.ops.rcl_kernels.segment_interp_backward(
            grad_output.to(acc), f.detach(), s.detach(), *args, False, True
        )[1]
    return out.detach().double(), grad_f.double(), grad_s.double()


def assert_matches_exact(ours, exact, dtype, what, scale=1.0):
    assert_close_to_reference(ours, exact, None, dtype, scale=scale, what=what)


# --------------------------------------------------------------------------------------------
# CUDA kernels, emulated on the CPU.


@pytest.fixture(scope="module")
def emulated_cuda(tmp_path_factory):
    if emulation.compiler() is None:
        pytest.skip("no C++ compiler for the CUDA emulation")
    return ctypes.CDLL(str(emulation.build("segment_interp_emulated", tmp_path_factory.mktemp("cuda_emulation"))))


def test_emulation_padding_codes_are_the_vocabulary():
    assert emulation.PADDING_CODES == PADDING_CODES


emulated_forward = emulation.segment_interp_forward
emulated_backward = emulation.segment_interp_backward


def check_emulated(
    lib, B, C, T, K, N, S, context, padding, dtype, *, need=(True, True), max_grid=1 << 30, sms=4, segments=None
):
    gen = torch.Generator().manual_seed(B * 1000 + C * 100 + T + K + N + S)
    features = torch.randn(B, C, T, generator=gen, dtype=torch.float64).to(dtype)
    if segments is None:
        segments = awkward_segments(B, K, T, gen)
    grad_output = torch.randn(B, K, C, N, generator=gen, dtype=torch.float64).to(dtype)
    exact, exact_gf, exact_gs = reference_with_grads(features, segments, grad_output, N, S, context, padding)
    out = emulated_forward(lib, features, segments, N, S, context, padding, max_grid=max_grid)
    grad_f, grad_s = emulated_backward(
        lib, grad_output, features, segments, N, S, context, padding, need=need, max_grid=max_grid, sms=sms
    )
    # Floors scaled by the number of summed terms.
    assert_matches_exact(out, exact, dtype, "emulated cuda forward")
    if need[0]:
        assert_matches_exact(grad_f, exact_gf, dtype, "emulated cuda grad features", scale=K * N)
    else:
        assert not grad_f.any()
    if need[1]:
        assert_matches_exact(grad_s, exact_gs, dtype, "emulated cuda grad segments", scale=2 * C * N * S)
    else:
        assert not grad_s.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("samples_per_point", [1, 3])
@pytest.mark.parametrize("context", [0.0, 0.5])
def test_emulated_cuda_kernels_match_reference(emulated_cuda, dtype, padding, samples_per_point, context):
    check_emulated(emulated_cuda, 2, 5, 9, 12, 7, samples_per_point, context, padding, dtype, max_grid=5, sms=2)


@pytest.mark.parametrize(
    "case",
    [
        # N above both block sizes: several point tiles per segment.
        {"B": 1, "C": 3, "T": 20, "K": 10, "N": 300, "S": 1},
        # Long windows, few points, many sub-samples: more than kMaxPairs pairs per point.
        {"B": 1, "C": 3, "T": 100, "K": 10, "N": 3, "S": 40},
        # T * 4 bytes above the 32 KiB slab: feature gradient straight into global memory.
        {"B": 1, "C": 2, "T": 8200, "K": 10, "N": 5, "S": 3},
        # Many segment groups and channel tiles, each block looping over several jobs.
        {"B": 2, "C": 70, "T": 120, "K": 40, "N": 4, "S": 2, "sms": 64, "max_grid": 3},
        {"B": 1, "C": 1, "T": 1, "K": 10, "N": 1, "S": 1},
    ],
    ids=["point-tiles", "pair-overflow", "no-slab", "grid-stride", "tiny"],
)
@pytest.mark.parametrize("padding", PADDINGS)
def test_emulated_cuda_code_paths(emulated_cuda, case, padding):
    case = dict(case)
    sms, max_grid = case.pop("sms", 4), case.pop("max_grid", 1 << 30)
    check_emulated(
        emulated_cuda, **case, context=0.25, padding=padding, dtype=torch.float32, max_grid=max_grid, sms=sms
    )


@pytest.mark.parametrize("need", [(True, False), (False, True)], ids=["features-only", "segments-only"])
@pytest.mark.parametrize("T", [9, 8200], ids=["slab", "no-slab"])
def test_emulated_cuda_one_gradient(emulated_cuda, need, T):
    check_emulated(emulated_cuda, 2, 5, T, 12, 7, 3, 0.5, "bmn", torch.float32, need=need, max_grid=5, sms=2)


def test_emulated_cuda_pair_overflow_is_reached(emulated_cuda):
    # The "pair-overflow" case above must really overflow: one long segment, 3 points, S = 40.
    segments = torch.tensor([[[0.0, 99.0]] * 10], dtype=torch.float64)
    check_emulated(emulated_cuda, 1, 3, 100, 10, 3, 40, 0.0, "zeros", torch.float64, segments=segments)


@pytest.mark.parametrize("need", [(True, True), (False, True)], ids=["both", "segments-only"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_emulated_cuda_segment_gradient_with_non_finite_features(emulated_cuda, padding, need):
    """Issue 16: the CUDA backward skipped every channel whose output gradient is 0, so where
    those channels' features hold inf or NaN its segment gradient was finite, while the CPU
    kernel, Triton and autograd compute 0 x inf = NaN. Now the NaN entries are the same."""
    case = SegmentInterpCase("special", 2, 5, 9, 12, 7, 3, 0.5, padding, special_features=True)
    features, segments, grad = case.inputs()
    segments = segments.float()
    args = (case.N, case.S, case.context, padding)
    _, grad_s = emulated_backward(emulated_cuda, grad, features, segments, *args, need=need)
    f = features.clone().requires_grad_()
    s = segments.clone().requires_grad_()
    expected = torch.autograd.grad(segment_interp_reference(f, s, *args), s, grad)[0]
    assert (grad[:, :, :3] == 0).all() and expected.isnan().any()  # the case reaches the defect
    torch.testing.assert_close(grad_s, expected, rtol=1e-4, atol=1e-4, equal_nan=True)
    if has_kernel("segment_interp", "CPU"):
        cpu = torch.ops.rcl_kernels.segment_interp_backward(grad, features, segments, *args, *need)[1]
        torch.testing.assert_close(grad_s, cpu, rtol=1e-4, atol=1e-4, equal_nan=True)


# --------------------------------------------------------------------------------------------
# Triton kernels and operators (interpreted on CPU tensors without a GPU).


@pytest.fixture(scope="module")
def triton_device():
    device = "cuda" if HAS_CUDA else "cpu"
    if not (triton_soi.AVAILABLE and triton_usable(device)):
        pytest.skip(f"Triton cannot run on {device} here (no triton, or TRITON_INTERPRET unset)")
    return torch.device(device)


@pytest.fixture(autouse=True)
def _quiet_interpreter():
    # The interpreter evaluates inf * 0 for the inf / huge test coordinates with numpy, which warns.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        yield


def check_triton(device, B, C, T, K, N, S, context, padding, dtype, *, grads=True):
    gen = torch.Generator().manual_seed(7 * B + 11 * C + T + K + N + S)
    features = torch.randn(B, C, T, generator=gen, dtype=torch.float64).to(dtype)
    segments = awkward_segments(B, K, T, gen).float()
    grad_output = torch.randn(B, K, C, N, generator=gen, dtype=torch.float64).to(dtype)
    exact, exact_gf, exact_gs = reference_with_grads(features, segments, grad_output, N, S, context, padding)
    f = features.to(device).requires_grad_(grads)
    s = segments.to(device).requires_grad_(grads)
    out = rcl_kernels.segment_interp(f, s, N, samples_per_point=S, context=context, padding=padding, backend="triton")
    torch_same_dtype = segment_interp_reference(features, segments, N, S, context, padding)
    assert out.dtype == dtype
    assert_close_to_reference(out.cpu(), exact, torch_same_dtype, dtype, what="triton forward")
    if grads:
        grad_f, grad_s = torch.autograd.grad(out, (f, s), grad_output.to(device))
        assert grad_f.dtype == dtype and grad_s.dtype == torch.float32
        assert_matches_exact(grad_f.cpu(), exact_gf, dtype, "triton grad features", scale=K * N)
        # Sums of C * N * S terms, returned in the segments' dtype (float32 here).
        assert_matches_exact(
            grad_s.cpu().double(), exact_gs, torch.float32, "triton grad segments", scale=2 * C * N * S
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("samples_per_point", [1, 3])
@pytest.mark.parametrize("context", [0.0, 0.5])
def test_triton_matches_reference(triton_device, dtype, padding, samples_per_point, context):
    grads = dtype in (torch.float32, torch.float64)
    check_triton(triton_device, 2, 5, 9, 10, 7, samples_per_point, context, padding, dtype, grads=grads)


@pytest.mark.parametrize("padding", PADDINGS)
def test_triton_several_point_and_channel_blocks(triton_device, padding):
    # N > 64 loops over point blocks; C > BLOCK_C (64 at BLOCK_N = 64) launches two channel blocks.
    check_triton(triton_device, 1, 70, 15, 10, 70, 2, 0.5, padding, torch.float32)


def test_triton_non_contiguous_inputs(triton_device):
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(2, 11, 6, generator=gen, dtype=torch.float64).transpose(1, 2)  # (B, C=6, T=11)
    segments = (torch.rand(2, 10, 3, generator=gen, dtype=torch.float64) * 12 - 1)[..., ::2]
    assert not features.is_contiguous() and not segments.is_contiguous()
    f = features.to(triton_device).requires_grad_()
    s = segments.to(triton_device).requires_grad_()
    out = triton_soi.segment_interp_triton(f, s, 5, 3, 0.5, "zeros")
    out.sum().backward()  # grad_output is an expanded (stride 0) tensor
    exact, exact_gf, exact_gs = reference_with_grads(features, segments, torch.ones_like(out.cpu()), 5, 3, 0.5, "zeros")
    torch.testing.assert_close(out.cpu(), exact, rtol=0, atol=1e-12)
    torch.testing.assert_close(f.grad.cpu(), exact_gf, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.grad.cpu(), exact_gs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", [(0, 3, 5, 4), (2, 3, 5, 0), (2, 0, 5, 4), (2, 3, 0, 0)])
def test_triton_empty_inputs(triton_device, shape):
    B, C, T, K = shape
    f = torch.randn(B, C, T, device=triton_device, requires_grad=True)
    s = torch.rand(B, K, 2, device=triton_device, requires_grad=True)
    out = triton_soi.segment_interp_triton(f, s, 4, 1, 0.0, "zeros")
    assert out.shape == (B, K, C, 4)
    out.sum().backward()
    assert f.grad.shape == f.shape and s.grad.shape == s.shape
    assert not f.grad.any() and not s.grad.any()


def test_triton_op_rejects_unknown_padding(triton_device):
    f = torch.randn(1, 2, 5, device=triton_device)
    s = torch.rand(1, 3, 2, device=triton_device)
    with pytest.raises(ValueError, match="padding"):
        torch.ops.rcl_kernels.segment_interp_triton(f, s, 4, 1, 0.0, "reflect")


def test_triton_opcheck(triton_device):
    gen = torch.Generator().manual_seed(5)
    f = torch.randn(1, 3, 7, generator=gen).to(triton_device).requires_grad_()
    s = (torch.rand(1, 4, 2, generator=gen) * 8 - 1).to(triton_device).requires_grad_()
    torch.library.opcheck(torch.ops.rcl_kernels.segment_interp_triton.default, (f, s, 5, 3, 0.5, "bmn"))
    g = torch.randn(1, 4, 3, 5, generator=gen).to(triton_device)
    torch.library.opcheck(
        torch.ops.rcl_kernels.segment_interp_triton_backward.default,
        (g, f.detach(), s.detach(), 5, 3, 0.5, "border", True, True),
    )


@pytest.mark.parametrize("padding", ["zeros", "bmn"])
def test_triton_gradcheck_float64(triton_device, padding):
    gen = torch.Generator().manual_seed(9)
    f = torch.randn(1, 2, 6, generator=gen, dtype=torch.float64).to(triton_device).requires_grad_()
    # Away from integer positions, where the interpolation is not differentiable.
    s = torch.tensor([[[0.3, 4.15], [-1.7, 2.45], [5.2, 1.35]]], dtype=torch.float64, device=triton_device)
    s.requires_grad_()
    assert torch.autograd.gradcheck(lambda f, s: triton_soi.segment_interp_triton(f, s, 4, 3, 0.5, padding), (f, s))


def assert_compiled_matches_eager(loss, features, segments, *, backend="inductor", **tolerance):
    """loss(features, segments) and its two gradients, eager and under torch.compile(fullgraph)."""
    results = []
    for fn in (loss, torch.compile(loss, fullgraph=True, backend=backend)):
        f = features.clone().requires_grad_()
        s = segments.clone().requires_grad_()
        value = fn(f, s)
        value.backward()
        results.append((value.detach(), f.grad, s.grad))
    for eager, traced in zip(*results):
        torch.testing.assert_close(traced, eager, **tolerance)


def test_triton_compile_fullgraph(triton_device):
    # aot_eager traces through the fake and autograd registrations without needing a C++ or
    # CUDA toolchain for the interpreted CPU case; inductor is covered by the GPU test below.
    gen = torch.Generator().manual_seed(4)
    features = torch.randn(2, 3, 8, generator=gen).to(triton_device)
    segments = (torch.rand(2, 5, 2, generator=gen) * 9 - 1).to(triton_device)

    def loss(f, s):
        return triton_soi.segment_interp_triton(f * 2, s, 4, 3, 0.5, "zeros").square().sum()

    assert_compiled_matches_eager(loss, features, segments, backend="aot_eager")


# --------------------------------------------------------------------------------------------
# On the GPU.

GPU_BACKENDS = ["cuda", "triton"]


def _gpu_backend_or_skip(backend: str) -> None:
    if backend == "cuda" and not has_kernel("segment_interp", "CUDA"):
        pytest.skip("the CUDA kernels were not built")
    if backend == "triton" and not triton_soi.AVAILABLE:
        pytest.skip("triton is not installed")


def check_gpu_against_cpu_kernel(backend, B, C, T, K, N, S, context, padding, dtype, seed=0):
    """The GPU backend's error against the float64 reference may be at most twice the CPU
    kernel's (computed on the same inputs in the same dtype), plus the dtype's floor."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(B, C, T, generator=gen, dtype=torch.float64).to(dtype)
    segments = awkward_segments(B, K, T, gen).float()
    grad_output = torch.randn(B, K, C, N, generator=gen, dtype=torch.float64).to(dtype)
    exact, exact_gf, exact_gs = reference_with_grads(features, segments, grad_output, N, S, context, padding)
    results = {}
    for name, device in (("cpu", "cpu"), (backend, "cuda")):
        f = features.to(device).requires_grad_()
        s = segments.to(device).requires_grad_()
        out = rcl_kernels.segment_interp(f, s, N, samples_per_point=S, context=context, padding=padding, backend=name)
        grad_f, grad_s = torch.autograd.grad(out, (f, s), grad_output.to(device))
        results[name] = (out.cpu(), grad_f.cpu(), grad_s.cpu().double())
    # Gradients: floors scaled by their size (feature gradient) or by the number of summed terms
    # (segment gradient, returned in the segments' float32).
    feature_scale = max(1.0, exact_gf.abs().max().item())
    checks = (
        ("forward", dtype, 1.0),
        ("grad features", dtype, feature_scale),
        ("grad segments", torch.float32, 2 * C * N * S),
    )
    for i, (what, check_dtype, scale) in enumerate(checks):
        assert_close_to_reference(
            results[backend][i], (exact, exact_gf, exact_gs)[i], results["cpu"][i], check_dtype, scale=scale,
            what=f"{backend} {what}",
        )  # fmt: skip


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("samples_per_point", [1, 3])
@pytest.mark.parametrize("context", [0.0, 0.5])
def test_gpu_matches_cpu_kernel(backend, dtype, padding, samples_per_point, context):
    _gpu_backend_or_skip(backend)
    check_gpu_against_cpu_kernel(backend, 3, 37, 53, 40, 17, samples_per_point, context, padding, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize(
    "shape",
    [
        (1, 3, 20, 10, 300, 1),
        (1, 3, 100, 10, 3, 40),
        (1, 2, 8200, 12, 5, 3),
        (2, 300, 120, 500, 4, 2),
        (1, 1, 1, 10, 1, 1),
    ],
    ids=["point-tiles", "pair-overflow", "no-slab", "many-groups", "tiny"],
)
def test_gpu_code_paths_match_cpu_kernel(backend, shape):
    _gpu_backend_or_skip(backend)
    B, C, T, K, N, S = shape
    check_gpu_against_cpu_kernel(backend, B, C, T, K, N, S, 0.25, "zeros", torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("wanted", ["features", "segments"])
def test_gpu_one_gradient(backend, wanted):
    """Only one input requires grad: the backward computes that gradient alone (CUDA: a separate
    kernel variant)."""
    _gpu_backend_or_skip(backend)
    gen = torch.Generator().manual_seed(6)
    features = torch.randn(2, 33, 41, generator=gen)
    segments = awkward_segments(2, 25, 41, gen).float()
    grad_output = torch.randn(2, 25, 33, 9, generator=gen)
    grads = {}
    for name, device in (("cpu", "cpu"), (backend, "cuda")):
        f = features.to(device).requires_grad_(wanted == "features")
        s = segments.to(device).requires_grad_(wanted == "segments")
        out = rcl_kernels.segment_interp(f, s, 9, samples_per_point=3, context=0.5, padding="border", backend=name)
        (grads[name],) = torch.autograd.grad(out, f if wanted == "features" else s, grad_output.to(device))
    torch.testing.assert_close(grads[backend].cpu(), grads["cpu"], rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_large_k_needs_64bit_indices(backend):
    """K * C * N > 2^31: offsets into the output and grad_output must not wrap around."""
    _gpu_backend_or_skip(backend)
    C, T, N = 256, 100, 32
    K = 2**31 // (C * N) + 1000
    out_bytes = K * C * N * 2  # bfloat16
    if torch.cuda.mem_get_info()[0] < 3 * out_bytes + (1 << 30):
        pytest.skip("not enough GPU memory")
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(1, C, T, generator=gen).to(torch.bfloat16)
    tail = 8  # checked segments, at the far end of the output
    tail_segments = torch.rand(1, tail, 2, generator=gen) * 110 - 5
    segments = torch.rand(1, K, 2, device="cuda") * 100
    segments[:, -tail:] = tail_segments.cuda()
    f = features.cuda().requires_grad_()
    s = segments.requires_grad_()
    out = rcl_kernels.segment_interp(f, s, N, samples_per_point=3, context=0.5, backend=backend)
    expected = rcl_kernels.segment_interp(features, tail_segments, N, samples_per_point=3, context=0.5, backend="cpu")
    torch.testing.assert_close(out[:, -tail:].cpu(), expected, rtol=2e-2, atol=2e-2)
    # Only the checked segments get a gradient, so the feature gradient is theirs alone.
    grad_tail = torch.randn(1, tail, C, N, generator=gen).to(torch.bfloat16)
    grad_output = torch.zeros_like(out)
    grad_output[:, -tail:] = grad_tail.cuda()
    grad_f, grad_s = torch.autograd.grad(out, (f, s), grad_output)
    tf = features.clone().requires_grad_()
    ts = tail_segments.clone().requires_grad_()
    out_cpu = rcl_kernels.segment_interp(tf, ts, N, samples_per_point=3, context=0.5, backend="cpu")
    exp_f, exp_s = torch.autograd.grad(out_cpu, (tf, ts), grad_tail)
    torch.testing.assert_close(grad_f.cpu().float(), exp_f.float(), rtol=2e-2, atol=2e-1)
    torch.testing.assert_close(grad_s[:, -tail:].cpu(), exp_s, rtol=2e-2, atol=2e-1)
    assert not grad_s[:, :-tail].any()


def direct_op(backend: str):
    """The backend's operator itself, (features, segments, N, S, context, padding) -> output."""
    if backend == "triton":
        return triton_soi.segment_interp_triton
    return torch.ops.rcl_kernels.segment_interp


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_compile_fullgraph_inductor(backend):
    _gpu_backend_or_skip(backend)
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(2, 16, 40, generator=gen).cuda()
    segments = (torch.rand(2, 30, 2, generator=gen) * 44 - 2).cuda()

    op = direct_op(backend)

    def loss(f, s):
        return op(f * 2, s, 8, 3, 0.5, "bmn").relu().square().sum()

    assert_compiled_matches_eager(loss, features, segments, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_no_host_synchronisation_and_side_stream(backend):
    _gpu_backend_or_skip(backend)
    f = torch.randn(2, 16, 40, device="cuda", requires_grad=True)
    s = (torch.rand(2, 30, 2, device="cuda") * 40).requires_grad_()
    expected = rcl_kernels.segment_interp(f, s, 8, samples_per_point=3, backend=backend)
    expected_grads = torch.autograd.grad(expected.square().sum(), (f, s))
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = rcl_kernels.segment_interp(f, s, 8, samples_per_point=3, backend=backend)
            grads = torch.autograd.grad(out.square().sum(), (f, s))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    stream.synchronize()
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_second_device(backend):
    """Inputs on cuda:1 while cuda:0 is current: kernels must run on the inputs' device."""
    _gpu_backend_or_skip(backend)
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    gen = torch.Generator().manual_seed(8)
    features = torch.randn(2, 9, 30, generator=gen)
    segments = (torch.rand(2, 14, 2, generator=gen) * 34 - 2).sort(-1).values
    grad_output = torch.randn(2, 14, 9, 6, generator=gen)
    results = {}
    with torch.cuda.device(0):
        for name, device in (("cpu", "cpu"), (backend, "cuda:1")):
            f = features.to(device).requires_grad_()
            s = segments.to(device).requires_grad_()
            out = rcl_kernels.segment_interp(f, s, 6, samples_per_point=3, context=0.5, backend=name)
            grads = torch.autograd.grad(out, (f, s), grad_output.to(device))
            assert out.device == torch.device(device) and all(g.device == out.device for g in grads)
            results[name] = [t.cpu() for t in (out, *grads)]
    for got, want in zip(results[backend], results["cpu"]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
