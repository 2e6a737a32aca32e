"""BMN's test-time post-processing: mmaction2's per-video BMN.predict against bmn_proposals.

The same confidence maps for both: random float32 maps (B, 2, T, T), start and end (B, T) at
the published ActivityNet config (T = 100, Soft-NMS alpha 0.4, low 0.5, high 0.9, top_k 100,
feature_extraction_interval 16), 500 videos. mmaction2's side is its own BMN.predict, one video
per call, on a host object whose _forward returns the video's maps (so no model is built and
only the post-processing is timed: the bin rule, the double loop over the T x T cells, numpy
Soft-NMS, scaling). Ours: bmn_proposals on batches of 16 and 64 videos. Both include moving the
maps to numpy / the output dicts. Rows report the time for all the videos and, per row,
ms_per_video and the projection to ActivityNet validation's 4,728 videos; the stock rows are
skipped with the reason where mmaction2 is not installed.
"""

from __future__ import annotations

import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from common import BenchConfig, Timing, row, standalone_main, try_measure  # noqa: E402

from rcl_kernels.integrations.mmaction2_proposals import bmn_proposals  # noqa: E402

PUBLISHED = dict(soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9,
                 post_process_top_k=100, feature_extraction_interval=16)
ANET_VALIDATION_VIDEOS = 4728
PROBLEMS = {
    "bmn-post-500v": "BMN post-processing of 500 videos, T = 100, published Soft-NMS config, random float32 maps",
}


def problem(videos: int = 500, T: int = 100, seed: int = 0):
    """(confidence_map (V, 2, T, T), start (V, T), end (V, T), metas): random float32 maps."""
    g = torch.Generator().manual_seed(seed)
    confidence_map = torch.rand(videos, 2, T, T, generator=g)
    start, end = torch.rand(videos, T, generator=g), torch.rand(videos, T, generator=g)
    frames = torch.randint(300, 9000, (videos,), generator=g).tolist()
    metas = [dict(video_name=f"v_{v:05d}", duration_frame=f, duration_second=f / 29.97, feature_frame=f // 16 * 16)
             for v, f in enumerate(frames)]
    return confidence_map, start, end, metas


def stock_bmn():
    """(mmaction2's BMN class, None), or (None, why not)."""
    try:
        from mmaction2_support import import_mmaction_models, mmaction2_missing
    except ImportError:
        return None, "tests/mmaction2_support.py not found"
    missing = mmaction2_missing()
    if missing:
        return None, missing
    return import_mmaction_models().localizers.bmn.BMN, None


class _Sample:
    def __init__(self, meta):
        self.metainfo = meta


def stock_predict(BMN, confidence_map, start, end, meta, params=PUBLISHED) -> dict:
    """mmaction2's BMN.predict for one video's maps ((2, T, T), (T,), (T,)) without building the
    model: predict reads only these attributes and _forward's outputs."""
    host = types.SimpleNamespace(tscale=start.shape[-1], **params,
                                 _forward=lambda _: (confidence_map[None], start[None], end[None]))
    return BMN.predict(host, None, [_Sample(meta)])[0]


def batched(confidence_map, start, end, metas, batch: int, params=PUBLISHED) -> list[dict]:
    out = []
    for b in range(0, len(metas), batch):
        out += bmn_proposals(confidence_map[b:b + batch], start[b:b + batch], end[b:b + batch], metas[b:b + batch],
                             **params)
    return out


def _with_projection(r: dict, videos: int) -> dict:
    if r["ms"] is not None:
        r["ms_per_video"] = r["ms"] / videos
        r["projected_anet_val_s"] = r["ms_per_video"] * ANET_VALIDATION_VIDEOS / 1000
    return r


def run(cfg: BenchConfig, *, videos: int = 500, T: int = 100, batch_sizes=(16, 64),
        stock_videos: int | None = None) -> list[dict]:
    """Rows for `videos` videos; mmaction2 is timed on the first stock_videos of them (all of them
    by default, 100 in the quick CPU run) and scaled to `videos`."""
    confidence_map, start, end, metas = problem(videos, T)
    name = f"bmn-post-{videos}v" + ("" if T == 100 else f"-T{T}")
    rows = []
    ours = {}
    for batch in batch_sizes:
        ours[batch] = batched(confidence_map, start, end, metas, batch)
        timing, skip = try_measure(lambda: batched(confidence_map, start, end, metas, batch), cfg,
                                   reps=min(cfg.reps, 3), warmup=0)
        rows.append(_with_projection(row("bmn_post_processing", name, f"bmn_proposals, batches of {batch}",
                                         "predict", timing, ours=True, dtype="float32", skipped=skip,
                                         videos=videos), videos))
    BMN, why = stock_bmn()
    subset = min(videos, stock_videos or (100 if cfg.quick else videos))
    timing, differ = None, None
    if BMN is not None:
        def stock():
            return [stock_predict(BMN, confidence_map[v], start[v], end[v], metas[v]) for v in range(subset)]

        want = stock()
        got = ours[batch_sizes[0]][:subset]
        differ = sum(g["proposal_list"] != w["proposal_list"] for g, w in zip(got, want))
        timing, why = try_measure(stock, cfg, reps=1, warmup=0)
        if timing is not None:
            timing = Timing(ms=timing.ms, ms_p20=timing.ms_p20, ms_p80=timing.ms_p80,
                            peak_mib=timing.peak_mib).scaled(videos / subset)
    rows.append(_with_projection(row("bmn_post_processing", name, "mmaction2 BMN.predict, per video", "predict",
                                     timing, ours=False, dtype="float32", skipped=why, videos=videos,
                                     timed_videos=subset, videos_with_other_proposals=differ), videos))
    return rows


if __name__ == "__main__":
    standalone_main("bench_mmaction2_proposals", run, PROBLEMS)
