"""Pure-PyTorch batched Soft-NMS: the fallback backend and the "batched PyTorch loop" baseline.

All videos advance together: each of min(top_k, P) steps is a handful of (V, P) tensor
operations (an argmax, a tIoU row, a decay), with no Python loop over videos and no host
synchronisation. Every float operation mirrors csrc/soft_nms_common.h one for one (same
order, same float32 rounding, the same exp; float64 throughout for float64 inputs, like the
CPU kernel), so this backend returns bit-identical results to the C++ and CUDA kernels.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

METHODS = ("gaussian", "linear", "hard")

FLT_MIN = float(np.finfo(np.float32).tiny)
DBL_MIN = float(np.finfo(np.float64).tiny)

# exp_nonpositive: the constants of csrc/soft_nms_common.h (Cody-Waite reduction, Cephes' expf
# polynomial by S. L. Moshier).
EXP_MIN_ARG = -86.0
LOG2E = 1.44269504088896341
ROUND_MAGIC = 12582912.0  # 1.5 * 2^23
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)

# The float64 exp of csrc/soft_nms_common.h: Cody-Waite reduction (fdlibm's split of ln 2), then
# Taylor's polynomial of degree 13 by Horner's rule, p = 1 + r p' / n.
EXP_MIN_ARG_F64 = -708.0
LOG2E_F64 = 1.4426950408889634
ROUND_MAGIC_F64 = 6755399441055744.0  # 1.5 * 2^52
LN2_HI_F64 = 6.93147180369123816490e-01
LN2_LO_F64 = 1.90821492927058770002e-10
EXP_TAYLOR_DEGREE_F64 = 13


def f32(x: float) -> float:
    """x rounded to the nearest float32 (as the C++ kernels' static_cast<float> does)."""
    return float(np.float32(x))


def comparable_min_score(min_score: float) -> float:
    """min_score as every backend compares scores with it: rounded to float32, and 0 when that
    is subnormal, as the scores are (flush_score in csrc/soft_nms_common.h). rcl_kernels.soft_nms
    flushes it before any backend sees it, so all of them agree whatever a device's subnormal
    mode (the CUDA build keeps subnormals: no -ftz, tests/test_cuda_ptx.py)."""
    rounded = f32(min_score)
    return 0.0 if abs(rounded) < FLT_MIN else rounded


def comparable_min_score_f64(min_score: float) -> float:
    """min_score as the float64 computation compares scores with it: 0 when subnormal, as in
    float32 (scores below the smallest normal number are 0 there too)."""
    return 0.0 if abs(min_score) < DBL_MIN else float(min_score)


def min_normal(dtype: torch.dtype) -> float:
    """The smallest normal number of the computation's type (float32 or float64)."""
    return DBL_MIN if dtype == torch.float64 else FLT_MIN


def exp_nonpositive(x: torch.Tensor) -> torch.Tensor:
    """exp(x) of a float32 (or float64) tensor with x <= 0, by the same operation sequence as
    the kernels: 0 for x < -86 (-708 in float64) or NaN, otherwise a normal number within 2 ulp
    of exp(x)."""
    if x.dtype == torch.float64:
        return _exp_nonpositive_f64(x)
    in_range = x >= EXP_MIN_ARG
    xc = torch.where(in_range, x, torch.zeros_like(x))
    t = xc * f32(LOG2E)
    k = (t + ROUND_MAGIC) - ROUND_MAGIC
    r = xc - k * LN2_HI
    r = r - k * f32(LN2_LO)
    z = r * r
    p = torch.full_like(r, f32(EXP_POLY[0]))
    for c in EXP_POLY[1:]:
        p = p * r + f32(c)
    p = p * z + r
    p = p + 1.0
    scale = torch.bitwise_left_shift(k.to(torch.int32) + 127, 23).view(torch.float32)  # 2^k
    return torch.where(in_range, p * scale, torch.zeros_like(p))


def _exp_nonpositive_f64(x: torch.Tensor) -> torch.Tensor:
    in_range = x >= EXP_MIN_ARG_F64
    xc = torch.where(in_range, x, torch.zeros_like(x))
    t = xc * LOG2E_F64
    k = (t + ROUND_MAGIC_F64) - ROUND_MAGIC_F64
    r = xc - k * LN2_HI_F64
    r = r - k * LN2_LO_F64
    p = torch.ones_like(r)
    for n in range(EXP_TAYLOR_DEGREE_F64, 0, -1):
        p = 1.0 + (r * p) / float(n)
    scale = torch.bitwise_left_shift(k.to(torch.int64) + 1023, 52).view(torch.float64)  # 2^k
    return torch.where(in_range, p * scale, torch.zeros_like(p))


def flush_score(s: torch.Tensor) -> torch.Tensor:
    """Scores below the smallest normal number in magnitude become +0 (NaN stays NaN)."""
    return torch.where(s.abs() < min_normal(s.dtype), torch.zeros_like(s), s)


def decayed_score(s: torch.Tensor, iou: torch.Tensor, method: str, neg_inv_sigma: float,
                  weight_exp: Callable[[torch.Tensor], torch.Tensor] = exp_nonpositive) -> torch.Tensor:
    if method == "hard":
        return torch.zeros_like(s)
    if method == "gaussian":
        squared = iou * iou
        weight = weight_exp(torch.where(squared >= min_normal(squared.dtype), squared, 0.0) * neg_inv_sigma)
    else:
        weight = 1.0 - iou
    return flush_score(s * weight)


def soft_nms_reference(
    segments: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor | None,
    lengths: torch.Tensor | None,
    method: str,
    sigma: float,
    iou_threshold: float,
    min_score: float,
    top_k: int,
    width_gate: bool,
    gate_t1: float,
    gate_t2: float,
    *,
    weight_exp: Callable[[torch.Tensor], torch.Tensor] = exp_nonpositive,
):
    """Batched Soft-NMS with the arguments of torch.ops.rcl_kernels.soft_nms (float32 or float64
    segments (V, P, 2) and scores (V, P) of one dtype, computed in it; int64 labels (V, P) and
    lengths (V,) or None); returns
    (segments, scores, labels, indices, counts) like the kernels, labels an empty (0,) tensor
    when labels is None.

    weight_exp computes the Gaussian weight exp(x); the default is the kernels' bit-exact exp.
    torch.exp gives the loop a user would write (the benchmark's baseline): the same rules, but
    scores may differ in the last bit, and near-ties may then be broken differently."""
    if method not in METHODS:
        raise ValueError(f"soft_nms: method must be one of {METHODS}, got {method!r}")
    V, P = scores.shape
    device = scores.device
    out_segments = segments.new_zeros((V, top_k, 2))
    out_scores = scores.new_zeros((V, top_k))
    out_indices = torch.full((V, top_k), -1, dtype=torch.int64, device=device)
    out_labels = (
        torch.full((V, top_k), -1, dtype=torch.int64, device=device)
        if labels is not None
        else torch.empty((0,), dtype=torch.int64, device=device)
    )
    counts = torch.zeros((V,), dtype=torch.int64, device=device)
    if V == 0 or P == 0:
        return out_segments, out_scores, out_labels, out_indices, counts

    if scores.dtype == torch.float64:  # the arguments as doubles, like static_cast<double>
        neg_inv_sigma, threshold, min_f, t1, t2 = -1.0 / sigma, iou_threshold, min_score, gate_t1, gate_t2
    else:
        neg_inv_sigma = f32(-1.0 / sigma)
        threshold = f32(iou_threshold)
        min_f = comparable_min_score(min_score)
        t1, t2 = f32(gate_t1), f32(gate_t2)
    tiny = min_normal(scores.dtype)

    # Non-finite segments become the inverted (1, 0): tIoU 0 with everything.
    start, end = segments[..., 0], segments[..., 1]
    finite = torch.isfinite(start) & torch.isfinite(end)
    start = torch.where(finite, start, torch.ones_like(start))
    end = torch.where(finite, end, torch.zeros_like(end))
    length = end - start

    position = torch.arange(P, device=device)
    live = position < lengths.clamp(0, P)[:, None] if lengths is not None else torch.ones_like(finite)
    # Working scores; NaN marks a removed (selected, padded or NaN-scored) candidate.
    work = torch.where(live, flush_score(scores), torch.full_like(scores, float("nan")))
    no_index = torch.full((V,), P, dtype=torch.int64, device=device)
    neg_inf = torch.full_like(work, float("-inf"))

    for t in range(min(top_k, P)):
        selectable = work >= min_f
        key = torch.where(selectable, work, neg_inf)
        best_score = key.amax(dim=1, keepdim=True)
        found = selectable.any(dim=1)
        # Lowest index among the maxima (-0.0 == +0.0 counts as a tie too).
        best = torch.where(selectable & (key == best_score), position, no_index[:, None]).amin(dim=1)
        best_c = best.clamp(max=P - 1)[:, None]
        out_indices[:, t] = torch.where(found, best, -1)
        out_scores[:, t] = torch.where(found, work.gather(1, best_c)[:, 0], 0.0)
        counts += found
        work = torch.where(position == best[:, None], torch.full_like(work, float("nan")), work)

        start_b, end_b, len_b = start.gather(1, best_c), end.gather(1, best_c), length.gather(1, best_c)
        inter = torch.minimum(end_b, end) - torch.maximum(start_b, start)
        union = ((len_b - inter) + end) - start
        quotient = inter / union
        iou = torch.where((inter > 0) & (quotient >= tiny), quotient, 0.0)
        hit = ~torch.isnan(work) & (iou > threshold) & found[:, None]
        if width_gate:
            hit &= iou > (len_b * t2 + t1)
        if labels is not None:
            hit &= labels == labels.gather(1, best_c)
        work = torch.where(hit, decayed_score(work, iou, method, neg_inv_sigma, weight_exp), work)

    picked = out_indices.clamp(min=0)
    filled = out_indices >= 0
    out_segments = torch.where(filled[..., None], segments.gather(1, picked[..., None].expand(-1, -1, 2)), 0.0)
    if labels is not None:
        out_labels = torch.where(filled, labels.gather(1, picked), -1)
    return out_segments, out_scores, out_labels, out_indices, counts
