"""rcl_kernels.info(): what was built and what backend="auto" picks, without initialising CUDA."""

from __future__ import annotations

import json

import torch

from rcl_kernels._backends import registered_backends
from rcl_kernels._extension import (
    EXTENSION_LOADED,
    build_config,
    has_kernel,
    load_error,
)
from rcl_kernels._triton_support import (
    TRITON_VERSION,
    interpreter_problem,
    triton_interpreted,
)
from rcl_kernels._version import __version__


def info(*, as_json: bool = False, file=None) -> dict:
    """Report the build (C++ CPU kernels, CUDA kernels and their archs, Triton) and, per op and
    device type, the available backends and the one backend="auto" picks. Prints the report
    (as JSON with as_json=True) unless file=False; returns it as a dict."""
    cfg = build_config()
    report = {
        "rcl_kernels": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "extension_loaded": EXTENSION_LOADED,
        "extension_error": None if load_error() is None else str(load_error()),
        "cpu_kernels": has_kernel("segment_interp", "CPU"),
        "cuda_kernels": has_kernel("segment_interp", "CUDA"),
        "cuda_arch_list": cfg.get("cuda_arch_list") or None,
        "debug_build": cfg.get("debug"),
        "triton": TRITON_VERSION,
        "triton_interpret": triton_interpreted(),
        "triton_interpreter_problem": interpreter_problem() if triton_interpreted() else None,
        "ops": {
            name: {
                device: {"available": table.available(device), "auto": table.auto(device),
                         "auto_by_dtype": table.auto_by_dtype(device)}
                for device in ("cpu", "cuda")
            }
            for name, table in registered_backends().items()
        },
    }
    if file is not False:
        if as_json:
            print(json.dumps(report, indent=1), file=file)
        else:
            print(_format(report), file=file)
    return report


def _format(report: dict) -> str:
    lines = [
        f"rcl_kernels {report['rcl_kernels']}  torch {report['torch']} (CUDA {report['torch_cuda']})",
        f"  C++ CPU kernels : {report['cpu_kernels']}",
        f"  CUDA kernels    : {report['cuda_kernels']}"
        + (f" (archs {report['cuda_arch_list']})" if report["cuda_kernels"] else ""),
        f"  Triton          : {report['triton'] or 'not installed'}"
        + (" (TRITON_INTERPRET=1: runs on CPU tensors)" if report["triton_interpret"] else ""),
    ]
    if report["triton_interpreter_problem"]:
        lines.append(f"  Triton on CPU tensors unavailable: {report['triton_interpreter_problem']}")
    if report["extension_error"]:
        lines.append(f"  extension not loaded: {report['extension_error']}")
    for name, devices in report["ops"].items():
        for device, entry in devices.items():
            lines.append(f"  {name:<16} on {device:<4}: auto -> {entry['auto']:<9} available {entry['available']}")
            by_dtype = entry["auto_by_dtype"]
            if len(set(by_dtype.values())) > 1:  # the choice depends on the dtype
                lines.append(" " * 26 + "auto by dtype: " + ", ".join(f"{d} -> {b}" for d, b in by_dtype.items()))
    return "\n".join(lines)
