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


def interpreter_problem() -> str | None:
    """Why the Triton interpreter cannot run our kernels here, or None. Triton < 3.7 converts a
    runtime loop bound to int from a 1-element array, which NumPy >= 2.4 refuses ("only
    0-dimensional arrays can be converted to Python scalars"); Triton 3.7 squeezes it first."""
    if TRITON_VERSION is None:
        return "triton is not installed"
    import numpy
    from torch.torch_version import (
        TorchVersion,  # version comparison that also takes tuples
    )

    if TorchVersion(TRITON_VERSION) < (3, 7) and TorchVersion(numpy.__version__) >= (2, 4):
        return (f"the interpreter of triton {TRITON_VERSION} fails with numpy {numpy.__version__} "
                "(needs triton >= 3.7 or numpy < 2.4)")
    return None


def triton_usable(device_type: str) -> bool:
    if TRITON_VERSION is None:
        return False
    if device_type == "cuda":
        return True
    return device_type == "cpu" and triton_interpreted() and interpreter_problem() is None
