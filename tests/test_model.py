"""The RCL detector (rcl_kernels.models): configs, samples, targets, losses, the model, training,
checkpoints, detection output and the command line. Tiny shapes throughout (CPU, < 3 minutes)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import pytest
import torch

from rcl_kernels.models import RCL, ConfigError, ModelConfig, build_configs
from rcl_kernels.models import rcl as rcl_module
from rcl_kernels.models.boundary import boundary_targets
from rcl_kernels.models.config import read_config_file
from rcl_kernels.models.flags import add_config_arguments, configs_from_args
from rcl_kernels.models.length_bins import map_by_length, recall_by_length
from rcl_kernels.models.losses import anchor_losses, balanced_bce, banded_mse
from rcl_kernels.models.postprocess import DetectionCollector, write_results_json
from rcl_kernels.models.profiles import PROFILES, profile_values
from rcl_kernels.models.rcl import Candidates
from rcl_kernels.models.sampling import (grid_segments, num_grid_segments, random_around_grid,
                                         scale_invariant_samples, training_samples)
from rcl_kernels.models.targets import anchor_targets, apply_offsets, pairwise_tiou
from rcl_kernels.models.training import train

TINY_MODEL = dict(feature_dim=8, num_classes=3, hidden=16, max_duration=12, num_samples=6, samples_per_point=1,
                  scorer_hidden=24, sis_per_instance=4, refine_steps=2, refine_state=16, refine_train_segments=16,
                  candidates=20)


def tiny_model(**changes) -> RCL:
    return RCL(ModelConfig(**{**TINY_MODEL, **changes}))


def tiny_batch(B=2, C=8, T=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, C, T, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, T - 5:] = False  # a padded item
    instances = torch.tensor([[[2.0, 7.5], [12.25, 15.0]], [[4.0, 5.5], [0.0, 0.0]]])
    labels = torch.tensor([[0, 2], [1, -1]])
    # Make the instances visible in the features so the tiny overfit case has something to learn.
    for b in range(B):
        for (s, e), c in zip(instances[b], labels[b]):
            if c >= 0:
                features[b, c, int(s):int(math.ceil(e)) + 1] += 3.0
    return features, mask, instances, labels


# -- configuration -------------------------------------------------------------------------------

def test_config_defaults_validate_and_grid_preset():
    model, run = build_configs()
    assert model.variant == "rcl" and model.refine_steps > 0 and set(model.sampling) == {"grid", "random", "sis"}
    grid, _ = build_configs(flag_values={"variant": "grid"})
    assert grid.sampling == ("grid",) and grid.refine_steps == 0 and not grid.use_offsets
    assert grid.inference_resolution == 1.0
    # explicit values override the preset (ablations of the baseline)
    grid_refined, _ = build_configs(flag_values={"variant": "grid", "refine_steps": 1})
    assert grid_refined.refine_steps == 1
    assert run.effective_protocol == "thumos14" and run.effective_top_k == 200 and run.effective_window == 128
    _, anet = build_configs(flag_values={"dataset": "activitynet-synthetic"})
    assert anet.effective_protocol == "activitynet" and anet.effective_top_k == 100 and anet.effective_window == 0
    assert run.effective_test_split == "test" and anet.effective_test_split == "validation"
    # the THUMOS14 kit matches instances to their best-overlapping detection: strong suppression there
    assert run.effective_nms == (0.1, 0.01) and anet.effective_nms == (0.5, 0.001)
    _, explicit = build_configs(flag_values={"nms_sigma": 0.3, "nms_min_score": 0.0})
    assert explicit.effective_nms == (0.3, 0.0)


@pytest.mark.parametrize("flag, value, match", [
    ("encoder_stride", 3, r"--encoder-stride: encoder_stride must be 1 or 2, got 3"),
    ("sampling", ("grid", "dense"), r"--sampling: sampling must be a non-empty tuple"),
    ("inference_resolution", 0.3, r"--inference-resolution: .*1 / n"),
    ("backend", "cuda", r"--backend: backend must be one of \('fast', 'reference'\)"),
    ("lr", -1.0, r"--lr: lr must be a finite number > 0"),
    ("max_steps", 1.5, r"--max-steps: max_steps must be an int >= 0"),
    ("amp", "maybe", r"--amp: amp must be True or False"),
    ("dataset", "kinetics", r"--dataset: dataset must be one of"),
])
def test_bad_flag_values_name_the_flag(flag, value, match):
    with pytest.raises(ConfigError, match=match):
        build_configs(flag_values={flag: value})


def test_each_config_key_is_declared_once_with_its_rule_and_help():
    import dataclasses

    from rcl_kernels.models.config import RunConfig

    model_keys = [f.name for f in dataclasses.fields(ModelConfig)]
    run_keys = [f.name for f in dataclasses.fields(RunConfig)]
    assert not set(model_keys) & set(run_keys)  # one feature_dim: the model's
    for f in dataclasses.fields(ModelConfig) + dataclasses.fields(RunConfig):
        assert f.metadata["help"] and f.metadata["rule"].expected, f.name
    # an older config file / checkpoint run config naming feature_dim still sets it
    model, _ = build_configs({"feature_dim": (12, "old.cfg line 1")})
    assert model.feature_dim == 12
    with pytest.raises(ConfigError, match=r"old.cfg line 1: feature_dim must be an int >= 1, got 0"):
        build_configs({"feature_dim": (0, "old.cfg line 1")})


def test_train_loop_module_still_imports_with_a_deprecation_warning():
    import importlib
    import sys

    sys.modules.pop("rcl_kernels.models.train_loop", None)
    with pytest.warns(DeprecationWarning, match="train_loop is deprecated"):
        module = importlib.import_module("rcl_kernels.models.train_loop")
    from rcl_kernels.models.training import train

    assert module.train is train


def test_real_feature_datasets_need_paths():
    with pytest.raises(ConfigError, match=r"annotations must be a path \(dataset 'actionformer' reads real features\)"):
        build_configs(flag_values={"dataset": "actionformer"})
    with pytest.raises(ConfigError, match=r"--resume: resume must be an existing checkpoint file or 'auto'"):
        build_configs(flag_values={"resume": "/nonexistent/last.pt"})


def test_config_file_values_lines_and_errors(tmp_path):
    path = tmp_path / "run.cfg"
    path.write_text("# a comment\nvariant = grid   # bare word\nmax_steps = 7\nsampling = ('grid', 'sis')\n"
                    "output_dir = 'runs/#1'\n")
    values = read_config_file(str(path))
    assert values["variant"][0] == "grid" and values["max_steps"] == (7, f"{path} line 3")
    model, run = build_configs(values, {"max_steps": 9})  # flags override the file
    assert model.sampling == ("grid", "sis") and run.max_steps == 9 and run.output_dir == "runs/#1"
    path.write_text("max_steps = 7\nrefine_step = 2\n")
    with pytest.raises(ConfigError, match=rf"{path} line 2: unknown key 'refine_step'"):
        build_configs(read_config_file(str(path)))
    path.write_text("batch_size = many\n")
    with pytest.raises(ConfigError, match=rf"{path} line 1: batch_size must be an int >= 1, got 'many'"):
        build_configs(read_config_file(str(path)))
    path.write_text("batch_size\n")
    with pytest.raises(ConfigError, match=r"line 1: expected 'key = value'"):
        read_config_file(str(path))
    with pytest.raises(ConfigError, match=r"--config: config file not found"):
        read_config_file(str(tmp_path / "missing.cfg"))


# -- samples ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("T, D", [(1, 1), (7, 7), (10, 4), (5, 9)])
def test_grid_segments_are_the_start_le_end_cells(T, D):
    grid = grid_segments(T, D)
    assert grid.shape == (num_grid_segments(T, D), 2)
    if D >= T:
        assert grid.shape[0] == T * (T + 1) // 2
    length = grid[:, 1] - grid[:, 0]
    assert torch.all(grid[:, 0] >= 0) and torch.all(grid[:, 1] <= T)
    assert torch.all(length >= 1) and torch.all(length <= min(D, T))
    assert torch.equal(grid, grid.round())
    assert len({tuple(x) for x in grid.tolist()}) == grid.shape[0]


def test_finer_grid_has_sub_step_coordinates():
    fine = grid_segments(6, 3, resolution=0.5)
    coarse = grid_segments(6, 3)
    assert fine.shape[0] == num_grid_segments(12, 6)
    assert torch.equal(fine * 2, (fine * 2).round())
    assert torch.any(fine != fine.round())
    assert {tuple(x) for x in coarse.tolist()} <= {tuple(x) for x in fine.tolist()}
    with pytest.raises(ValueError, match="resolution must be 1 / n"):
        grid_segments(6, 3, resolution=0.3)


def test_random_samples_stay_around_their_grid_cells():
    grid = grid_segments(20, 8)
    g = torch.Generator().manual_seed(1)
    samples = random_around_grid(grid, 3, 0.5, g)
    assert samples.shape == (3,) + grid.shape
    assert torch.all(samples[..., 1] > samples[..., 0])
    assert torch.all((samples - grid).abs() <= 0.5 + 1e-6)
    assert not torch.equal(samples[0], samples[1])  # independent per video
    assert torch.any(samples != samples.round())


def test_scale_invariant_samples_spread_in_proportion_to_length():
    instances = torch.tensor([[[10.0, 12.0], [100.0, 140.0]]], dtype=torch.float64)
    valid = torch.tensor([[True, False]])
    g = torch.Generator().manual_seed(0)
    samples, mask = scale_invariant_samples(instances, valid, 4000, 0.25, g)
    assert samples.shape == (1, 8000, 2) and mask.tolist() == [[True] * 4000 + [False] * 4000]
    for i, length in enumerate((2.0, 40.0)):
        block = samples[0, i * 4000:(i + 1) * 4000]
        relative = (block - instances[0, i]) / length  # the same distribution for every length
        assert abs(relative.std().item() - 0.25) < 0.02
        assert abs(relative.mean().item()) < 0.02


def test_training_samples_follow_the_chosen_sources():
    instances = torch.tensor([[[2.0, 6.0], [0.0, 0.0]]])
    valid = torch.tensor([[True, False]])
    kw = dict(jitter=0.5, per_instance=5, spread=0.2)
    n_grid = num_grid_segments(16, 8)
    only_grid, m = training_samples(("grid",), 16, 8, instances, valid, **kw)
    assert only_grid.shape == (1, n_grid, 2) and m.all()
    everything, m = training_samples(("grid", "random", "sis"), 16, 8, instances, valid, **kw)
    assert everything.shape == (1, 2 * n_grid + 10, 2) and m.sum() == 2 * n_grid + 5


# -- targets and losses ----------------------------------------------------------------------------

def test_targets_on_hand_computed_cases():
    segments = torch.tensor([[[0.0, 4.0], [2.0, 6.0], [10.0, 12.0], [20.0, 21.0]]])
    instances = torch.tensor([[[2.0, 6.0], [9.0, 13.0], [50.0, 50.0]]])
    labels = torch.tensor([[4, 1, -1]])
    valid = labels >= 0
    t = anchor_targets(segments, instances, labels, valid)
    # [0,4] vs [2,6]: inter 2, union 6 -> 1/3; exact match -> 1; [10,12] vs [9,13] -> 2/4; [20,21] -> 0
    assert torch.allclose(t.tiou, torch.tensor([[1 / 3, 1.0, 0.5, 0.0]]))
    assert t.labels[0, :3].tolist() == [4, 4, 1]
    # offsets (g* - x) / (x_e - x_s)
    assert torch.allclose(t.offsets[0, 0], torch.tensor([2 / 4, 2 / 4]))
    assert torch.allclose(t.offsets[0, 1], torch.tensor([0.0, 0.0]))
    assert torch.allclose(t.offsets[0, 2], torch.tensor([-1 / 2, 1 / 2]))
    # applying the target offsets recovers the closest instance
    assert torch.allclose(apply_offsets(segments[:, :3], t.offsets[:, :3]),
                          torch.tensor([[[2.0, 6.0], [2.0, 6.0], [9.0, 13.0]]]))
    # a video without instances: zero targets, label -1
    empty = anchor_targets(segments, instances, labels, torch.zeros_like(valid))
    assert empty.tiou.abs().sum() == 0 and (empty.labels == -1).all() and not empty.has_instance.any()


def test_pairwise_tiou_matches_the_evaluation_code():
    from rcl_kernels.evaluation.tiou import pairwise_tiou as reference

    g = torch.Generator().manual_seed(3)
    a = torch.sort(torch.rand(1, 9, 2, generator=g, dtype=torch.float64) * 10, dim=-1).values
    b = torch.sort(torch.rand(1, 5, 2, generator=g, dtype=torch.float64) * 10, dim=-1).values
    assert np.allclose(pairwise_tiou(a, b)[0].numpy(), reference(a[0].numpy(), b[0].numpy()))


def test_boundary_targets_hand_computed():
    instances = torch.tensor([[[5.25, 9.0]]])
    t = boundary_targets(instances, torch.tensor([[True]]), 12, 3.0)
    # start region [3.75, 6.75] against step cells [t - 1/2, t + 1/2]
    assert torch.allclose(t[0, 0, 3:8], torch.tensor([0.0, 0.75, 1.0, 1.0, 0.25]))
    assert t[0, 0, :3].abs().sum() == 0 and t[0, 0, 8:].abs().sum() == 0
    # end region [7.5, 10.5]: exactly the cells of steps 8, 9 and 10
    assert torch.allclose(t[0, 1, 6:12], torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 0.0]))


def test_balanced_bce_and_banded_mse_formulas():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    positive = torch.tensor([True, False, False, True])
    valid = torch.tensor([True, True, True, False])
    bce = lambda x, y: -math.log(torch.sigmoid(torch.tensor(x if y else -x)).item())  # noqa: E731
    expected = 0.5 * bce(2.0, 1) + 0.5 * (bce(-1.0, 0) + bce(0.5, 0)) / 2
    assert math.isclose(balanced_bce(logits, positive, valid).item(), expected, rel_tol=1e-6)
    pred = torch.tensor([0.1, 0.5, 0.9, 0.2])
    target = torch.tensor([0.0, 0.5, 0.8, 0.1])
    # bands: (0, 0.3] -> entry 3, (0.3, 0.7] -> entry 1, > 0.7 -> entry 2; tIoU 0 (entry 0) is not
    # regressed (BMN's low band starts above 0)
    expected = (0.01 + 0.0 + 0.01) / 3
    assert math.isclose(banded_mse(pred, target, torch.ones(4, dtype=torch.bool)).item(), expected, rel_tol=1e-5)


def test_anchor_losses_are_zero_for_perfect_outputs_and_mask_far_offsets():
    segments = torch.tensor([[[2.0, 6.0], [30.0, 31.0]]])
    instances = torch.tensor([[[2.0, 6.0]]])
    t = anchor_targets(segments, instances, torch.tensor([[1]]), torch.tensor([[True]]))
    outputs = torch.zeros(1, 2, 4 + 2)
    outputs[0, 0, 0], outputs[0, 1, 0] = 30.0, -30.0  # p1: certain
    outputs[0, 0, 1], outputs[0, 1, 1] = 30.0, -30.0  # p2 = tIoU* (1 and 0)
    outputs[0, 1, 2:4] = 1e3  # wrong offsets far from every instance are not penalised
    outputs[0, 0, 4:] = torch.tensor([-30.0, 30.0])
    terms = anchor_losses(outputs, t, torch.ones(1, 2, dtype=torch.bool), positive_tiou=0.7, offset_min_tiou=0.3,
                          class_min_tiou=0.5, use_offsets=True)
    assert all(v.item() < 1e-6 for v in terms.values()), terms


# -- the model ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["rcl", "grid"])
def test_forward_losses_finite_and_detect_shapes(variant):
    cfg = {**TINY_MODEL, "variant": variant}
    if variant == "grid":
        cfg.update(sampling=("grid",), refine_steps=0, use_offsets=False, inference_resolution=1.0)
    model = RCL(ModelConfig(**cfg))
    features, mask, instances, labels = tiny_batch()
    terms = model(features, mask, instances, labels, generator=torch.Generator().manual_seed(0))
    assert set(terms) == {"boundary", "classification", "regression", "offset", "class", "loss"}
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    out = model.detect(features, mask)
    P = min(model.config.candidates, num_grid_segments(24 * round(1 / model.config.inference_resolution),
                                                       12 * round(1 / model.config.inference_resolution)))
    assert out.segments.shape == (2, P, 2) and out.scores.shape == (2, P) and out.labels.shape == (2, P)
    assert out.valid.dtype == torch.bool
    seg = out.segments[out.valid]
    assert torch.all(seg[:, 1] > seg[:, 0]) and torch.all(seg >= 0)
    assert torch.all(out.segments[1][out.valid[1]] <= 24 - 5)  # inside the real steps
    assert torch.all((out.scores >= 0) & (out.scores <= 1))
    assert torch.all((out.labels >= 0) & (out.labels < 3))
    if variant == "grid":  # integer cells, nothing refined
        assert torch.equal(seg, seg.round())


def test_encoder_stride_maps_coordinates_back_to_input_steps():
    model = tiny_model(encoder_stride=2, refine_steps=0, use_offsets=False, inference_resolution=1.0)
    features, mask, _, _ = tiny_batch(T=24)
    out = model.detect(features, mask)
    seg = out.segments[out.valid]
    assert torch.equal(seg / 2, (seg / 2).round())  # whole encoder cells, in input steps
    assert seg.max() <= 24


@pytest.mark.parametrize("device", [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.gpu)])
def test_fast_and_reference_backends_agree(device):
    torch.manual_seed(5)
    fast = tiny_model(backend="fast").to(device)
    reference = tiny_model(backend="reference").to(device)
    reference.load_state_dict(fast.state_dict())
    features, mask, instances, labels = (t.to(device) for t in tiny_batch(seed=2))
    a = fast(features, mask, instances, labels, generator=torch.Generator().manual_seed(1))
    b = reference(features, mask, instances, labels, generator=torch.Generator().manual_seed(1))
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-5), key
    a["loss"].backward()
    b["loss"].backward()
    for (name, p), q in zip(fast.named_parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5), name
    da, db = fast.detect(features, mask), reference.detect(features, mask)
    assert torch.allclose(da.segments, db.segments, atol=1e-4)
    assert torch.allclose(da.scores, db.scores, rtol=1e-4, atol=1e-6)
    assert torch.equal(da.labels, db.labels) and torch.equal(da.valid, db.valid)


def test_bf16_autocast_runs_both_backends_alike():
    """The training step and detection under bf16 autocast (CPU autocast here; the GPU path
    uses the same op-boundary casts): both backends run, agree, and give float32 gradients."""
    losses, scores = {}, {}
    for backend in ("fast", "reference"):
        torch.manual_seed(0)
        model = tiny_model(backend=backend)
        features, mask, instances, labels = tiny_batch()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            terms = model(features, mask, instances, labels, generator=torch.Generator().manual_seed(1))
        terms["loss"].backward()
        assert all(p.grad is None or (p.grad.dtype == torch.float32 and p.grad.isfinite().all())
                   for p in model.parameters())
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
            scores[backend] = model.detect(features, mask).scores.float()
        losses[backend] = {k: v.item() for k, v in terms.items()}
    for key, value in losses["reference"].items():
        assert math.isfinite(value) and losses["fast"][key] == pytest.approx(value, rel=2e-2, abs=1e-3), key
    torch.testing.assert_close(scores["fast"], scores["reference"], rtol=2e-2, atol=2e-3)


def test_tiny_overfit_losses_decrease():
    torch.manual_seed(0)
    model = tiny_model()
    features, mask, instances, labels = tiny_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for step in range(40):
        terms = model(features, mask, instances, labels, generator=torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert last["loss"] < 0.5 * first["loss"]
    for key in ("boundary", "classification", "regression", "class"):
        assert last[key] < first[key], key


def test_model_rejects_wrong_feature_dim():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"features must have shape \(B, feature_dim=8, T\)"):
        model.detect(torch.randn(1, 5, 10), torch.ones(1, 10, dtype=torch.bool))


# -- postprocessing and per-length mAP ------------------------------------------------------------

def test_collector_converts_windows_to_seconds_and_applies_soft_nms():
    candidates = Candidates(
        segments=torch.tensor([[[2.0, 6.0], [2.1, 6.0], [10.0, 12.0]], [[0.0, 4.0], [1.0, 2.0], [0.0, 0.0]]]),
        scores=torch.tensor([[0.9, 0.8, 0.5], [0.7, 0.6, 0.99]]),
        labels=torch.tensor([[0, 0, 1], [1, 0, 0]]),
        valid=torch.tensor([[True, True, True], [True, True, False]]))
    batch = {"video_id": ["v1", "v1"], "time_offset": torch.tensor([1.0, 5.0], dtype=torch.float64),
             "seconds_per_step": torch.tensor([0.5, 0.5], dtype=torch.float64),
             "duration": torch.tensor([9.0, 9.0], dtype=torch.float64)}
    collector = DetectionCollector()
    collector.add(candidates, batch)
    results = collector.results(("a", "b"), top_k=3, sigma=0.5, video_ids=["v1", "v2"])
    assert results["v2"] == []
    dets = results["v1"]
    assert len(dets) == 3
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    assert dets[0] == {"label": "a", "score": pytest.approx(0.9), "segment": [pytest.approx(2.0), pytest.approx(4.0)]}
    # the second window's (0, 4) starts at its own offset 5 s: (5, 7), class b
    assert ("b", (5.0, 7.0)) in [(d["label"], tuple(d["segment"])) for d in dets]
    # the near-duplicate of the best one is decayed by Soft-NMS, not kept at 0.8
    assert all(d["score"] < 0.8 - 1e-3 for d in dets[1:] if d["label"] == "a")


def test_map_by_length_perfect_and_missing_bins():
    from rcl_kernels.evaluation.io import GroundTruth

    gt = GroundTruth(video_ids=("v",), classes=("a",), video=np.zeros(4, np.int64), label=np.zeros(4, np.int64),
                     segments=np.array([[0, 1], [5, 7], [10, 14], [20, 28]], np.float64),
                     ambiguous_video=np.zeros(0, np.int64), ambiguous_segments=np.zeros((0, 2)))
    # perfect detections of the two short instances only; steps of 0.5 s
    preds = {"v": [{"label": "a", "score": 0.9, "segment": [0, 1]}, {"label": "a", "score": 0.8, "segment": [5, 7]}]}
    rows = map_by_length(preds, gt, {"v": 0.5}, edges=[0, 5, np.inf], protocol="activitynet")
    assert [r["instances"] for r in rows] == [2, 2] and [r["detections"] for r in rows] == [2, 0]
    assert rows[0]["average_map"] == pytest.approx(1.0) and rows[1]["average_map"] == pytest.approx(0.0)


def test_recall_by_length_counts_each_bins_instances_among_the_top_detections():
    from rcl_kernels.evaluation.io import GroundTruth

    # instances of lengths (steps of 0.5 s) 2, 4 | 8, 16 in two bins split at 5 steps
    gt = GroundTruth(video_ids=("v", "w"), classes=("a", "b"), video=np.array([0, 0, 0, 1]),
                     label=np.array([0, 1, 0, 1]), segments=np.array([[0, 1], [5, 7], [10, 14], [20, 28]], np.float64),
                     ambiguous_video=np.zeros(0, np.int64), ambiguous_segments=np.zeros((0, 2)))
    preds = {"v": [{"label": "b", "score": 0.9, "segment": [0, 1]},      # hits [0, 1] whatever its label
                   {"label": "a", "score": 0.8, "segment": [10, 12.5]},  # tIoU 0.625 with [10, 14]
                   {"label": "a", "score": 0.1, "segment": [5.2, 7]}],   # tIoU 0.9, but third in v
             "w": [{"label": "b", "score": 0.5, "segment": [21, 23]}]}   # tIoU 0.25
    rows = recall_by_length(preds, gt, {"v": 0.5, "w": 0.5}, edges=[0, 5, np.inf], max_proposals=2,
                            tiou_thresholds=(0.5, 0.7))
    assert [r["instances"] for r in rows] == [2, 2]
    assert rows[0]["recall"] == [0.5, 0.5] and rows[1]["recall"] == [0.5, 0.0]
    assert rows[1]["average_recall"] == pytest.approx(0.25)
    # with three detections per video the second short instance is found too
    rows = recall_by_length(preds, gt, {"v": 0.5, "w": 0.5}, edges=[0, 5, np.inf], max_proposals=3)
    assert rows[0]["recall"] == [1.0] and rows[1]["recall"] == [0.5]


# -- training, checkpoints, command line -----------------------------------------------------------

def tiny_run_flags(tmp_path, **extra) -> dict:
    flags = dict(dataset="thumos14-synthetic", feature_dim=8, max_train_videos=6, max_test_videos=2,
                 max_video_steps=192, window=48, batch_size=2, max_steps=4, warmup_steps=1, checkpoint_every=2,
                 output_dir=str(tmp_path / "run"), progress=False, eval_batch_size=4, device="cpu",
                 **{k: v for k, v in TINY_MODEL.items() if k not in ("feature_dim", "num_classes")})
    flags.update(extra)
    return flags


def test_checkpoint_resume_replays_the_same_steps(tmp_path):
    from rcl_kernels.models.checkpoints import load_checkpoint
    from rcl_kernels.models.training import train

    model_cfg, run_cfg = build_configs(flag_values=tiny_run_flags(tmp_path / "a"))
    straight = train(model_cfg, run_cfg)
    assert straight.steps == 4 and len(straight.losses) == 4

    model_cfg, run_cfg = build_configs(flag_values=tiny_run_flags(tmp_path / "b", max_steps=2))
    half = train(model_cfg, run_cfg)
    assert half.steps == 2
    state = load_checkpoint(half.checkpoint)
    assert state["step"] == 2 and state["classes"] and state["model_config"]["hidden"] == 16
    model_cfg, run_cfg = build_configs(flag_values=tiny_run_flags(tmp_path / "b", resume="auto"))
    resumed = train(model_cfg, run_cfg)
    assert resumed.losses == pytest.approx(straight.losses[2:], rel=1e-6, abs=1e-7)
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7), name

    # resuming with a different network is refused, naming the flag
    model_cfg, run_cfg = build_configs(flag_values=tiny_run_flags(tmp_path / "b", resume="auto", hidden=32))
    with pytest.raises(ConfigError, match=r"--resume .*hidden=16 vs 32"):
        train(model_cfg, run_cfg)


def test_load_checkpoint_errors_name_the_file(tmp_path):
    from rcl_kernels.models.checkpoints import load_checkpoint

    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt"):
        load_checkpoint(str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"cannot read checkpoint {bad}"):
        load_checkpoint(str(bad))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="is not an RCL checkpoint"):
        load_checkpoint(str(other))


def _cli_flags(flags: dict) -> list[str]:
    out = []
    for key, value in flags.items():
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        out += [f"--{key.replace('_', '-')}", text]
    return out


def test_train_and_detect_commands_write_activitynet_json(tmp_path, capsys):
    from rcl_kernels.cli import main

    flags = tiny_run_flags(tmp_path, max_steps=2)
    # After 2 steps every score may sit below the THUMOS14 default min score (0.01): keep them all,
    # this test is about the output format.
    flags["nms_min_score"] = 0.0
    assert main(["train"] + _cli_flags(flags)) == 0
    out_dir = flags["output_dir"]
    metrics = json.load(open(os.path.join(out_dir, "metrics.json")))
    assert metrics["protocol"] == "thumos14" and len(metrics["map"]) == 5 and len(metrics["by_length"]) == 4
    output = str(tmp_path / "det.json")
    assert main(["detect", "--checkpoint", os.path.join(out_dir, "last.pt"), "--output", output,
                 "--kernels", "reference", "--top-k", "7", "--nms-min-score", "0"]) == 0
    payload = json.load(open(output))
    assert set(payload) >= {"version", "results", "external_data"}
    from rcl_kernels.data import synthetic

    test = synthetic.thumos14("test", max_videos=2, max_steps=192, feature_dim=8)
    assert set(payload["results"]) == {v.video_id for v in test.videos}
    classes = set(test.classes)
    for video in test.videos:
        dets = payload["results"][video.video_id]
        assert 0 < len(dets) <= 7
        scores = [d["score"] for d in dets]
        assert scores == sorted(scores, reverse=True)
        for d in dets:
            assert set(d) == {"label", "score", "segment"} and d["label"] in classes
            assert 0 <= d["segment"][0] < d["segment"][1] <= video.duration + 1e-6
    assert "mAP" in capsys.readouterr().out


@pytest.mark.gpu
def test_train_with_bf16_autocast_on_gpu_then_detect(tmp_path):
    """The GPU path of the commands: bf16 autocast, fast kernels on CUDA, finite losses, and a
    checkpoint that detects on the GPU and on the CPU."""
    from rcl_kernels.cli import main

    flags = tiny_run_flags(tmp_path, max_steps=3, device="cuda", amp=True, nms_min_score=0.0)
    assert main(["train"] + _cli_flags(flags)) == 0
    metrics = json.load(open(os.path.join(flags["output_dir"], "metrics.json")))
    assert all(math.isfinite(x) for x in metrics["map"])
    for device in ("cuda", "cpu"):
        output = str(tmp_path / f"det_{device}.json")
        assert main(["detect", "--checkpoint", os.path.join(flags["output_dir"], "last.pt"), "--output", output,
                     "--device", device, "--top-k", "5", "--nms-min-score", "0"]) == 0
        assert all(0 < len(d) <= 5 for d in json.load(open(output))["results"].values())


def test_commands_report_bad_inputs(tmp_path, capsys):
    from rcl_kernels.cli import main

    assert main(["train", "--encoder-stride", "5"]) == 2
    assert "--encoder-stride: encoder_stride must be 1 or 2" in capsys.readouterr().err
    assert main(["detect", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    # real features: a missing and a malformed feature file are named
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"database": {"vid1": {"subset": "Validation", "duration": 10.0, "fps": 30.0,
                                                     "annotations": [{"label": "a", "segment": [1.0, 3.0]}]}}}))
    features = tmp_path / "features"
    features.mkdir()
    base = ["train", "--dataset", "actionformer", "--annotations", str(ann), "--feature-dir", str(features),
            "--max-steps", "1", "--progress", "false", "--output-dir", str(tmp_path / "o")]
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "--feature-dir" in err and "feature file not found" in err and "vid1.npy" in err
    np.save(features / "vid1.npy", np.zeros((4, 3, 2), np.float32))
    assert main(base) == 2
    err = capsys.readouterr().err
    assert "--feature-dir" in err and "must hold a (T, D) array" in err


def test_python_scripts_show_help():
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for script, flag in (("train.py", "--max-steps"), ("detect.py", "--checkpoint")):
        out = subprocess.run([sys.executable, os.path.join(root, "python", script), "--help"], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and flag in out.stdout


def _ddp_worker(rank: int, world: int, port: int, flags: dict, queue) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    from rcl_kernels.models.training import train

    model_cfg, run_cfg = build_configs(flag_values=flags)
    result = train(model_cfg, run_cfg)
    # numpy arrays travel by value (tensors would be shared through file descriptors that die with the process)
    flat = torch.cat([p.detach().flatten() for p in result.model.parameters()]).numpy()
    queue.put((rank, flat, result.checkpoint))
    dist.destroy_process_group()


def test_ddp_on_cpu_with_gloo_keeps_replicas_identical(tmp_path):
    import socket

    import torch.multiprocessing as mp

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = tiny_run_flags(tmp_path, max_steps=2, batch_size=1)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, flags, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((rank, (params, ckpt)) for rank, params, ckpt in (queue.get(timeout=300) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert np.array_equal(got[0][0], got[1][0])  # DDP averaged the gradients: the replicas never diverge
    assert got[0][1] is not None and got[1][1] is None  # only rank 0 writes the checkpoint


def test_write_results_json_is_activitynet_format(tmp_path):
    path = tmp_path / "sub" / "r.json"
    write_results_json(str(path), {"v": [{"label": "a", "score": 0.5, "segment": [1.0, 2.0]}]})
    payload = json.load(open(path))
    assert payload["results"]["v"][0]["segment"] == [1.0, 2.0] and payload["external_data"] == {}


# -- the fixes of issue 17 ---------------------------------------------------------------------------

def test_class_agnostic_scores_leave_the_class_probability_out():
    torch.manual_seed(0)
    model = tiny_model(refine_steps=0)
    features, mask, _, _ = tiny_batch()
    agnostic = model.detect(features, mask, class_agnostic=True)
    aware = model.detect(features, mask)
    assert (agnostic.labels == 0).all()
    with torch.no_grad():  # change only the class logits: class-agnostic scores must not move
        model.scorer.w2[4:] += torch.randn_like(model.scorer.w2[4:])
    moved = model.detect(features, mask, class_agnostic=True)
    torch.testing.assert_close(moved.scores, agnostic.scores)
    assert not torch.allclose(model.detect(features, mask).scores, aware.scores)
    # class-aware scores are the class-agnostic ones times the top class probability
    assert torch.all(aware.scores <= agnostic.scores + 1e-7)


def test_refine_step_m_weighs_alpha_to_the_m(monkeypatch):
    """Eq. 8: the loss of refinement step m weighs alpha^m (stage 0 weighs 1)."""

    calls = []

    def fake_losses(outputs, targets, valid, **kw):
        value = outputs.sum() * 0 + 10.0 ** len(calls)
        calls.append(1)
        return {k: value for k in ("classification", "regression", "offset", "class")}

    monkeypatch.setattr(rcl_module, "anchor_losses", fake_losses)
    model = tiny_model(refine_steps=2, refine_alpha=0.5)
    terms = model(*tiny_batch(), generator=torch.Generator().manual_seed(0))
    assert len(calls) == 3
    assert terms["classification"].item() == pytest.approx(1 + 0.5 * 10 + 0.25 * 100)


def test_refiner_detaches_its_state_and_reads_the_previous_confidences(monkeypatch):
    torch.manual_seed(0)
    model = tiny_model(refine_steps=3)
    refiner = model.refiner
    assert refiner.cell.input_size == model.config.refine_state + 2
    states = []
    cell_forward = refiner.cell.forward

    def recording(inputs, hx):
        states.append(hx)
        return cell_forward(inputs, hx)

    monkeypatch.setattr(refiner.cell, "forward", recording)
    with torch.no_grad():
        refiner.correction.weight.normal_()
    features, mask, _, _ = tiny_batch()
    encoded, _, _ = model.encode(features, mask)
    segments = torch.tensor([[[2.0, 8.0], [10.0, 14.0]]]).expand(2, -1, -1)
    low = refiner(model.score, encoded, segments, torch.full((2, 2, 2), -3.0))
    high = refiner(model.score, encoded, segments, torch.full((2, 2, 2), 3.0))
    assert len(states) == 6 and not any(h.requires_grad for h in states)  # detached like the coordinates
    assert low[-1][1].requires_grad  # each step still trains its own update
    assert not torch.allclose(low[0][1], high[0][1])  # the first step reads the confidences it is given


def test_scale_invariant_samples_are_clipped_to_the_video():
    instances = torch.tensor([[[0.5, 3.0], [16.0, 19.5]]])
    valid = torch.tensor([[True, True]])
    lengths = torch.tensor([20.0])
    g = torch.Generator().manual_seed(0)
    loose, _ = scale_invariant_samples(instances, valid, 500, 1.0, g)
    assert loose.min() < 0 and loose.max() > 20  # the unclipped draw leaves the video
    clipped, _ = scale_invariant_samples(instances, valid, 500, 1.0, torch.Generator().manual_seed(0),
                                         lengths=lengths)
    from rcl_kernels.models.sampling import MIN_LENGTH

    assert clipped.min() >= -MIN_LENGTH / 2 and clipped.max() <= 20 + MIN_LENGTH / 2
    assert torch.all(clipped[..., 1] > clipped[..., 0])


# -- baselines and controls ----------------------------------------------------------------------

def test_prior_baseline_ranks_cells_by_training_matches():
    from rcl_kernels.data.annotations import VideoAnnotation
    from rcl_kernels.data.dataset import Timeline, VideoDataset
    from rcl_kernels.models.prior_baseline import fit_prior, prior_detections

    def videos(specs):
        records = [VideoAnnotation(f"v{i}", duration, np.array(segs, dtype=np.float64), tuple(label for _ in segs),
                                   fps=30.0) for i, (duration, segs, label) in enumerate(specs)]
        return VideoDataset(records, ("a",), [Timeline.rescaled(10, r.duration, 30.0) for r in records])

    # relative [0, 0.5] three times, [0.5, 1] once
    train = videos([(10.0, [[0.0, 5.0]], "a"), (20.0, [[0.0, 10.0], [10.0, 20.0]], "a"), (4.0, [[0.0, 2.0]], "a")])
    prior = fit_prior(train, grid=10, top_n=5, match_tiou=1.0)
    assert prior.segments[0].tolist() == [0.0, 0.5] and prior.scores[0] == pytest.approx(0.75)
    assert prior.segments[1].tolist() == [0.5, 1.0] and prior.scores[1] == pytest.approx(0.25)
    assert np.all(prior.scores[2:] == 0)
    test = videos([(30.0, [[0.0, 15.0]], "a")])
    results = prior_detections(prior, test)
    assert results["v0"][0] == {"label": "action", "score": pytest.approx(0.75), "segment": [0.0, 15.0]}
    diverse = fit_prior(train, grid=10, top_n=5, match_tiou=1.0, nms_sigma=0.5)
    assert diverse.segments[0].tolist() == [0.0, 0.5] and len(diverse.segments) == 5
    assert np.all(np.diff(diverse.scores) <= 1e-7)  # best first, decayed scores
    with pytest.raises(ValueError, match="fit_prior: grid and top_n must be >= 1"):
        fit_prior(train, grid=0)


def test_other_video_control_keeps_labels_and_swaps_features():
    _, run = build_configs(flag_values={"dataset": "activitynet-synthetic", "temporal_scale": 16,
                                        "max_train_videos": 6, "feature_control": "other-video"})
    _, plain_run = build_configs(flag_values={"dataset": "activitynet-synthetic", "temporal_scale": 16,
                                              "max_train_videos": 6})
    from rcl_kernels.models.data_setup import load_split

    control = load_split(run, "train", feature_dim=8)
    plain = load_split(plain_run, "train", feature_dim=8)
    assert len(control.items) == len(plain.items) == 6
    for i in range(6):
        a, b = control.items[i], plain.items[i]
        assert torch.equal(a["segments"], b["segments"]) and a["video_id"] == b["video_id"]
        assert torch.equal(a["features"], plain.items[(i + 3) % 6]["features"])


# -- profiles ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["anet-paper", "thumos-paper"])
def test_paper_profiles_train_one_step_at_the_papers_sizes(tmp_path, name):
    """One training step of each paper-size profile at batch 2 (the sizes, not the batch, are the
    paper's): the network is built at hidden 256, N = 32, M = 10 and its loss is finite."""
    model_cfg, run_cfg = build_configs(profile_values(name), dict(
        batch_size=2, max_steps=1, warmup_steps=0, max_train_videos=2, device="cpu",
        output_dir=str(tmp_path / name), checkpoint_every=10))
    expected = PROFILES[name]
    assert (model_cfg.hidden, model_cfg.num_samples, model_cfg.refine_steps, model_cfg.feature_dim) == (
        256, 32, 10, expected["feature_dim"])
    result = train(model_cfg, run_cfg)
    assert result.steps == 1 and math.isfinite(result.losses[0]) and result.losses[0] > 0
    assert result.model.config.feature_dim == expected["feature_dim"]
    assert sum(p.numel() for p in result.model.parameters()) > 1_000_000


def test_profile_flag_sits_under_the_config_flags(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    model_cfg, run_cfg = configs_from_args(parser.parse_args(["--profile", "anet-paper", "--hidden", "64"]))
    assert model_cfg.hidden == 64 and model_cfg.num_samples == 32 and run_cfg.dataset == "activitynet-synthetic"
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
