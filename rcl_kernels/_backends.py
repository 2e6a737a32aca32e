"""Backend names and the choice that backend="auto" makes for each op and device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from rcl_kernels._extension import has_kernel
from rcl_kernels._optional import missing_message
from rcl_kernels._triton_support import TRITON_VERSION, triton_usable

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class OpBackends:
    """Which backends an op has and the order "auto" tries them in, per device type.

    The preference order comes from the benchmarks (benchmarks/results): the fastest built
    backend first, the pure-PyTorch reference last.
    """

    op_name: str  # name of the C++ operator, for the compiled-kernel query
    backends: tuple[str, ...]
    auto_order: dict[str, tuple[str, ...]]
    triton_available: Callable[[], bool] = lambda: False
    # Backend -> the input dtypes it runs (the dtype that decides is the op's main input: the
    # features, or the segments of soft_nms); a backend not listed runs every dtype the op takes.
    # "auto" skips a backend for other dtypes; asked for by name, the backend raises its own error.
    dtypes: dict[str, tuple[torch.dtype, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        _TABLES[self.op_name] = self

    def runs(self, backend: str, dtype: torch.dtype | None) -> bool:
        """Whether `backend` takes inputs of `dtype` (None: any dtype)."""
        return dtype is None or backend not in self.dtypes or dtype in self.dtypes[backend]

    def available(self, device_type: str) -> list[str]:
        found = []
        for name in self.backends:
            if name == "reference":
                found.append(name)
            elif name == "cpu" and device_type == "cpu" and has_kernel(self.op_name, "CPU"):
                found.append(name)
            elif name == "cuda" and device_type == "cuda" and has_kernel(self.op_name, "CUDA"):
                found.append(name)
            elif name == "triton" and triton_usable(device_type) and self.triton_available():
                found.append(name)
        return found

    def auto(self, device_type: str, dtype: torch.dtype | None = None, unlaunchable: tuple[str, ...] = ()) -> str:
        """The backend "auto" picks for inputs of `dtype` on `device_type` (None: as if every
        backend ran every dtype), skipping the backends in `unlaunchable` (those the op found cannot launch the input's shape). Asks
        only what was built: never initialises CUDA."""
        available = self.available(device_type)
        for name in self.auto_order.get(device_type, ("reference",)):
            if name in available and self.runs(name, dtype) and name not in unlaunchable:
                return name
        return "reference"

    def auto_by_dtype(self, device_type: str) -> dict[str, str]:
        """dtype name -> what "auto" picks for it, for every floating dtype (rcl_kernels.info())."""
        return {str(dtype).removeprefix("torch."): self.auto(device_type, dtype) for dtype in FLOAT_DTYPES}

    def resolve(self, backend: str, device: torch.device, dtype: torch.dtype | None = None,
                unlaunchable: tuple[str, ...] = ()) -> str:
        """Turn the user's backend argument into a backend that can run on `device`; "auto"
        also takes the input dtype and the backends that cannot launch the input's shape."""
        return _resolve(self.op_name, backend, device.type, "" if dtype is None else str(dtype),
                        ",".join(unlaunchable))

    def _resolve_uncached(self, backend: str, device_type: str, dtype: torch.dtype | None = None,
                          unlaunchable: tuple[str, ...] = ()) -> str:
        if backend not in BACKENDS or (backend != "auto" and backend not in self.backends):
            raise ValueError(
                f"{self.op_name}: backend must be one of {('auto',) + self.backends}, got {backend!r}"
            )
        if backend == "auto":
            return self.auto(device_type, dtype, unlaunchable)
        if backend == "triton" and TRITON_VERSION is None:
            raise RuntimeError(missing_message("triton", f"{self.op_name}: backend 'triton'"))
        if backend not in self.available(device_type):
            raise RuntimeError(
                f"{self.op_name}: backend {backend!r} is not available for {device_type} tensors "
                f"(available: {self.available(device_type)}); see rcl_kernels.info()"
            )
        return backend


# Each op's table, by op name: the constant-result function below takes only strings, which every
# torch.compile version can pass (torch 2.11's cannot reconstruct a frozen dataclass argument).
_TABLES: dict[str, OpBackends] = {}


def registered_backends() -> dict[str, OpBackends]:
    """Every op's backend table, by op name, in the order the op modules were imported."""
    return dict(_TABLES)


# torch.compile cannot trace the dispatcher queries behind available(); the choice depends only
# on what was built, so the compiler may treat it as a constant.
# Arguments are strings: the dtype as str(dtype) ("" for none), the unlaunchable backends
# joined by commas.
@torch.compiler.assume_constant_result
def _resolve(op_name: str, backend: str, device_type: str, dtype_name: str = "", unlaunchable: str = "") -> str:
    dtype = getattr(torch, dtype_name.removeprefix("torch.")) if dtype_name else None
    return _TABLES[op_name]._resolve_uncached(backend, device_type, dtype, tuple(filter(None, unlaunchable.split(","))))
