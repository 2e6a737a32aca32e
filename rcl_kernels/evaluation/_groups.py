"""Segmented-array helpers shared by the vectorised metrics (no Python loop over elements).

The metrics turn per-(video, class) loops into operations on sorted flat arrays: runs of equal
keys are the groups, and (left, right) pairs inside a group are expanded with np.repeat.
"""

from __future__ import annotations

import numpy as np


def rank_within_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Position of each element inside its run of equal keys (keys already sorted)."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    is_start = np.ones(n, dtype=bool)
    is_start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    starts = np.flatnonzero(is_start)
    run_start = np.repeat(starts, np.diff(np.append(starts, n)))
    return np.arange(n, dtype=np.int64) - run_start


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal keys begins (keys already sorted)."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))


def key_ranges(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query key, the (start, count) of its run in `sorted_keys` (count 0 if absent)."""
    start = np.searchsorted(sorted_keys, queries, side="left")
    end = np.searchsorted(sorted_keys, queries, side="right")
    return start.astype(np.int64), (end - start).astype(np.int64)


def expand_pairs(left: np.ndarray, right_start: np.ndarray, right_count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (left[i], right_start[i] + j) for j < right_count[i], grouped by i in order."""
    total = int(right_count.sum())
    pair_left = np.repeat(left, right_count)
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(right_count) - right_count, right_count)
    return pair_left, np.repeat(right_start, right_count) + offsets


def first_true_per_segment(mask: np.ndarray, segment_starts: np.ndarray) -> np.ndarray:
    """For an (n, K) mask split into non-empty row segments beginning at `segment_starts`, the row
    index of the first True of each segment and column -> (m, K), -1 where a segment has none."""
    n = mask.shape[0]
    rows = np.where(mask, np.arange(n, dtype=np.int64)[:, None], n)
    first = np.minimum.reduceat(rows, segment_starts, axis=0)
    first[first == n] = -1
    return first


def segmented_suffix_max(values: np.ndarray, sorted_segments: np.ndarray) -> np.ndarray:
    """out[i] = max(values[i:end of i's run]) for runs of equal `sorted_segments`; exact, by
    doubling (log2 of the longest run numpy passes)."""
    n = len(values)
    out = values.copy()
    if n < 2:
        return out
    ends = np.searchsorted(sorted_segments, sorted_segments, side="right")
    longest = int((ends - np.arange(n)).max())
    index = np.arange(n)
    step = 1
    while step < longest:
        ahead = index + step
        valid = ahead < ends
        nxt = out.copy()
        nxt[valid] = np.maximum(out[valid], out[ahead[valid]])
        out = nxt
        step *= 2
    return out


def descending_score_order(score: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Indices sorted by keys[0], then keys[1], ..., then score descending, then input order.

    Two-pass stable sorts (score first, then each key, last key first) are faster than np.lexsort
    with a float key on large arrays and give the same order.
    """
    order = np.argsort(-score, kind="stable")
    for key in reversed(keys):
        order = order[np.argsort(key[order], kind="stable")]
    return order


def rank_in_class(label: np.ndarray, ranking: np.ndarray, num_classes: int) -> np.ndarray:
    """(P,) position of each detection in its class's ranking, given `ranking`, the indices of all
    detections best first."""
    order = ranking[np.argsort(label[ranking], kind="stable")]
    bounds = np.searchsorted(label[order], np.arange(num_classes + 1))
    rank = np.empty(len(label), dtype=np.int64)
    rank[order] = np.arange(len(label)) - np.repeat(bounds[:-1], np.diff(bounds))
    return rank
