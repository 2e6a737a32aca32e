"""The matched-filter reference detector (rcl_kernels/models/matched_filter.py) against features
planted by the synthetic generator's own add_instance, and the energy detector beside it."""

import numpy as np
import pytest
import torch

from rcl_kernels.data.synthetic import SyntheticConfig, add_instance, class_patterns
from rcl_kernels.models.config import ModelConfig
from rcl_kernels.models.energy_baseline import EnergyContrast
from rcl_kernels.models.matched_filter import MatchedFilter

T, C, CLASSES, SHARPNESS = 96, 16, 3, 1.0


def planted(instances, noise, seed):
    """(1, C, T) features with `instances` [(start, end, class)] added to white noise of std `noise`."""
    onset, offset = class_patterns(CLASSES, SyntheticConfig(feature_dim=C, seed=seed))
    rng = np.random.default_rng(seed)
    signal = noise * rng.standard_normal((T, C))
    for start, end, c in instances:
        add_instance(signal, start, end, onset[c], offset[c], SHARPNESS)
    return torch.from_numpy(signal.T[None].astype(np.float32)), onset, offset


def best_cell(candidates):
    scores = torch.where(candidates.valid, candidates.scores, torch.zeros_like(candidates.scores))
    k = int(scores[0].argmax())
    return candidates.segments[0, k].tolist(), int(candidates.labels[0, k])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matched_filter_finds_the_planted_cell_and_class(seed):
    rng = np.random.default_rng(100 + seed)
    start = int(rng.integers(10, 50))
    length = int(rng.integers(4, 30))
    c = int(rng.integers(CLASSES))
    features, onset, offset = planted([(start, start + length, c)], noise=0.3, seed=seed)
    model = MatchedFilter(ModelConfig(max_duration=40), onset, offset, sharpness=SHARPNESS, noise=0.3)
    mask = torch.ones(1, T)
    cell, label = best_cell(model.detect(features, mask, class_agnostic=False))
    assert cell == [start, start + length]
    assert label == c
    # class-agnostic detection: the same cell, every label 0
    cell, label = best_cell(model.detect(features, mask, class_agnostic=True))
    assert cell == [start, start + length] and label == 0


def test_matched_filter_gives_no_score_to_pure_noise_of_its_level_beyond_chance():
    features, onset, offset = planted([], noise=1.0, seed=3)
    model = MatchedFilter(ModelConfig(max_duration=40), onset, offset, sharpness=SHARPNESS, noise=1.0)
    scores = model.detect(features, torch.ones(1, T)).scores
    assert float(scores.max()) < 0.9  # an LLR below 9 everywhere: no template is present
    features, _, _ = planted([(30, 50, 1)], noise=1.0, seed=3)
    assert float(model.detect(features, torch.ones(1, T)).scores.max()) > 0.99  # LLR above 99


def test_matched_filter_ignores_padding_and_cells_beyond_the_item():
    features, onset, offset = planted([(20, 36, 0)], noise=0.3, seed=4)
    model = MatchedFilter(ModelConfig(max_duration=40), onset, offset, sharpness=SHARPNESS, noise=0.3)
    mask = torch.ones(1, T)
    mask[:, 60:] = 0
    padded = features.clone()
    padded[..., 60:] = 1e3  # garbage in the padding must not matter
    out = model.detect(padded, mask)
    assert not bool(out.valid[0, out.segments[0, :, 1] > 60].any())
    assert best_cell(out)[0] == [20, 36]
    torch.testing.assert_close(out.scores, model.detect(features, mask).scores, rtol=0, atol=0)


def test_energy_detector_finds_a_strong_planted_instance():
    features, _, _ = planted([(40, 60, 2)], noise=0.2, seed=5)
    cell, _ = best_cell(EnergyContrast(ModelConfig(max_duration=40)).detect(features, torch.ones(1, T)))
    assert abs(cell[0] - 40) <= 2 and abs(cell[1] - 60) <= 2


def test_matched_filter_rejects_bad_arguments_by_name():
    onset, offset = class_patterns(CLASSES, SyntheticConfig(feature_dim=C))
    config = ModelConfig(max_duration=8)
    with pytest.raises(ValueError, match="onset and offset"):
        MatchedFilter(config, onset, offset[:, :4], sharpness=1.0, noise=1.0)
    with pytest.raises(ValueError, match="sharpness"):
        MatchedFilter(config, onset, offset, sharpness=0.0, noise=1.0)
    with pytest.raises(ValueError, match="noise"):
        MatchedFilter(config, onset, offset, sharpness=1.0, noise=0.0)
    with pytest.raises(ValueError, match="mask"):
        MatchedFilter(config, onset, offset, sharpness=1.0, noise=1.0).detect(torch.zeros(1, C, 10), torch.ones(1, 9))
    with pytest.raises(ValueError, match="channels"):
        MatchedFilter(config, onset, offset, sharpness=1.0, noise=1.0).detect(torch.zeros(1, C + 1, 10),
                                                                             torch.ones(1, 10))
