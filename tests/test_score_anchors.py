"""Anchor scoring (rcl_kernels.score_anchors / AnchorScorer): every backend against the float64
reference composition, outputs and all six gradients, with flash-attention-style per-dtype
tolerances. Without a GPU the Triton kernels run under TRITON_INTERPRET=1 on tiny shapes."""

from __future__ import annotations

import math

import pytest
import torch
from tolerances import assert_close_to_reference, max_abs_err

import rcl_kernels
from rcl_kernels import AnchorScorer, score_anchors
from rcl_kernels.nn import score_with_scorers
from rcl_kernels.ops.score_anchors import score_anchors_heads
from rcl_kernels._vocabulary import COORD_FEATURES
from rcl_kernels._backends import FLOAT_DTYPES, registered_backends
from rcl_kernels.cpu import score_anchors as cpu_score_anchors
from rcl_kernels.ops.score_anchors import SCORE_ANCHORS_BACKENDS
from rcl_kernels.triton import score_anchors as triton_score_anchors
from rcl_kernels.reference.score_anchors import (
    coordinate_features,
    score_anchors_reference,
)
from rcl_kernels.reference.segment_interp import interpolation_taps, sample_positions

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON_OK = "triton" in SCORE_ANCHORS_BACKENDS.available(DEVICE.type)
needs_triton = pytest.mark.skipif(not TRITON_OK, reason="Triton cannot run here")
LOW_PRECISION = (torch.bfloat16, torch.float16)
GRAD_NAMES = ("features", "segments", "w1", "b1", "w2", "b2")


def backend_param(name):
    return pytest.param(name, marks=needs_triton) if name == "triton" else name


BACKENDS = [backend_param("cpu"), backend_param("triton")]


def random_segments(B, K, T, device=DEVICE):
    """Starts over [-2, T+1] (inside and outside the sequence); lengths normal, very short
    (1e-4), zero and reversed, in rotation."""
    start = torch.rand(B, K, device=device) * (T + 3) - 2
    length = torch.rand(B, K, device=device) * 0.8 * T
    kind = torch.arange(K, device=device) % 5
    length = torch.where(kind == 1, torch.full_like(length, 1e-4), length)
    length = torch.where(kind == 2, torch.zeros_like(length), length)
    length = torch.where(kind == 3, -0.5 * length, length)
    return torch.stack([start, start + length], dim=-1)


def make_problem(B=2, C=7, T=13, N=3, K=21, H=24, O=5, coord_features="ses", dtype=torch.float32,
                 device=DEVICE):
    E = COORD_FEATURES[coord_features]
    features = torch.randn(B, C, T, device=device)
    segments = random_segments(B, K, T, device)
    fan_in = C * N + E
    w1 = torch.randn(H, fan_in, device=device) * (1.5 / math.sqrt(max(fan_in, 1)))
    b1 = torch.randn(H, device=device) * 0.3
    w2 = torch.randn(O, H, device=device) * (1.5 / math.sqrt(max(H, 1)))
    b2 = torch.randn(O, device=device) * 0.3
    tensors = [features.to(dtype), segments, w1.to(dtype), b1.to(dtype), w2.to(dtype), b2.to(dtype)]
    return tensors, {"num_samples": N}


def run(fn, tensors, grad_out=None):
    """Output and the six input gradients of fn(*tensors) (float64 copies if fn is the oracle)."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    out = fn(*leaves)
    if grad_out is None:
        return out, None
    out.backward(grad_out.to(out.dtype))
    return out, [x.grad for x in leaves]


def reference_fn(kw):
    options = dict(kw)
    num_samples = options.pop("num_samples")
    keys = ("samples_per_point", "context", "padding", "coord_features", "activation", "num_steps")
    args = [options.get(k, d) for k, d in zip(keys, (1, 0.0, "zeros", "ses", "relu", None))]
    return lambda *t: score_anchors_reference(*t, num_samples, *args)


def check_against_reference(backend, tensors, kw, *, grads=True, factor=2.0):
    """Our backend in the inputs' dtype vs the float64 reference; the bound is `factor` times the
    error of the reference composition run by PyTorch in the same dtype, plus a floor."""
    dtype = tensors[0].dtype
    B, K, O = tensors[1].shape[0], tensors[1].shape[1], tensors[4].shape[0]
    grad_out = torch.randn(B, K, O, device=tensors[0].device) if grads else None
    exact64 = [t.double() for t in tensors]
    exact, exact_grads = run(reference_fn(kw), exact64, grad_out)
    ours, our_grads = run(lambda *t: score_anchors(*t, backend=backend, **kw), tensors, grad_out)
    same_dtype, same_grads = (None, None)
    if dtype != torch.float64:
        same_dtype, same_grads = run(reference_fn(kw), tensors, grad_out)
    assert ours.dtype == dtype
    scale = max(1.0, exact.abs().max().item()) if exact.numel() else 1.0
    assert_close_to_reference(ours, exact, same_dtype, dtype, factor=factor, scale=scale, what=f"{backend} output")
    if not grads:
        return
    for name, g, ge, gs in zip(GRAD_NAMES, our_grads, exact_grads, same_grads or [None] * 6):
        assert g is not None, f"{backend}: no gradient for {name}"
        assert g.shape == ge.shape and g.dtype == tensors[GRAD_NAMES.index(name)].dtype
        g_scale = max(1.0, ge.abs().max().item()) if ge.numel() else 1.0
        # Segment gradients are float32 whatever the features' dtype; they pass through the
        # features' precision all the same, so the bound uses that dtype.
        assert_close_to_reference(g, ge, gs, dtype, factor=factor, scale=g_scale, what=f"{backend} grad {name}")


# ---------------------------------------------------------------------------------------------
# Agreement with the reference


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_matches_reference_per_dtype(backend, dtype):
    tensors, kw = make_problem(dtype=dtype)
    if dtype in LOW_PRECISION:
        # relu's gradient jumps at 0: a pre-activation within rounding of 0 takes the other side
        # in another summation order, moving the gradient by a whole row, whatever the kernel's
        # accuracy. The smooth activation measures the gradients' rounding error; relu's 16-bit
        # forward is checked below and its gradients in float32.
        check_against_reference(backend, tensors, kw, grads=False)
        kw["activation"] = "gelu"
    check_against_reference(backend, tensors, kw)


def test_cpu_backend_float64_gradcheck():
    tensors, kw = make_problem(B=1, C=3, T=6, N=2, K=5, H=4, O=2, dtype=torch.float64)
    # Positions kept off integers, where the interpolation has kinks.
    tensors[1] = torch.tensor([[[0.3, 4.4], [1.7, 2.2], [-0.6, 3.1], [2.45, 5.9], [4.8, 0.4]]], dtype=torch.float64)
    leaves = [t.detach().clone().requires_grad_() for t in tensors]

    def scores(*t):
        return score_anchors(*t, backend="cpu", activation="gelu", samples_per_point=3, context=0.5, **kw)

    assert torch.autograd.gradcheck(scores, leaves, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", ["zeros", "border", "bmn"])
@pytest.mark.parametrize("samples_per_point,context", [(1, 0.0), (3, 0.5)])
def test_sampling_rules(backend, padding, samples_per_point, context):
    tensors, kw = make_problem(K=17)
    kw.update(padding=padding, samples_per_point=samples_per_point, context=context)
    check_against_reference(backend, tensors, kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("coord_features", list(COORD_FEATURES))
def test_activation_and_coordinate_features(backend, activation, coord_features):
    tensors, kw = make_problem(K=14, coord_features=coord_features)
    kw.update(activation=activation, coord_features=coord_features, num_steps=9.5)
    check_against_reference(backend, tensors, kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "sizes",
    [
        dict(B=1, C=5, T=1, N=4, K=1, H=17, O=1),  # T = 1, a single segment
        dict(B=3, C=12, T=9, N=5, K=30, H=40, O=4),  # several tiles along K, hidden and channels
        dict(B=1, C=1, T=4, N=1, K=3, H=3, O=3),  # N * S = 1 reads the window's middle
    ],
    ids=["T1", "multi_tile", "tiny"],
)
def test_odd_sizes(backend, sizes):
    tensors, kw = make_problem(**sizes)
    check_against_reference(backend, tensors, kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_folded_launch_grids(backend):
    """The Triton kernels take (video, segment tile) and (video, point, time tile) from one grid
    dimension (rcl_kernels/triton/score_anchors.py): several videos, segment tiles, points and
    time tiles (16-step tiles in the interpreter) must each land where they belong."""
    tensors, kw = make_problem(B=2, C=3, T=33, N=2, K=33, H=12, O=2)
    kw.update(samples_per_point=2, context=0.25)
    check_against_reference(backend, tensors, kw)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_triton_outputs_beyond_the_fused_limit(monkeypatch, dtype):
    """More outputs than the forward kernel's fused second layer holds (O = 37 against a limit of
    16 here; 32 or 64 on a GPU): the kernel stops at the pre-activation and the second layer runs as
    a library matmul, with and without a gradient; O = 16 stays fused."""
    monkeypatch.setattr(triton_score_anchors, "FUSED_OUTPUT_LIMIT", {"tf32": 16, "ieee": 16})
    assert not triton_score_anchors.fused_output(37, "ieee") and triton_score_anchors.fused_output(16, "ieee")
    for O in (37, 16):
        tensors, kw = make_problem(B=2, C=5, T=19, N=3, K=23, H=20, O=O, dtype=dtype)
        kw["activation"] = "gelu"
        check_against_reference("triton", tensors, kw, grads=dtype == torch.float32)
        with torch.no_grad():
            check_against_reference("triton", tensors, kw, grads=False)


@pytest.mark.skipif(not triton_score_anchors.AVAILABLE, reason="needs the triton package")
def test_triton_forward_compiles_for_hopper_at_many_outputs():
    """The forward kernel compiled for sm_90 (tests/triton_hopper_compile.py, no GPU) at outputs
    users ask for: O = 1,024 (BoundaryMatching.project without a pointwise layer, H = 1,024) used
    to need 260-264 KB of shared memory (more than a Hopper block has) and O = 128 in float32
    spilled 344-380 B; now every first config fits with at most 64 B of spills."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = ("import json, sys, torch; sys.path.insert(0, 'tests'); import triton_hopper_compile as h\n"
              "for p, sizes in (((torch.bfloat16, False), [(256, 1024)]), ((torch.float32, False), [(256, 128)])):\n"
              "    for r in h.compile_score_anchors_sizes(sizes, backward=False, precisions=(p,), all_configs=False):\n"
              "        print(json.dumps(r))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=root,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {(r["dtype"], r["problem"]) for r in records} == {("bfloat16", "score_anchors H=256 O=1024"),
                                                            ("float32", "score_anchors H=256 O=128")}
    for r in records:
        assert r["fits"] and r["spill_store_bytes"] <= 64, r


def grid_segments(T, max_length, device=DEVICE):
    """Every start <= end pair of a T-step grid with end - start <= max_length, in start-major
    order (as RCL / BMN enumerate anchors), jittered by up to a quarter step: (1, K, 2)."""
    start, end = torch.triu_indices(T, T)
    keep = end - start <= max_length
    seg = torch.stack([start[keep], end[keep]], -1).float()
    return (seg + (torch.rand(seg.shape) - 0.5) * 0.5).unsqueeze(0).to(device)


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_anchors_on_a_long_video(backend):
    """Tiles of short segments read only a few of the video's steps: the Triton kernels visit
    just those (and skip whole tiles in the backward); the result must not change."""
    tensors, kw = make_problem(B=1, C=5, T=40, N=3, K=1, H=20, O=2)
    tensors[1] = grid_segments(40, 2)  # K = 117
    kw.update(samples_per_point=3, context=0.5)
    check_against_reference(backend, tensors, kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    tensors, kw = make_problem(C=6, K=11)
    features, segments, w1, b1, w2, b2 = tensors
    features = features.transpose(1, 2).contiguous().transpose(1, 2)  # (B, C, T) with channel stride 1
    segments = segments.transpose(0, 1).contiguous().transpose(0, 1)
    w1 = w1.t().contiguous().t()
    w2 = torch.cat([w2, w2], dim=1)[:, ::2]
    assert not (features.is_contiguous() or segments.is_contiguous() or w1.is_contiguous() or w2.is_contiguous())
    check_against_reference(backend, [features, segments, w1, b1, w2, b2], kw)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_autocast_casts_like_linear(backend):
    """Under autocast, float32 features and master weights are scored in the autocast dtype, the
    same as with the inputs cast by hand, and gradients reach the float32 leaves in float32."""
    tensors, kw = make_problem(C=5, K=13)
    low = torch.bfloat16
    by_hand = score_anchors(*[t if i == 1 else t.to(low) for i, t in enumerate(tensors)], backend=backend, **kw)
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    with torch.autocast(DEVICE.type, dtype=low):
        out = score_anchors(*leaves, backend=backend, **kw)
    assert out.dtype == low
    torch.testing.assert_close(out, by_hand, rtol=0, atol=0)
    out.float().sum().backward()
    for name, leaf in zip(GRAD_NAMES, leaves):
        assert leaf.grad is not None and leaf.grad.dtype == torch.float32 and leaf.grad.isfinite().all(), name


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("B,K", [(2, 0), (0, 5)])
def test_empty(backend, B, K):
    tensors, kw = make_problem(B=max(B, 1), K=max(K, 1))
    features, segments = tensors[0][:B], tensors[1][:B, :K]
    leaves = [t.detach().clone().requires_grad_() for t in [features, segments, *tensors[2:]]]
    out = score_anchors(*leaves, backend=backend, **kw)
    assert out.shape == (B, K, tensors[4].shape[0])
    out.sum().backward()
    for leaf in leaves:
        assert leaf.grad is None or not leaf.grad.any()


def test_optional_biases_and_inferred_num_samples():
    tensors, kw = make_problem()
    features, segments, w1, _, w2, _ = tensors
    expected = score_anchors_reference(features, segments, w1, None, w2, None, kw["num_samples"])
    for backend in SCORE_ANCHORS_BACKENDS.available(DEVICE.type):
        got = score_anchors(features, segments, w1, None, w2, None, backend=backend)  # N inferred from w1
        assert max_abs_err(got, expected) < 1e-4, backend


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the interpreter's numpy on NaN
@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_non_finite_coordinates(backend):
    """A NaN coordinate makes its own segment's scores NaN and nothing else; so does an infinite
    one (its window length inf - inf or 0 * inf is NaN); 1e30 reads only padding. Nothing is
    read out of bounds. Without coordinate features, so the 1e30 segment's scores stay finite
    (phi(x) passes huge values on, as the reference does)."""
    tensors, kw = make_problem(K=8, coord_features="none")
    kw["coord_features"] = "none"
    segments = tensors[1].clone()
    segments[0, 1, 0] = float("nan")
    segments[1, 2, 1] = float("nan")
    segments[0, 3] = torch.tensor([1e30, 2e30])
    segments[1, 4] = torch.tensor([-float("inf"), 3.0])
    tensors[1] = segments
    grad_out = torch.randn(2, 8, tensors[4].shape[0], device=DEVICE)
    out, grads = run(lambda *t: score_anchors(*t, backend=backend, **kw), tensors, grad_out)
    nan_rows = torch.zeros(2, 8, dtype=torch.bool, device=DEVICE)
    nan_rows[0, 1] = nan_rows[1, 2] = nan_rows[1, 4] = True
    assert torch.isnan(out[nan_rows]).all()
    assert torch.isfinite(out[~nan_rows]).all()
    exact, exact_grads = run(reference_fn(kw), [t.double() for t in tensors], grad_out)
    assert max_abs_err(out, exact) < 1e-4
    # The features' gradient stays finite: NaN positions carry zero interpolation weight.
    assert torch.isfinite(grads[0]).all()
    assert max_abs_err(grads[0], exact_grads[0]) < 1e-4


@pytest.mark.parametrize("capability", ["native", "default"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("H,S,context,padding,activation", [
    (33, 2, 0.5, "zeros", "relu"),    # one partial vector block and a scalar tail
    (100, 1, 0.0, "bmn", "gelu"),     # a whole 8-vector block, a partial one, a tail
    (128, 3, 0.25, "border", "relu"),  # whole blocks only
    (5, 1, 0.0, "zeros", "gelu"),     # the scalar tail alone
])
def test_cpu_inference_kernel_matches_reference(monkeypatch, capability, dtype, H, S, context, padding,
                                                activation):
    """Without autograd the cpu backend runs the C++ gather kernel (AVX2 where the CPU has it,
    the portable loops under RCL_CPU_CAPABILITY=default): it must agree with the float64
    reference like the recorded path, with NaN rows where a coordinate is NaN, and on
    non-contiguous inputs."""
    if capability == "default":
        monkeypatch.setenv("RCL_CPU_CAPABILITY", "default")
    tensors, kw = make_problem(B=3, C=5, T=17, N=4, K=70, H=H, O=6, dtype=dtype, device=torch.device("cpu"))
    segments = tensors[1].clone()
    segments[1, 3, 0] = float("nan")
    segments[2, 7, 1] = float("nan")
    kw.update(samples_per_point=S, context=context, padding=padding, activation=activation)
    strided = [tensors[0].transpose(1, 2).contiguous().transpose(1, 2), segments.transpose(0, 1).contiguous()
               .transpose(0, 1), *tensors[2:]]
    assert not strided[0].is_contiguous() and not strided[1].is_contiguous()
    with torch.no_grad():
        ours = score_anchors(*strided, backend="cpu", **kw)
        exact = reference_fn(kw)(*[t.double() for t in [tensors[0], segments, *tensors[2:]]])
        same = reference_fn(kw)(tensors[0], segments, *tensors[2:])
    assert ours.dtype == dtype and ours.shape == exact.shape
    nan_rows = segments.isnan().any(-1)
    assert ours[nan_rows].isnan().all() and ours[~nan_rows].isfinite().all()
    scale = max(1.0, exact[~nan_rows].abs().max().item())
    assert_close_to_reference(ours[~nan_rows], exact[~nan_rows], same[~nan_rows], dtype, factor=2.0, scale=scale,
                              what=f"cpu inference ({capability})")


@pytest.mark.parametrize("capability", ["native", "default"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("padding", ["zeros", "border", "bmn"])
def test_cpu_inference_kernel_taps_equal_the_references(monkeypatch, capability, dtype, padding):
    """The kernel's taps, read exactly through one-hot projected features (one hidden unit per
    (step, point), one sub-sample per point, so each unit sums at most two weights): equal to the
    reference.s sample_positions / interpolation_taps, bit for bit, on the AVX2 build
    and the portable one, at positions on and between integers, at the padding edges, beyond them,
    huge, infinite and NaN."""
    if capability == "default":
        monkeypatch.setenv("RCL_CPU_CAPABILITY", "default")
    T, N = 8, 4  # T N = 32 hidden units: one AVX2 block in either dtype
    edges = [-3.0, -2.0, -1.5, -1.0, -0.5, -1e-7, 0.0, 1e-7, 0.5, 1.0, 2.25, T - 1.5, T - 1.0, T - 1 + 1e-6,
             T - 0.5, T, T + 0.5, T + 1.0, T + 2.5, 1e30, -1e30, float("inf"), float("nan")]
    gen = torch.Generator().manual_seed(3)
    starts = torch.cat([torch.tensor(edges, dtype=dtype), torch.rand(40, generator=gen, dtype=dtype) * (T + 4) - 2])
    lengths = torch.cat([torch.zeros(len(edges), dtype=dtype), torch.rand(40, generator=gen, dtype=dtype) * T - 1])
    segments = torch.stack([starts, starts + lengths], -1)[None].contiguous()
    K = segments.shape[1]
    projected = torch.eye(T * N, dtype=dtype).view(1, 1, T, N, T * N)  # unit t N + n at (step t, point n)
    hidden = torch.ops.rcl_kernels.score_anchors_hidden(
        projected, segments, torch.zeros(1, K, 0, dtype=dtype), torch.zeros(0, T * N, dtype=dtype),
        torch.zeros(T * N, dtype=dtype), T * N, N, 1, 0.25, padding, False)
    x = sample_positions(segments, N, 0.25)
    i0, i1, w0, w1, is_nan = interpolation_taps(x, T, padding)
    point = torch.arange(N)
    expected = torch.zeros(1, K, T * N, dtype=dtype)
    expected.scatter_add_(2, i0 * N + point, w0)
    expected.scatter_add_(2, i1 * N + point, w1)
    nan_rows = is_nan.any(-1)
    expected[nan_rows] = float("nan")
    assert nan_rows.any() and (~nan_rows).any()
    torch.testing.assert_close(hidden, expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_cpu_inference_in_chunks_equals_one_call(monkeypatch, activation):
    """Without autograd the cpu backend scores the segments in chunks of about
    _HIDDEN_BYTES_PER_CALL bytes of hidden rows (runs of one video's segments, or whole videos
    where several fit), all against one projection: the kernel runs once per chunk and the
    output is that of a single call."""
    tensors, kw = make_problem(B=3, C=5, T=17, N=4, K=70, H=24, O=6, device=torch.device("cpu"))
    kw.update(samples_per_point=2, context=0.5, activation=activation)
    kernel = torch.ops.rcl_kernels.score_anchors_hidden
    calls = []
    monkeypatch.setattr(torch.ops.rcl_kernels, "score_anchors_hidden",
                        lambda *args: calls.append(tuple(args[1].shape[:2])) or kernel(*args))
    row = 24 * 4  # bytes of a hidden row
    with torch.no_grad():
        whole = score_anchors(*tensors, backend="cpu", **kw)
        assert calls == [(3, 70)]
        for budget, expected in ((27 * row, [(1, 27), (1, 27), (1, 16)] * 3), (150 * row, [(2, 70), (1, 70)])):
            calls.clear()
            monkeypatch.setattr(cpu_score_anchors, "_HIDDEN_BYTES_PER_CALL", budget)
            chunked = score_anchors(*tensors, backend="cpu", **kw)
            assert calls == expected
            torch.testing.assert_close(chunked, whole, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("grad", [False, True])
def test_heads_equal_one_call_per_head(monkeypatch, backend, dtype, activation, grad):
    """score_anchors_heads gives each head's score_anchors output; on the cpu backend at
    inference all heads go through one kernel call per chunk (hidden sizes 24 and 41: the second
    head starts inside a block and ends in a partial one), and odd sizes, non-contiguous features
    and gradients come out as head-by-head calls give them."""
    gen = torch.Generator().manual_seed(11)
    B, C, T, N, K = 3, 5, 17, 4, 70
    features = torch.randn(B, T, C, generator=gen, dtype=dtype).transpose(1, 2)
    segments = random_segments(B, K, T, torch.device("cpu")).to(dtype)
    heads = [tuple(torch.randn(*shape, generator=gen, dtype=dtype) * 0.3 for shape in
                   ((h, C * N + 3), (h,), (o, h), (o,))) for h, o in ((24, 6), (41, 2))]
    kw = dict(num_samples=N, samples_per_point=2, context=0.5, padding="bmn", activation=activation, backend=backend)
    kernel = torch.ops.rcl_kernels.score_anchors_hidden
    calls = []
    monkeypatch.setattr(torch.ops.rcl_kernels, "score_anchors_hidden",
                        lambda *args: calls.append(args[5]) or kernel(*args))
    leaves = [[t.clone().requires_grad_(grad) for t in head] for head in heads]
    with torch.set_grad_enabled(grad):
        together = score_anchors_heads(features, segments, leaves, **kw)
    assert calls == ([] if grad or backend == "reference" else [24 + 41])
    for out, head in zip(together, heads):
        alone = score_anchors(features, segments, *head, **kw)
        exact = score_anchors(features.double(), segments.double(), *[t.double() for t in head],
                              **dict(kw, backend="reference"))
        assert out.dtype == dtype and out.shape == alone.shape
        assert_close_to_reference(out, exact, alone, dtype, factor=2.0, scale=max(1.0, exact.abs().max().item()),
                                  what=f"head of {head[0].shape[0]} units")
    if grad:
        sum(out.sum() for out in together).backward()
        assert all(t.grad is not None and t.grad.isfinite().all() for head in leaves for t in head)


def test_heads_name_bad_arguments():
    tensors, kw = make_problem(device=torch.device("cpu"))
    features, segments, *head = tensors
    with torch.no_grad():
        with pytest.raises(ValueError, match="non-empty sequence"):
            score_anchors_heads(features, segments, [])
        with pytest.raises(ValueError, match="non-empty sequence"):
            score_anchors_heads(features, segments, [head[:3]])
        with pytest.raises(ValueError, match="w2 must be"):
            score_anchors_heads(features, segments, [head, (head[0], head[1], head[2].t(), head[3])], **kw)
        other = (torch.randn(head[0].shape[0], head[0].shape[1] + features.shape[1]), head[1], head[2], head[3])
        with pytest.raises(ValueError, match="same num_samples"):
            score_anchors_heads(features, segments, [head, other])


def test_score_with_scorers_equals_each_scorer_and_names_a_difference():
    torch.manual_seed(5)
    features = torch.randn(2, 6, 19)
    segments = random_segments(2, 33, 19, torch.device("cpu"))
    scorers = [AnchorScorer(6, 4, 16, 5, samples_per_point=2, context=0.25), AnchorScorer(6, 4, 40, 2,
                                                                                         samples_per_point=2,
                                                                                         context=0.25)]
    with torch.no_grad():
        together = score_with_scorers(scorers, features, segments, num_steps=23.0)
        for out, scorer in zip(together, scorers):
            torch.testing.assert_close(out, scorer(features, segments, num_steps=23.0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="differ in context"):
        score_with_scorers([scorers[0], AnchorScorer(6, 4, 16, 2, samples_per_point=2, context=0.5)],
                           features, segments)
    with pytest.raises(ValueError, match="non-empty sequence of AnchorScorer"):
        score_with_scorers([], features, segments)


@pytest.mark.parametrize("case,message", [
    (dict(projected=torch.zeros(2, 1, 4, 3)), "projected must have shape"),
    (dict(projected=torch.zeros(2, 1, 4, 3, 65)), "1 to 64 hidden units"),
    (dict(segments=torch.zeros(2, 5, 3)), "segments must have shape"),
    (dict(hidden_units=9), "does not fit"),
    (dict(coordinates=torch.zeros(2, 4, 3)), "coordinates must have shape"),
    (dict(coord_weight=torch.zeros(3, 6)), "coord_weight must have shape"),
    (dict(bias=torch.zeros(6)), "bias must have shape"),
    (dict(num_samples=4), "num_samples"),
    (dict(bias=torch.zeros(8, dtype=torch.float64)), "projected's dtype"),
    (dict(padding="reflect"), "padding must be"),
    (dict(context=float("nan")), "context must be finite"),
    (dict(coordinates=torch.zeros(2, 3, 5).transpose(1, 2)), "contiguous"),
])
def test_cpu_inference_kernel_names_bad_arguments(case, message):
    args = dict(projected=torch.zeros(2, 1, 4, 3, 8), segments=torch.zeros(2, 5, 2), coordinates=torch.zeros(2, 5, 3),
                coord_weight=torch.zeros(3, 8), bias=torch.zeros(8), hidden_units=6, num_samples=3,
                samples_per_point=1, context=0.0, padding="zeros", relu=True)
    args.update(case)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.rcl_kernels.score_anchors_hidden(*args.values())


# ---------------------------------------------------------------------------------------------
# torch.library registration


@needs_triton
def test_opcheck_triton_ops():
    tensors, kw = make_problem(B=2, C=5, T=7, N=2, K=9, H=17, O=3)
    args = [t.detach().requires_grad_() for t in tensors]
    params = (kw["num_samples"], 2, 0.25, "bmn", "ses", "gelu", 7.0)
    torch.library.opcheck(torch.ops.rcl_kernels.score_anchors_triton.default, (*args, *params, True))
    torch.library.opcheck(torch.ops.rcl_kernels.score_anchors_triton.default,
                          tuple(t.detach() for t in args) + (*params, False))
    out, hidden = torch.ops.rcl_kernels.score_anchors_triton.default(*[t.detach() for t in args], *params, True)
    grad_out = torch.randn_like(out)
    torch.library.opcheck(
        torch.ops.rcl_kernels.score_anchors_triton_backward.default,
        (grad_out, hidden, args[0].detach(), args[1].detach(), args[2].detach(), args[4].detach(), *params,
         True, True, True),
    )


@needs_triton
def test_triton_backward_needs_saved_hidden():
    tensors, kw = make_problem(K=4)
    args = [t.detach().requires_grad_() for t in tensors]
    out, _ = torch.ops.rcl_kernels.score_anchors_triton.default(*args, kw["num_samples"], 1, 0.0, "zeros", "ses",
                                                                   "relu", 13.0, False)
    with pytest.raises(RuntimeError, match="save_hidden=False"):
        out.sum().backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    tensors, kw = make_problem(K=10)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *t: score_anchors(*t, backend=backend, **kw), fullgraph=True)
    grad_out = torch.randn(2, 10, tensors[4].shape[0], device=DEVICE)
    got, got_grads = run(compiled, tensors, grad_out)
    eager, eager_grads = run(lambda *t: score_anchors(*t, backend=backend, **kw), tensors, grad_out)
    assert max_abs_err(got, eager) < 1e-5
    for g, e in zip(got_grads, eager_grads):
        assert max_abs_err(g, e) < 1e-4


# ---------------------------------------------------------------------------------------------
# Errors


def _bad_cases():
    def replace(i, value):
        return lambda t, kw: (t[:i] + [value(t)] + t[i + 1:], kw)

    def option(**extra):
        return lambda t, kw: (t, {**kw, **extra})

    return [
        (replace(0, lambda t: t[0][0]), ValueError, "features must be a tensor of shape"),
        (replace(1, lambda t: t[1][..., :1]), ValueError, "segments must be a tensor of shape"),
        (replace(1, lambda t: t[1][:1]), ValueError, "batch size"),
        (replace(0, lambda t: t[0].long()), TypeError, "features must be float16"),
        (replace(1, lambda t: t[1].half()), TypeError, "segments must be float32"),
        (replace(2, lambda t: t[2][:, 1:]), ValueError, "w1 must have C \\* num_samples \\+ E"),
        (replace(2, lambda t: t[2][0]), ValueError, "w1 must be a tensor of shape"),
        (replace(3, lambda t: t[3][1:]), ValueError, "b1 must be None or a tensor of shape"),
        (replace(4, lambda t: t[4][:, 1:]), ValueError, "w2 must be a tensor of shape"),
        (replace(5, lambda t: t[5][1:]), ValueError, "b2 must be None or a tensor of shape"),
        (replace(4, lambda t: t[4].double()), TypeError, "w2 must have the features' dtype"),
        (replace(3, lambda t: t[3].to("meta")), ValueError, "b1 is on meta"),
        (option(num_samples=0), ValueError, "num_samples must be an int >= 1"),
        (option(num_samples=4), ValueError, "w1 must have C \\* num_samples \\+ E"),
        (option(samples_per_point=0), ValueError, "samples_per_point must be an int >= 1"),
        (option(context=-1.0), ValueError, "context must be a finite number >= 0"),
        (option(context=float("nan")), ValueError, "context must be a finite number >= 0"),
        (option(padding="reflect"), ValueError, "padding must be one of"),
        (option(coord_features="xy"), ValueError, "coord_features must be one of"),
        (option(activation="tanh"), ValueError, "activation must be one of"),
        (option(num_steps=0), ValueError, "num_steps must be None or a finite number > 0"),
        (option(backend="cuda"), ValueError, "backend must be one of"),
        (option(backend="fast"), ValueError, "backend must be one of"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_inputs_name_the_argument(case):
    mutate, exc, pattern = _bad_cases()[case]
    tensors, kw = make_problem(K=3)
    tensors, kw = mutate(list(tensors), kw)
    with pytest.raises(exc, match=pattern):
        score_anchors(*tensors, **kw)


def test_cannot_infer_num_samples():
    tensors, _ = make_problem(C=7, N=3)
    with pytest.raises(ValueError, match="pass num_samples explicitly"):
        score_anchors(*tensors, coord_features="se")  # 24 columns: not 7 * N + 2


@needs_triton
def test_triton_rejects_float64():
    tensors, kw = make_problem(dtype=torch.float64)
    with pytest.raises(TypeError, match="backend 'triton' supports float16, bfloat16 and float32"):
        score_anchors(*tensors, backend="triton", **kw)


def test_module_rejects_bad_configuration():
    with pytest.raises(ValueError, match="hidden must be an int >= 1"):
        AnchorScorer(8, 4, 0, 2)
    with pytest.raises(ValueError, match="coord_features must be one of"):
        AnchorScorer(8, 4, 16, 2, coord_features="xyz")
    with pytest.raises(ValueError, match="padding must be one of"):
        AnchorScorer(8, 4, 16, 2, padding="same")


# ---------------------------------------------------------------------------------------------
# The module and a short training run


def test_module_is_the_functional():
    torch.manual_seed(1)
    scorer = AnchorScorer(6, 3, 20, 4, samples_per_point=3, context=0.5, padding="border",
                          activation="gelu").to(DEVICE)
    assert scorer.w1.shape == (20, 6 * 3 + 3) and scorer.w2.shape == (4, 20)
    features = torch.randn(2, 6, 11, device=DEVICE)
    segments = random_segments(2, 9, 11)
    expected = score_anchors_reference(features, segments, scorer.w1, scorer.b1, scorer.w2, scorer.b2, 3, 3, 0.5,
                                        "border", "ses", "gelu", 20.0)
    assert max_abs_err(scorer(features, segments, num_steps=20), expected) < 1e-5
    # float32 parameters serve bfloat16 features (cast in forward), output in bfloat16
    assert scorer(features.bfloat16(), segments).dtype == torch.bfloat16
    assert "num_samples=3" in repr(scorer)


def _train(backend, steps=5):
    torch.manual_seed(3)
    encoder = torch.nn.Conv1d(4, 6, 3, padding=1).to(DEVICE)
    scorer = AnchorScorer(6, 3, 16, 2, samples_per_point=2, context=0.25, backend=backend).to(DEVICE)
    params = list(encoder.parameters()) + list(scorer.parameters())
    optimiser = torch.optim.SGD(params, lr=0.2)
    inputs = torch.randn(2, 4, 12, device=DEVICE)
    segments = random_segments(2, 15, 12)
    target = torch.rand(2, 15, 2, device=DEVICE)
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(scorer(encoder(inputs), segments), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_loss_curve_matches_reference(backend):
    reference = _train("reference")
    ours = _train(backend)
    assert reference[-1] < reference[0]  # it is learning, so the curve says something
    for step, (a, b) in enumerate(zip(ours, reference)):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(b)), f"step {step}: {a} vs reference {b}"


def test_info_reports_the_op():
    report = rcl_kernels.info(file=False)
    entry = report["ops"]["score_anchors"]["cpu"]
    assert entry["auto"] == "cpu" and "reference" in entry["available"]


@pytest.mark.skipif(not triton_score_anchors.AVAILABLE, reason="needs the triton package")
def test_auto_on_cuda_never_picks_a_backend_that_cannot_run_the_input():
    """Asked about CUDA tensors without running anything (and without initialising CUDA): Triton
    for the 16- and 32-bit floats it takes, never for float64 (it raises TypeError there; float64
    BoundaryMatching.project used to fail on CUDA only), nor for a shape it cannot launch."""
    cuda = torch.device("cuda")
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        assert SCORE_ANCHORS_BACKENDS.resolve("auto", cuda, dtype) == "triton"
    assert SCORE_ANCHORS_BACKENDS.resolve("auto", cuda, torch.float64) == "reference"
    assert not triton_score_anchors.launchable(2**16, 2**8, 2**7)
    assert SCORE_ANCHORS_BACKENDS.resolve("auto", cuda, torch.float32, ("triton",)) == "reference"
    # every op: auto picks, per dtype, a backend whose dtype list holds that dtype
    for name, table in registered_backends().items():
        for device_type in ("cpu", "cuda"):
            for dtype in FLOAT_DTYPES:
                chosen = table.auto(device_type, dtype)
                assert chosen in table.available(device_type) and table.runs(chosen, dtype), (name, dtype)
    report = rcl_kernels.info(file=False)["ops"]["score_anchors"]["cuda"]["auto_by_dtype"]
    assert report == {"float16": "triton", "bfloat16": "triton", "float32": "triton", "float64": "reference"}
    if not torch.cuda.is_available():
        assert not torch.cuda.is_initialized()


@pytest.mark.parametrize("O", [2, 128, 200, 512, 1024])
def test_triton_launch_plans_bound_the_work(O):
    """The launch plans of the Triton kernels (what the size matrix prints) at the sizes users
    run: a grid the launchers would launch, and every lane evaluated within 2x of the work
    needed for the forward and the segment backward. The projected backward's time tiles are
    up to twice a segment tile's reach in two float32 candidates: up to 3.1x there."""
    for H in (128, 256, 512):
        for K in (10_000, 30_000, 100_000):
            for dtype, tf32 in ((torch.float32, False), (torch.float32, True), (torch.bfloat16, False),
                                (torch.float16, False)):
                plans = triton_score_anchors.score_anchors_launch_plans(16, 1000, K, 32, H, O, dtype, S=3, tf32=tf32,
                                                                        all_configs=True)
                assert {p.kernel for p in plans} == {"fwd_kernel", "bwd_projected_kernel", "bwd_segments_kernel"}
                for plan in plans:
                    assert 0 < plan.blocks < 2**31 and plan.threads_per_block in (128, 256)
                    bound = 3.1 if plan.kernel == "bwd_projected_kernel" else 2.0
                    assert 1.0 <= plan.work_ratio <= bound, (plan, H, K, dtype, tf32)
                prec = "ieee" if dtype == torch.float32 and not tf32 else "tf32"
                assert ("second layer by torch" in plans[0].note) == (O > triton_score_anchors.FUSED_OUTPUT_LIMIT[prec])


def test_coordinate_features_definition():
    segments = torch.tensor([[[2.0, 6.0]]])
    assert torch.equal(coordinate_features(segments, "ses", 8.0), torch.tensor([[[0.25, 0.75, 0.5]]]))
    assert coordinate_features(segments, "none", 8.0).shape == (1, 1, 0)


# ---------------------------------------------------------------------------------------------
# On a GPU: compiled Triton kernels at larger sizes


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_gpu_triton_matches_reference(dtype):
    tensors, kw = make_problem(B=3, C=96, T=50, N=8, K=700, H=136, O=4, dtype=dtype)
    kw.update(samples_per_point=3, context=0.5)
    check_against_reference("triton", tensors, kw)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_gpu_triton_all_grid_anchors(dtype):
    """Every start <= end pair of a 120-step grid (7,260 segments, start-major), as on "anet"."""
    tensors, kw = make_problem(B=2, C=64, T=120, N=16, K=1, H=96, O=4, dtype=dtype)
    tensors[1] = grid_segments(120, 120).expand(2, -1, -1).contiguous()
    check_against_reference("triton", tensors, kw)


@pytest.mark.gpu
def test_gpu_triton_tf32_follows_the_torch_flag():
    tensors, kw = make_problem(B=2, C=64, T=40, N=8, K=300, H=128, O=4)
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        exact = score_anchors(*tensors, backend="triton", **kw)
        torch.backends.cuda.matmul.allow_tf32 = True
        tf32 = score_anchors(*tensors, backend="triton", **kw)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    reference = score_anchors_reference(*[t.double() for t in tensors], kw["num_samples"])
    assert max_abs_err(exact, reference) < 1e-4
    assert max_abs_err(tf32, reference) < 5e-2


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_gpu_triton_on_a_device_that_is_not_current():
    """Tensors on cuda:1 while cuda:0 is current: every launch runs on the tensors' device (the
    launchers' device guard), not on the current one with foreign pointers."""
    tensors, kw = make_problem(B=2, C=16, T=30, N=4, K=50, H=32, O=3, device=torch.device("cuda", 1))
    with torch.cuda.device(0):
        check_against_reference("triton", tensors, kw)
