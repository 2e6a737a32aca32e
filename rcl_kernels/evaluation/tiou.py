"""Temporal intersection over union of [start, end] segments, vectorised with numpy.

tIoU = |A n B| / (|A| + |B| - |A n B|), lengths without the +1 of frame-index conventions (as in
ActivityNet's eval_detection.py; THUMOS14's kit divides by the span of the union, which is the
same number whenever the segments intersect, and uses 0 otherwise, as here). Two zero-length
segments have tIoU 0 (0 / 0 is defined as no overlap).
"""

from __future__ import annotations

import numpy as np


def intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise length of the intersection of (..., 2) segments (0 when disjoint)."""
    return np.clip(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)


def paired_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise tIoU of (K, 2) segments a[k] and b[k] -> (K,)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    inter = intersection(a, b)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    out = np.zeros(np.broadcast(inter, union).shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def pairwise_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """tIoU of every segment of a (N, 2) with every segment of b (M, 2) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    return paired_tiou(a[:, None, :], b[None, :, :])
