"""The data order and learning-rate schedule of a run, as functions of the step alone, so that a
resumed run replays exactly the steps it skipped."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DistributedSampler

from rcl_kernels.models.config import ConfigError, RunConfig
from rcl_kernels.models.distributed import Distributed


class StepBatches:
    """Index lists of the steps [start, stop) of a run: epoch e = step // steps_per_epoch uses
    DistributedSampler's (seed, e) permutation (this rank's share), cut into batches."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, dist_info: Distributed, start: int, stop: int):
        per_rank = dataset_size // dist_info.world if dist_info.world > 1 else dataset_size
        self.steps_per_epoch = per_rank // batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"--batch-size {batch_size}: larger than the {per_rank} training items per process")
        self.sampler = DistributedSampler(range(dataset_size), num_replicas=dist_info.world, rank=dist_info.rank,
                                          shuffle=True, seed=seed, drop_last=True)
        self.batch_size, self.start, self.stop = batch_size, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        step = self.start
        while step < self.stop:
            epoch, offset = divmod(step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            for i in range(offset, self.steps_per_epoch):
                if step >= self.stop:
                    return
                yield order[i * self.batch_size:(i + 1) * self.batch_size]
                step += 1


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 1 % of the base rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, run: RunConfig):
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, run.warmup_steps, run.max_steps))
    return optimizer, scheduler


