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
from rcl_kernels.models.profiles import PROFILES, profile_values

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


def add_config_arguments(parser: argparse.ArgumentParser, *, model: bool = True,
                         model_keys: tuple[str, ...] = ()) -> None:
    """--config FILE and one flag per config field (model fields only when `model`, else only
    `model_keys`), each with the help text declared with its field."""
    parser.add_argument("--config", metavar="FILE", help="a file of `key = value` lines (flags override it)")
    if model:
        parser.add_argument("--profile", choices=sorted(PROFILES), help="named config values (rcl_kernels/models/"
                            "profiles.py) under --config and the flags")
    for title, cls in (("model", ModelConfig), ("run", RunConfig)):
        chosen = [f for f in fields(cls) if cls is RunConfig or model or f.name in model_keys]
        if not chosen:
            continue
        group = parser.add_argument_group(f"{title} options")
        for f in chosen:
            default = f.default
            shown = ",".join(default) if isinstance(default, tuple) else default
            group.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", default=None, metavar="V",
                               help=f"{f.metadata['help']} (default: {shown})".strip())


def configs_from_args(args: argparse.Namespace, base: dict | None = None) -> tuple[ModelConfig, RunConfig]:
    """Configs from --profile, then `base` ({key: (value, where)}, e.g. a checkpoint's), then --config,
    then the flags."""
    defaults = {**{f.name: getattr(RunConfig(), f.name) for f in fields(RunConfig)},
                **{f.name: getattr(ModelConfig(), f.name) for f in fields(ModelConfig)}}
    flag_values = {}
    for key, value in vars(args).items():
        if key.startswith("cfg_") and value is not None:
            name = key[4:]
            flag_values[name] = _parse_value(value, defaults[name])
    file_values = profile_values(args.profile) if getattr(args, "profile", None) else {}
    file_values.update(base or {})
    if getattr(args, "config", None):
        file_values.update(read_config_file(args.config))
    return build_configs(file_values, flag_values)
