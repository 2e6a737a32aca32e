"""Inputs and comparisons shared by the SoI and score_anchors fuzz tests
(tests/test_segment_interp_fuzz.py, tests/test_score_anchors_fuzz.py): hypothesis strategies for
(start, end) segments on a T-step feature axis, strided views of the same values, and the
NaN-aware version of tests/tolerances.py's bound."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from tolerances import assert_close_to_reference

NAN, INF = float("nan"), float("inf")
SPECIAL_COORDINATES = [NAN, INF, -INF, 1e30, -1e30, 3e38, -3e38]


def coordinate(T: int, *, extreme: bool = True, huge: bool = True):
    """One coordinate on a T-step axis. extreme adds NaN, +-inf and the SPECIAL_COORDINATES
    (huge=False leaves out the finite ones beyond 1e4)."""
    ordinary = [
        st.floats(-T - 3, 2 * T + 3, width=32),  # inside, partly or wholly outside [0, T-1]
        st.integers(-2, T + 1).map(float),  # on the interpolation intervals' ends
        st.sampled_from([T - 1.0, T - 1.5, float(T), -1.0, -0.5, 0.0, -0.0, 1e-30]),
    ]
    if not extreme:
        return st.one_of(*ordinary)
    specials = [x for x in SPECIAL_COORDINATES if huge or not 1e4 < abs(x) < INF]
    return st.one_of(*ordinary, st.sampled_from(specials))


def segment(T: int, **kinds):
    """(start, end): any pair, zero-length or very short; `kinds` as for coordinate()."""
    c = coordinate(T, **kinds)
    return st.one_of(
        st.tuples(c, c),  # any order: reversed too
        c.map(lambda s: (s, s)),  # zero length
        st.tuples(c, st.sampled_from([1e-6, 1e-3, 0.5])).map(lambda p: (p[0], p[0] + p[1])),  # very short
    )


def size(largest: int, *, smallest: int = 0):
    """Sizes from smallest to largest, the empty one less often than the others."""
    return st.one_of(st.integers(max(smallest, 1), largest), st.integers(smallest, largest))


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values through a (differentiable) strided view."""
    if layout == "channels_last":
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "strided_time":
        return torch.stack([t, torch.zeros_like(t)], -1)[..., 0]
    if layout == "planes":
        return t.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    if layout == "strided":
        return torch.stack([t, torch.zeros_like(t)], -2)[..., 0, :]
    return t


def assert_close_where_defined(ours, exact, same, dtype, *, scale, what, factor=2.0):
    """tolerances.assert_close_to_reference where the result is defined. Where float32 arithmetic
    itself makes a value NaN (inf - inf, 0 * inf, a window longer than 3.4e38) the float64
    reference has no counterpart: there `ours` must be NaN exactly where `same` (the reference
    in the same dtype) is, and the values are compared everywhere else."""
    assert ours.shape == exact.shape and ours.dtype == same.dtype, what
    nan = ours.isnan()
    assert torch.equal(nan, same.isnan()), f"{what}: NaN where the reference in {same.dtype} has none, or vice versa"
    undefined = nan | exact.isnan()
    ours, exact, same = (t.masked_fill(undefined, 0) for t in (ours, exact, same))
    assert_close_to_reference(ours, exact, same, dtype, factor=factor, scale=scale, what=what)
