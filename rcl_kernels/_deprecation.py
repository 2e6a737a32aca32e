"""Old import paths that keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from typing import Callable

# The release in which the old names go away.
REMOVED_IN = "0.3.0"


def moved_module(old: str, new: str, renames: dict[str, str] | None = None) -> Callable[[str], object]:
    """A module-level __getattr__ for the alias module `old` of `new`: each attribute access warns
    and returns new's attribute (renamed attributes under their old names too)."""
    renames = renames or {}

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(new)
        new_name = renames.get(name, name)
        if not hasattr(target, new_name):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(f"{old}.{name} is deprecated and will be removed in rcl_kernels {REMOVED_IN}: "
                      f"use {new}.{new_name}", DeprecationWarning, stacklevel=2)
        return getattr(target, new_name)

    return __getattr__
