"""Named configurations (`--profile NAME` of `rcl-kernels train` and python/ablations.py).

A profile is a set of config values applied above the defaults and the variant's preset and below
--config and the flags, so `--profile anet-paper --batch-size 4` is the paper's ActivityNet model
at batch 4.

  anet-cpu, thumos-cpu    the CPU-sized protocol of docs/model_results.md (reduced against the
                          paper's sizes: its "What is reduced" section)
  anet-paper              RCL's ActivityNet sizes (paper, section 4.1): T = 100 (BMN's rescaling),
                          TSN's 400-dim features, hidden 256, N = 32 samples, M = 10 refine steps;
                          BMN's PEM 512 / 128 channels for variant bmn
  thumos-paper            THUMOS14: windows of 256 steps with stride 128 over G-TAD's 2048-dim
                          two-stream features (RCL's THUMOS14 input), encoder stride 1, cells up
                          to 64 steps; the same network sizes
"""

from __future__ import annotations

from typing import Any

from rcl_kernels.models.config import ConfigError

_CPU = dict(feature_dim=32, hidden=32, num_samples=8, scorer_hidden=64, refine_state=32, refine_train_segments=64,
            batch_size=8, max_steps=150, warmup_steps=15, lr=2e-3, class_agnostic=True, progress=False,
            device="cpu", eval_batch_size=32)
_PAPER_NETWORK = dict(hidden=256, num_samples=32, scorer_hidden=256, refine_state=256, refine_steps=10,
                      refine_train_segments=128, candidates=200, pem_channels=512, pem_hidden=128, batch_size=16,
                      progress=False)

PROFILES: dict[str, dict[str, Any]] = {
    "anet-cpu": dict(_CPU, dataset="activitynet-synthetic", temporal_scale=50, max_duration=50, candidates=100),
    # windows of 128 steps, encoder stride 2 (64 encoder steps, cells up to 32 = 64 input steps,
    # 8.5 s), videos cropped to their first 1024 steps (2.3 minutes)
    "thumos-cpu": dict(_CPU, dataset="thumos14-synthetic", window=128, encoder_stride=2, max_duration=32,
                       max_video_steps=1024, candidates=100),
    "anet-paper": dict(_PAPER_NETWORK, dataset="activitynet-synthetic", temporal_scale=100, max_duration=100,
                       feature_dim=400, class_agnostic=True),
    "thumos-paper": dict(_PAPER_NETWORK, dataset="thumos14-synthetic", window=256, window_stride=128,
                         feature_dim=2048, encoder_stride=1, max_duration=64),
}


def profile_values(name: str) -> dict[str, tuple[Any, str]]:
    """{key: (value, where)} of profile `name`, in build_configs' file_values form."""
    if name not in PROFILES:
        raise ConfigError(f"--profile: unknown profile {name!r}; known: {', '.join(PROFILES)}")
    return {key: (value, f"the {name} profile") for key, value in PROFILES[name].items()}
