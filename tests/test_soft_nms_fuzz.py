"""Property-based fuzzing of rcl_kernels.soft_nms: every backend on this machine against the
per-video oracle (tests/soft_nms_oracle.py) and against each other (identical indices, scores
bit for bit), over sizes (empty, 1, odd), dtypes, layouts, labels, lengths, every method and
parameter, NaN / inf / subnormal scores and extreme coordinates.

Budget: the hypothesis profile of tests/conftest.py ("ci": fixed examples; RCL_FUZZ_EXAMPLES=N
for N random ones per test)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rcl_kernels
from rcl_kernels.ops.soft_nms import SOFT_NMS_BACKENDS
from soft_nms_oracle import assert_matches, oracle

BACKENDS = SOFT_NMS_BACKENDS.available("cpu")
FLOAT_TYPES = (torch.float32, torch.float16, torch.bfloat16)
LABEL_TYPES = {torch.int8: 2**7, torch.uint8: 2**8, torch.int16: 2**15, torch.int32: 2**31, torch.int64: 2**63}

NAN, INF = float("nan"), float("inf")
SPECIAL_COORDINATES = [NAN, INF, -INF, 1e30, -1e30, 3e38, -3e38, 0.0, -0.0, 1e-38, 1e-40, 0.5, 1.0]
SPECIAL_SCORES = [NAN, INF, -INF, 0.0, -0.0, 1e-40, -1e-40, 1e-38, 1.0, 0.5, 1e-3, 2.0, -1.0, 3e38]


@st.composite
def candidates(draw):
    """(segments (V, P, 2), scores (V, P)) float32: a random base of the drawn kind, then a
    sprinkling of special values at drawn places."""
    V = draw(st.integers(0, 4))
    P = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 5, 8, 13, 31]), st.integers(0, 40)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 500.0, 1e-3, 1e30]))
    start = torch.rand(V, P, generator=gen) * scale
    length = torch.rand(V, P, generator=gen) ** 2 * 0.5 * scale
    segment_kind = draw(st.sampled_from(["proposals", "grid", "reversed"]))
    if segment_kind == "grid":  # integer ends: identical, touching and zero-length segments
        start, length = (start / scale * 6).floor(), (length / scale * 8).floor()
    segments = torch.stack([start, start + length], -1)
    if segment_kind == "reversed":
        segments = torch.where(torch.rand(V, P, 1, generator=gen) < 0.3, segments.flip(-1), segments)
    scores = torch.rand(V, P, generator=gen)
    score_kind = draw(st.sampled_from(["uniform", "ties", "signed"]))
    if score_kind == "ties":
        scores = (scores * 3).floor() / 4 + 0.125
    elif score_kind == "signed":
        scores = scores * 6 - 3
    if V * P:
        places = st.tuples(st.integers(0, V - 1), st.integers(0, P - 1))
        for v, p in draw(st.lists(places, max_size=6)):
            segments[v, p, draw(st.integers(0, 1))] = draw(st.sampled_from(SPECIAL_COORDINATES))
        for v, p in draw(st.lists(places, max_size=6)):
            scores[v, p] = draw(st.sampled_from(SPECIAL_SCORES))
    return segments, scores


@st.composite
def problems(draw):
    segments, scores = draw(candidates())
    V, P = scores.shape
    labels = lengths = None
    if draw(st.booleans()):
        dtype = draw(st.sampled_from(list(LABEL_TYPES)))
        classes = draw(st.sampled_from([1, 2, 5, 100]))
        low = draw(st.sampled_from([0, -(LABEL_TYPES[dtype] // 2) if dtype != torch.uint8 else 0]))
        labels = (torch.randint(0, classes, (V, P)) + low).to(dtype)
    if V and draw(st.booleans()):
        lengths = torch.tensor(draw(st.lists(st.integers(0, P), min_size=V, max_size=V)), dtype=torch.int64)
    options = dict(
        method=draw(st.sampled_from(["gaussian", "linear", "hard"])),
        sigma=draw(st.one_of(st.sampled_from([0.5, 1e-3, 1e-30, 1e-38, 3.0, 1e30]), st.floats(1e-3, 10))),
        iou_threshold=draw(st.one_of(st.sampled_from([0.0, 0.3, 0.7, 1.0, 2.0]), st.floats(0, 1))),
        min_score=draw(st.one_of(st.sampled_from([-1.0, 0.0, -0.0, 1e-40, -1e-40, 1e-3, 0.5, 2.0, -3e38]),
                                 st.floats(-1, 1))),
        top_k=draw(st.one_of(st.integers(1, P + 3), st.sampled_from([1, 10**9]))),
        width_gate=draw(st.one_of(st.none(), st.tuples(st.floats(-1, 1), st.floats(-1, 2)))),
    )
    dtype = draw(st.sampled_from(FLOAT_TYPES))
    return segments.to(dtype), scores.to(draw(st.sampled_from(FLOAT_TYPES))), labels, lengths, options


def noncontiguous(segments, scores, labels, lengths):
    """The same values through strided views: coordinate planes, every other score, labels
    transposed, every other length."""
    segments = segments.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    scores = torch.stack([scores, torch.zeros_like(scores)], -1)[..., 0]
    labels = labels.t().contiguous().t() if labels is not None else None
    lengths = torch.stack([lengths, -lengths - 1], -1)[:, 0] if lengths is not None else None
    return segments, scores, labels, lengths


def assert_backends_identical(outs: dict) -> None:
    names = list(outs)
    for name in names[1:]:
        for field, a, b in zip(outs[names[0]]._fields, outs[names[0]], outs[name]):
            assert (a is None and b is None) or (a.shape == b.shape and a.dtype == b.dtype and torch.equal(
                a.nan_to_num(), b.nan_to_num()) and torch.equal(a.isnan(), b.isnan())), \
                f"{names[0]} and {name} differ in {field}"


@given(problems(), st.booleans(), st.booleans())
def test_every_backend_equals_the_oracle(problem, strided, single_video):
    segments, scores, labels, lengths, options = problem
    if strided:
        segments, scores, labels, lengths = noncontiguous(segments, scores, labels, lengths)
    expected = oracle(segments, scores, labels, lengths, **options)
    outs = {}
    for backend in BACKENDS:
        if single_video and segments.shape[0] == 1 and lengths is None:
            out = rcl_kernels.soft_nms(segments[0], scores[0], labels=labels[0] if labels is not None else None,
                                       backend=backend, **options)
            out = type(out)(*(t[None] if t is not None else None for t in out))
        else:
            out = rcl_kernels.soft_nms(segments, scores, labels=labels, lengths=lengths, backend=backend, **options)
        assert_matches(out, expected, segments, labels, options["top_k"], what=backend)
        assert not any(math.isnan(s) for picks in expected for _, s in picks)
        outs[backend] = out
    assert_backends_identical(outs)


@given(candidates(), st.lists(st.integers(-3, 50), min_size=4, max_size=4))
def test_lengths_outside_zero_to_p_are_an_error(problem, values):
    segments, scores = problem
    V, P = scores.shape
    lengths = torch.tensor(values[:V], dtype=torch.int64)
    bad = any(not 0 <= n <= P for n in values[:V])
    for backend in BACKENDS:
        if bad:
            with pytest.raises(RuntimeError, match=r"lengths\[v\] must lie in \[0, P\]"):
                rcl_kernels.soft_nms(segments, scores, lengths=lengths, backend=backend)
        else:
            out = rcl_kernels.soft_nms(segments, scores, lengths=lengths, backend=backend, min_score=-1.0)
            assert (out.counts <= lengths).all()


@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(candidates(), st.integers(1, 2**62))
def test_output_width_is_min_of_top_k_and_p(problem, top_k):
    segments, scores = problem
    V, P = scores.shape
    for backend in BACKENDS:
        out = rcl_kernels.soft_nms(segments, scores, top_k=top_k, backend=backend)
        width = min(top_k, P)
        assert out.indices.shape == (V, width) and out.scores.shape == (V, width)
        assert out.segments.shape == (V, width, 2) and (out.counts <= width).all()
