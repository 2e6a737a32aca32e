"""Synthetic features for the real videos and instances of THUMOS14 and ActivityNet v1.3.

No real features can ship with the package, but the annotations do (rcl_kernels/data/annotations):
these datasets generate, for every real video of a split, features whose action instances are the
real ones, so detectors train and evaluate on the real structure (instance counts, lengths,
overlaps, classes) with no download.

    from rcl_kernels.data import synthetic
    from rcl_kernels.data.dataset import collate_videos, to_seconds
    from rcl_kernels.evaluation import detection_map

    train = synthetic.thumos14("train", feature_dim=64, seed=0)     # THUMOS14 Validation videos
    test = synthetic.thumos14("test", max_videos=40, max_steps=1024)  # a CPU-sized subset
    item = test[0]          # the item format of rcl_kernels.data.dataset (module docstring):
                            # video_id, features (C, T), segments (G, 2) in steps, labels (G,),
                            # duration, fps, feature_stride, seconds_per_step, time_offset
    ...                     # detections in steps -> to_seconds(steps, item) -> seconds
    detection_map(predictions, test.ground_truth(), protocol="thumos14")

Features (C, T), with C = feature_dim:
- timeline: THUMOS14 one step per 4 frames at the video's fps (16-frame clips, ActionFormer's
  convention: T = (frames - 16) // 4 + 1); ActivityNet rescaled to T = 100 steps (BMN's).
- background: temporally smooth Gaussian noise (a Gaussian filter of width
  `background_correlation` steps) plus white noise, together of standard deviation `noise` per
  channel;
- each instance [s, e] (in steps) of class c adds env(t) * pattern_c(u), where
  env(t) = sigmoid(k (t - s)) * sigmoid(k (e - t)) with k = `boundary_sharpness` (per step: the
  onset and offset ramps take about 4 / k steps), u = (t - s) / (e - s) in [0, 1] is the phase
  inside the instance, and pattern_c(u) = cos(pi u / 2) a_c + sin(pi u / 2) b_c with a_c, b_c
  fixed random N(0, 1) vectors of the class (so the pattern drifts from onset to offset, and the
  signal has per-channel RMS about 1 against the noise's `noise`).
- THUMOS14's Ambiguous regions get no signal (they stay in ground_truth() for the thumos14 protocol).

Deterministic: a video's features depend only on (seed, video id, knobs), not on max_videos or
the order of access; they are generated on the fly (a few ms per video; cache=True keeps them).

Difficulty: `noise` and `boundary_sharpness` set it. The defaults (DEFAULT_NOISE,
DEFAULT_BOUNDARY_SHARPNESS) are calibrated against the detector (rcl_kernels.models, its grid
variant's small config, docs/model_results.md) so that its mAP@0.5 on THUMOS14 lies in 30..70 %
(56 % at noise 1.5; 73 % at noise 1.0); larger noise and smaller sharpness make
detection harder. For scale: a matched filter that knows the class patterns (an upper bound no
learned detector reaches) scores mAP@0.5 (thumos14 protocol, first 60 Test videos, feature_dim 64)
of 0.95 at noise 1, 0.90 at noise 2, 0.61 at noise 3 and 0.32 at noise 4.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rcl_kernels.data import builtin
from rcl_kernels.data.annotations import VideoAnnotation
from rcl_kernels.data.dataset import Timeline, VideoDataset

DEFAULT_FEATURE_DIM = 64
DEFAULT_NOISE = 1.5  # calibrated: the RCL grid variant's small config scores mAP@0.5 56 % (docs/model_results.md)
DEFAULT_BOUNDARY_SHARPNESS = 1.0
DEFAULT_BACKGROUND_CORRELATION = 8.0


@dataclass(frozen=True)
class SyntheticConfig:
    """The knobs of the generator (module docstring)."""

    feature_dim: int = DEFAULT_FEATURE_DIM
    noise: float = DEFAULT_NOISE
    boundary_sharpness: float = DEFAULT_BOUNDARY_SHARPNESS
    background_correlation: float = DEFAULT_BACKGROUND_CORRELATION
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.feature_dim, bool) or not isinstance(self.feature_dim, int) or self.feature_dim < 1:
            raise ValueError(f"feature_dim must be an int >= 1, got {self.feature_dim!r}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise!r}")
        if not (np.isfinite(self.boundary_sharpness) and self.boundary_sharpness > 0):
            raise ValueError(f"boundary_sharpness must be a finite number > 0, got {self.boundary_sharpness!r}")
        if not (np.isfinite(self.background_correlation) and self.background_correlation >= 0):
            raise ValueError("background_correlation must be a finite number >= 0, "
                             f"got {self.background_correlation!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")


def class_patterns(num_classes: int, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """(onset, offset) pattern vectors, each (num_classes, feature_dim), fixed by the seed."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0, config.feature_dim]))
    return (rng.standard_normal((num_classes, config.feature_dim)),
            rng.standard_normal((num_classes, config.feature_dim)))


def smooth_noise(rng: np.random.Generator, num_steps: int, dim: int, correlation: float) -> np.ndarray:
    """(num_steps, dim) Gaussian noise filtered by a Gaussian of std `correlation` steps, unit variance."""
    if correlation <= 0:
        return rng.standard_normal((num_steps, dim))
    pad = int(np.ceil(4 * correlation))
    n = num_steps + 2 * pad  # padding keeps the FFT's circular wrap out of the kept steps
    white = rng.standard_normal((n, dim))
    lag = np.minimum(np.arange(n), n - np.arange(n))
    kernel = np.exp(-0.5 * (lag / correlation) ** 2)
    kernel /= np.sqrt(np.sum(kernel ** 2))  # unit output variance
    filtered = np.fft.irfft(np.fft.rfft(white, axis=0) * np.fft.rfft(kernel)[:, None], n=n, axis=0)
    return filtered[pad:pad + num_steps]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def add_instance(signal: np.ndarray, start: float, end: float, onset: np.ndarray, offset: np.ndarray,
                 sharpness: float) -> None:
    """Add one instance's enveloped, phase-drifting pattern to signal (T, C) in place."""
    num_steps = signal.shape[0]
    reach = 12.0 / sharpness  # where the ramps are below sigmoid(-12) ~ 6e-6
    lo, hi = max(0, int(np.floor(start - reach))), min(num_steps, int(np.ceil(end + reach)) + 1)
    if lo >= hi:
        return
    t = np.arange(lo, hi, dtype=np.float64)
    envelope = _sigmoid(sharpness * (t - start)) * _sigmoid(sharpness * (end - t))
    phase = np.clip((t - start) / max(end - start, 1e-6), 0.0, 1.0) * (0.5 * np.pi)
    signal[lo:hi] += envelope[:, None] * (np.cos(phase)[:, None] * onset + np.sin(phase)[:, None] * offset)


class SyntheticDataset(VideoDataset):
    """Generated features for given videos (built by thumos14() / activitynet())."""

    def __init__(self, videos: Sequence[VideoAnnotation], classes: Sequence[str], timelines: Sequence[Timeline],
                 config: SyntheticConfig, *, max_steps: int | None = None, cache: bool = False):
        super().__init__(videos, classes, timelines, max_steps=max_steps)
        self.config = config
        self.onset, self.offset = class_patterns(len(self.classes), config)
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def load_features(self, index: int) -> np.ndarray:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        features = self.generate(index)
        if self._cache is not None:
            self._cache[index] = features
        return features

    def generate(self, index: int) -> np.ndarray:
        """(C, T) float32 features of video `index`."""
        cfg = self.config
        video, num_steps = self.videos[index], self.timelines[index].num_steps
        rng = np.random.default_rng(np.random.SeedSequence(
            [cfg.seed, 1, zlib.crc32(video.video_id.encode())]))
        noise = smooth_noise(rng, num_steps, cfg.feature_dim, cfg.background_correlation)
        noise += rng.standard_normal((num_steps, cfg.feature_dim))
        signal = noise * (cfg.noise / np.sqrt(2.0))
        segments, labels = self.instances(index)
        for (start, end), c in zip(segments, labels):
            add_instance(signal, start, end, self.onset[c], self.offset[c], cfg.boundary_sharpness)
        return np.ascontiguousarray(signal.T, dtype=np.float32)


def _subset(videos, max_videos: int | None):
    videos = sorted(videos, key=lambda v: v.video_id)
    if max_videos is not None:
        if isinstance(max_videos, bool) or not isinstance(max_videos, int) or max_videos < 1:
            raise ValueError(f"max_videos must be an int >= 1 or None, got {max_videos!r}")
        videos = videos[:max_videos]
    return videos


def thumos14(split: str = "train", *, feature_dim: int = DEFAULT_FEATURE_DIM, noise: float = DEFAULT_NOISE,
             boundary_sharpness: float = DEFAULT_BOUNDARY_SHARPNESS,
             background_correlation: float = DEFAULT_BACKGROUND_CORRELATION, seed: int = 0,
             max_videos: int | None = None, max_steps: int | None = None, cache: bool = False) -> SyntheticDataset:
    """THUMOS14-structured data: split "train" (the 200 Validation videos) or "test" (212 Test videos).

    max_videos: the first videos by id; max_steps: crop each video to its first steps (instances
    cut by the crop are kept if half of them remains, clipped). 20 classes (thumos14_classes()).
    """
    config = SyntheticConfig(feature_dim, noise, boundary_sharpness, background_correlation, seed)
    videos = _subset(builtin.thumos14_annotations(split), max_videos)
    stride, clip = builtin.THUMOS14_FEATURE_STRIDE, builtin.THUMOS14_CLIP_FRAMES
    timelines = []
    for v in videos:
        frames = int(round(v.duration * v.fps))
        timelines.append(Timeline.from_clips(max(1, (frames - clip) // stride + 1), v.fps, stride, clip))
    return SyntheticDataset(videos, builtin.thumos14_classes(), timelines, config, max_steps=max_steps, cache=cache)


def activitynet(split: str = "train", *, temporal_scale: int = builtin.ACTIVITYNET_TEMPORAL_SCALE,
                feature_dim: int = DEFAULT_FEATURE_DIM, noise: float = DEFAULT_NOISE,
                boundary_sharpness: float = DEFAULT_BOUNDARY_SHARPNESS,
                background_correlation: float = DEFAULT_BACKGROUND_CORRELATION, seed: int = 0,
                max_videos: int | None = None, cache: bool = False) -> SyntheticDataset:
    """ActivityNet-structured data rescaled to `temporal_scale` steps per video (BMN's T = 100):
    split "train" (9649 training videos) or "validation" (4728). 200 classes (activitynet_classes())."""
    if isinstance(temporal_scale, bool) or not isinstance(temporal_scale, int) or temporal_scale < 2:
        raise ValueError(f"temporal_scale must be an int >= 2, got {temporal_scale!r}")
    config = SyntheticConfig(feature_dim, noise, boundary_sharpness, background_correlation, seed)
    videos = _subset(builtin.activitynet_annotations(split), max_videos)
    timelines = [Timeline.rescaled(temporal_scale, v.duration, v.fps) for v in videos]
    return SyntheticDataset(videos, builtin.activitynet_classes(), timelines, config, cache=cache)
