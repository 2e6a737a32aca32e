"""Backend names and the choice that backend="auto" makes for each op and device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from rcl_kernels._extension import has_kernel
from rcl_kernels._optional import missing_message
from rcl_kernels._triton_support import TRITON_VERSION, triton_usable

BACKENDS = ("auto", "reference", "cpu", "cuda", "triton")


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

    def __post_init__(self):
        _TABLES[self.op_name] = self

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

    def auto(self, device_type: str) -> str:
        available = self.available(device_type)
        for name in self.auto_order.get(device_type, ("reference",)):
            if name in available:
                return name
        return "reference"

    def resolve(self, backend: str, device: torch.device) -> str:
        """Turn the user's backend argument into a backend that can run on `device`."""
        return _resolve(self.op_name, backend, device.type)

    def _resolve_uncached(self, backend: str, device_type: str) -> str:
        if backend not in BACKENDS or (backend != "auto" and backend not in self.backends):
            raise ValueError(
                f"{self.op_name}: backend must be one of {('auto',) + self.backends}, got {backend!r}"
            )
        if backend == "auto":
            return self.auto(device_type)
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
@torch.compiler.assume_constant_result
def _resolve(op_name: str, backend: str, device_type: str) -> str:
    return _TABLES[op_name]._resolve_uncached(backend, device_type)
