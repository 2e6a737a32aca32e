"""Optional third-party packages, imported where a feature needs them, with a one-line error that
names the rcl_kernels extra installing them (pyproject.toml's [project.optional-dependencies])."""

from __future__ import annotations

import importlib
from types import ModuleType

# Top-level import name -> the extra of rcl_kernels that installs it.
EXTRAS = {"matplotlib": "figures", "triton": "triton"}


class MissingOptionalDependency(ImportError):
    """An optional package a feature needs is not installed; the message says which extra to install."""


def missing_message(package: str, purpose: str) -> str:
    return (f"{purpose} needs {package}, which is not installed: "
            f"pip install 'rcl_kernels[{EXTRAS[package]}]' (or pip install {package})")


def require(module: str, purpose: str) -> ModuleType:
    """Import `module` (e.g. "matplotlib.figure") for `purpose` (e.g. "rcl-kernels diagnose --output"),
    or raise MissingOptionalDependency naming the extra. Call it before doing the work that needs it."""
    package = module.split(".")[0]
    if package not in EXTRAS:
        raise ValueError(f"{package!r} is not an optional dependency of rcl_kernels (known: {sorted(EXTRAS)})")
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingOptionalDependency(missing_message(package, purpose)) from None
