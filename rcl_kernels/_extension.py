"""Loading of the compiled operator library and queries about what it provides.

Importing this module never initialises CUDA: it only asks the dispatcher which kernels exist.
"""

from __future__ import annotations

import importlib

import torch

_LOAD_ERROR: Exception | None = None


def _load() -> bool:
    global _LOAD_ERROR
    try:
        importlib.import_module("rcl_kernels._C")
        return True
    except ImportError as exc:  # built without the extension (RCL_NO_EXTENSION=1) or a broken build
        _LOAD_ERROR = exc
        return False


EXTENSION_LOADED = _load()

try:  # written by setup.py at build time; absent from a source tree that was never built
    from rcl_kernels import _build_config as _BUILD_CONFIG
except ImportError:
    _BUILD_CONFIG = None


def load_error() -> Exception | None:
    """Why rcl_kernels._C could not be imported, or None when it was."""
    return _LOAD_ERROR


def has_kernel(op_name: str, dispatch_key: str) -> bool:
    """True when the compiled library registered a kernel of rcl_kernels::<op_name> for
    dispatch_key ("CPU" or "CUDA")."""
    if not EXTENSION_LOADED:
        return False
    qualified = f"rcl_kernels::{op_name}"
    if not torch._C._dispatch_has_kernel(qualified):
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(qualified, dispatch_key)


def build_config() -> dict:
    """What setup.py recorded at build time (empty when the extension was not built)."""
    cfg = _BUILD_CONFIG
    if cfg is None:
        return {}
    return {
        "with_cuda": cfg.WITH_CUDA,
        "cuda_arch_list": cfg.CUDA_ARCH_LIST,
        "debug": cfg.DEBUG,
        "built_with_torch": cfg.BUILT_WITH_TORCH,
        "built_with_cuda": cfg.BUILT_WITH_CUDA,
    }
