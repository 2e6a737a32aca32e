"""Configuration of the RCL detector and of a training / detection run.

Two dataclasses: ModelConfig (the network, its training samples and losses) and RunConfig (data,
optimisation, inference and bookkeeping). Both are filled, in this order, from their defaults,
a preset (`variant = "grid"`), a config file of `key = value` lines, and command-line flags
(`--key-name value`); later sources override earlier ones. Every check names the key and where
its value came from, so a bad value says which line or flag to fix.

Config file format (no YAML or JSON needed):

    # comments start with '#'
    variant = "rcl"          # values are Python literals: numbers, strings, True/False, None, tuples
    max_steps = 2000
    sampling = ("grid", "random", "sis")
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

VARIANTS = ("rcl", "grid")
SAMPLINGS = ("grid", "random", "sis")
BACKENDS = ("fast", "reference")
OFFSET_HEADS = ("separate", "shared")
DATASETS = ("thumos14-synthetic", "activitynet-synthetic", "actionformer", "bsn", "gtad")
PROTOCOLS = ("thumos14", "activitynet")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and where it came from."""


@dataclass
class ModelConfig:
    """The network, its training samples and losses (RCL, Wang et al. CVPR 2022, Sec. 3)."""

    variant: str = "rcl"  # "grid": BMN-style baseline preset (GRID_PRESET)
    feature_dim: int = 64  # input channels; set from the data when left at None by callers
    num_classes: int = 20
    hidden: int = 64  # encoder channels
    encoder_stride: int = 1  # 2 halves the temporal resolution (THUMOS14 windows)
    max_duration: int = 48  # D: longest grid cell, in encoder steps
    num_samples: int = 16  # N: SoI points per segment
    samples_per_point: int = 2
    context: float = 0.5  # SoI window widened by this fraction of the length on each side (BMN's 0.5)
    scorer_hidden: int = 128
    offset_head: str = "separate"  # "shared": offsets from the confidence scorer's MLP; "separate": their own
    # training samples
    sampling: tuple = SAMPLINGS
    sis_per_instance: int = 32  # scale-invariant samples per ground-truth instance
    sis_spread: float = 0.25  # their boundaries: g + N(0, (spread * length)^2)
    random_jitter: float = 0.5  # random samples: grid cells with boundaries moved by U(-j, j) steps
    # recurrent refinement
    refine_steps: int = 2  # M; 0 turns the module off
    refine_state: int = 64  # GRU state size
    refine_train_segments: int = 128  # segments per video refined during training
    # inference
    inference_resolution: float = 0.5  # spacing of the continuous inference grid, in encoder steps
    candidates: int = 200  # segments per video (window) kept by Soft-NMS before refinement
    candidate_nms_sigma: float = 0.5
    classes_per_segment: int = 1
    use_offsets: bool = True
    use_boundary_score: bool = True
    # losses (the paper's values)
    positive_tiou: float = 0.7
    lambda_regression: float = 10.0
    lambda_offset: float = 1.0
    lambda_boundary: float = 1.0
    lambda_class: float = 1.0
    refine_alpha: float = 0.8  # step m of M weighs alpha^(M - m)
    offset_min_tiou: float = 0.5  # offsets are supervised where tIoU* reaches this (as box regression on positives)
    class_min_tiou: float = 0.5  # classes are supervised where tIoU* reaches this
    boundary_region: float = 3.0  # BMN's boundary region width, in encoder steps
    backend: str = "fast"  # "fast": the library's fastest kernels; "reference": pure PyTorch

    def validate(self, where: Mapping[str, str] | None = None) -> ModelConfig:
        _validate(self, _MODEL_RULES, where)
        if not set(self.sampling) <= set(SAMPLINGS) or not self.sampling:
            _fail("sampling", self.sampling, f"a non-empty tuple of {SAMPLINGS}", where)
        return self

    def to_dict(self) -> dict:
        return _plain(self)


# The BMN-style baseline: discrete grid cells only, no continuous samples, offsets or refinement.
GRID_PRESET = {"sampling": ("grid",), "inference_resolution": 1.0, "refine_steps": 0, "use_offsets": False}


@dataclass
class RunConfig:
    """Data, optimisation, inference and bookkeeping of one run."""

    dataset: str = "thumos14-synthetic"
    train_split: str = "train"
    test_split: str = "test"
    annotations: str | None = None  # real features: annotation file (json / G-TAD csv)
    video_info: str | None = None  # bsn: video_info_new.csv
    feature_dir: str | None = None  # real features: their folder
    train_subset: str | None = None  # real features: subset names, e.g. "Validation" / "training"
    test_subset: str | None = None
    temporal_scale: int = 100  # ActivityNet layouts: steps per video
    feature_dim: int = 64  # synthetic data only (real features bring their own)
    noise: float | None = None  # synthetic difficulty (None: the generator's defaults)
    boundary_sharpness: float | None = None
    data_seed: int = 0
    max_train_videos: int | None = None
    max_test_videos: int | None = None
    max_video_steps: int | None = None  # crop long videos (THUMOS14-structured data)
    window: int | None = None  # windows over long videos (0: whole videos; None: 128 for THUMOS14, else 0)
    window_stride: int | None = None  # default window // 2 (training windows: window)
    # optimisation
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 50
    max_steps: int = 1000
    grad_clip: float = 10.0  # a guard against spikes; at 1.0 it slowed the offsets' learning
    seed: int = 0
    device: str = "auto"  # "auto": cuda if available
    amp: bool = True  # bf16 autocast, on GPU only
    num_workers: int = 0
    # bookkeeping
    output_dir: str = "runs/rcl"
    checkpoint_every: int = 500
    resume: str | None = None  # a checkpoint path, or "auto": the output_dir's last one
    log_every: int = 10
    progress: bool = True
    # inference and evaluation
    protocol: str | None = None  # default: thumos14 for THUMOS14 data, else activitynet
    top_k: int | None = None  # detections per video (default 200 thumos14, 100 activitynet)
    # Soft-NMS of each video's detections; defaults by protocol: thumos14 sigma 0.1, min score 0.01
    # (the THUMOS14 kit matches each instance to its best-overlapping detection whatever its score,
    # so a kept near-duplicate costs a true positive: measured 25 % vs 86 % mAP for RCL, 53 % vs 79 %
    # for the grid variant, docs/model_results.md); activitynet sigma 0.5, min score 0.001.
    nms_sigma: float | None = None
    nms_min_score: float | None = None
    eval_batch_size: int = 16
    class_agnostic: bool = False  # evaluate localisation only (every label -> "action")

    def validate(self, where: Mapping[str, str] | None = None) -> RunConfig:
        _validate(self, _RUN_RULES, where)
        if self.dataset in ("actionformer", "bsn", "gtad"):
            for key in ("annotations", "feature_dir") + (("video_info",) if self.dataset == "bsn" else ()):
                if not getattr(self, key):
                    _fail(key, None, f"a path (dataset {self.dataset!r} reads real features)", where)
        if self.resume not in (None, "auto") and not os.path.isfile(self.resume):
            _fail("resume", self.resume, "an existing checkpoint file or 'auto'", where)
        return self

    @property
    def effective_protocol(self) -> str:
        if self.protocol is not None:
            return self.protocol
        return "thumos14" if self.dataset in ("thumos14-synthetic", "actionformer", "gtad") else "activitynet"

    @property
    def effective_window(self) -> int:
        if self.window is not None:
            return self.window
        return 128 if self.effective_protocol == "thumos14" else 0

    @property
    def effective_nms(self) -> tuple[float, float]:
        """(sigma, min_score) of the final Soft-NMS."""
        thumos = self.effective_protocol == "thumos14"
        sigma = self.nms_sigma if self.nms_sigma is not None else (0.1 if thumos else 0.5)
        min_score = self.nms_min_score if self.nms_min_score is not None else (0.01 if thumos else 0.001)
        return sigma, min_score

    @property
    def effective_top_k(self) -> int:
        if self.top_k is not None:
            return self.top_k
        return 200 if self.effective_protocol == "thumos14" else 100

    def to_dict(self) -> dict:
        return _plain(self)


# key -> (type, check, expectation): check(value) is True for a good value.
def _int_at_least(low):
    return (int, lambda v: v >= low, f"an int >= {low}")


def _number(check, text):
    return (float, lambda v: math.isfinite(v) and check(v), text)


_MODEL_RULES = {
    "variant": (str, lambda v: v in VARIANTS, f"one of {VARIANTS}"),
    "feature_dim": _int_at_least(1),
    "num_classes": _int_at_least(1),
    "hidden": _int_at_least(1),
    "encoder_stride": (int, lambda v: v in (1, 2), "1 or 2"),
    "max_duration": _int_at_least(1),
    "num_samples": _int_at_least(1),
    "samples_per_point": _int_at_least(1),
    "context": _number(lambda v: v >= 0, "a finite number >= 0"),
    "scorer_hidden": _int_at_least(1),
    "offset_head": (str, lambda v: v in OFFSET_HEADS, f"one of {OFFSET_HEADS}"),
    "sampling": (tuple, lambda v: True, "a tuple"),
    "sis_per_instance": _int_at_least(1),
    "sis_spread": _number(lambda v: v >= 0, "a finite number >= 0"),
    "random_jitter": _number(lambda v: v >= 0, "a finite number >= 0"),
    "refine_steps": _int_at_least(0),
    "refine_state": _int_at_least(1),
    "refine_train_segments": _int_at_least(1),
    "inference_resolution": _number(lambda v: 0 < v <= 1 and abs(1 / v - round(1 / v)) < 1e-6,
                                    "1 / n for an int n >= 1 (e.g. 1, 0.5, 0.25)"),
    "candidates": _int_at_least(1),
    "candidate_nms_sigma": _number(lambda v: v > 0, "a finite number > 0"),
    "classes_per_segment": _int_at_least(1),
    "use_offsets": (bool, lambda v: True, "True or False"),
    "use_boundary_score": (bool, lambda v: True, "True or False"),
    "positive_tiou": _number(lambda v: 0 < v < 1, "a number in (0, 1)"),
    "lambda_regression": _number(lambda v: v >= 0, "a finite number >= 0"),
    "lambda_offset": _number(lambda v: v >= 0, "a finite number >= 0"),
    "lambda_boundary": _number(lambda v: v >= 0, "a finite number >= 0"),
    "lambda_class": _number(lambda v: v >= 0, "a finite number >= 0"),
    "refine_alpha": _number(lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "offset_min_tiou": _number(lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "class_min_tiou": _number(lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "boundary_region": _number(lambda v: v > 0, "a finite number > 0"),
    "backend": (str, lambda v: v in BACKENDS, f"one of {BACKENDS}"),
}

_OPTIONAL_PATH = (str, lambda v: len(v) > 0, "a path")

_RUN_RULES = {
    "dataset": (str, lambda v: v in DATASETS, f"one of {DATASETS}"),
    "train_split": (str, lambda v: True, "a split name"),
    "test_split": (str, lambda v: True, "a split name"),
    "annotations": _OPTIONAL_PATH,
    "video_info": _OPTIONAL_PATH,
    "feature_dir": _OPTIONAL_PATH,
    "train_subset": (str, lambda v: True, "a subset name"),
    "test_subset": (str, lambda v: True, "a subset name"),
    "temporal_scale": _int_at_least(2),
    "feature_dim": _int_at_least(1),
    "noise": _number(lambda v: v >= 0, "a finite number >= 0"),
    "boundary_sharpness": _number(lambda v: v > 0, "a finite number > 0"),
    "data_seed": _int_at_least(0),
    "max_train_videos": _int_at_least(1),
    "max_test_videos": _int_at_least(1),
    "max_video_steps": _int_at_least(1),
    "window": _int_at_least(0),
    "window_stride": _int_at_least(1),
    "batch_size": _int_at_least(1),
    "lr": _number(lambda v: v > 0, "a finite number > 0"),
    "weight_decay": _number(lambda v: v >= 0, "a finite number >= 0"),
    "warmup_steps": _int_at_least(0),
    "max_steps": _int_at_least(0),
    "grad_clip": _number(lambda v: v >= 0, "a finite number >= 0 (0: off)"),
    "seed": _int_at_least(0),
    "device": (str, lambda v: v == "auto" or v == "cpu" or v.startswith("cuda"), "'auto', 'cpu' or 'cuda[:i]'"),
    "amp": (bool, lambda v: True, "True or False"),
    "num_workers": _int_at_least(0),
    "output_dir": _OPTIONAL_PATH,
    "checkpoint_every": _int_at_least(1),
    "resume": _OPTIONAL_PATH,
    "log_every": _int_at_least(1),
    "progress": (bool, lambda v: True, "True or False"),
    "protocol": (str, lambda v: v in PROTOCOLS, f"one of {PROTOCOLS}"),
    "top_k": _int_at_least(1),
    "nms_sigma": _number(lambda v: v > 0, "a finite number > 0"),
    "nms_min_score": _number(lambda v: v >= 0, "a finite number >= 0"),
    "eval_batch_size": _int_at_least(1),
    "class_agnostic": (bool, lambda v: True, "True or False"),
}


def _fail(key: str, value, expected: str, where: Mapping[str, str] | None):
    source = (where or {}).get(key, f"config key {key!r}")
    raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")


def _validate(config, rules, where) -> None:
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue  # optional, unset
        kind, check, expected = rules[f.name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            setattr(config, f.name, value)
        if kind is tuple and isinstance(value, list):
            value = tuple(value)
            setattr(config, f.name, value)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok or not check(value):
            _fail(f.name, value, expected, where)


def _plain(config) -> dict:
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def read_config_file(path: str) -> dict[str, tuple[Any, str]]:
    """`key = value` lines -> {key: (value, "FILE line N")}; errors name the file and line."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: config file not found: {path}")
    out = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = _strip_comment(line).strip()
            if not text:
                continue
            where = f"{path} line {number}"
            if "=" not in text:
                raise ConfigError(f"{where}: expected 'key = value', got {line.strip()!r}")
            key, raw = (s.strip() for s in text.split("=", 1))
            try:
                value = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                value = raw  # a bare word is a string: dataset = bsn
            out[key] = (value, where)
    return out


def _strip_comment(line: str) -> str:
    """The line up to its first '#' outside quotes (a '#' inside a string is part of the value)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:i]
    return line


def build_configs(file_values: Mapping[str, tuple[Any, str]] | None = None,
                  flag_values: Mapping[str, Any] | None = None) -> tuple[ModelConfig, RunConfig]:
    """Defaults, then the grid preset if asked for, then the file, then the flags; validated.

    file_values: from read_config_file; flag_values: {key: value} of the flags given.
    """
    model_keys = {f.name for f in fields(ModelConfig)}
    run_keys = {f.name for f in fields(RunConfig)}
    merged: dict[str, tuple[Any, str]] = {}
    for key, (value, where) in (file_values or {}).items():
        if key not in model_keys | run_keys:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(model_keys | run_keys))}")
        merged[key] = (value, where)
    for key, value in (flag_values or {}).items():
        if key not in model_keys | run_keys:
            raise ConfigError(f"unknown flag --{key.replace('_', '-')}")
        merged[key] = (value, f"--{key.replace('_', '-')}")
    model, run = ModelConfig(), RunConfig()
    where: dict[str, str] = {}
    variant = merged.get("variant", ("rcl", ""))[0]
    if variant == "grid":
        for key, value in GRID_PRESET.items():
            setattr(model, key, value)
            where[key] = "the grid preset"
    for key, (value, source) in merged.items():
        # feature_dim exists in both: the data's (RunConfig) and the network's (set from the data).
        for config in (model, run):
            if hasattr(config, key):
                setattr(config, key, value)
        where[key] = source
    return model.validate(where), run.validate(where)


def model_config_from_dict(values: Mapping[str, Any], source: str = "checkpoint") -> ModelConfig:
    """ModelConfig from to_dict()'s output (as stored in checkpoints), validated."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{source}: unknown model config keys {sorted(unknown)}")
    return ModelConfig(**dict(values)).validate({k: f"{source} model config" for k in values})


def replace(config, **changes):
    """dataclasses.replace, validated."""
    return dataclasses.replace(config, **changes).validate()


__all__ = ["BACKENDS", "DATASETS", "GRID_PRESET", "SAMPLINGS", "VARIANTS", "ConfigError", "ModelConfig",
           "RunConfig", "build_configs", "model_config_from_dict", "read_config_file", "replace"]
