"""Property-based fuzzing of rcl_kernels.score_anchors: every backend on this machine (the
reference composition, the factored cpu backend, Triton under the interpreter at small sizes)
against the float64 reference, output and all six gradients, over sizes (empty, 1, odd), dtypes,
paddings, context, samples_per_point, coordinate features, activations, num_steps, optional
biases, strided layouts and extreme coordinates.

Coordinates: ordinary, on integers, out of range, reversed, zero-length and very short, NaN and
+-inf (such a segment scores NaN, the others stay finite); huge finite ones (1e30) only without
coordinate features, since phi(x) = x / T passes them on and the scores then overflow. Gradients
are compared where every coordinate is ordinary (a NaN score row makes the weights' gradients
NaN by a rule each backend may apply in its own order).

Budget: the hypothesis profile of tests/conftest.py ("ci": fixed examples; RCL_FUZZ_EXAMPLES=N
for N random ones per test; the Triton test runs a fifth of it)."""

from __future__ import annotations

import math

import pytest
import torch
from fuzz_inputs import assert_close_where_defined, segment, size, with_layout
from hypothesis import given, settings
from hypothesis import strategies as st

import rcl_kernels
from rcl_kernels._vocabulary import PADDINGS

# The backend table, found through info() under the op's current name (the files are being
# renamed from anchor_scoring to score_anchors).
_TABLE = rcl_kernels.info(file=False)["ops"]
_CPU = (_TABLE.get("score_anchors") or _TABLE["anchor_scoring"])["cpu"]["available"]
CPU_BACKENDS = [b for b in _CPU if b != "triton"]
TRITON_OK = "triton" in _CPU
COORD_FEATURES = {"ses": 3, "se": 2, "none": 0}
TRITON_EXAMPLES = max(1, settings.default.max_examples // 5)
GRAD_NAMES = ("features", "segments", "w1", "b1", "w2", "b2")


@st.composite
def scoring_problems(draw, *, small: bool):
    B = draw(size(2 if small else 3))
    C = draw(size(3 if small else 5))
    T = draw(st.integers(1, 9 if small else 13))
    K = draw(size(6 if small else 9))
    H = draw(st.integers(1, 18 if small else 24))
    O = draw(st.integers(1, 3 if small else 4))
    coord_features = draw(st.sampled_from(list(COORD_FEATURES)))
    if C == 0 and coord_features == "none":
        C = 1  # w1 would have no columns: num_samples cannot be inferred and nothing is scored
    options = dict(
        num_samples=draw(st.integers(1, 3 if small else 5)),
        samples_per_point=draw(st.integers(1, 3)),
        context=draw(st.one_of(st.sampled_from([0.0, 0.5]), st.floats(0, 2))),
        padding=draw(st.sampled_from(PADDINGS)),
        coord_features=coord_features,
        activation=draw(st.sampled_from(["relu", "gelu"])),
        num_steps=draw(st.one_of(st.none(), st.sampled_from([9.5, 100.0]))),
    )
    kinds = dict(extreme=draw(st.booleans()), huge=coord_features == "none")
    pairs = draw(st.lists(segment(T, **kinds), min_size=B * K, max_size=B * K))
    segments = torch.tensor(pairs, dtype=torch.float64).reshape(B, K, 2)
    segments = segments.to(draw(st.sampled_from([torch.float32, torch.float64])))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    fan_in = C * options["num_samples"] + COORD_FEATURES[coord_features]
    features = torch.randn(B, C, T, generator=gen, dtype=torch.float64)
    w1 = torch.randn(H, fan_in, generator=gen, dtype=torch.float64) * (1.5 / math.sqrt(fan_in))
    w2 = torch.randn(O, H, generator=gen, dtype=torch.float64) * (1.5 / math.sqrt(H))
    b1 = torch.randn(H, generator=gen, dtype=torch.float64) * 0.3 if draw(st.booleans()) else None
    b2 = torch.randn(O, generator=gen, dtype=torch.float64) * 0.3 if draw(st.booleans()) else None
    strided = draw(st.booleans())
    return [features, segments, w1, b1, w2, b2], options, strided


def strided_views(tensors):
    """The same values through strided views (features channels-last, segments in planes, w1
    transposed, w2 every other column)."""
    features, segments, w1, b1, w2, b2 = tensors
    w2 = torch.stack([w2, torch.zeros_like(w2)], -1)[..., 0]
    return [with_layout(features, "channels_last"), with_layout(segments, "planes"), w1.t().contiguous().t(), b1,
            w2, b2]


def run(fn, tensors, grad_out, strided):
    leaves = [t.detach().clone().requires_grad_(grad_out is not None) if t is not None else None for t in tensors]
    out = fn(*(strided_views(leaves) if strided else leaves))
    if grad_out is None or out.numel() == 0:
        return out, None
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(out, present, grad_out.to(out.dtype)))
    return out, [next(grads) if t is not None else None for t in leaves]


def ordinary(segments: torch.Tensor) -> bool:
    return bool((segments.abs() < 1e4).all())


def check_backend(backend, problem, dtype, with_grads, seed):
    tensors, options, strided = problem
    features, segments = tensors[0], tensors[1]
    B, K, O = segments.shape[0], segments.shape[1], tensors[4].shape[0]
    with_grads = with_grads and ordinary(segments)
    grad_out = torch.randn(B, K, O, generator=torch.Generator().manual_seed(seed)) if with_grads else None

    def in_dtype(ts, d):
        return [t.to(d) if t is not None and i != 1 else t for i, t in enumerate(ts)]

    def scores(be):
        return lambda *t: rcl_kernels.score_anchors(*t, backend=be, **options)

    ours, our_grads = run(scores(backend), in_dtype(tensors, dtype), grad_out, strided)
    exact, exact_grads = run(scores("reference"), [t.double() if t is not None else None for t in tensors],
                             grad_out, False)
    same, same_grads = run(scores("reference"), in_dtype(tensors, dtype), grad_out, False)
    assert ours.shape == (B, K, O) and ours.dtype == dtype

    # A segment with a NaN coordinate scores NaN, and so does an infinite one when it is sampled
    # (C > 0: its window is NaN); every ordinary one is finite. Without channels an infinite
    # coordinate only passes through phi(x) and may score anything.
    broken = segments.isnan().any(-1) | ((~segments.isfinite()).any(-1) & (features.shape[1] > 0))
    assert ours[broken].isnan().all(), f"{backend}: a NaN (or sampled infinite) segment has a non-NaN score"
    if ordinary(segments):
        assert ours.isfinite().all(), f"{backend}: an ordinary segment has a non-finite score"
    finite = exact[exact.isfinite()]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    assert_close_where_defined(ours, exact, same, dtype, scale=scale, what=f"{backend} output")
    if our_grads is None:
        return
    for name, g, ge, gs, t in zip(GRAD_NAMES, our_grads, exact_grads, same_grads, tensors):
        if t is None:
            assert g is None
            continue
        # Segment gradients are float32 or float64 (the segments' dtype) but pass through the
        # features' precision, so the bound uses that dtype.
        assert g is not None and g.dtype == (segments.dtype if name == "segments" else dtype), name
        g_scale = max(1.0, ge.abs().max().item()) if ge.numel() else 1.0
        assert_close_where_defined(g, ge, gs, dtype, scale=g_scale, what=f"{backend} grad {name}")


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@given(scoring_problems(small=False), st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
       st.booleans(), st.integers(0, 2**16))
def test_cpu_backends_match_float64_reference(problem, dtype, with_grads, seed):
    for backend in CPU_BACKENDS:
        check_backend(backend, problem, dtype, with_grads, seed)


@pytest.mark.skipif(not TRITON_OK, reason="Triton cannot run here")
@pytest.mark.filterwarnings("ignore:invalid value encountered", "ignore:overflow encountered")
@settings(max_examples=TRITON_EXAMPLES)
@given(scoring_problems(small=True), st.sampled_from([torch.float32, torch.float16, torch.bfloat16]), st.booleans(),
       st.integers(0, 2**16))
def test_triton_matches_float64_reference(problem, dtype, with_grads, seed):
    check_backend("triton", problem, dtype, with_grads, seed)


@pytest.mark.skipif(not TRITON_OK, reason="Triton cannot run here")
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_triton_border_padding_beyond_t_plus_one():
    """Found by the fuzzer: a border-padded sub-sample at x >= T + 1 must read F[T - 1].
    features (1, 1, 2) = [1, 2], the zero-length segment [3, 3] (x = 3 = T + 1), one point,
    w1 = w2 = [[1]], no biases or coordinate features: the score is F[T - 1] = 2 and the
    features' gradient [0, 1], as the reference and cpu backends give."""
    features = torch.tensor([[[1.0, 2.0]]], requires_grad=True)
    segments = torch.tensor([[[3.0, 3.0]]])
    one = torch.ones(1, 1)
    out = rcl_kernels.score_anchors(features, segments, one, None, one, None, padding="border",
                                    coord_features="none", backend="triton")
    out.sum().backward()
    assert out.item() == 2.0 and features.grad.tolist() == [[[0.0, 1.0]]]
