"""Command-line flags for every ModelConfig / RunConfig field, and turning parsed flags into configs.

Each field `some_name` becomes `--some-name VALUE`; only flags actually given override the config
file (--config) and the defaults. Values: numbers, strings, `true`/`false`, `none`, and for tuple
fields comma-separated words (`--sampling grid,sis`).
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import fields

from rcl_kernels.models.config import ModelConfig, RunConfig, build_configs, read_config_file

_HELP = {
    "variant": "rcl (continuous anchors, SIS, refinement) or grid (the BMN-style baseline preset)",
    "dataset": "thumos14-synthetic | activitynet-synthetic | actionformer | gtad | bsn",
    "sampling": "training samples, comma-separated: grid,random,sis",
    "backend": "fast (the library's kernels) or reference (pure PyTorch), for every op",
    "resume": "checkpoint to resume from, or 'auto' (OUTPUT_DIR/last.pt if present)",
    "window": "window length over long videos (0: whole videos; default 128 for THUMOS14, else 0)",
}


def _parse_value(text: str, default):
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if isinstance(default, bool):
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        return text  # validation names the flag and the expected values
    if isinstance(default, tuple):
        return tuple(word.strip() for word in text.split(",") if word.strip())
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def add_config_arguments(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """--config FILE and one flag per config field (model fields only when `model`)."""
    parser.add_argument("--config", metavar="FILE", help="a file of `key = value` lines (flags override it)")
    seen = set()
    groups = ((("model", ModelConfig),) if model else ()) + (("run", RunConfig),)
    for title, cls in groups:
        group = parser.add_argument_group(f"{title} options")
        defaults = cls()
        for f in fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            default = getattr(defaults, f.name)
            shown = ",".join(default) if isinstance(default, tuple) else default
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", default=None, metavar="V",
                               help=f"{_HELP.get(f.name, '')} (default: {shown})".strip())


def configs_from_args(args: argparse.Namespace, base: dict | None = None) -> tuple[ModelConfig, RunConfig]:
    """Configs from `base` ({key: (value, where)}, e.g. a checkpoint's), then --config, then the flags."""
    defaults = {**{f.name: getattr(RunConfig(), f.name) for f in fields(RunConfig)},
                **{f.name: getattr(ModelConfig(), f.name) for f in fields(ModelConfig)}}
    flag_values = {}
    for key, value in vars(args).items():
        if key.startswith("cfg_") and value is not None:
            name = key[4:]
            flag_values[name] = _parse_value(value, defaults[name])
    file_values = dict(base or {})
    if getattr(args, "config", None):
        file_values.update(read_config_file(args.config))
    return build_configs(file_values, flag_values)
