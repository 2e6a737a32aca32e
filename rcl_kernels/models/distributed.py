"""Where a run executes: the device, torch.distributed under torchrun, seeding, autocast, and the
per-step random generator.

Distribution: under `torchrun --nproc_per_node N`, WORLD_SIZE > 1 turns on torch.distributed
(NCCL on GPUs, gloo on CPUs); each process drives one device and rank 0 logs, saves checkpoints
and evaluates.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from rcl_kernels.models.config import ConfigError, RunConfig


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return device


def setup_distributed(run: RunConfig) -> Distributed:
    """Single process unless torchrun set WORLD_SIZE > 1; then one process per device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(run.device)
    if world <= 1:
        return Distributed(0, 1, device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world, device)


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def autocast(run: RunConfig, device: torch.device):
    """bf16 autocast on the GPU when run.amp; nothing on the CPU (CPU bf16 is slower there)."""
    if run.amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 131 + rank)
    return g


