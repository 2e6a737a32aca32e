"""Batched Soft-NMS: the public op and its torch.library glue.

The C++ operator rcl_kernels::soft_nms (CPU and CUDA kernels) gets its fake kernel here; the
reference backend is plain PyTorch (rcl_kernels/reference/soft_nms.py). The op has no autograd
formula: selection is discrete, so the outputs are not differentiable (inputs are detached).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from rcl_kernels._backends import OpBackends
from rcl_kernels._extension import EXTENSION_LOADED
from rcl_kernels._vocabulary import shape_of
from rcl_kernels.reference.soft_nms import METHODS, comparable_min_score, comparable_min_score_f64, soft_nms_reference

SOFT_NMS_BACKENDS = OpBackends(
    op_name="soft_nms",
    backends=("reference", "cpu", "cuda"),
    auto_order={"cpu": ("cpu", "reference"), "cuda": ("cuda", "reference")},
)

# Coordinates and scores are processed in float32 (half types are converted exactly), or in
# float64 where either is float64.
_FLOAT_INPUTS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# Backends with a float64 computation; float64 inputs on CUDA go to the reference under "auto".
_FLOAT64_BACKENDS = ("reference", "cpu")
_INT_TYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


class SoftNMSResult(NamedTuple):
    """Fixed-size results, W = min(top_k, P) columns; entries beyond counts[v] are empty (score
    0, segment (0, 0), index and label -1)."""

    segments: torch.Tensor  # (V, W, 2) float32 (float64), the selected input segments
    scores: torch.Tensor  # (V, W) float32 (float64), the (decayed) score at selection
    labels: torch.Tensor | None  # (V, W) int64, or None without labels
    indices: torch.Tensor  # (V, W) int64 into the input's P axis
    counts: torch.Tensor  # (V,) int64, number of selected candidates


def _finite_number(x) -> bool:
    # Comparisons rather than math.isfinite, which torch.compile(dynamic=True) cannot trace on
    # the numbers it makes symbolic (False for NaN as well).
    return isinstance(x, (int, float)) and not isinstance(x, bool) and -math.inf < x < math.inf


def check_soft_nms_args(segments, scores, labels, lengths, method, sigma, iou_threshold, min_score, top_k,
                        width_gate) -> None:
    """Raise an error naming the offending argument; never looks at tensor values (no sync)."""
    if not isinstance(segments, torch.Tensor) or segments.dim() not in (2, 3) or segments.shape[-1] != 2:
        raise ValueError(f"soft_nms: segments must have shape (V, P, 2) or (P, 2), got {shape_of(segments)}")
    batched = segments.dim() == 3
    want = "(V, P)" if batched else "(P,)"
    if not isinstance(scores, torch.Tensor) or scores.shape != segments.shape[:-1]:
        raise ValueError(
            f"soft_nms: scores must have shape {want} = {tuple(segments.shape[:-1])}, got {shape_of(scores)}"
        )
    for name, t in (("segments", segments), ("scores", scores)):
        if t.dtype not in _FLOAT_INPUTS:
            raise TypeError(f"soft_nms: {name} must be float32, float16, bfloat16 or float64, got {t.dtype}")
    if scores.device != segments.device:
        raise ValueError(f"soft_nms: scores is on {scores.device} but segments is on {segments.device}")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.shape != scores.shape:
            raise ValueError(f"soft_nms: labels must have shape {want} = {tuple(scores.shape)}, got {shape_of(labels)}")
        if labels.dtype not in _INT_TYPES:
            raise TypeError(f"soft_nms: labels must be an integer tensor, got {labels.dtype}")
        if labels.device != segments.device:
            raise ValueError(f"soft_nms: labels is on {labels.device} but segments is on {segments.device}")
    if lengths is not None:
        if not batched:
            raise ValueError("soft_nms: lengths is only accepted with batched (V, P, 2) segments")
        if not isinstance(lengths, torch.Tensor) or lengths.shape != segments.shape[:1]:
            raise ValueError(f"soft_nms: lengths must have shape (V,) = ({segments.shape[0]},), got {shape_of(lengths)}")
        if lengths.dtype not in _INT_TYPES:
            raise TypeError(f"soft_nms: lengths must be an integer tensor, got {lengths.dtype}")
        if lengths.device != segments.device:
            raise ValueError(f"soft_nms: lengths is on {lengths.device} but segments is on {segments.device}")
    if segments.shape[-2] >= 2**31:
        raise ValueError(f"soft_nms: at most 2^31 - 1 candidates per video, got P = {segments.shape[-2]}")
    if method not in METHODS:
        raise ValueError(f"soft_nms: method must be one of {METHODS}, got {method!r}")
    if not _finite_number(sigma) or sigma <= 0:
        raise ValueError(f"soft_nms: sigma must be a finite number > 0, got {sigma!r}")
    if not _finite_number(iou_threshold) or iou_threshold < 0:
        raise ValueError(f"soft_nms: iou_threshold must be a finite number >= 0, got {iou_threshold!r}")
    if not _finite_number(min_score):
        raise ValueError(f"soft_nms: min_score must be a finite number, got {min_score!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"soft_nms: top_k must be an int >= 1, got {top_k!r}")
    if width_gate is not None and (
        not isinstance(width_gate, (tuple, list)) or len(width_gate) != 2 or not all(map(_finite_number, width_gate))
    ):
        raise ValueError(f"soft_nms: width_gate must be None or a pair of finite numbers (t1, t2), got {width_gate!r}")


def lengths_checked(device: torch.device) -> bool:
    """How lengths outside [0, P] are treated on `device`: an error for CPU tensors, where the
    check needs no host synchronisation (True); clamped to [0, P] on the device elsewhere
    (False): a check of CUDA values would wait for the GPU, and a device-side assert would
    poison the CUDA context."""
    return device.type == "cpu"


def bounded_lengths(lengths: torch.Tensor, num_candidates, *, check: bool) -> torch.Tensor:
    """int64 lengths within [0, P]: checked (RuntimeError naming the argument) or clamped."""
    if check:
        # An assert op rather than a Python `if`: torch.compile traces it (no data-dependent
        # branch), and on CPU tensors it raises at once.
        torch._assert_async(((lengths >= 0) & (lengths <= num_candidates)).all(),
                            f"soft_nms: every lengths[v] must lie in [0, P] = [0, {num_candidates}] (P candidates "
                            f"per video)")
        return lengths
    return lengths.clamp(0, num_candidates)


def soft_nms(
    segments: torch.Tensor,
    scores: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.0,
    min_score: float = 0.001,
    top_k: int = 100,
    width_gate: tuple[float, float] | None = None,
    backend: str = "auto",
) -> SoftNMSResult:
    """Soft-NMS of many videos at once: keep the top_k candidates of every video.

    Args:
        segments: (V, P, 2) (start, end) per candidate, float32 (float16 / bfloat16 are
            converted exactly) or float64; or (P, 2) for one video, which gives unbatched
            results.
        scores: (V, P) (or (P,)), same dtypes. Where segments or scores is float64, the whole
            computation (and the output segments and scores) is float64, by the same sequence
            of operations with float64 constants and exp; otherwise float32 as below. The
            "cuda" backend has no float64 computation: "auto" sends float64 CUDA tensors to
            the reference backend.
        labels: optional (V, P) (or (P,)) integer class of each candidate: suppression then acts
            only within a class, and the output is the merged sequence of all classes.
        lengths: optional (V,) integers: candidates [lengths[v], P) of video v are padding.
            Values outside [0, P] are an error (RuntimeError) for CPU tensors and are clamped
            to [0, P] on a GPU, where checking them would need a host synchronisation.
        method: "gaussian" (s *= exp(-tIoU^2 / sigma)), "linear" (s *= 1 - tIoU) or "hard"
            (s = 0).
        sigma: Gaussian width, > 0 (checked for every method).
        iou_threshold: decay only candidates with tIoU > iou_threshold (>= 0).
        min_score: a candidate whose current score is below it is never selected. Compared
            after rounding to float32; a float32 subnormal min_score (magnitude below
            FLT_MIN = 1.18e-38) counts as 0, as it does on the GPU, whose comparisons flush
            subnormals.
        top_k: at most this many selections per video. The outputs have W = min(top_k, P)
            columns, P the number of candidates per video: a top_k above P is capped there,
            so the output size is bounded by the input's (and still depends only on shapes).
        width_gate: (t1, t2): additionally decay only where tIoU > t1 + t2 * (end_best -
            start_best). BMN / BSN's rule "tIoU > low + (high - low) * width" is
            width_gate=(low, high - low), with method="gaussian", sigma=alpha,
            iou_threshold=0, min_score=0 (or below every score).
        backend: "auto", "reference", "cpu" or "cuda" (see rcl_kernels.info()).

    Per video: repeat until top_k are selected or none is selectable: select the highest
    current score that is >= min_score (ties: the lowest input index), output it with that
    score, remove it, and decay every remaining candidate of the same label (all, without
    labels) with tIoU(best, j) > iou_threshold (and above the width gate). tIoU is
    intersection / (len_best + len_j - intersection), len = end - start, and 0 where the
    segments do not overlap (so zero-length, inverted or non-overlapping pairs never decay).
    With non-negative scores the class-aware result equals running each class alone and
    merging by score.

    tIoU's union is summed as ((len_best - intersection) + end_j) - start_j, left to right (the
    order of BSN's and mmaction2's soft_nms: with float64 inputs, pairs whose tIoU equals the
    width gate exactly are decided as there).

    Numerics (identical on every backend, so all return the same indices and bit-identical
    scores): float32 arithmetic in a fixed order without fused multiply-adds; the Gaussian
    weight uses a fixed float32 exp within 2 ulp of the true one (0 below exp(-86)); scores,
    tIoUs and squared tIoUs of magnitude below FLT_MIN (subnormals) count as 0, and so does a
    subnormal min_score. NaN
    scores are never selected; a segment with a NaN or infinite coordinate has tIoU 0 with
    every other (it is selected by score alone). Results for coordinates of magnitude below
    1e-37 (float32 subnormal differences) may differ on the GPU, which flushes subnormals.

    Returns:
        SoftNMSResult(segments (V, W, 2), scores (V, W), labels (V, W) or None, indices (V, W),
        counts (V,)), W = min(top_k, P): fixed-size, float32 (float64 for float64 inputs) / int64,
        on the input's device;
        entries beyond counts[v] hold score 0, segment (0, 0), index -1 and label -1. No host
        synchronisation (the op can be captured in a CUDA graph and traced by torch.compile).
        The outputs are not differentiable.
    """
    check_soft_nms_args(segments, scores, labels, lengths, method, sigma, iou_threshold, min_score, top_k, width_gate)
    float64 = torch.float64 in (segments.dtype, scores.dtype)
    chosen = SOFT_NMS_BACKENDS.resolve(backend, segments.device, segments.dtype)
    if float64 and chosen not in _FLOAT64_BACKENDS:
        if backend != "auto":
            raise TypeError(f"soft_nms: the {chosen!r} backend computes in float32 only; float64 inputs run on "
                            f"the backends {_FLOAT64_BACKENDS}")
        chosen = "reference"
    batched = segments.dim() == 3
    if not batched:
        segments, scores = segments[None], scores[None]
        labels = labels[None] if labels is not None else None
    dtype = torch.float64 if float64 else torch.float32
    segments = segments.detach().to(dtype)
    scores = scores.detach().to(dtype)
    labels = labels.to(torch.int64) if labels is not None else None
    P = segments.shape[1]
    if lengths is not None:
        lengths = bounded_lengths(lengths.to(torch.int64), P, check=lengths_checked(lengths.device))
    width = min(top_k, P)
    # The kernels take top_k >= 1: with P = 0 they fill one empty column, sliced off below.
    kernel_top_k = max(width, 1)
    gate_on = width_gate is not None
    t1, t2 = (float(width_gate[0]), float(width_gate[1])) if gate_on else (0.0, 0.0)
    args = (segments, scores, labels, lengths, method, float(sigma), float(iou_threshold),
            comparable_min_score_f64(min_score) if float64 else comparable_min_score(min_score), kernel_top_k,
            gate_on, t1, t2)
    if chosen == "reference":
        out = soft_nms_reference(*args)
    else:
        out = torch.ops.rcl_kernels.soft_nms.default(*args)
    seg, sc, lab, idx, cnt = out
    if width < kernel_top_k:
        seg, sc, idx = seg[:, :width], sc[:, :width], idx[:, :width]
        lab = lab[:, :width] if labels is not None else lab
    result = SoftNMSResult(seg, sc, lab if labels is not None else None, idx, cnt)
    if not batched:
        result = SoftNMSResult(*(t[0] if t is not None else None for t in result))
    return result


def _fake_soft_nms(segments, scores, labels, lengths, method, sigma, iou_threshold, min_score, top_k, width_gate,
                   gate_t1, gate_t2):
    V = segments.shape[0]
    i64 = dict(dtype=torch.int64)
    return (
        segments.new_empty((V, top_k, 2)),
        segments.new_empty((V, top_k)),
        segments.new_empty((V, top_k) if labels is not None else (0,), **i64),
        segments.new_empty((V, top_k), **i64),
        segments.new_empty((V,), **i64),
    )


if EXTENSION_LOADED:
    torch.library.register_fake("rcl_kernels::soft_nms")(_fake_soft_nms)
