"""The Soft-NMS oracle shared by tests/test_soft_nms.py and tests/test_soft_nms_fuzz.py: the rules
of rcl_kernels.soft_nms's docstring, one video at a time, one candidate at a time, written with
numpy float32 scalars (float64 for float64 inputs; independent of the backends' tensor code),
and the exact comparison of a backend's result with it."""

from __future__ import annotations

import math

import numpy as np
import torch

from rcl_kernels.reference import soft_nms as ref

F = np.float32
FLT_MIN = F(np.finfo(np.float32).tiny)


def exp_f32(x: np.float32) -> np.float32:
    """The float32 exp every backend uses (Cody-Waite reduction, Cephes' expf polynomial)."""
    if not x >= F(ref.EXP_MIN_ARG):
        return F(0)
    t = x * F(ref.LOG2E)
    k = (t + F(ref.ROUND_MAGIC)) - F(ref.ROUND_MAGIC)
    r = x - k * F(ref.LN2_HI)
    r = r - k * F(ref.LN2_LO)
    z = r * r
    p = F(ref.EXP_POLY[0])
    for c in ref.EXP_POLY[1:]:
        p = p * r + F(c)
    p = p * z + r
    p = p + F(1)
    return p * F(2.0 ** int(k))


def exp_f64(x: np.float64) -> np.float64:
    """The float64 exp every backend uses (Cody-Waite reduction, Taylor polynomial of degree 13)."""
    D = np.float64
    if not x >= D(ref.EXP_MIN_ARG_F64):
        return D(0)
    k = (x * D(ref.LOG2E_F64) + D(ref.ROUND_MAGIC_F64)) - D(ref.ROUND_MAGIC_F64)
    r = (x - k * D(ref.LN2_HI_F64)) - k * D(ref.LN2_LO_F64)
    p = D(1)
    for n in range(ref.EXP_TAYLOR_DEGREE_F64, 0, -1):
        p = D(1) + (r * p) / D(n)
    return p * D(2.0 ** int(k))


def exp_true(x: np.float32) -> np.float32:
    return F(math.exp(float(x))) if x >= -86 else F(0)


def oracle_video(segments, scores, labels, count, *, method="gaussian", sigma=0.5, iou_threshold=0.0,
                 min_score=0.001, top_k=100, width_gate=None, exp=None, dtype=np.float32):
    """[(input index, score at selection), ...] for one video, computed in `dtype`."""
    F = dtype  # noqa: N806 (the scalar type of every value below)
    FLT_MIN = F(np.finfo(dtype).tiny)  # noqa: N806
    exp = exp or (exp_f64 if dtype == np.float64 else exp_f32)
    neg_inv_sigma, threshold, min_f = F(-1.0 / sigma), F(iou_threshold), F(min_score)
    if abs(min_f) < FLT_MIN:
        min_f = F(0)  # a subnormal min_score counts as 0
    start, end, score = [], [], []
    for j in range(count):
        s, e = F(segments[j][0]), F(segments[j][1])
        if not (math.isfinite(s) and math.isfinite(e)):
            s, e = F(1), F(0)  # tIoU 0 with everything
        x = F(scores[j])
        start.append(s)
        end.append(e)
        score.append(F(0) if abs(x) < FLT_MIN else x)
    removed = [False] * count
    picks = []
    with np.errstate(all="ignore"):
        while len(picks) < top_k:
            best = None
            for j in range(count):
                if not removed[j] and score[j] >= min_f and (best is None or score[j] > score[best]):
                    best = j
            if best is None:
                break
            picks.append((best, score[best]))
            removed[best] = True
            len_b = end[best] - start[best]
            gate = F(width_gate[0]) + F(width_gate[1]) * len_b if width_gate is not None else F(-np.inf)
            for j in range(count):
                if removed[j] or np.isnan(score[j]) or (labels is not None and labels[j] != labels[best]):
                    continue
                inter = min(end[best], end[j]) - max(start[best], start[j])
                if not inter > 0:
                    continue
                iou = inter / (((len_b - inter) + end[j]) - start[j])
                if not iou >= FLT_MIN:  # subnormal or NaN: no overlap
                    continue
                if not (iou > threshold and iou > gate):
                    continue
                if method == "hard":
                    new = F(0)
                elif method == "gaussian":
                    squared = iou * iou
                    new = score[j] * exp((squared if squared >= FLT_MIN else F(0)) * neg_inv_sigma)
                else:
                    new = score[j] * (F(1) - iou)
                score[j] = F(0) if abs(new) < FLT_MIN else new
    return picks


def oracle(segments, scores, labels=None, lengths=None, **kw):
    float64 = torch.float64 in (segments.dtype, scores.dtype)
    kw.setdefault("dtype", np.float64 if float64 else np.float32)
    dtype = torch.float64 if float64 else torch.float32
    segments, scores = segments.cpu().to(dtype).numpy(), scores.cpu().to(dtype).numpy()
    labels = labels.cpu().numpy() if labels is not None else None
    V, P = scores.shape
    return [
        oracle_video(segments[v], scores[v], labels[v] if labels is not None else None,
                     min(max(int(lengths[v]), 0), P) if lengths is not None else P, **kw)
        for v in range(V)
    ]


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, dtypes and shapes; NaN equals NaN (input segments may hold NaN)."""
    return a.dtype == b.dtype and a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def assert_matches(result, expected, segments, labels, top_k, what=""):
    """Exact agreement: shapes (min(top_k, P) columns), indices, counts, scores bit for bit,
    gathered segments and labels, and the empty tail (float64 results for float64 segments)."""
    V, width = len(expected), min(top_k, segments.shape[-2])
    dtype = torch.float64 if torch.float64 in (segments.dtype, result.scores.dtype) else torch.float32
    assert result.indices.shape == (V, width) and result.scores.shape == (V, width)
    assert result.segments.shape == (V, width, 2) and result.counts.shape == (V,)
    assert result.indices.dtype == torch.int64 and result.scores.dtype == dtype
    res = [t.cpu() if t is not None else None for t in result]
    seg_in = segments.cpu().to(dtype)
    for v, picks in enumerate(expected):
        k = len(picks)
        idx = [j for j, _ in picks]
        assert res[4][v].item() == k, f"{what} video {v}: count {res[4][v].item()} != {k}"
        assert res[3][v, :k].tolist() == idx, f"{what} video {v}: indices differ"
        want = torch.from_numpy(np.array([s for _, s in picks], dtype=np.float64 if dtype == torch.float64 else
                                         np.float32))
        assert torch.equal(res[1][v, :k], want), f"{what} video {v}: scores differ"
        assert same(res[0][v, :k], seg_in[v, idx]), f"{what} video {v}: segments differ"
        assert (res[3][v, k:] == -1).all() and (res[1][v, k:] == 0).all() and (res[0][v, k:] == 0).all()
        if labels is None:
            assert res[2] is None
        else:
            assert res[2][v, :k].tolist() == labels[v].cpu()[idx].tolist()
            assert (res[2][v, k:] == -1).all()
