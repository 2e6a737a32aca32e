"""BMN (rcl_kernels.models.BMN): the BM layer against BMN's sample mask, map shapes, the losses
against a hand computation, post-processing, and a tiny training run that learns. CPU, seconds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rcl_kernels.models import BMN, ConfigError, ModelConfig, build_configs, build_model
from rcl_kernels.models.bmn import (CLASSIFICATION, REGRESSION, boundary_candidates, boundary_matching, cell_tiou,
                                    map_cells, rescale_input, upsample_maps, upsample_probabilities)
from rcl_kernels.models.boundary import boundary_targets
from test_model import tiny_batch
from test_segment_interp import bmn_sample_mask

TINY_BMN = dict(variant="bmn", feature_dim=8, num_classes=3, hidden=16, max_duration=10, num_samples=4,
                samples_per_point=3, context=0.5, pem_channels=24, pem_hidden=16)


def tiny_bmn(**changes) -> BMN:
    return BMN(ModelConfig(**{**TINY_BMN, **changes}))


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_boundary_matching_is_bmns_sample_mask(backend):
    T, N, S, D, C = 11, 5, 3, 7, 4
    features = torch.randn(2, C, T, dtype=torch.float64)
    mask = torch.from_numpy(bmn_sample_mask(T, N, S, 0.5))  # (T, N, duration index, start)
    expected = torch.matmul(features, mask.reshape(T, -1)).reshape(2, C, N, T, T)[:, :, :, :D]
    ours = boundary_matching(features, N, D, samples_per_point=S, context=0.5, backend=backend)
    assert ours.shape == (2, C, N, D, T)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
    cells = map_cells(T, D)
    assert torch.equal(cells[3, 5], torch.tensor([5.0, 9.0]))  # cell (d, s) is [s, s + d + 1]
    assert ours[:, :, :, cells[..., 1] > T].abs().sum() == 0  # cells ending past T are zero


def test_forward_and_detect_shapes_and_gradients():
    model = tiny_bmn()
    features, mask, instances, labels = tiny_batch()
    terms = model(features, mask, instances, labels)
    assert set(terms) == {"boundary", "regression", "classification", "loss"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    encoded, _, _ = model.encode(features, mask)
    assert model.confidence_maps(encoded).shape == (2, 2, 10, 24)
    out = model.detect(features, mask)
    assert out.segments.shape == (2, 240, 2) and out.scores.shape == (2, 240)
    assert (out.labels == 0).all() and out.valid.any(dim=1).all()
    assert torch.all(out.segments[1][out.valid[1]] <= 19)  # inside the real steps of the padded item
    assert torch.all((out.scores >= 0) & (out.scores <= 1))
    with pytest.raises(ValueError, match=r"BMN: features must have shape \(B, feature_dim=8, T\)"):
        model(torch.randn(1, 5, 24), torch.ones(1, 24, dtype=torch.bool), instances[:1], labels[:1])


def _bce(p, y):
    return -(math.log(p) if y else math.log(1 - p))


def test_losses_match_a_hand_computation():
    """BMN's L = L_TEM + 10 L_reg + L_cls, recomputed cell by cell in float64 Python."""
    torch.manual_seed(0)
    model = tiny_bmn(max_duration=6)
    T = 12
    features = torch.randn(1, 8, T)
    mask = torch.ones(1, T, dtype=torch.bool)
    instances = torch.tensor([[[2.0, 5.0], [7.0, 8.5]]])
    labels = torch.tensor([[0, 1]])
    maps = torch.randn(1, 2, 6, T)
    boundary_logits = torch.randn(1, 2, T)
    model.confidence_maps = lambda encoded: maps
    model.boundary.forward = lambda encoded: boundary_logits
    terms = model(features, mask, instances, labels)

    def tiou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)

    bands = {"high": [], "mid": [], "low": []}
    pos, neg = [], []
    for d in range(6):
        for s in range(T):
            if s + d + 1 > T:
                continue
            t = max(tiou((s, s + d + 1), tuple(g)) for g in instances[0].tolist())
            p_reg = 1 / (1 + math.exp(-maps[0, REGRESSION, d, s].item()))
            if t > 0.7:
                bands["high"].append((p_reg - t) ** 2)
            elif t > 0.3:
                bands["mid"].append((p_reg - t) ** 2)
            elif t > 0:
                bands["low"].append((p_reg - t) ** 2)
            p_cls = 1 / (1 + math.exp(-maps[0, CLASSIFICATION, d, s].item()))
            (pos if t > 0.9 else neg).append(_bce(p_cls, t > 0.9))
    regression = np.mean([np.mean(v) for v in bands.values() if v])
    classification = 0.5 * np.mean(pos) + 0.5 * np.mean(neg)
    targets = boundary_targets(instances, labels >= 0, T, 3.0)[0]
    tem = 0.0
    for k in range(2):
        p = torch.sigmoid(boundary_logits[0, k]).tolist()
        y = (targets[k] > 0.5).tolist()
        tem += 0.5 * np.mean([_bce(a, 1) for a, b in zip(p, y) if b]) + \
            0.5 * np.mean([_bce(a, 0) for a, b in zip(p, y) if not b])
    assert terms["regression"].item() == pytest.approx(regression, rel=1e-5)
    assert terms["classification"].item() == pytest.approx(classification, rel=1e-5)
    assert terms["boundary"].item() == pytest.approx(tem, rel=1e-5)
    assert terms["loss"].item() == pytest.approx(tem + 10 * regression + classification, rel=1e-5)


def test_cell_tiou_ignores_padding_instances():
    cells = map_cells(6, 3)
    tiou = cell_tiou(cells, torch.tensor([[[1.0, 3.0], [0.0, 6.0]]]), torch.tensor([[True, False]]))
    assert tiou[0, 1, 1] == 1.0 and tiou[0, 0, 1] == 0.5 and tiou[0, 0, 4] == 0.0


def test_boundary_candidates_are_peaks_high_values_and_the_item_edges():
    p = torch.tensor([[0.1, 0.3, 0.2, 0.05, 0.9, 0.8, 0.1, 0.0]])
    mask = torch.tensor([[True] * 7 + [False]])
    start = boundary_candidates(p, mask, keep_first=True)
    # peaks at 1 and 4; above half the max (0.45): 4 and 5; the first step; never the padding
    assert start[0].tolist() == [True, True, False, False, True, True, False, False]
    end = boundary_candidates(p, mask, keep_first=False)
    assert end[0].tolist() == [False, True, False, False, True, True, True, False]  # last real step: 6


def test_detect_scores_are_bmns_product_on_candidate_boundaries():
    model = tiny_bmn(max_duration=4)
    T = 8
    maps = torch.randn(1, 2, 4, T)
    logits = torch.randn(1, 2, T)
    model.confidence_maps = lambda encoded: maps
    model.boundary.forward = lambda encoded: logits
    mask = torch.ones(1, T, dtype=torch.bool)
    out = model.detect(torch.randn(1, 8, T), mask)
    p = torch.sigmoid(logits[0])
    start_ok = boundary_candidates(p[0:1], mask, True)[0]
    end_ok = boundary_candidates(p[1:2], mask, False)[0]
    m = torch.sigmoid(maps[0])
    k = 0
    for d in range(4):
        for s in range(T):
            e = s + d + 1
            expect_valid = e <= T and bool(start_ok[s]) and bool(end_ok[min(e, T - 1)])
            assert bool(out.valid[0, k]) == expect_valid, (d, s)
            assert out.segments[0, k].tolist() == [s, e]
            if expect_valid:
                expected = p[0, s] * p[1, min(e, T - 1)] * m[CLASSIFICATION, d, s] * m[REGRESSION, d, s]
                assert out.scores[0, k].item() == pytest.approx(expected.item(), rel=1e-6)
            k += 1


def test_fast_and_reference_backends_agree():
    torch.manual_seed(3)
    fast = tiny_bmn(backend="fast")
    reference = tiny_bmn(backend="reference")
    reference.load_state_dict(fast.state_dict())
    batch = tiny_batch(seed=1)
    a, b = fast(*batch), reference(*batch)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key
    da, db = fast.detect(*batch[:2]), reference.detect(*batch[:2])
    assert torch.allclose(da.scores, db.scores, rtol=1e-4, atol=1e-7) and torch.equal(da.valid, db.valid)


def test_tiny_training_run_learns_the_instances():
    torch.manual_seed(0)
    model = tiny_bmn()
    features, mask, instances, labels = tiny_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        terms = model(features, mask, instances, labels)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    out = model.detect(features, mask)
    best = out.segments[0][torch.where(out.valid[0], out.scores[0], torch.zeros_like(out.scores[0])).argmax()]
    assert max(_tiou(best.tolist(), g) for g in instances[0].tolist()) > 0.7


def _tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def test_config_preset_and_class_agnostic_requirement():
    model, run = build_configs(flag_values={"variant": "bmn", "class_agnostic": True})
    assert model.samples_per_point == 3 and model.context == 0.5 and isinstance(build_model(model), BMN)
    with pytest.raises(ConfigError, match=r"class_agnostic must be True with variant 'bmn'"):
        build_configs(flag_values={"variant": "bmn"})


def test_train_and_evaluate_bmn_end_to_end(tmp_path):
    from rcl_kernels.models.data_setup import load_split
    from rcl_kernels.models.inference import evaluate
    from rcl_kernels.models.training import train

    flags = dict(dataset="activitynet-synthetic", temporal_scale=24, max_train_videos=8, max_test_videos=4,
                 batch_size=4, max_steps=3, warmup_steps=1, output_dir=str(tmp_path), progress=False, device="cpu",
                 class_agnostic=True, **{k: v for k, v in TINY_BMN.items() if k != "num_classes"})
    model_cfg, run_cfg = build_configs(flag_values=flags)
    result = train(model_cfg, run_cfg)
    assert isinstance(result.model, BMN) and len(result.losses) == 3
    test = load_split(run_cfg, "test", feature_dim=8)
    metrics = evaluate(result.model, run_cfg, test, torch.device("cpu")).metrics
    assert metrics["protocol"] == "activitynet" and 0 <= metrics["average_map"] <= 1


# -- Table 4's naive resolution baselines: rescaled input, upsampled maps -------------------------

def test_rescale_input_interpolates_linearly_and_repeats_the_mask():
    features = torch.randn(2, 3, 7, dtype=torch.float64)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    same, same_mask = rescale_input(features, mask, 1)
    assert same is features and same_mask is mask
    fine, fine_mask = rescale_input(features, mask, 2)
    assert fine.shape == (2, 3, 14) and torch.equal(fine_mask, mask.repeat_interleave(2, dim=1))
    # step t covers [t, t + 1]: fine step j is centred at (j + 0.5) / 2, between coarse centres
    x = features[0]
    torch.testing.assert_close(fine[0, :, 3], 0.75 * x[:, 1] + 0.25 * x[:, 2])
    torch.testing.assert_close(fine[0, :, 4], 0.75 * x[:, 2] + 0.25 * x[:, 1])
    torch.testing.assert_close(fine[0, :, 0], x[:, 0])  # the ends repeat the edge step


@pytest.mark.parametrize("k", [1, 2, 3])
def test_upsampled_maps_and_probabilities_keep_the_coarse_values_on_coarse_cells(k):
    D, T = 5, 9
    maps = torch.rand(2, 2, D, T, dtype=torch.float64)
    fine = upsample_maps(maps, k)
    assert fine.shape == (2, 2, k * D, k * T)
    # fine cell (l - 1, s) with l = k (d + 1), s = k t is the coarse cell (d, t)
    torch.testing.assert_close(fine[:, :, k - 1::k, ::k], maps)
    if k > 1:  # half-way between two coarse starts: their mean
        torch.testing.assert_close(fine[:, :, k - 1::k, 1::k][..., : T - 1][..., : 1],
                                   ((k - 1) * maps[..., :1] + maps[..., 1:2]) / k)
    p = torch.rand(2, 2, T, dtype=torch.float64)
    fp = upsample_probabilities(p, k)
    assert fp.shape == (2, 2, k * T)
    torch.testing.assert_close(fp[..., ::k], p)


def test_upsampled_detection_scores_the_coarse_cells_as_bmn_does():
    features, mask, _, _ = tiny_batch()
    base = tiny_bmn()
    coarse = base.detect(features, mask)
    for k in (2, 3):
        model = tiny_bmn(map_upsample=k)
        model.load_state_dict(base.state_dict())
        fine = model.detect(features, mask)
        assert fine.segments.shape == (2, k * k * coarse.segments.shape[1], 2)
        assert torch.all(fine.segments[fine.valid] <= 24) and torch.all(fine.segments[1][fine.valid[1]] <= 19)
        D, T = 10, 24
        index = torch.arange(k * k * D * T).view(k * D, k * T)[k - 1::k, ::k].reshape(-1)
        torch.testing.assert_close(fine.segments[:, index], coarse.segments)
        torch.testing.assert_close(fine.scores[:, index], coarse.scores, rtol=1e-5, atol=1e-6)
        # sub-step segments: starts at multiples of 1 / k
        starts = fine.segments[..., 0][fine.valid] * k
        assert torch.allclose(starts, starts.round(), atol=1e-4) and (starts % k != 0).any()


def test_rescaled_bmn_trains_and_detects_in_input_steps():
    features, mask, instances, labels = tiny_batch()
    model = tiny_bmn(input_scale=2, max_duration=20)
    terms = model(features, mask, instances, labels)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    encoded, _, step_mask = model.encode(features, mask)
    assert encoded.shape[-1] == 48 and int(step_mask[1].sum()) == 38
    out = model.detect(features, mask)
    assert out.segments.shape == (2, 20 * 48, 2)
    half = out.segments[out.valid] * 2  # encoder cells of half an input step
    assert torch.allclose(half, half.round()) and torch.all(out.segments[1][out.valid[1]] <= 19)


def test_map_upsample_is_bmn_only():
    with pytest.raises(ConfigError, match="map_upsample"):
        build_configs(flag_values={"variant": "rcl", "map_upsample": 2})
