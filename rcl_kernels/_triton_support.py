"""Whether Triton kernels can run, without initialising CUDA."""

from __future__ import annotations

import os

try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    TRITON_VERSION: str | None = triton.__version__
except ImportError:  # Triton is optional: the other backends work without it
    TRITON_VERSION = None


def triton_interpreted() -> bool:
    """TRITON_INTERPRET=1 runs Triton kernels on CPU tensors (slowly); read at kernel definition."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_usable(device_type: str) -> bool:
    if TRITON_VERSION is None:
        return False
    if device_type == "cuda":
        return True
    return device_type == "cpu" and triton_interpreted()
