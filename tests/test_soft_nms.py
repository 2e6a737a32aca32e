"""Batched Soft-NMS (rcl_kernels.soft_nms): every available backend against a plain per-video
Python implementation of the rules (tests/soft_nms_oracle.py)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

import rcl_kernels
from rcl_kernels.ops import soft_nms as soft_nms_op
from rcl_kernels.ops.soft_nms import SOFT_NMS_BACKENDS
from rcl_kernels.reference import soft_nms as ref
from soft_nms_oracle import F, assert_matches, exp_f32, exp_f64, exp_true, oracle

DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)]


def backends(device: str) -> list[str]:
    if device == "cuda" and not torch.cuda.is_available():
        return []
    found = SOFT_NMS_BACKENDS.available(device)
    assert "reference" in found
    if device == "cpu" and rcl_kernels._extension.has_kernel("soft_nms", "CPU"):
        assert "cpu" in found
    return found


# ---------------------------------------------------------------------------------------------
# Every backend against the oracle


def check_all_backends(device, segments, scores, labels=None, lengths=None, **kw):
    segments, scores = segments.to(device), scores.to(device)
    labels = labels.to(device) if labels is not None else None
    lengths = lengths.to(device) if lengths is not None else None
    expected = oracle(segments, scores, labels, lengths, **kw)
    top_k = kw.get("top_k", 100)
    for backend in backends(device):
        out = rcl_kernels.soft_nms(segments, scores, labels=labels, lengths=lengths, backend=backend, **kw)
        assert out.indices.device.type == device
        assert_matches(out, expected, segments, labels, top_k, what=f"{device}/{backend}")
    return expected


# ---------------------------------------------------------------------------------------------
# Inputs


def random_candidates(V, P, *, generator=None, scale=1.0):
    """Proposal-like candidates: starts uniform in [0, scale), lengths skewed to short ones (up
    to half the video), scores uniform in [0, 1)."""
    start = torch.rand(V, P, generator=generator) * scale
    length = torch.rand(V, P, generator=generator) ** 2 * 0.5 * scale
    segments = torch.stack([start, start + length], dim=-1)
    return segments, torch.rand(V, P, generator=generator)


def tied_candidates(V, P):
    """Few distinct scores, repeated and identical segments, zero-length segments."""
    segments, scores = random_candidates(V, P)
    scores = (scores * 4).floor() / 4 + 0.125
    segments[:, 1::4] = segments[:, 0:P - 1:4]  # identical segment ...
    scores[:, 1::4] = scores[:, 0:P - 1:4]  # ... and identical score: tie broken by index
    segments[:, 2::5, 1] = segments[:, 2::5, 0]  # zero length
    segments[:, 3::7] = segments[:, 3::7].round(decimals=1)
    return segments, scores


# ---------------------------------------------------------------------------------------------
# Against the oracle


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
@pytest.mark.parametrize("classes", [None, 3])
def test_random_inputs_every_method(device, method, classes):
    V, P = 5, 47
    segments, scores = random_candidates(V, P)
    labels = torch.randint(0, classes, (V, P)) if classes else None
    for kw in [dict(top_k=20), dict(top_k=12, iou_threshold=0.3, sigma=0.3, min_score=0.05)]:
        check_all_backends(device, segments, scores, labels, method=method, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
def test_ties_identical_and_zero_length_segments(device, method):
    segments, scores = tied_candidates(4, 41)
    expected = check_all_backends(device, segments, scores, method=method, iou_threshold=0.2, top_k=30, min_score=0.0)
    # The data does exercise ties: consecutive picks with equal scores (resolved by index).
    assert any(a[1] == b[1] for picks in expected for a, b in zip(picks, picks[1:]))


@pytest.mark.parametrize("device", DEVICES)
def test_all_scores_equal_pick_in_index_order_without_overlap(device):
    P = 16
    start = torch.arange(P, dtype=torch.float32) * 2
    segments = torch.stack([start, start + 1], -1)[None].repeat(2, 1, 1)
    scores = torch.full((2, P), 0.5)
    expected = check_all_backends(device, segments, scores, top_k=P)
    assert [j for j, _ in expected[0]] == list(range(P))


@pytest.mark.parametrize("device", DEVICES)
def test_width_gate(device):
    segments, scores = random_candidates(4, 40)
    for gate in [(0.3, 0.4), (0.0, 1.0), (-0.2, 0.5)]:
        check_all_backends(device, segments, scores, width_gate=gate, top_k=25, sigma=0.4)


@pytest.mark.parametrize("device", DEVICES)
def test_lengths_padding(device):
    V, P = 6, 33
    segments, scores = random_candidates(V, P)
    # Padding slots hold garbage that must be ignored, including NaN.
    lengths = torch.tensor([0, 1, 10, 33, 33, 2])
    segments[2, 10:] = float("nan")
    scores[2, 10:] = 10.0
    expected = check_all_backends(device, segments, scores, lengths=lengths, top_k=15)
    assert [len(p) for p in expected] == [0, 1, 10, 15, 15, 2]
    assert all(j < 10 for j, _ in expected[2])
    labels = torch.randint(0, 4, (V, P))
    check_all_backends(device, segments, scores, labels, lengths, top_k=15, method="linear")
    if device == "cuda":  # out of [0, P]: clamped on the GPU
        check_all_backends(device, segments, scores, labels, torch.tensor([-3, 1, 10, 33, 50, 2]), top_k=15)


@pytest.mark.parametrize("bad", [[-1, 3], [3, 6], [-(2**40), 0], [2**62, 0]])
def test_lengths_outside_zero_to_p_are_an_error_on_cpu(bad):
    segments, scores = random_candidates(2, 5)
    for backend in backends("cpu"):
        for dtype in (torch.int64, torch.int16) if max(map(abs, bad)) < 2**15 else (torch.int64,):
            with pytest.raises(RuntimeError, match=r"lengths\[v\] must lie in \[0, P\] = \[0, 5\]"):
                rcl_kernels.soft_nms(segments, scores, lengths=torch.tensor(bad, dtype=dtype), backend=backend)
    # The bounds themselves are fine.
    rcl_kernels.soft_nms(segments, scores, lengths=torch.tensor([0, 5]))


def test_lengths_rule_per_device(monkeypatch):
    """CPU tensors are checked; CUDA ones are clamped on the device (no synchronisation). The
    clamping branch runs here by telling the op that CPU tensors are clamped too."""
    assert soft_nms_op.lengths_checked(torch.device("cpu"))
    assert not soft_nms_op.lengths_checked(torch.device("cuda"))
    assert not soft_nms_op.lengths_checked(torch.device("cuda", 1))
    lengths = torch.tensor([-7, 0, 3, 5, 6, 2**40])
    assert soft_nms_op.bounded_lengths(lengths, 5, check=False).tolist() == [0, 0, 3, 5, 5, 5]
    with pytest.raises(RuntimeError, match="lengths"):
        soft_nms_op.bounded_lengths(lengths, 5, check=True)
    segments, scores = random_candidates(6, 5)
    monkeypatch.setattr(soft_nms_op, "lengths_checked", lambda device: False)
    for backend in backends("cpu"):
        clamped = rcl_kernels.soft_nms(segments, scores, lengths=lengths, top_k=4, backend=backend)
        explicit = rcl_kernels.soft_nms(segments, scores, lengths=lengths.clamp(0, 5), top_k=4, backend=backend)
        for a, b in zip(clamped, explicit):
            assert (a is None and b is None) or torch.equal(a, b)
    assert [c for c in clamped.counts.tolist()] == [0, 0, 3, 4, 4, 4]


def test_lengths_check_under_torch_compile():
    segments, scores = random_candidates(2, 6)

    def post_process(seg, sc, lengths):
        return rcl_kernels.soft_nms(seg, sc, lengths=lengths, top_k=3).counts

    compiled = torch.compile(post_process, fullgraph=True, backend="aot_eager")
    assert compiled(segments, scores, torch.tensor([6, 2])).tolist() == [3, 2]
    with pytest.raises(RuntimeError, match="lengths"):
        compiled(segments, scores, torch.tensor([7, 2]))


@pytest.mark.parametrize("device", DEVICES)
def test_min_score_cutoffs_and_top_k_larger_than_p(device):
    segments, scores = random_candidates(4, 23)
    for min_score in [0.0, 0.2, 0.6, 0.999, 2.0]:
        expected = check_all_backends(device, segments, scores, top_k=40, min_score=min_score)
        assert all(s >= F(min_score) for picks in expected for _, s in picks)
    # min_score at a score that is not a float32 number: compared after rounding to float32.
    check_all_backends(device, segments, torch.full((4, 23), F(0.1)), top_k=40, min_score=0.1)


LARGEST_SUBNORMAL = float(np.nextafter(np.float32(ref.FLT_MIN), np.float32(0)))


def test_comparable_min_score():
    flush = ref.comparable_min_score
    for subnormal in [1e-40, -1e-40, 1.4e-45, -1.4e-45, LARGEST_SUBNORMAL, 1e-45, 1e-46, -0.0]:
        assert flush(subnormal) == 0.0
    assert flush(ref.FLT_MIN) == ref.FLT_MIN and flush(-ref.FLT_MIN) == -ref.FLT_MIN
    assert flush(0.1) == float(np.float32(0.1)) and flush(-2.5) == -2.5
    # Rounds to FLT_MIN in float32 (a normal number): kept.
    assert flush(float(np.float64(ref.FLT_MIN) * (1 - 2**-30))) == ref.FLT_MIN


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("min_score", [1e-40, -1e-40, 1.4e-45, LARGEST_SUBNORMAL])
def test_subnormal_min_score_counts_as_zero(device, min_score):
    """Issue 16 #4: the GPU's comparisons flush a subnormal min_score to 0, so zero scores (the
    hard-suppressed candidates) are selectable there; every backend now does the same."""
    segments = torch.tensor([[[0.0, 1.0], [0.1, 1.0], [0.0, 0.9], [5.0, 6.0], [5.0, 6.5]]]).repeat(2, 1, 1)
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.0]]).repeat(2, 1)
    scores[1, 3] = 1e-39  # a subnormal score counts as 0 too
    labels = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
    for method in ["hard", "linear"]:
        for lab in [None, labels]:
            expected = check_all_backends(device, segments, scores, lab, top_k=5, method=method, iou_threshold=0.3,
                                          min_score=min_score)
            as_zero = check_all_backends(device, segments, scores, lab, top_k=5, method=method, iou_threshold=0.3,
                                         min_score=0.0)
            assert expected == as_zero
            assert all(len(picks) == 5 for picks in expected)  # zero scores were selected
            assert any(s == 0 for picks in expected for _, s in picks)
    # FLT_MIN itself is a normal number: zero scores stay unselectable.
    picks = check_all_backends(device, segments, scores, top_k=5, method="hard", min_score=float(ref.FLT_MIN))
    assert all(s > 0 for video in picks for _, s in video)


@pytest.mark.parametrize("device", DEVICES)
def test_nan_and_inf_inputs(device):
    V, P = 3, 29
    segments, scores = random_candidates(V, P)
    scores[0, ::3] = float("nan")
    scores[1, 5] = float("inf")
    scores[1, 6] = -float("inf")
    scores[2, 4] = 1e-40  # subnormal: counts as 0
    segments[0, 1::4, 0] = float("nan")
    segments[1, 2::5, 1] = float("inf")
    segments[2, 3::6] = torch.tensor([-float("inf"), float("inf")])
    segments[2, 7] = torch.tensor([1e30, 3e38])
    segments[2, 8] = torch.tensor([-3e38, 3e38])  # length overflows float32
    for method in ["gaussian", "linear", "hard"]:
        expected = check_all_backends(device, segments, scores, top_k=P, method=method, min_score=-1.0,
                                      iou_threshold=0.1)
        assert all(not math.isnan(s) for picks in expected for _, s in picks)
        assert all(j % 3 != 0 for j, _ in expected[0])  # NaN scores are never selected


@pytest.mark.parametrize("device", DEVICES)
def test_subnormal_overlaps_and_weights(device):
    """Overlaps and weights below FLT_MIN count as 0 everywhere (the GPU flushes subnormals)."""
    segments = torch.tensor([[[-5.0, 1e-30], [0.0, 1e10], [0.0, 1e-20], [0.0, 1e-10], [-1.0, 1e-19]]])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]])
    for method in ["hard", "gaussian", "linear"]:
        for sigma in [0.5, 1e-38]:
            check_all_backends(device, segments, scores, top_k=5, method=method, sigma=sigma, min_score=0.0)
    expected = oracle(segments, scores, top_k=5, method="hard", min_score=0.0)
    assert len(expected[0]) == 5 and all(s > 0 for _, s in expected[0][:2])  # the 1e-40 overlap: no decay


@pytest.mark.parametrize("device", DEVICES)
def test_negative_scores_and_scores_above_one(device):
    segments, scores = random_candidates(3, 30)
    scores = scores * 6 - 3
    check_all_backends(device, segments, scores, top_k=30, min_score=-2.5, method="gaussian")
    check_all_backends(device, segments, scores, top_k=30, min_score=-0.5, method="hard", iou_threshold=0.4)


@pytest.mark.parametrize("device", DEVICES)
def test_feature_step_coordinates_and_tiny_sigma(device):
    segments, scores = random_candidates(3, 35, scale=500.0)
    check_all_backends(device, segments, scores, top_k=20, sigma=1e-3, min_score=0.0)
    check_all_backends(device, segments, scores, top_k=20, sigma=1e-30, min_score=0.0)


# ---------------------------------------------------------------------------------------------
# Semantics beyond the oracle


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_agrees_with_true_exp(device):
    """The float32 exp changes no selection here and scores by at most a few ulp."""
    segments, scores = random_candidates(3, 40)
    truth = oracle(segments, scores, top_k=25, exp=exp_true)
    for backend in backends(device):
        out = rcl_kernels.soft_nms(segments.to(device), scores.to(device), top_k=25, backend=backend)
        for v, picks in enumerate(truth):
            assert out.indices[v].tolist() == [j for j, _ in picks]
            want = torch.tensor([float(s) for _, s in picks])
            torch.testing.assert_close(out.scores[v].cpu(), want, rtol=1e-6 * 25, atol=0)


def test_exp_nonpositive_accuracy():
    x = torch.cat([-torch.rand(200_000) * 86, torch.tensor([0.0, -0.0, -1e-30, -85.999, -86.0])])
    got = ref.exp_nonpositive(x).double()
    want = torch.exp(x.double())
    ulp = torch.from_numpy(np.spacing(want.float().numpy())).double()
    assert ((got - want).abs() / ulp).max() <= 2.0
    assert (got > 0).all() and (got >= ref.FLT_MIN).all()
    assert ref.exp_nonpositive(torch.tensor([-86.01, -1e4, float("-inf"), float("nan")])).eq(0).all()
    # The scalar twin in this file is the same function.
    sample = x[::997]
    assert torch.equal(ref.exp_nonpositive(sample), torch.tensor([exp_f32(F(v)) for v in sample.tolist()]))


@pytest.mark.parametrize("device", DEVICES)
def test_class_aware_equals_per_class_then_merge(device):
    V, P, C, top_k = 4, 60, 5, 25
    segments, scores = random_candidates(V, P)
    labels = torch.randint(0, C, (V, P))
    for backend in backends(device):
        args = dict(top_k=top_k, backend=backend, iou_threshold=0.1)
        merged = rcl_kernels.soft_nms(segments.to(device), scores.to(device), labels=labels.to(device), **args)
        for v in range(V):
            picks = []
            for c in range(C):
                members = (labels[v] == c).nonzero()[:, 0]
                alone = rcl_kernels.soft_nms(segments[v, members].to(device), scores[v, members].to(device), **args)
                k = alone.counts.item()
                picks += [(s, members[j].item()) for s, j in zip(alone.scores[:k].tolist(), alone.indices[:k].tolist())]
            picks.sort(key=lambda p: (-p[0], p[1]))
            k = merged.counts[v].item()
            assert k == min(top_k, len(picks))
            assert merged.indices[v, :k].tolist() == [j for _, j in picks[:k]]
            assert merged.scores[v, :k].tolist() == [s for s, _ in picks[:k]]


@pytest.mark.parametrize("device", DEVICES)
def test_backends_agree_on_larger_problems(device):
    """Bit-identical results across backends where the Python oracle would be slow."""
    V, P = 24, 700
    segments, scores = random_candidates(V, P)
    labels = torch.randint(0, 20, (V, P))
    lengths = torch.randint(0, P + 1, (V,))
    for kw in [dict(top_k=100), dict(top_k=200, labels=labels, lengths=lengths, iou_threshold=0.1),
               dict(top_k=50, method="linear", width_gate=(0.5, 0.4), min_score=0.0)]:
        kw = {k: (t.to(device) if isinstance(t, torch.Tensor) else t) for k, t in kw.items()}
        outs = [rcl_kernels.soft_nms(segments.to(device), scores.to(device), backend=b, **kw) for b in backends(device)]
        for other in outs[1:]:
            for a, b in zip(outs[0], other):
                assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_single_video_form(device):
    segments, scores = random_candidates(1, 31)
    labels = torch.randint(0, 3, (1, 31))
    for backend in backends(device):
        for lab in [None, labels]:
            batched = rcl_kernels.soft_nms(segments.to(device), scores.to(device), top_k=9, backend=backend,
                                           labels=lab.to(device) if lab is not None else None)
            single = rcl_kernels.soft_nms(segments[0].to(device), scores[0].to(device), top_k=9, backend=backend,
                                          labels=lab[0].to(device) if lab is not None else None)
            assert single.indices.shape == (9,) and single.segments.shape == (9, 2) and single.counts.shape == ()
            for a, b in zip(batched, single):
                assert (a is None and b is None) or torch.equal(a[0], b)
    auto = rcl_kernels.soft_nms(segments.to(device), scores.to(device), top_k=9)
    reference = rcl_kernels.soft_nms(segments.to(device), scores.to(device), top_k=9, backend="reference")
    assert torch.equal(auto.indices, reference.indices) and torch.equal(auto.scores, reference.scores)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("V,P", [(0, 10), (3, 0), (0, 0)])
def test_empty_inputs(device, V, P):
    width = min(4, P)
    for backend in backends(device):
        for labels in [None, torch.zeros(V, P, dtype=torch.int64, device=device)]:
            out = rcl_kernels.soft_nms(torch.zeros(V, P, 2, device=device), torch.zeros(V, P, device=device),
                                       labels=labels, top_k=4, backend=backend)
            assert out.indices.shape == (V, width) and out.segments.shape == (V, width, 2)
            assert out.scores.shape == (V, width) and out.counts.shape == (V,)
            assert (out.indices == -1).all() and (out.counts == 0).all() and (out.scores == 0).all()
            assert (out.labels is None) == (labels is None)
            assert labels is None or (out.labels.shape == (V, width) and (out.labels == -1).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("top_k", [5, 10**9, 2**62])
def test_top_k_above_p_is_capped_at_p(device, top_k):
    """The sweep's input: (1, 4) candidates with top_k = 10^9 gives (1, 4) outputs (it allocated
    (1, 10^9) before: the reference was OOM-killed, the cpu kernel reserved 24 GB)."""
    segments, scores = random_candidates(1, 4)
    labels = torch.randint(0, 2, (1, 4))
    for backend in backends(device):
        for lab in [None, labels]:
            lab = lab.to(device) if lab is not None else None
            out = rcl_kernels.soft_nms(segments.to(device), scores.to(device), labels=lab, top_k=top_k,
                                       min_score=0.0, backend=backend)
            exact = rcl_kernels.soft_nms(segments.to(device), scores.to(device), labels=lab, top_k=4,
                                         min_score=0.0, backend=backend)
            assert out.indices.shape == (1, 4) and out.segments.shape == (1, 4, 2) and out.counts.tolist() == [4]
            for a, b in zip(out, exact):
                assert (a is None and b is None) or torch.equal(a, b)
            single = rcl_kernels.soft_nms(segments[0].to(device), scores[0].to(device), top_k=top_k, backend=backend)
            assert single.indices.shape == (4,) and single.segments.shape == (4, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_top_k_cap_in_fake_kernel_and_under_torch_compile(device):
    from torch._subclasses.fake_tensor import FakeTensorMode

    for backend in backends(device):
        with FakeTensorMode():
            fake = rcl_kernels.soft_nms(torch.empty(3, 4, 2, device=device), torch.empty(3, 4, device=device),
                                        labels=torch.zeros(3, 4, dtype=torch.int64, device=device), top_k=10**9,
                                        backend=backend)
        assert [tuple(t.shape) for t in fake] == [(3, 4, 2), (3, 4), (3, 4), (3, 4), (3,)]
    # Compiled: the kernels' backend (tracing the reference's loop is slow and tests nothing new).
    for backend in [b for b in backends(device) if b != "reference"] or ["reference"]:

        def post_process(seg, sc):
            out = rcl_kernels.soft_nms(seg, sc, top_k=10**9, backend=backend)
            return out.segments, out.scores, out.indices, out.counts

        for dynamic in (False, True):
            compiled = torch.compile(post_process, fullgraph=True, backend="aot_eager", dynamic=dynamic)
            for P in (4, 7):
                segments, scores = random_candidates(2, P)
                segments, scores = segments.to(device), scores.to(device)
                got, want = compiled(segments, scores), post_process(segments, scores)
                assert got[2].shape == (2, P)
                for a, b in zip(got, want):
                    assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_dtypes_and_noncontiguous_inputs(device):
    V, P = 3, 37
    segments, scores = random_candidates(V, P)
    labels = torch.randint(0, 4, (V, P))
    for dtype in [torch.float16, torch.bfloat16]:
        seg_d, sc_d = segments.to(dtype), scores.to(dtype)
        expected = oracle(seg_d, sc_d, labels.int(), top_k=20)
        for backend in backends(device):
            out = rcl_kernels.soft_nms(seg_d.to(device), sc_d.to(device), labels=labels.int().to(device),
                                       top_k=20, backend=backend)
            assert out.scores.dtype == torch.float32 and out.labels.dtype == torch.int64
            assert_matches(out, expected, seg_d, labels, 20, what=f"{dtype}/{backend}")
    # Non-contiguous views: coordinates in separate planes, every other score and label.
    planes = segments.permute(2, 0, 1).contiguous()
    seg_nc = planes.permute(1, 2, 0)
    wide_scores = torch.stack([scores, torch.rand(V, P)], -1)[..., 0]
    wide_labels = labels.t().contiguous().t()
    lengths = torch.tensor([5, 37, 20, 0, 9, 37])[::2]
    assert not seg_nc.is_contiguous() and not wide_scores.is_contiguous() and not wide_labels.is_contiguous()
    check_all_backends(device, seg_nc, wide_scores, wide_labels, lengths, top_k=20)


# ---------------------------------------------------------------------------------------------
# float64


def float64_backends(device: str) -> list[str]:
    return [b for b in backends(device) if b in ("reference", "cpu")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
def test_float64_against_the_oracle(device, method):
    """float64 inputs are computed in float64 on every float64 backend, bit for bit as the oracle."""
    for (segments, scores), kw in [(random_candidates(4, 43), dict(top_k=25)),
                                   (tied_candidates(3, 41), dict(top_k=30, iou_threshold=0.2, min_score=0.0)),
                                   (random_candidates(3, 40), dict(top_k=20, width_gate=(0.5, 0.4), min_score=-1.0)),
                                   (random_candidates(2, 30, scale=500.0), dict(top_k=10, sigma=1e-3))]:
        segments, scores = segments.double(), scores.double()
        expected = oracle(segments, scores, method=method, **kw)
        for backend in float64_backends(device):
            out = rcl_kernels.soft_nms(segments.to(device), scores.to(device), method=method, backend=backend, **kw)
            assert_matches(out, expected, segments, None, kw["top_k"], what=f"float64 {device}/{backend}")
        # Not the float32 computation: the float64 scores carry more than float32 digits.
        out32 = rcl_kernels.soft_nms(segments.float(), scores.float(), method=method, **kw)
        if method == "gaussian":
            out64 = rcl_kernels.soft_nms(segments, scores, method=method, **kw)
            assert not torch.equal(out64.scores, out32.scores.double())


def test_float64_matches_the_float64_arithmetic_of_bsn_soft_nms():
    """The width gate at grid coordinates k / T: tIoUs that equal the gate exactly (at T = 100,
    0.5 + 0.4 * 0.25 = 0.6 = 15 / 25, and thousands more) are decided by float64 rounding, which
    the float64 computation reproduces with BSN's / mmaction2's order of operations. Every pair
    (selected, other) is a video of its own: the other survives a hard decay iff not gated in."""
    T, low, high = 100, 0.5, 0.9
    j, e = torch.triu_indices(T, T, offset=1)
    grid = torch.stack([j.double() / T, e.double() / T], -1)  # every (j / T, e / T), 0 <= j < e < T
    exact_ties = decided = 0
    for b_start, b_end in [(25, 50), (3, 43), (10, 35)]:  # in grid steps
        s_b, e_b = b_start / T, b_end / T
        width = e_b - s_b
        gate = low + (high - low) * width
        want = []
        for (s_j, e_j), (j_start, j_end) in zip(grid.tolist(), zip(j.tolist(), e.tolist())):
            inter = max(min(e_b, e_j) - max(s_b, s_j), 0.0)
            want.append(inter / (width - inter + e_j - s_j) > gate)  # BSN's formulas, scalar float64
            steps = max(min(b_end, j_end) - max(b_start, j_start), 0)
            union = (b_end - b_start) - steps + (j_end - j_start)
            exact_ties += steps > 0 and steps * 250 == union * (125 + b_end - b_start)  # tIoU == gate
        pairs = torch.stack([torch.tensor([s_b, e_b], dtype=torch.float64).expand_as(grid), grid], 1)
        scores = torch.tensor([1.0, 0.5], dtype=torch.float64).expand(len(grid), 2)
        for backend in float64_backends("cpu"):
            out = rcl_kernels.soft_nms(pairs, scores, method="hard", iou_threshold=0.0, min_score=0.25, top_k=2,
                                       width_gate=(low, high - low), backend=backend)
            assert (out.counts == 1).tolist() == want, backend
        decided += sum(want)
    assert exact_ties > 20 and decided > 0


def test_exp_nonpositive_float64_accuracy():
    x = torch.cat([-torch.rand(100_000, dtype=torch.float64) * 708,
                   -torch.rand(100_000, dtype=torch.float64) * 3,
                   torch.tensor([0.0, -0.0, -1e-300, -707.999, -708.0], dtype=torch.float64)])
    got = ref.exp_nonpositive(x).numpy()
    want = np.exp(x.numpy().astype(np.longdouble))
    ulp = np.spacing(want.astype(np.float64))
    assert (np.abs(got - want) / ulp).max() <= 2.0
    assert (got >= ref.DBL_MIN).all()
    assert ref.exp_nonpositive(torch.tensor([-708.01, -1e4, float("-inf"), float("nan")],
                                            dtype=torch.float64)).eq(0).all()
    sample = x[::997]
    assert torch.equal(ref.exp_nonpositive(sample),
                       torch.tensor([exp_f64(np.float64(v)) for v in sample.tolist()], dtype=torch.float64))


def test_float64_promotion_and_backend_choice(monkeypatch):
    segments, scores = random_candidates(2, 20)
    expected = oracle(segments.double(), scores.double(), top_k=10)
    for seg, sc in [(segments.double(), scores), (segments, scores.double())]:  # either float64: float64
        out = rcl_kernels.soft_nms(seg, sc, top_k=10)
        assert_matches(out, expected, segments.double(), None, 10, what="mixed")
    out = rcl_kernels.soft_nms(segments[0].double(), scores[0].double(), top_k=10)  # one video
    assert out.scores.dtype == torch.float64 and out.segments.dtype == torch.float64
    # A backend without float64 (CUDA): "auto" falls back to the reference, naming it explicitly is an error.
    monkeypatch.setattr(soft_nms_op, "SOFT_NMS_BACKENDS", types.SimpleNamespace(resolve=lambda backend, device, dtype=None: "cuda"))
    with pytest.raises(TypeError, match="'cuda' backend computes in float32 only"):
        rcl_kernels.soft_nms(segments.double(), scores.double(), backend="cuda")
    out = rcl_kernels.soft_nms(segments.double(), scores.double(), top_k=10)
    assert_matches(out, expected, segments.double(), None, 10, what="auto fallback")


@pytest.mark.gpu
def test_float64_on_cuda_runs_on_the_reference():
    segments, scores = random_candidates(2, 30)
    segments, scores = segments.double(), scores.double()
    out = rcl_kernels.soft_nms(segments.cuda(), scores.cuda(), top_k=12)
    assert_matches(out, oracle(segments, scores, top_k=12), segments, None, 12, what="cuda float64")
    with pytest.raises(TypeError, match="float32 only"):
        rcl_kernels.soft_nms(segments.cuda(), scores.cuda(), backend="cuda")


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_are_not_differentiable(device):
    segments, scores = random_candidates(2, 12)
    segments, scores = segments.to(device).requires_grad_(), scores.to(device).requires_grad_()
    for backend in backends(device):
        out = rcl_kernels.soft_nms(segments, scores, top_k=5, backend=backend)
        assert not out.scores.requires_grad and not out.segments.requires_grad


# ---------------------------------------------------------------------------------------------
# GPU-only: large P (shared-memory limit and the global-memory path), CUDA graphs


@pytest.mark.gpu
@pytest.mark.parametrize("P", [8192, 25_000])
def test_cuda_large_p_matches_cpu(P):
    V = 3
    segments, scores = random_candidates(V, P)
    labels = torch.randint(0, 20, (V, P))
    for lab in [None, labels]:
        cpu = rcl_kernels.soft_nms(segments, scores, labels=lab, top_k=300, backend="cpu")
        gpu = rcl_kernels.soft_nms(segments.cuda(), scores.cuda(), labels=lab.cuda() if lab is not None else None,
                                   top_k=300, backend="cuda")
        for a, b in zip(cpu, gpu):
            assert (a is None and b is None) or torch.equal(a, b.cpu())


@pytest.mark.gpu
def test_cuda_graph_capture():
    segments, scores = random_candidates(8, 300)
    segments, scores = segments.cuda(), scores.cuda()
    expected = rcl_kernels.soft_nms(segments, scores, top_k=50, backend="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        rcl_kernels.soft_nms(segments, scores, top_k=50, backend="cuda")  # warm-up outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = rcl_kernels.soft_nms(segments, scores, top_k=50, backend="cuda")
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(expected, captured):
        assert (a is None and b is None) or torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Registration, compile, errors


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    if not any(b in ("cpu", "cuda") for b in backends(device)):
        pytest.skip("no compiled kernel for this device")
    segments, scores = random_candidates(3, 17)
    segments, scores = segments.to(device), scores.to(device)
    labels = torch.randint(0, 3, (3, 17), device=device)
    lengths = torch.tensor([17, 4, 0], device=device)
    for args in [
        (segments, scores, None, None, "gaussian", 0.5, 0.0, 0.001, 5, False, 0.0, 0.0),
        (segments, scores, labels, lengths, "linear", 0.5, 0.2, 0.0, 30, True, 0.1, 0.3),
        (segments, scores, labels, None, "hard", 1.0, 0.5, -1.0, 1, False, 0.0, 0.0),
        (segments[:0], scores[:0], None, None, "gaussian", 0.5, 0.0, 0.001, 5, False, 0.0, 0.0),
    ]:
        torch.library.opcheck(torch.ops.rcl_kernels.soft_nms.default, args)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device):
    segments, scores = random_candidates(4, 50)
    labels = torch.randint(0, 3, (4, 50))
    segments, scores, labels = segments.to(device), scores.to(device), labels.to(device)
    for backend in [b for b in backends(device) if b != "reference"] or ["reference"]:

        def post_process(seg, sc, lab):
            out = rcl_kernels.soft_nms(seg, sc, labels=lab, top_k=10, backend=backend)
            return out.segments * out.scores[..., None], out.indices, out.counts

        compiled = torch.compile(post_process, fullgraph=True, backend="aot_eager")
        for a, b in zip(compiled(segments, scores, labels), post_process(segments, scores, labels)):
            assert torch.equal(a, b)


def _call(**overrides):
    segments, scores = random_candidates(2, 5)
    kw = dict(segments=segments, scores=scores)
    kw.update(overrides)
    return rcl_kernels.soft_nms(kw.pop("segments"), kw.pop("scores"), **kw)


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        (dict(segments=torch.rand(2, 5, 3)), ValueError, "segments must have shape"),
        (dict(segments=torch.rand(5)), ValueError, "segments must have shape"),
        (dict(scores=torch.rand(2, 6)), ValueError, "scores must have shape"),
        (dict(scores=torch.rand(5)), ValueError, "scores must have shape"),
        (dict(segments=torch.randint(0, 2, (2, 5, 2))), TypeError, "segments must be float32"),
        (dict(scores=torch.randint(0, 2, (2, 5))), TypeError, "scores must be float32"),
        (dict(labels=torch.zeros(2, 4, dtype=torch.int64)), ValueError, "labels must have shape"),
        (dict(labels=torch.zeros(2, 5)), TypeError, "labels must be an integer"),
        (dict(lengths=torch.zeros(3, dtype=torch.int64)), ValueError, "lengths must have shape"),
        (dict(lengths=torch.zeros(2)), TypeError, "lengths must be an integer"),
        (dict(method="soft"), ValueError, "method must be one of"),
        (dict(sigma=0.0), ValueError, "sigma"),
        (dict(sigma=float("nan")), ValueError, "sigma"),
        (dict(iou_threshold=-0.1), ValueError, "iou_threshold"),
        (dict(min_score=float("-inf")), ValueError, "min_score"),
        (dict(top_k=0), ValueError, "top_k"),
        (dict(top_k=2.0), ValueError, "top_k"),
        (dict(width_gate=(0.1,)), ValueError, "width_gate"),
        (dict(width_gate=(0.1, float("inf"))), ValueError, "width_gate"),
        (dict(backend="triton"), ValueError, "backend must be one of"),
        (dict(backend="cuda"), RuntimeError, "not available for cpu"),
    ],
)
def test_bad_arguments(overrides, error, match):
    with pytest.raises(error, match=match):
        _call(**overrides)


def test_bad_arguments_single_video_and_devices():
    segments, scores = random_candidates(1, 5)
    with pytest.raises(ValueError, match="lengths is only accepted with batched"):
        rcl_kernels.soft_nms(segments[0], scores[0], lengths=torch.tensor([3]))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="scores is on"):
            rcl_kernels.soft_nms(segments, scores.cuda())


@pytest.mark.skipif(not rcl_kernels._extension.has_kernel("soft_nms", "CPU"), reason="CPU kernels not built")
def test_cpp_checks_for_direct_op_callers():
    segments, scores = random_candidates(2, 5)
    op = torch.ops.rcl_kernels.soft_nms.default
    base = (segments, scores, None, None, "gaussian", 0.5, 0.0, 0.001, 5, False, 0.0, 0.0)

    def call(**changes):
        names = ["segments", "scores", "labels", "lengths", "method", "sigma", "iou_threshold", "min_score", "top_k",
                 "width_gate", "gate_t1", "gate_t2"]
        args = dict(zip(names, base))
        args.update(changes)
        return op(*args.values())

    for changes, match in [
        (dict(scores=scores.double()), "scores must have the dtype of segments"),
        (dict(segments=segments.half(), scores=scores.half()), "segments must be float32 or float64"),
        (dict(labels=torch.zeros(2, 5, dtype=torch.int32)), "labels must be int64"),
        (dict(lengths=torch.zeros(3, dtype=torch.int64)), "lengths must have shape"),
        (dict(method="box"), "method must be"),
        (dict(sigma=-1.0), "sigma"),
        (dict(top_k=0), "top_k"),
        (dict(width_gate=True, gate_t1=float("nan")), "width_gate"),
    ]:
        with pytest.raises(RuntimeError, match=match):
            call(**changes)
