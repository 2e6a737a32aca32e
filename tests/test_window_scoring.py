"""Overlapping windows share out their segments (rcl_kernels.data.windows.owned_by_window): the rule
against a brute-force nearest-centre search, the window items and batches that carry it, RCL's
detect scoring each item's own segments only, and cell detectors reporting each cell once."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rcl_kernels.data.annotations import VideoAnnotation
from rcl_kernels.data.dataset import Timeline, VideoDataset, collate_videos
from rcl_kernels.data.windows import WindowedDataset, neighbour_gaps, owned_by_window, window_starts
from rcl_kernels.models import RCL, ModelConfig
from rcl_kernels.models.config import ConfigError, RunConfig
from rcl_kernels.models.data_setup import scoring_neighbours
from rcl_kernels.models.energy_baseline import EnergyContrast
from rcl_kernels.models.sampling import grid_segments
from rcl_kernels.ops.soft_nms import soft_nms

INF = math.inf


def test_neighbour_gaps_of_end_aligned_windows():
    starts = window_starts(35, 16, 8)  # [0, 8, 16, 19]: the last one aligned to the end
    assert [neighbour_gaps(starts, i) for i in range(4)] == [(INF, 8.0), (8.0, 8.0), (8.0, 3.0), (3.0, INF)]
    assert neighbour_gaps([0], 0) == (INF, INF)


class _Videos(VideoDataset):
    """Videos of the given lengths (1 s a step) without instances."""

    def __init__(self, lengths):
        self.lengths = list(lengths)
        videos = [VideoAnnotation(f"v{i}", float(n), np.zeros((0, 2)), ()) for i, n in enumerate(lengths)]
        super().__init__(videos, ["a"], [Timeline(n, 1.0, 0.0, 1.0, 1.0) for n in lengths])

    def load_features(self, index):
        return np.zeros((2, self.lengths[index]), dtype=np.float32)


def test_window_items_and_batches_carry_their_neighbours():
    windows = WindowedDataset(_Videos([35, 10]), window=16, stride=8)
    gaps = [windows[i]["window_neighbours"] for i in range(len(windows))]
    assert gaps == [(INF, 8.0), (8.0, 8.0), (8.0, 3.0), (3.0, INF), (INF, INF)]
    batch = collate_videos([windows[i] for i in range(len(windows))])
    assert batch["window_neighbours"].dtype == torch.float32 and batch["window_neighbours"].shape == (5, 2)
    assert torch.equal(batch["window_neighbours"], torch.tensor(gaps))
    assert "window_neighbours" not in collate_videos([_Videos([35])[0]])  # a whole video


def test_scoring_neighbours_follow_the_run_option():
    batch = {"window_neighbours": torch.tensor([[INF, 8.0]])}
    cpu = torch.device("cpu")
    assert torch.equal(scoring_neighbours(batch, RunConfig(), cpu), batch["window_neighbours"])
    assert scoring_neighbours(batch, RunConfig(window_scoring="every"), cpu) is None
    assert scoring_neighbours({}, RunConfig(), cpu) is None  # whole videos
    with pytest.raises(ConfigError, match="window_scoring must be one of"):
        RunConfig(window_scoring="twice").validate()


@given(num_steps=st.integers(1, 80), window=st.integers(2, 32), stride=st.integers(1, 32),
       ends=st.lists(st.tuples(st.integers(0, 320), st.integers(0, 320)), min_size=1, max_size=40))
def test_each_segment_is_owned_by_exactly_its_nearest_centred_window(num_steps, window, stride, ends):
    """Segments in video coordinates (on a quarter-step lattice, so ties happen and every value is
    exact): of the windows that contain one whole, exactly one owns it, the one whose centre is
    nearest to its midpoint, the earlier one on a tie."""
    stride = min(stride, window)
    starts = window_starts(num_steps, window, stride)
    length = min(window, num_steps)
    segments = (torch.tensor([sorted(pair) for pair in ends], dtype=torch.float64) * num_steps / 80).round() / 4
    owners = []
    for i, start in enumerate(starts):
        local = (segments - start).to(torch.float32)
        inside = (local[:, 0] >= 0) & (local[:, 1] <= length)
        owned = owned_by_window(local, torch.tensor([length]), torch.tensor([neighbour_gaps(starts, i)]))[0]
        owners.append(inside & owned)
    owners = torch.stack(owners, dim=1)  # (K, windows)
    for k, (s, e) in enumerate(segments.tolist()):
        containing = [i for i, o in enumerate(starts) if s >= o and e <= o + length]
        if not containing:
            continue
        middle = (s + e) / 2
        nearest = min(containing, key=lambda i: (abs(middle - (starts[i] + length / 2)), i))
        assert owners[k].nonzero()[:, 0].tolist() == [nearest], (s, e, starts)


def test_owned_by_window_names_bad_arguments():
    grid, length = torch.tensor([[0.0, 4.0], [2.0, 9.0]]), torch.tensor([16, 16])
    gaps = torch.tensor([[INF, 8.0], [8.0, INF]])
    with pytest.raises(ValueError, match=r"neighbours \(B, 2\), got \(2,\) and \(2, 3\)"):
        owned_by_window(grid, length, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"segments must have shape \(B, K, 2\) or \(K, 2\) with B = 2"):
        owned_by_window(torch.zeros(3, 4, 2), length, gaps)
    with pytest.raises(ValueError, match="neighbours must be gaps in steps, >= 0"):
        owned_by_window(grid, length, torch.tensor([[math.nan, 8.0], [8.0, INF]]))
    with pytest.raises(ValueError, match="neighbours must be gaps in steps, >= 0"):
        owned_by_window(grid, length, torch.tensor([[-1.0, 8.0], [8.0, INF]]))
    with pytest.raises(ValueError, match="neighbours"):  # through a detector
        EnergyContrast(ModelConfig(max_duration=4)).detect(torch.randn(2, 3, 16), torch.ones(2, 16),
                                                           neighbours=gaps[:1])


def _windows_of_one_video(num_steps=70, window=32, stride=16, channels=6, seed=0):
    starts = window_starts(num_steps, window, stride)
    video = torch.randn(channels, num_steps, generator=torch.Generator().manual_seed(seed))
    features = torch.stack([video[:, s:s + window] for s in starts])
    neighbours = torch.tensor([neighbour_gaps(starts, i) for i in range(len(starts))])
    return features, torch.ones(len(starts), window, dtype=torch.bool), neighbours, starts


def _video_cells(candidates, starts) -> list[tuple[float, float]]:
    out = []
    for b, start in enumerate(starts):
        out += [(s + start, e + start) for s, e in candidates.segments[b][candidates.valid[b]].tolist()]
    return out


def test_cell_detector_reports_each_cell_of_the_video_once():
    features, mask, neighbours, starts = _windows_of_one_video()
    model = EnergyContrast(ModelConfig(max_duration=12))
    once = _video_cells(model.detect(features, mask, neighbours=neighbours), starts)
    every = _video_cells(model.detect(features, mask), starts)
    assert len(set(every)) < len(every)  # the windows overlap
    assert len(once) == len(set(once)) and set(once) == set(every)
    shared = model.detect(features, mask, neighbours=neighbours)
    assert torch.all(shared.scores[~shared.valid] == 0)


TINY = dict(feature_dim=6, num_classes=3, hidden=16, max_duration=12, num_samples=6, samples_per_point=1,
            scorer_hidden=24, refine_steps=2, refine_state=16, candidates=20)


def _rcl(**changes) -> RCL:
    torch.manual_seed(3)
    return RCL(ModelConfig(**{**TINY, **changes})).eval()


def test_rcl_scores_each_window_only_on_its_own_segments(monkeypatch):
    model = _rcl(refine_steps=0)
    features, mask, neighbours, starts = _windows_of_one_video()
    calls = []
    score = model.score
    monkeypatch.setattr(model, "score", lambda encoded, segments: calls.append(segments.shape[:2]) or
                        score(encoded, segments))
    model.detect(features, mask, neighbours=neighbours)
    grid = grid_segments(32, 12, model.config.inference_resolution)
    owned = owned_by_window(grid, torch.full((len(starts),), 32), neighbours)
    assert sum(b * k for b, k in calls) == int(owned.sum()) < len(starts) * len(grid)
    # the middle windows have the same segments to score: one call for them
    assert len(calls) == len(torch.unique(owned, dim=0))


def test_rcl_candidates_are_the_soft_nms_choice_among_owned_segments():
    """Without offsets, refinement and boundary scores, each candidate is a grid segment with
    score p1 p2: they must be Soft-NMS's choice among the window's own segments, scored on the
    whole grid independently here."""
    model = _rcl(refine_steps=0, use_offsets=False, use_boundary_score=False)
    features, mask, neighbours, starts = _windows_of_one_video(seed=1)
    out = model.detect(features, mask, class_agnostic=True, neighbours=neighbours)
    encoded, _, _ = model.encode(features, mask)
    grid = grid_segments(32, 12, model.config.inference_resolution)
    owned = owned_by_window(grid, torch.full((len(starts),), 32), neighbours)
    full = model.score(encoded, grid[None].expand(len(starts), -1, -1).contiguous())
    confidence = torch.sigmoid(full[..., 0]) * torch.sigmoid(full[..., 1])
    for b in range(len(starts)):
        anchors = grid[owned[b]]
        kept = soft_nms(anchors[None], confidence[b][owned[b]][None], method="gaussian",
                        sigma=model.config.candidate_nms_sigma, min_score=0.0,
                        top_k=min(model.config.candidates, len(anchors)))
        chosen = kept.indices[0][kept.indices[0] >= 0]
        got = out.segments[b][out.valid[b]]
        torch.testing.assert_close(got, anchors[chosen])
        torch.testing.assert_close(out.scores[b][out.valid[b]], confidence[b][owned[b]][chosen],
                                   rtol=1e-5, atol=1e-6)


def test_rcl_windows_detect_alike_alone_and_batched():
    model = _rcl()
    features, mask, neighbours, _ = _windows_of_one_video(seed=2)
    batched = model.detect(features, mask, neighbours=neighbours)
    for b in range(features.shape[0]):
        alone = model.detect(features[b:b + 1], mask[b:b + 1], neighbours=neighbours[b:b + 1])
        assert torch.equal(alone.valid[0], batched.valid[b])
        torch.testing.assert_close(alone.segments[0], batched.segments[b], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(alone.scores[0], batched.scores[b], rtol=1e-5, atol=1e-6)


def test_rcl_without_neighbours_is_a_lone_window():
    model = _rcl()
    features, mask, _, _ = _windows_of_one_video(seed=4)
    mask[1, 20:] = False  # a padded item: only segments starting inside it are scored
    lone = torch.full((features.shape[0], 2), INF)
    a, b = model.detect(features, mask), model.detect(features, mask, neighbours=lone)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert torch.all(a.segments[1][a.valid[1]] <= 20)


def test_rcl_window_that_owns_nothing_gives_no_candidates():
    model = _rcl()
    features, mask, _, _ = _windows_of_one_video(seed=5)
    # neighbours 0 steps away on both sides: the previous window takes every segment it can
    out = model.detect(features[:1], mask[:1], neighbours=torch.tensor([[0.0, 0.0]]))
    assert not out.valid.any()
    empty = model.detect(features[:0], mask[:0], neighbours=torch.zeros(0, 2))
    assert empty.segments.shape[0] == 0
