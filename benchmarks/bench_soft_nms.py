"""Soft-NMS benchmark: every built backend of rcl_kernels.soft_nms against what users do today.

Baselines, measured in the same run:
  numpy_loop          one video (and, class-aware, one class) at a time in numpy float64, one
                      vectorised argmax + decay per step, as BMN / mmaction2 post-processing does;
                      on the full sizes timed on a subset of videos and scaled to all of them
  torch_batched       the pure-PyTorch batched loop as a user would write it: rcl_kernels'
                      reference backend with torch.exp for the Gaussian weight (the reference's
                      bit-exact exp costs about 20 more elementwise operations per step); all
                      videos advance together, min(top_k, P) steps of (V, P) tensor operations
  cpp_single_thread   (CPU only) our C++ kernel with torch.set_num_threads(1): the single-threaded
                      C++ loop over videos of ActionFormer / OpenTAD / TriDet
  torchvision_hard    torchvision.ops.batched_nms, hard NMS (IoU 0.5) on (start, 0, end, 1)
                      boxes, one group per video (and class): for scale only, it is not Soft-NMS

On a CPU, our kernel's rows also carry its rate in candidate-decays per second (for every
selection, the candidates of its group that it decays: P, or the selection's class size) against
a ceiling measured in the same run: the same kernel on as many videos as threads with 50,000
candidates each, where the decay and argmax passes over long arrays are all the work (packing,
grouping and the per-video set-up are amortised). The fraction is how much of the loop's rate
the per-video overheads leave.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import BenchConfig, Timing, row, standalone_main, torchvision_ops, try_measure  # noqa: E402

import rcl_kernels  # noqa: E402
from rcl_kernels.ops.soft_nms import SOFT_NMS_BACKENDS  # noqa: E402
from rcl_kernels.reference.soft_nms import soft_nms_reference  # noqa: E402

OP = "soft_nms"
NUMPY_VIDEOS_FULL = 200  # videos the numpy loop is timed on at full sizes (then scaled)
CHECKED_VIDEOS = 16  # videos on which every backend is compared with the bit-exact reference


def problems(quick: bool) -> dict:
    """anet: the ActivityNet validation set with BMN-style proposals (segments normalised to
    [0, 1]), class-agnostic. thumos: the THUMOS14 test set with ActionFormer-style class-aware
    candidates in feature steps. Quick (CPU) versions keep P and top_k but fewer videos."""
    anet = dict(V=200 if quick else 4728, P=1000, top_k=100, classes=0, method="gaussian", sigma=0.5,
                iou_threshold=0.0, min_score=0.001)
    thumos = dict(V=20 if quick else 213, P=2000, top_k=200, classes=20, method="gaussian", sigma=0.5,
                  iou_threshold=0.1, min_score=0.001)
    return {"anet": anet, "thumos": thumos}


# ---------------------------------------------------------------------------------------------
# Inputs


def make_candidates(name: str, V: int, P: int, classes: int, gen: torch.Generator):
    """Proposal-like candidates around a few ground-truth actions per video: two thirds are the
    actions with jittered boundaries (scores high when the jitter is small), one third lie
    anywhere (low scores). Action lengths follow the shipped annotations (rcl_kernels/data/annotations): relative
    lengths spread over (0.02, 1) on ActivityNet; 6 to 80 feature steps in videos of about 1,200
    steps on THUMOS14, 15 actions per video."""
    if name == "anet":
        actions, video_len = 2, torch.ones(V, 1)
        act_len = torch.exp(torch.empty(V, actions).uniform_(math.log(0.02), 0.0, generator=gen))
    else:
        actions = 15
        video_len = torch.exp(torch.empty(V, 1).uniform_(math.log(400), math.log(5000), generator=gen)).round()
        act_len = torch.exp(torch.empty(V, actions).uniform_(math.log(6), math.log(80), generator=gen))
    act_start = torch.rand(V, actions, generator=gen) * (video_len - act_len).clamp(min=0)
    which = torch.randint(0, actions, (V, P), generator=gen)
    a_start, a_len = act_start.gather(1, which), act_len.gather(1, which)
    jitter = torch.randn(V, P, 2, generator=gen) * 0.25
    start = a_start + jitter[..., 0] * a_len
    end = a_start + a_len + jitter[..., 1] * a_len
    scores = torch.exp(-jitter.pow(2).sum(-1) * 4) * torch.rand(V, P, generator=gen).sqrt()
    background = torch.rand(V, P, generator=gen) < 1 / 3
    bg_start = torch.rand(V, P, generator=gen) * video_len
    bg_len = torch.rand(V, P, generator=gen) ** 2 * video_len * 0.5
    start = torch.where(background, bg_start, start)
    end = torch.where(background, bg_start + bg_len, end)
    scores = torch.where(background, torch.rand(V, P, generator=gen) * 0.3, scores)
    lo, hi = torch.minimum(start, end).clamp(min=0), torch.maximum(start, end)
    hi = torch.minimum(hi, video_len.expand(V, P))
    segments = torch.stack([lo, torch.maximum(lo, hi)], -1).contiguous()
    labels = None
    if classes:
        act_class = torch.randint(0, classes, (V, actions), generator=gen)
        labels = torch.where(torch.rand(V, P, generator=gen) < 0.8, act_class.gather(1, which),
                             torch.randint(0, classes, (V, P), generator=gen))
    return segments, scores.clamp(0, 1), labels


# ---------------------------------------------------------------------------------------------
# The numpy loop baseline


def numpy_soft_nms_one(start, end, score, index, top_k, sigma, iou_threshold, min_score):
    """One video (one class): repeatedly take the argmax, drop it from the arrays, decay the rest."""
    picked_index, picked_score = [], []
    while len(picked_index) < top_k and score.size:
        i = int(np.argmax(score))
        if not score[i] >= min_score:
            break
        picked_index.append(index[i])
        picked_score.append(score[i])
        s_i, e_i = start[i], end[i]
        start, end, score, index = (np.delete(a, i) for a in (start, end, score, index))
        inter = np.clip(np.minimum(e_i, end) - np.maximum(s_i, start), 0.0, None)
        union = (e_i - s_i) + (end - start) - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)
        score = np.where(iou > iou_threshold, score * np.exp(-np.square(iou) / sigma), score)
    return picked_index, picked_score


def numpy_soft_nms(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray | None, p: dict):
    """Per video (and per class, then merged by score as ActionFormer does): lists of indices."""
    results = []
    for v in range(scores.shape[0]):
        start, end = segments[v, :, 0].astype(np.float64), segments[v, :, 1].astype(np.float64)
        score = scores[v].astype(np.float64)
        groups = [np.arange(score.size)] if labels is None else [
            np.flatnonzero(labels[v] == c) for c in np.unique(labels[v])]
        picks = []
        for members in groups:
            idx, sc = numpy_soft_nms_one(start[members], end[members], score[members], members, p["top_k"],
                                         p["sigma"], p["iou_threshold"], p["min_score"])
            picks += zip(sc, idx)
        picks.sort(key=lambda x: (-x[0], x[1]))
        results.append([int(i) for _, i in picks[: p["top_k"]]])
    return results


def index_agreement(ours: torch.Tensor, counts: torch.Tensor, theirs: list[list[int]]) -> float:
    """Fraction of output slots where both pick the same candidate (numpy uses float64 and the
    library exp: near-ties may go the other way, after which the sequences drift apart)."""
    ours, counts = ours.cpu(), counts.cpu()
    same = total = 0
    for v, picks in enumerate(theirs):
        k = max(len(picks), int(counts[v]))
        mine = ours[v, :k].tolist()
        same += sum(a == b for a, b in zip(mine, picks))
        total += k
    return same / max(total, 1)


# ---------------------------------------------------------------------------------------------


def decay_work(indices: torch.Tensor, counts: torch.Tensor, labels: torch.Tensor | None, P: int) -> int:
    """Candidate-decays of a run: for every selection, the size of the group it decays (all P
    candidates of its video, or those of its class)."""
    indices, counts = indices.cpu(), counts.cpu()
    if labels is None:
        return int(counts.sum()) * P
    labels = labels.cpu()
    total = 0
    for v in range(indices.shape[0]):
        sizes = torch.bincount(labels[v])
        total += int(sizes[labels[v][indices[v, : int(counts[v])]]].sum())
    return total


def decay_loop_ceiling(cfg: BenchConfig, gen: torch.Generator) -> tuple[float | None, str | None]:
    """Candidate-decays per second of our CPU kernel where the loop over long arrays is all the
    work: one video per thread, 50,000 class-agnostic candidates, 100 Gaussian selections."""
    V, P, top_k = torch.get_num_threads(), 50_000, 100
    segments, scores, _ = make_candidates("anet", V, P, 0, gen)
    kw = dict(method="gaussian", sigma=0.5, iou_threshold=0.0, min_score=0.0, top_k=top_k)
    out = rcl_kernels.soft_nms(segments, scores, backend="cpu", **kw)
    timing, skip = try_measure(lambda: rcl_kernels.soft_nms(segments, scores, backend="cpu", **kw), cfg)
    if timing is None:
        return None, skip
    return decay_work(out.indices, out.counts, None, P) / (timing.ms / 1e3), None


def _timed_once(fn) -> Timing:
    t0 = time.perf_counter()
    fn()
    ms = (time.perf_counter() - t0) * 1e3
    return Timing(ms=ms, ms_p20=ms, ms_p80=ms, peak_mib=None)


def run(cfg: BenchConfig) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for pname, p in problems(cfg.quick).items():
        V, P, top_k, classes = p["V"], p["P"], p["top_k"], p["classes"]
        loop_rate = None
        if cfg.device.type == "cpu" and "cpu" in SOFT_NMS_BACKENDS.available("cpu"):
            loop_rate, _ = decay_loop_ceiling(cfg, gen)
        segments, scores, labels = make_candidates(pname, V, P, classes, gen)
        seg_d, sc_d = segments.to(cfg.device), scores.to(cfg.device)
        lab_d = labels.to(cfg.device) if labels is not None else None
        kw = dict(labels=lab_d, method=p["method"], sigma=p["sigma"], iou_threshold=p["iou_threshold"],
                  min_score=p["min_score"], top_k=top_k)

        def call(backend, videos=slice(None)):
            lab = lab_d[videos] if lab_d is not None else None
            return lambda: rcl_kernels.soft_nms(seg_d[videos], sc_d[videos], backend=backend, **{**kw, "labels": lab})

        # Sanity check on a few videos (the bit-exact reference is slow on a CPU): every backend
        # must return exactly what the reference does.
        check = slice(0, min(V, CHECKED_VIDEOS))
        reference = call("reference", check)()
        ours = call("reference")
        for backend in SOFT_NMS_BACKENDS.available(cfg.device.type):
            if backend == "reference":
                continue
            out = call(backend, check)()
            same = all(torch.equal(a, b) for a, b in zip(out, reference) if a is not None)
            timing, skip = try_measure(call(backend), cfg)
            r = row(OP, pname, backend, "fwd", timing, ours=True, skipped=skip,
                    matches_reference_on_videos=check.stop if same else False, **p)
            if backend == "cpu" and timing is not None and loop_rate:
                result = call(backend)()
                work = decay_work(result.indices, result.counts, lab_d, P)
                r.update(rate_per_s=work / (timing.ms / 1e3), rate_unit="candidate-decays",
                         candidates_per_s=V * P / (timing.ms / 1e3), ceiling_name="decay_loop",
                         ceiling_rate_per_s=loop_rate)
            rows.append(r)
            ours = call(backend)
        ours = ours()

        def torch_batched():
            return soft_nms_reference(seg_d, sc_d, lab_d, None, p["method"], p["sigma"], p["iou_threshold"],
                                      p["min_score"], top_k, False, 0.0, 0.0, weight_exp=torch.exp)

        # Slow on a CPU (hundreds of small parallel regions per call): fewer repetitions.
        timing, skip = try_measure(torch_batched, cfg, **({} if cfg.is_cuda else dict(reps=1, warmup=0)))
        rows.append(row(OP, pname, "torch_batched", "fwd", timing, ours=False, skipped=skip, **p))

        if cfg.device.type == "cpu" and "cpu" in SOFT_NMS_BACKENDS.available("cpu"):
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                timing, skip = try_measure(call("cpu"), cfg)
            finally:
                torch.set_num_threads(threads)
            rows.append(row(OP, pname, "cpp_single_thread", "fwd", timing, ours=False, skipped=skip, **p))

        # numpy: one pass (it is slow), on a subset of videos at full sizes, scaled to all V.
        timed_v = V if cfg.quick else min(V, NUMPY_VIDEOS_FULL)
        seg_np, sc_np = segments[:timed_v].numpy(), scores[:timed_v].numpy()
        lab_np = labels[:timed_v].numpy() if labels is not None else None
        picks = []
        timing = _timed_once(lambda: picks.extend(numpy_soft_nms(seg_np, sc_np, lab_np, p)))
        timing = timing.scaled(V / timed_v)
        rows.append(row(OP, pname, "numpy_loop", "fwd", timing, ours=False, timed_videos=timed_v,
                        index_agreement_with_ours=index_agreement(ours.indices[:timed_v], ours.counts[:timed_v],
                                                                  picks), **p))

        tv_ops, tv_missing = torchvision_ops()
        if tv_ops is None:
            rows.append(row(OP, pname, "torchvision_hard", "fwd", None, ours=False, skipped=tv_missing, **p))
        else:
            batched_nms = tv_ops.batched_nms
            boxes = torch.stack([seg_d[..., 0], torch.zeros_like(sc_d), seg_d[..., 1], torch.ones_like(sc_d)], -1)
            boxes = boxes.view(-1, 4)
            group = torch.arange(V, device=cfg.device).view(V, 1).expand(V, P)
            if lab_d is not None:
                group = group * classes + lab_d
            flat_scores, group = sc_d.reshape(-1), group.reshape(-1)
            timing, skip = try_measure(lambda: batched_nms(boxes, flat_scores, group, 0.5), cfg,
                                       reps=min(cfg.reps, 3), warmup=1)
            rows.append(row(OP, pname, "torchvision_hard", "fwd", timing, ours=False, skipped=skip, **p))
    return rows


def sweep(cfg: BenchConfig) -> list[dict]:
    """Time against the number of videos V (P = 1,000) and of candidates P per video (V = 100),
    gaussian, class-agnostic, top 100: our backends, and on a GPU the batched PyTorch loop."""
    points = [("V", V, 1000) for V in ((10, 100, 1000) if cfg.quick else (10, 100, 1000, 10_000))]
    points += [("P", 100, P) for P in ((250, 1000, 4000) if cfg.quick else (250, 1000, 4000, 16_000))]
    gen = torch.Generator().manual_seed(2)
    rows = []
    for var, V, P in points:
        segments, scores, _ = make_candidates("anet", V, P, 0, gen)
        seg_d, sc_d = segments.to(cfg.device), scores.to(cfg.device)
        impls = {b: (lambda b: lambda: rcl_kernels.soft_nms(seg_d, sc_d, top_k=100, backend=b))(b)
                 for b in SOFT_NMS_BACKENDS.available(cfg.device.type) if b != "reference"}
        if cfg.is_cuda:  # on a CPU the batched loop takes seconds to minutes per point
            impls["torch_batched"] = lambda: soft_nms_reference(seg_d, sc_d, None, None, "gaussian", 0.5, 0.0,
                                                                0.001, 100, False, 0.0, 0.0, weight_exp=torch.exp)
        for impl, fn in impls.items():
            timing, skip = try_measure(fn, cfg, reps=2 if cfg.quick else 5, warmup=1)
            rows.append(row(OP, f"sweep_{var}", impl, "fwd", timing, ours=impl != "torch_batched", skipped=skip,
                            sweep=var, V=V, P=P))
    return rows


if __name__ == "__main__":
    standalone_main("soft_nms", run, problems=problems(False))
