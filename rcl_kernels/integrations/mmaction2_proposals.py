"""mmaction2's BMN test-time post-processing for a whole batch: proposals, Soft-NMS, seconds.

bmn_proposals() returns, for each of B videos, what mmaction2 1.2.0's ``BMN.predict`` returns
for one (mmaction/models/localizers/bmn.py, ``predict``, and
mmaction/models/localizers/utils/proposal_utils.py, ``post_processing`` and ``soft_nms``), so
that mmaction2's ``ANetMetric`` scores it unchanged. mmaction2 is not needed.

The rules, as mmaction2 applies them to one video with T temporal positions:
  * boundary bins: position 0 is a start bin and T - 1 an end bin; an interior position
    0 < t < T - 1 is a start (end) bin where its start (end) score is a strict local maximum,
    or above half of the largest start (end) score of the video;
  * candidates: every cell (duration d, start j) of the (D, T) confidence maps with end
    e = j + d + 1 < T, a start bin at j and an end bin at e; segment (j / T, e / T); score
    start[j] * end[e] * classification[d, j] * regression[d, j], multiplied left to right in
    the maps' dtype (float32 for float32 maps);
  * Soft-NMS with more than one candidate: Gaussian decay score * exp(-tIoU^2 / alpha) of the
    candidates whose tIoU with the selected one exceeds low + (high - low) * its width, tIoU
    without a "+ 1", in float64; it stops after top_k + 1 selections (or none left);
  * output: the top_k selections by score, segments scaled to seconds by
    duration_frame // interval * interval / duration_frame * duration_second (the part of the
    video that the features cover), start clipped at 0 and end at 1 before scaling.

Here the candidates of all B videos and all cells are formed by tensor operations (no Python
loop over cells or videos), and Soft-NMS runs once for the batch through rcl_kernels.soft_nms
in float64 (width_gate=(low, high - low), whose tIoU sums the union in mmaction2's order, so
tIoUs that equal the gate exactly are decided as there). Only building the output dicts loops
over the selected proposals.

Where scores tie exactly, mmaction2's order follows numpy's argsort (of the candidates by
score before Soft-NMS, of the selections after it; both reversed), whose default sort is not
stable beyond 16 elements. Here both sorts are stable: ties are ordered as
np.argsort(kind="stable")[::-1] orders them, the later cell of mmaction2's enumeration
(durations outer, starts inner) first, then Soft-NMS takes the first of equal maxima as
np.argmax does. With distinct scores the proposals, their order and scores are mmaction2's;
tests/test_mmaction2_proposals.py counts the ties against mmaction2 itself.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping, Sequence

import torch

from rcl_kernels._vocabulary import shape_of
from rcl_kernels.ops.soft_nms import soft_nms

_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_META_KEYS = ("video_name", "duration_frame", "duration_second")
# Every finite score is selectable (mmaction2 has no minimum score).
_NO_MIN_SCORE = -sys.float_info.max


def _check_inputs(confidence_map, start, end, video_metas, top_k, interval) -> None:
    if not isinstance(confidence_map, torch.Tensor) or confidence_map.dim() != 4 or confidence_map.shape[1] != 2:
        raise ValueError(f"bmn_proposals: confidence_map must have shape (B, 2, D, T), got {shape_of(confidence_map)}")
    B, _, D, T = confidence_map.shape
    for name, t in (("start", start), ("end", end)):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (B, T):
            raise ValueError(f"bmn_proposals: {name} must have shape (B, T) = ({B}, {T}), got {shape_of(t)}")
    for name, t in (("confidence_map", confidence_map), ("start", start), ("end", end)):
        if t.dtype not in _FLOAT_TYPES:
            raise TypeError(f"bmn_proposals: {name} must be a floating-point tensor, got {t.dtype}")
        if t.device != confidence_map.device:
            raise ValueError(f"bmn_proposals: {name} is on {t.device} but confidence_map is on {confidence_map.device}")
    if D != T:
        raise ValueError(f"bmn_proposals: confidence_map must have as many durations as positions (D = T), got "
                         f"D = {D}, T = {T}")
    if T < 2:
        # mmaction2 finds no candidate (np.stack of an empty list raises) for T = 1.
        raise ValueError(f"bmn_proposals: at least T = 2 temporal positions are needed, got T = {T}")
    if isinstance(video_metas, (str, bytes, Mapping)) or not isinstance(video_metas, Sequence) or \
            len(video_metas) != B:
        got = len(video_metas) if isinstance(video_metas, Sequence) else type(video_metas).__name__
        raise ValueError(f"bmn_proposals: video_metas must be a sequence of B = {B} dicts, got {got}")
    for b, meta in enumerate(video_metas):
        missing = [k for k in _META_KEYS if not isinstance(meta, Mapping) or k not in meta]
        if missing:
            raise ValueError(f"bmn_proposals: video_metas[{b}] lacks {missing}")
        if not meta["duration_frame"]:
            raise ValueError(f"bmn_proposals: video_metas[{b}]['duration_frame'] must be non-zero")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"bmn_proposals: post_process_top_k must be an int >= 1, got {top_k!r}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        raise ValueError(f"bmn_proposals: feature_extraction_interval must be a number > 0, got {interval!r}")


@functools.lru_cache(maxsize=16)
def _cells(T: int, device: torch.device):
    """The candidate cells j + d + 1 < T in mmaction2's enumeration order (durations d outer,
    starts j inner): (start index j, end index e, flat index d * T + j) as int64 and the
    segments (j / T, e / T) in float64, all of length P = T (T - 1) / 2."""
    durations, starts = torch.meshgrid(torch.arange(T, device=device), torch.arange(T, device=device), indexing="ij")
    inside = starts + durations + 1 < T
    d, j = durations[inside], starts[inside]
    e = j + d + 1
    segments = torch.stack((j.to(torch.float64) / T, e.to(torch.float64) / T), dim=-1)
    return j, e, d * T + j, segments


def _boundary_bins(scores: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: interior positions that are strict local maxima or above half the maximum
    (positions 0 and T - 1 are left False for the caller)."""
    bins = torch.zeros_like(scores, dtype=torch.bool)
    inner = scores[:, 1:-1]
    peak = (inner > scores[:, 2:]) & (inner > scores[:, :-2])
    high = inner > 0.5 * scores.amax(dim=1, keepdim=True)
    bins[:, 1:-1] = peak | high
    return bins


def _covered_duration(meta: Mapping, interval) -> float:
    """Seconds of the video that its features cover, as mmaction2's post_processing computes it."""
    frames = meta["duration_frame"]
    return float(frames // interval * interval) / frames * meta["duration_second"]


def bmn_proposals(
    confidence_map: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    video_metas: Sequence[Mapping],
    *,
    soft_nms_alpha: float,
    soft_nms_low_threshold: float,
    soft_nms_high_threshold: float,
    post_process_top_k: int,
    feature_extraction_interval: int = 16,
) -> list[dict]:
    """mmaction2 BMN's test-time output for each of B videos (see the module docstring).

    Args:
        confidence_map: (B, 2, D, T) as BMN's ``_forward`` returns it: channel 0 regression,
            channel 1 classification, D = T durations. float32 or float64 (float16 / bfloat16
            are converted to float32).
        start, end: (B, T) boundary probabilities, same dtypes.
        video_metas: B mappings (mmaction2's data-sample metainfo) with video_name,
            duration_frame and duration_second.
        soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold, post_process_top_k,
        feature_extraction_interval: BMN's arguments of the same names.

    Returns:
        [dict(video_name=..., proposal_list=[dict(score=float, segment=[start_s, end_s]), ...]), ...]:
        one dict per video in batch order, at most post_process_top_k proposals each, by
        decreasing score.
    """
    _check_inputs(confidence_map, start, end, video_metas, post_process_top_k, feature_extraction_interval)
    B, _, _, T = confidence_map.shape
    if B == 0:
        return []
    dtype = torch.float64 if torch.float64 in (confidence_map.dtype, start.dtype, end.dtype) else torch.float32
    confidence_map, start, end = (t.detach().to(dtype) for t in (confidence_map, start, end))
    j, e, flat, segments = _cells(T, confidence_map.device)

    start_bins, end_bins = _boundary_bins(start), _boundary_bins(end)
    start_bins[:, 0] = True
    end_bins[:, -1] = True
    valid = start_bins[:, j] & end_bins[:, e]
    regression = confidence_map[:, 0].reshape(B, -1)[:, flat]
    classification = confidence_map[:, 1].reshape(B, -1)[:, flat]
    score = ((start[:, j] * end[:, e]) * classification) * regression  # mmaction2's order and dtype
    score = score.to(torch.float64)
    # mmaction2 sorts the candidates by score before its Soft-NMS, whose np.argmax then takes
    # the first of equal maxima: the same order here makes the kernel's "ties to the lower
    # index" agree with it, also for scores that become equal by decay.
    order = torch.sort(torch.where(valid, score, float("-inf")), dim=1, stable=True).indices.flip(1)
    score = torch.where(valid, score, float("nan")).gather(1, order)  # NaN: not a candidate
    # mmaction2 selects top_k + 1 (its loop runs while len(selected) <= top_k), then sorts the
    # selections by score again and keeps top_k: only the last of a tie can change by that.
    out = soft_nms(segments[order], score, method="gaussian", sigma=float(soft_nms_alpha), iou_threshold=0.0,
                   min_score=_NO_MIN_SCORE, top_k=post_process_top_k + 1,
                   width_gate=(float(soft_nms_low_threshold),
                               float(soft_nms_high_threshold) - float(soft_nms_low_threshold)))
    selected = torch.arange(out.scores.shape[1], device=score.device) < out.counts[:, None]
    final = torch.sort(torch.where(selected, out.scores, float("-inf")), dim=1, stable=True).indices.flip(1)
    final = final[:, :post_process_top_k]
    final_scores = out.scores.gather(1, final)
    final_segments = out.segments.gather(1, final[..., None].expand(-1, -1, 2))
    counts = out.counts.clamp(max=post_process_top_k)
    seconds = torch.tensor([_covered_duration(m, feature_extraction_interval) for m in video_metas],
                           dtype=torch.float64, device=out.scores.device)
    # Cell segments lie within [0, 1): mmaction2's clipping to [0, 1] changes nothing.
    scaled = (final_segments * seconds[:, None, None]).cpu().tolist()
    scores = final_scores.cpu().tolist()
    counts = counts.cpu().tolist()
    return [
        dict(video_name=meta["video_name"],
             proposal_list=[dict(score=s, segment=seg) for s, seg in zip(scores[b][:n], scaled[b][:n])])
        for b, (meta, n) in enumerate(zip(video_metas, counts))
    ]
