"""The machine's ceilings, measured in the same run as the kernels: memory copy bandwidth (bytes
read + written per second) and matrix-multiply rate. Kernel rows are reported as fractions of
these rather than of datasheet numbers."""

from __future__ import annotations

import torch

from common import BenchConfig, measure


def measure_copy_gbps(cfg: BenchConfig) -> float:
    """Bytes read + written per second by copying a buffer far larger than the caches (1 GiB on
    a GPU, 128 MiB on a CPU) into another, both already written."""
    copy_bytes = (1 << 30) if cfg.is_cuda else (1 << 27)
    src = torch.empty(copy_bytes // 4, dtype=torch.float32, device=cfg.device).uniform_()
    dst = torch.empty_like(src).fill_(0)
    t = measure(lambda: dst.copy_(src), cfg)
    return 2 * copy_bytes / t.ms / 1e6


def measure_ceilings(cfg: BenchConfig) -> dict:
    dev = cfg.device
    out = {"copy_gbps": measure_copy_gbps(cfg)}
    rates = {}
    sizes = {"bf16": (torch.bfloat16, 8192), "fp32": (torch.float32, 4096)} if cfg.is_cuda else \
        {"fp32": (torch.float32, 1024)}
    for name, (dtype, n) in sizes.items():
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        t = measure(lambda: a @ b, cfg)
        rates[name] = 2 * n**3 / t.ms / 1e9
    out["matmul_tflops"] = rates
    return out
