"""Configuration of the RCL detector and of a training / detection run.

Two dataclasses: ModelConfig (the network, its training samples and losses) and RunConfig (data,
optimisation, inference and bookkeeping). Each key is declared once, as a field whose metadata
carries its check and its help text (`option(...)`); validation, the command-line flags and the
config-file keys all read them from there. Both are filled, in this order, from their defaults, a
preset (`variant = "grid"`), a config file of `key = value` lines, and command-line flags
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
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, NamedTuple

VARIANTS = ("rcl", "grid", "bmn")
SAMPLINGS = ("grid", "random", "sis")
BACKENDS = ("fast", "reference")
OFFSET_HEADS = ("separate", "shared")
CLASSIFICATION_LOSSES = ("balanced", "scale-invariant")
DATASETS = ("thumos14-synthetic", "activitynet-synthetic", "actionformer", "bsn", "gtad")
PROTOCOLS = ("thumos14", "activitynet")
FEATURE_CONTROLS = ("none", "other-video")
WINDOW_SCORINGS = ("once", "every")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and where it came from."""


class Rule(NamedTuple):
    """A key's type (ints pass as floats, lists as tuples), check(value) -> bool, and the expectation
    an error message states."""

    kind: type
    check: Callable[[Any], bool]
    expected: str


def option(default: Any, rule: Rule, help: str = "") -> Any:
    """A config field: its default, its rule and its help text, declared together."""
    return field(default=default, metadata={"rule": rule, "help": help})


def int_at_least(low: int) -> Rule:
    return Rule(int, lambda v: v >= low, f"an int >= {low}")


def number(check: Callable[[float], bool], text: str) -> Rule:
    return Rule(float, lambda v: math.isfinite(v) and check(v), text)


def one_of(choices: tuple[str, ...]) -> Rule:
    return Rule(str, lambda v: v in choices, f"one of {choices}")


NON_NEGATIVE = number(lambda v: v >= 0, "a finite number >= 0")
POSITIVE = number(lambda v: v > 0, "a finite number > 0")
FRACTION = number(lambda v: 0 <= v <= 1, "a number in [0, 1]")
SWITCH = Rule(bool, lambda v: True, "True or False")
PATH = Rule(str, lambda v: len(v) > 0, "a path")
NAME = Rule(str, lambda v: True, "a name")


def _is_unit_fraction(v: float) -> bool:
    return 0 < v <= 1 and abs(1 / v - round(1 / v)) < 1e-6


@dataclass
class ModelConfig:
    """The network, its training samples and losses (RCL, Wang et al. CVPR 2022, Sec. 3)."""

    variant: str = option("rcl", one_of(VARIANTS),
                          "rcl (continuous anchors, SIS, refinement), grid (RCL's scorer on grid cells only) "
                          "or bmn (BMN as published: boundary-matching confidence maps)")
    feature_dim: int = option(64, int_at_least(1), "channels of the input features: the network's input and the "
                              "synthetic data's dimension (real features set it from their files)")
    num_classes: int = option(20, int_at_least(1), "action classes (set from the data by training)")
    hidden: int = option(64, int_at_least(1), "encoder channels")
    encoder_stride: int = option(1, Rule(int, lambda v: v in (1, 2), "1 or 2"),
                                 "2 halves the temporal resolution (THUMOS14 windows)")
    max_duration: int = option(48, int_at_least(1), "D: longest grid cell, in encoder steps")
    input_scale: int = option(1, int_at_least(1), "the input features linearly interpolated to input_scale x T "
                              "before the encoder (RCL's Table 4 naive rescaling: BMN's maps become kT x kT)")
    num_samples: int = option(16, int_at_least(1), "N: SoI points per segment")
    samples_per_point: int = option(2, int_at_least(1), "SoI sub-samples averaged per point")
    context: float = option(0.5, NON_NEGATIVE,
                            "SoI window widened by this fraction of the length on each side (BMN's 0.5)")
    scorer_hidden: int = option(128, int_at_least(1), "hidden units of the anchor scorer's MLP")
    offset_head: str = option("separate", one_of(OFFSET_HEADS),
                              "shared: offsets from the confidence scorer's MLP; separate: their own")
    # training samples
    sampling: tuple = option(SAMPLINGS, Rule(tuple, lambda v: bool(v) and set(v) <= set(SAMPLINGS),
                                             f"a non-empty tuple of {SAMPLINGS}"),
                             "training samples, comma-separated: grid,random,sis")
    sis_per_instance: int = option(32, int_at_least(1), "scale-invariant samples per ground-truth instance")
    sis_spread: float = option(0.25, NON_NEGATIVE, "their boundaries: g + N(0, (spread * length)^2)")
    random_jitter: float = option(0.5, NON_NEGATIVE,
                                  "random samples: grid cells with boundaries moved by U(-j, j) steps")
    # recurrent refinement
    refine_steps: int = option(2, int_at_least(0), "M; 0 turns the module off")
    refine_state: int = option(64, int_at_least(1), "GRU state size")
    refine_train_segments: int = option(128, int_at_least(1), "segments per video refined during training")
    refine_hidden: int = option(0, int_at_least(0), "hidden units of the refine module's SoI embedding (0: "
                                "scorer_hidden); smaller values match the refine arm's capacity to CAR's")
    # inference
    inference_resolution: float = option(0.5, number(_is_unit_fraction, "1 / n for an int n >= 1 (e.g. 1, 0.5, 0.25)"),
                                         "spacing of the continuous inference grid, in encoder steps")
    candidates: int = option(200, int_at_least(1), "segments per video (window) kept by Soft-NMS before refinement")
    candidate_nms_sigma: float = option(0.5, POSITIVE, "Gaussian Soft-NMS sigma of that selection")
    classes_per_segment: int = option(1, int_at_least(1), "top classes reported per segment")
    use_offsets: bool = option(True, SWITCH, "predict and apply boundary offsets")
    use_boundary_score: bool = option(True, SWITCH, "multiply the score by start / end probabilities")
    # losses (the paper's values)
    positive_tiou: float = option(0.7, number(lambda v: 0 < v < 1, "a number in (0, 1)"),
                                  "p1's positives: tIoU* above this")
    classification_loss: str = option("balanced", one_of(CLASSIFICATION_LOSSES),
                                      "p1's loss: balanced BCE, or TSI's scale-invariant loss (losses.py)")
    si_alpha: float = option(0.5, number(lambda v: 0 < v < 1, "a number in (0, 1)"),
                             "scale-invariant loss: weight of the positives (1 - si_alpha: the negatives)")
    lambda_regression: float = option(10.0, NON_NEGATIVE, "weight of p2's tIoU regression")
    lambda_offset: float = option(1.0, NON_NEGATIVE, "weight of the offset loss")
    lambda_boundary: float = option(1.0, NON_NEGATIVE, "weight of the start / end loss")
    lambda_class: float = option(1.0, NON_NEGATIVE, "weight of the class loss")
    refine_alpha: float = option(0.8, number(lambda v: 0 < v <= 1, "a number in (0, 1]"),
                                 "step m of M weighs alpha^m (eq. 8 of the paper)")
    offset_min_tiou: float = option(0.5, FRACTION, "offsets are supervised where tIoU* reaches this "
                                    "(as box regression on positives)")
    class_min_tiou: float = option(0.5, FRACTION, "classes are supervised where tIoU* reaches this")
    boundary_region: float = option(3.0, POSITIVE, "BMN's boundary region width, in encoder steps")
    # BMN's proposal evaluation module (variant bmn; Lin et al. ICCV 2019, Sec. 3.3)
    pem_channels: int = option(512, int_at_least(1), "BMN: channels of the convolution over the N samples")
    pem_hidden: int = option(128, int_at_least(1), "BMN: channels of the 2D convolutions")
    map_upsample: int = option(1, int_at_least(1), "BMN: confidence maps and boundary probabilities bilinearly "
                               "upsampled by this factor at inference (RCL's Table 4 naive upsampling)")
    pem_positive_tiou: float = option(0.9, number(lambda v: 0 < v < 1, "a number in (0, 1)"),
                                      "BMN: the classification map's positives, tIoU above this")
    backend: str = option("fast", one_of(BACKENDS),
                          "fast (the library's kernels) or reference (pure PyTorch), for every op")

    def validate(self, where: Mapping[str, str] | None = None) -> ModelConfig:
        _validate(self, where)
        if self.map_upsample > 1 and self.variant != "bmn":
            _fail("map_upsample", self.map_upsample, "1 unless variant is 'bmn' (it upsamples BMN's maps)", where)
        return self

    def to_dict(self) -> dict:
        return _plain(self)


# The BMN-style baseline: discrete grid cells only, no continuous samples, offsets or refinement.
GRID_PRESET = {"sampling": ("grid",), "inference_resolution": 1.0, "refine_steps": 0, "use_offsets": False}
# BMN as published: its BM layer samples N x 3 points over a window widened by half the length.
BMN_PRESET = {**GRID_PRESET, "samples_per_point": 3, "context": 0.5}
PRESETS = {"grid": GRID_PRESET, "bmn": BMN_PRESET}


@dataclass
class RunConfig:
    """Data, optimisation, inference and bookkeeping of one run."""

    dataset: str = option("thumos14-synthetic", one_of(DATASETS),
                          "thumos14-synthetic | activitynet-synthetic | actionformer | gtad | bsn")
    train_split: str = option("train", Rule(str, lambda v: True, "a split name"), "split to train on")
    test_split: str | None = option(None, Rule(str, lambda v: True, "a split name"),
                                    "default: test (THUMOS14 Test), validation for ActivityNet")
    annotations: str | None = option(None, PATH, "real features: annotation file (json / G-TAD csv)")
    video_info: str | None = option(None, PATH, "bsn: video_info_new.csv")
    feature_dir: str | None = option(None, PATH, "real features: their folder")
    train_subset: str | None = option(None, Rule(str, lambda v: True, "a subset name"),
                                      "real features: subset names, e.g. Validation / training")
    test_subset: str | None = option(None, Rule(str, lambda v: True, "a subset name"), "real features: test subset")
    temporal_scale: int = option(100, int_at_least(2), "ActivityNet layouts: steps per video")
    noise: float | None = option(None, NON_NEGATIVE, "synthetic difficulty (none: the generator's defaults)")
    boundary_sharpness: float | None = option(None, POSITIVE, "synthetic boundary sharpness")
    data_seed: int = option(0, int_at_least(0), "seed of the synthetic data")
    feature_control: str = option("none", one_of(FEATURE_CONTROLS),
                                  "other-video: every item gets the features of another item of its split (the "
                                  "features-without-signal control: real statistics, no relation to the labels)")
    max_train_videos: int | None = option(None, int_at_least(1), "use the first videos of the train split")
    max_test_videos: int | None = option(None, int_at_least(1), "use the first videos of the test split")
    max_video_steps: int | None = option(None, int_at_least(1), "crop long videos (THUMOS14-structured data)")
    window: int | None = option(None, int_at_least(0),
                                "window length over long videos (0: whole videos; default 128 for THUMOS14, else 0)")
    window_stride: int | None = option(None, int_at_least(1), "default window // 2 (training windows: window)")
    window_scoring: str = option("once", one_of(WINDOW_SCORINGS),
                                 "where windows overlap, once: each segment is scored by the one window where it "
                                 "is most central (rcl_kernels.data.windows.owned_by_window); every: each window "
                                 "scores all of its segments, and Soft-NMS merges the copies")
    # optimisation
    batch_size: int = option(8, int_at_least(1), "items per step")
    lr: float = option(1e-3, POSITIVE, "Adam's base learning rate")
    weight_decay: float = option(1e-5, NON_NEGATIVE, "Adam's weight decay")
    warmup_steps: int = option(50, int_at_least(0), "linear warm-up steps")
    max_steps: int = option(1000, int_at_least(0), "training steps")
    grad_clip: float = option(10.0, number(lambda v: v >= 0, "a finite number >= 0 (0: off)"),
                              "gradient-norm clip: a guard against spikes; at 1.0 it slowed the offsets' learning")
    seed: int = option(0, int_at_least(0), "seed of the initialisation, data order and samples")
    device: str = option("auto", Rule(str, lambda v: v == "auto" or v == "cpu" or v.startswith("cuda"),
                                      "'auto', 'cpu' or 'cuda[:i]'"), "auto: cuda if available")
    amp: bool = option(True, SWITCH, "bf16 autocast, on GPU only")
    num_workers: int = option(0, int_at_least(0), "DataLoader workers")
    # bookkeeping
    output_dir: str = option("runs/rcl", PATH, "checkpoint, results and metrics go here")
    checkpoint_every: int = option(500, int_at_least(1), "steps between checkpoints")
    resume: str | None = option(None, PATH, "checkpoint to resume from, or 'auto' (OUTPUT_DIR/last.pt if present)")
    log_every: int = option(10, int_at_least(1), "steps between progress-bar updates")
    progress: bool = option(True, SWITCH, "show progress bars")
    # inference and evaluation
    protocol: str | None = option(None, one_of(PROTOCOLS),
                                  "default: thumos14 for THUMOS14 data, else activitynet")
    top_k: int | None = option(None, int_at_least(1), "detections per video (default 200 thumos14, 100 activitynet)")
    # Soft-NMS of each video's detections; defaults by protocol: thumos14 sigma 0.1, min score 0.01
    # (the THUMOS14 kit matches each instance to its best-overlapping detection whatever its score,
    # so a kept near-duplicate costs a true positive: measured 25 % vs 86 % mAP for RCL, 53 % vs 79 %
    # for the grid variant, docs/model_results.md); activitynet sigma 0.5, min score 0.001.
    nms_sigma: float | None = option(None, POSITIVE, "final Soft-NMS sigma (default 0.1 thumos14, 0.5 activitynet)")
    nms_min_score: float | None = option(None, NON_NEGATIVE,
                                         "final Soft-NMS min score (default 0.01 thumos14, 0.001 activitynet)")
    eval_batch_size: int = option(16, int_at_least(1), "items per inference batch")
    class_agnostic: bool = option(False, SWITCH, "evaluate localisation only (every label -> action)")

    def validate(self, where: Mapping[str, str] | None = None) -> RunConfig:
        _validate(self, where)
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
    def effective_test_split(self) -> str:
        if self.test_split is not None:
            return self.test_split
        return "validation" if self.dataset == "activitynet-synthetic" else "test"

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


def _fail(key: str, value, expected: str, where: Mapping[str, str] | None):
    source = (where or {}).get(key, f"config key {key!r}")
    raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")


def _validate(config, where) -> None:
    """Each field against the rule declared with it (ints become floats, lists tuples, in place)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue  # optional, unset
        kind, check, expected = f.metadata["rule"]
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
        for line_number, line in enumerate(fh, 1):
            text = _strip_comment(line).strip()
            if not text:
                continue
            where = f"{path} line {line_number}"
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
    for key, value in PRESETS.get(variant, {}).items():
        setattr(model, key, value)
        where[key] = f"the {variant} preset"
    for key, (value, source) in merged.items():
        setattr(model if key in model_keys else run, key, value)
        where[key] = source
    model.validate(where), run.validate(where)
    if model.variant == "bmn" and not run.class_agnostic:
        _fail("class_agnostic", run.class_agnostic, "True with variant 'bmn' (BMN proposes class-agnostic segments)",
              where)
    return model, run


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


def help_text(config_class, key: str) -> str:
    """The help text declared with a key."""
    return next(f.metadata["help"] for f in fields(config_class) if f.name == key)


__all__ = ["BACKENDS", "BMN_PRESET", "CLASSIFICATION_LOSSES", "DATASETS", "GRID_PRESET", "PRESETS", "SAMPLINGS", "VARIANTS", "ConfigError", "ModelConfig", "Rule",
           "RunConfig", "build_configs", "help_text", "model_config_from_dict", "option", "read_config_file",
           "replace"]
