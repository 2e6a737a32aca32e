"""python/short_instances.py: the envelope of the generator's ramps against its closed form, and
the per-bin analysis on a few THUMOS14-structured training videos (counts and shares that must
add up, bins ordered by length, tIoU ceilings in range)."""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
_spec = importlib.util.spec_from_file_location("short_instances", os.path.join(ROOT, "python", "short_instances.py"))
short_instances = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(short_instances)


def test_mean_envelope_of_a_point_is_a_quarter():
    # sigmoid(0)^2 at every sample of a zero-length instance
    assert short_instances.mean_envelope(0.0, 2.0) == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("length,sharpness", [(50.0, 2.0), (20.0, 4.0), (200.0, 1.0)])
def test_mean_envelope_of_a_long_instance_loses_two_ramps(length, sharpness):
    # integral_0^L s(kt) s(k(L - t)) dt = L - 2 ln 2 / k + O(e^{-kL}); the function averages
    # 201 samples, whose end points (0.5 each) move the mean by about 1 / 400.
    expected = 1.0 - 2.0 * math.log(2.0) / (sharpness * length)
    assert short_instances.mean_envelope(length, sharpness) == pytest.approx(expected, abs=3e-3)


def test_mean_envelope_grows_with_length():
    values = [short_instances.mean_envelope(L, 1.0) for L in (1.0, 2.0, 4.0, 8.0, 16.0)]
    assert values == sorted(values) and values[-1] < 1.0


def test_analysis_adds_up_on_a_few_videos(monkeypatch):
    monkeypatch.setitem(short_instances.PROFILE_VIDEOS, "thumos-cpu", dict(train=12, heldout=2, test=2))
    result = short_instances.analyse("thumos-cpu", seed=0)
    rows = result["rows"]
    assert [r["bin"] for r in rows] == ["Q1", "Q2", "Q3", "Q4"]
    total = sum(r["instances"] for r in rows)
    assert total > 0
    assert sum(r["instance_share"] for r in rows) == pytest.approx(1.0)
    medians = [r["median_steps"] for r in rows]
    assert medians == sorted(medians)
    for r in rows:
        assert 0.0 < r["best_cell_tiou"] <= 1.0
        assert 0.25 <= r["mean_envelope"] < 1.0
    for source in ("grid", "random", "sis"):
        shares = [r[f"{source}_positive_share"] for r in rows]
        assert sum(shares) == pytest.approx(1.0), source
    # SIS draws the same number of samples around every instance, so every bin gets positives
    assert all(r["sis_positives_per_instance"] > 0 for r in rows)
    table = short_instances.table(result).splitlines()
    assert len(table) == 2 + len(rows) and table[2].startswith("| Q1 |")
