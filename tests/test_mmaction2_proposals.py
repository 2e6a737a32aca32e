"""rcl_kernels.integrations.mmaction2_proposals.bmn_proposals: mmaction2 BMN's test-time
post-processing for a batch.

Always: against a plain-loop transcription, written here, of the rules mmaction2 1.2.0 applies
in BMN.predict and in proposal_utils.post_processing / soft_nms (one video, one cell, one
candidate at a time, Python floats), with its sorts made stable (the documented tie rule).
Where mmaction2 is installed: against mmaction2's own BMN.predict, called on the same maps
(tests/mmaction2_support.stock_predict). mmaction2 1.2.0's wheel lacks
mmaction/models/localizers/drn/ (upstream issue #2714), so `import mmaction.models` fails there;
tests/mmaction2_support.py supplies the smallest stand-in for that one subpackage.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mmaction2_support  # noqa: E402

from rcl_kernels.integrations.mmaction2_proposals import bmn_proposals  # noqa: E402

# configs/_base_/models/bmn_400x100.py (ActivityNet), and BMN's default feature_extraction_interval
PUBLISHED = dict(soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
                 post_process_top_k=100, feature_extraction_interval=16)


def transcribed_post_processing(confidence, start, end, meta, *, soft_nms_alpha, soft_nms_low_threshold,
                                soft_nms_high_threshold, post_process_top_k, feature_extraction_interval):
    """One video: confidence (2, T, T), start, end (T,) numpy arrays of the model's dtype."""
    T = len(start)
    starts_ok, ends_ok = [False] * T, [False] * T
    starts_ok[0] = ends_ok[T - 1] = True
    half_start, half_end = start.max() * 0.5, end.max() * 0.5
    for t in range(1, T - 1):
        starts_ok[t] = bool((start[t] > start[t - 1] and start[t] > start[t + 1]) or start[t] > half_start)
        ends_ok[t] = bool((end[t] > end[t - 1] and end[t] > end[t + 1]) or end[t] > half_end)
    candidates = []  # [tmin, tmax, score] in the order of the cells: duration outer, start inner
    for d in range(T):
        for j in range(T):
            e = j + d + 1
            if e < T and starts_ok[j] and ends_ok[e]:
                product = start[j] * end[e] * confidence[1, d, j] * confidence[0, d, j]  # model dtype
                candidates.append([j / T, e / T, float(product)])
    alpha, low, high, top_k = soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold, post_process_top_k
    if len(candidates) > 1:
        order = np.argsort([c[2] for c in candidates], kind="stable")[::-1]
        pool = [list(candidates[i]) for i in order]
        picked = []
        while pool and len(picked) <= top_k:  # top_k + 1 selections, as mmaction2's loop makes
            best = max(range(len(pool)), key=lambda i: pool[i][2])  # the first of equal maxima
            b_start, b_end, _ = pool[best]
            width = b_end - b_start
            gate = low + (high - low) * width
            for i, cand in enumerate(pool):
                if i == best:
                    continue
                inter = max(min(b_end, cand[1]) - max(b_start, cand[0]), 0.0)
                iou = inter / (width - inter + cand[1] - cand[0])
                if iou > gate:
                    cand[2] = cand[2] * math.exp(-(iou * iou) / alpha)
            picked.append(pool.pop(best))
        candidates = picked
    order = np.argsort([c[2] for c in candidates], kind="stable")[::-1]
    frames = meta["duration_frame"]
    seconds = float(frames // feature_extraction_interval * feature_extraction_interval) / frames * \
        meta["duration_second"]
    proposals = []
    for i in order[:top_k]:
        tmin, tmax, score = candidates[i]
        proposals.append(dict(score=score, segment=[max(0, tmin) * seconds, min(1, tmax) * seconds]))
    return dict(video_name=meta["video_name"], proposal_list=proposals)


def metas(B, rng):
    return [dict(video_name=f"v_{b:04d}", duration_frame=int(rng.integers(17, 5000)),
                 duration_second=float(rng.uniform(1, 200)), feature_frame=0) for b in range(B)]


def random_maps(B, T, dtype, kind):
    if kind == "continuous":
        maps = torch.rand(B, 2, T, T, dtype=torch.float64), torch.rand(B, T, dtype=torch.float64), \
            torch.rand(B, T, dtype=torch.float64)
    elif kind == "ties":  # a few levels: many equal scores, equal boundary scores, plateaus
        maps = tuple(torch.randint(1, 5, shape).double() / 4 for shape in ((B, 2, T, T), (B, T), (B, T)))
    elif kind == "constant":
        maps = torch.full((B, 2, T, T), 0.5, dtype=torch.float64), torch.full((B, T), 0.75, dtype=torch.float64), \
            torch.full((B, T), 0.75, dtype=torch.float64)
    else:  # "zero": only the whole-video cell survives the bin rule
        maps = torch.zeros(B, 2, T, T, dtype=torch.float64), torch.rand(B, T, dtype=torch.float64).mul(0), \
            torch.zeros(B, T, dtype=torch.float64)
    return tuple(m.to(dtype) for m in maps)


def expected(confidence_map, start, end, video_metas, **params):
    return [transcribed_post_processing(c.numpy(), s.numpy(), e.numpy(), m, **params)
            for c, s, e, m in zip(confidence_map, start, end, video_metas)]


def assert_same(got, want, *, atol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["video_name"] == w["video_name"]
        gp, wp = g["proposal_list"], w["proposal_list"]
        assert len(gp) == len(wp), g["video_name"]
        assert [p["segment"] for p in gp] == [p["segment"] for p in wp], g["video_name"]
        np.testing.assert_allclose([p["score"] for p in gp], [p["score"] for p in wp], rtol=0, atol=atol)
        assert all(list(p) == ["score", "segment"] and type(p["score"]) is float for p in gp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["continuous", "ties", "constant", "zero"])
@pytest.mark.parametrize("B,T,top_k", [(3, 2, 100), (4, 3, 100), (2, 7, 3), (3, 16, 5), (2, 33, 100), (1, 50, 20)])
def test_matches_transcription(dtype, kind, B, T, top_k):
    rng = np.random.default_rng(T * 7 + B)
    maps = random_maps(B, T, dtype, kind)
    video_metas = metas(B, rng)
    params = dict(PUBLISHED, post_process_top_k=top_k)
    assert_same(bmn_proposals(*maps, video_metas, **params), expected(*maps, video_metas, **params))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_published_config_t100(dtype):
    """T = 100 and the published Soft-NMS parameters: many candidate pairs have a tIoU equal to the
    width gate exactly (e.g. 15 / 25 = 0.5 + 0.4 * 0.25), which mmaction2 decides by its float64
    rounding; they must be decided as there."""
    rng = np.random.default_rng(100)
    maps = random_maps(2, 100, dtype, "continuous")
    video_metas = metas(2, rng)
    assert_same(bmn_proposals(*maps, video_metas, **PUBLISHED), expected(*maps, video_metas, **PUBLISHED))


def test_parameters_and_scaling():
    rng = np.random.default_rng(5)
    maps = random_maps(3, 20, torch.float32, "continuous")
    video_metas = [dict(video_name="v_a", duration_frame=1000, duration_second=33.3),
                   dict(video_name="v_b", duration_frame=15, duration_second=0.5),  # fewer frames than the interval
                   dict(video_name="v_c", duration_frame=999.0, duration_second=40)]
    for params in [dict(soft_nms_alpha=0.75, soft_nms_low_threshold=0.1, soft_nms_high_threshold=0.3,
                        post_process_top_k=7, feature_extraction_interval=5),
                   dict(soft_nms_alpha=0.4, soft_nms_low_threshold=0.0, soft_nms_high_threshold=0.0,
                        post_process_top_k=50, feature_extraction_interval=1)]:
        assert_same(bmn_proposals(*maps, video_metas, **params), expected(*maps, video_metas, **params))
    assert all(p["segment"] == [0.0, 0.0] for p in bmn_proposals(*maps, video_metas, **PUBLISHED)[1]["proposal_list"])
    del rng


def test_strided_inputs_and_half_types():
    maps = random_maps(2, 12, torch.float32, "continuous")
    video_metas = metas(2, np.random.default_rng(0))
    want = bmn_proposals(*maps, video_metas, **PUBLISHED)
    confidence, start, end = maps
    strided = (confidence.transpose(2, 3).contiguous().transpose(2, 3), torch.stack([start, start], -1)[..., 0],
               end.t().contiguous().t())
    assert not strided[1].is_contiguous() and not strided[2].is_contiguous()
    assert bmn_proposals(*strided, video_metas, **PUBLISHED) == want
    half = tuple(m.to(torch.bfloat16) for m in maps)
    assert_same(bmn_proposals(*half, video_metas, **PUBLISHED),
                expected(*(m.float() for m in half), video_metas, **PUBLISHED))


@pytest.mark.parametrize(
    "change,error,match",
    [
        (dict(confidence_map=torch.rand(2, 3, 5, 5)), ValueError, "confidence_map must have shape"),
        (dict(confidence_map=torch.rand(2, 2, 4, 5)), ValueError, "D = T"),
        (dict(start=torch.rand(2, 4)), ValueError, "start must have shape"),
        (dict(end=torch.rand(5)), ValueError, "end must have shape"),
        (dict(start=torch.ones(2, 5, dtype=torch.int64)), TypeError, "start must be a floating-point"),
        (dict(video_metas=[dict(video_name="a", duration_frame=10, duration_second=1.0)]), ValueError,
         "sequence of B = 2"),
        (dict(video_metas=[dict(video_name="a", duration_frame=10), dict()]), ValueError, "video_metas\\[0\\] lacks"),
        (dict(video_metas=[dict(video_name="a", duration_frame=0, duration_second=1.0)] * 2), ValueError,
         "duration_frame"),
        (dict(post_process_top_k=0), ValueError, "post_process_top_k"),
        (dict(feature_extraction_interval=0), ValueError, "feature_extraction_interval"),
    ],
)
def test_bad_arguments(change, error, match):
    args = dict(confidence_map=torch.rand(2, 2, 5, 5), start=torch.rand(2, 5), end=torch.rand(2, 5),
                video_metas=[dict(video_name=f"v{b}", duration_frame=10, duration_second=1.0) for b in range(2)])
    params = dict(PUBLISHED)
    for key, value in change.items():
        (params if key in params else args)[key] = value
    with pytest.raises(error, match=match):
        bmn_proposals(**args, **params)


def test_one_position_is_an_error():
    with pytest.raises(ValueError, match="T = 2"):
        bmn_proposals(torch.rand(1, 2, 1, 1), torch.rand(1, 1), torch.rand(1, 1),
                      [dict(video_name="v", duration_frame=10, duration_second=1.0)], **PUBLISHED)


def test_empty_batch():
    assert bmn_proposals(torch.rand(0, 2, 6, 6), torch.rand(0, 6), torch.rand(0, 6), [], **PUBLISHED) == []


# ---------------------------------------------------------------------------------------------
# Against mmaction2 itself


def stock_bmn_or_skip():
    why = mmaction2_support.mmaction2_missing()
    if why:
        mmaction2_support.skip_or_fail(why)
    return mmaction2_support.import_mmaction_models().localizers.bmn.BMN


def count_tie_differences(got, want):
    """(proposals that differ, of which explained by equal scores)."""
    differ = tied = 0
    for g, w in zip(got["proposal_list"], want["proposal_list"]):
        if g["segment"] != w["segment"]:
            differ += 1
            tied += abs(g["score"] - w["score"]) <= 1e-12
    return differ, tied


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_mmaction2(dtype):
    BMN = stock_bmn_or_skip()
    rng = np.random.default_rng(7)
    cases = [(3, 100, "continuous"), (4, 20, "continuous"), (4, 9, "ties"), (2, 8, "constant"), (2, 5, "zero")]
    differ = tied = 0
    for B, T, kind in cases:
        maps = random_maps(B, T, dtype, kind)
        video_metas = metas(B, rng)
        got = bmn_proposals(*maps, video_metas, **PUBLISHED)
        for b in range(B):
            want = mmaction2_support.stock_predict(BMN, maps[0][b], maps[1][b], maps[2][b], video_metas[b], PUBLISHED)
            assert got[b]["video_name"] == want["video_name"]
            assert len(got[b]["proposal_list"]) == len(want["proposal_list"])
            np.testing.assert_allclose([p["score"] for p in got[b]["proposal_list"]],
                                       [p["score"] for p in want["proposal_list"]], rtol=0, atol=1e-6)
            d, t = count_tie_differences(got[b], want)
            if kind == "continuous":
                assert d == 0, f"{kind} T={T} video {b}: {d} proposals differ"
            assert d == t, f"{kind} T={T} video {b}: {d - t} proposals differ beyond ties"
            differ += d
            tied += t
    print(f"proposals placed differently among equal scores: {tied}")
