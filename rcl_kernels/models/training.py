"""Training of RCL: seeded, resumable, bf16 autocast on GPU, DDP under torchrun.

Determinism: the model is initialised from `seed`; the data order of epoch e is DistributedSampler's
permutation for (seed, e); the random training samples of step s come from a generator seeded with
(seed, s, rank). A run resumed from a checkpoint therefore replays exactly the steps it skipped
(on the CPU bit for bit; on the GPU as far as its kernels are deterministic).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from rcl_kernels.models.checkpoints import check_resume_config, load_checkpoint, save_checkpoint
from rcl_kernels.models.config import ModelConfig, RunConfig
from rcl_kernels.models.data_setup import SplitData, batch_tensors, feature_dim_of, load_split
from rcl_kernels.models.distributed import autocast, seed_everything, setup_distributed, step_generator
from rcl_kernels.models.rcl import Detector, build_model
from rcl_kernels.models.schedule import StepBatches, lr_factor, make_optimizer


def prepare_model_config(model_cfg: ModelConfig, data: SplitData) -> ModelConfig:
    """The network's input size and classes come from the data."""
    model_cfg.feature_dim = feature_dim_of(data)
    model_cfg.num_classes = len(data.videos.classes)
    return model_cfg.validate()


@dataclass
class TrainResult:
    model: Detector
    steps: int
    seconds: float
    losses: list[float]  # loss of every step run here
    checkpoint: str | None
    final_terms: dict[str, float] = field(default_factory=dict)  # each loss term, mean of the last 20 steps


def train(model_cfg: ModelConfig, run: RunConfig, train_data: SplitData | None = None) -> TrainResult:
    dist_info = setup_distributed(run)
    device = dist_info.device
    seed_everything(run.seed, device)
    train_data = train_data or load_split(run, "train", feature_dim=model_cfg.feature_dim)
    model_cfg = prepare_model_config(model_cfg, train_data)
    model = build_model(model_cfg).to(device)
    optimizer, scheduler = make_optimizer(model, run)
    start = 0
    checkpoint_path = os.path.join(run.output_dir, "last.pt")
    resume = run.resume
    if resume == "auto":
        resume = checkpoint_path if os.path.isfile(checkpoint_path) else None
    if resume:
        state = load_checkpoint(resume, map_location=device)
        check_resume_config(model_cfg, state["model_config"], resume)
        model.load_state_dict(state["model"])
        if state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        # The schedule follows this run's max_steps (a resumed run may extend the training).
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * lr_factor(start, run.warmup_steps, run.max_steps)

    net = model
    if dist_info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = StepBatches(len(train_data.items), run.batch_size, run.seed, dist_info, start, run.max_steps)
    loader = DataLoader(train_data.items, batch_sampler=batches, collate_fn=train_data.collate,
                        num_workers=run.num_workers, pin_memory=device.type == "cuda")
    model.train()
    losses: list[float] = []
    recent_terms: list[dict[str, float]] = []
    bar = tqdm(total=run.max_steps, initial=start, desc="train", unit="step",
               disable=not (run.progress and dist_info.main), dynamic_ncols=True)
    began = time.perf_counter()
    step = start
    for step, batch in enumerate(loader, start=start):
        features, mask, instances, labels = batch_tensors(batch, device)
        with autocast(run, device):
            generator = step_generator(run.seed, step, dist_info.rank, device)
            terms = net(features, mask, instances, labels, generator=generator)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            values = {k: float(v) for k, v in terms.items()}
            raise FloatingPointError(f"step {step}: loss is {loss.item()} ({values})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if run.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        recent_terms = recent_terms[-19:] + [{k: float(v.detach()) for k, v in terms.items()}]
        bar.update(1)
        if (step + 1) % run.log_every == 0 or step + 1 == run.max_steps:
            recent = losses[-run.log_every:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                            windows_per_s=f"{(len(losses) * run.batch_size) / (time.perf_counter() - began):.1f}")
        if dist_info.main and ((step + 1) % run.checkpoint_every == 0 or step + 1 == run.max_steps):
            save_checkpoint(checkpoint_path, model, optimizer, scheduler, step + 1, run, train_data.videos.classes)
    bar.close()
    seconds = time.perf_counter() - began
    if dist_info.world > 1:
        dist.barrier()
    steps_done = run.max_steps if losses else start
    final_terms = {}
    if recent_terms:
        final_terms = {k: sum(t[k] for t in recent_terms) / len(recent_terms) for k in recent_terms[0]}
    return TrainResult(model, steps_done, seconds, losses, checkpoint_path if dist_info.main else None, final_terms)


