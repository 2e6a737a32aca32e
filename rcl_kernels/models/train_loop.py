"""Training and evaluation of RCL: seeded, resumable, bf16 autocast on GPU, DDP under torchrun.

Determinism: the model is initialised from `seed`; the data order of epoch e is DistributedSampler's
permutation for (seed, e); the random training samples of step s come from a generator seeded with
(seed, s, rank). A run resumed from a checkpoint therefore replays exactly the steps it skipped
(on the CPU bit for bit; on the GPU as far as its kernels are deterministic).

Distribution: under `torchrun --nproc_per_node N`, WORLD_SIZE > 1 turns on torch.distributed
(NCCL on GPUs, gloo on CPUs), DistributedSampler and DistributedDataParallel; rank 0 logs,
saves checkpoints and evaluates.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from rcl_kernels.evaluation import detection_map
from rcl_kernels.models.config import ConfigError, ModelConfig, RunConfig, model_config_from_dict
from rcl_kernels.models.data_setup import SplitData, feature_dim_of, load_split
from rcl_kernels.models.length_bins import map_by_length
from rcl_kernels.models.postprocess import DetectionCollector
from rcl_kernels.models.rcl import OP_BACKEND, RCL

CHECKPOINT_FORMAT = 1
# Model config keys that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = {"backend", "candidates", "classes_per_segment", "use_boundary_score", "inference_resolution"}


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


def make_optimizer(model: RCL, run: RunConfig):
    optimizer = torch.optim.Adam(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, run.warmup_steps, run.max_steps))
    return optimizer, scheduler


# -- checkpoints ---------------------------------------------------------------------------------

def save_checkpoint(path: str, model: RCL, optimizer, scheduler, step: int, run: RunConfig,
                    classes: tuple[str, ...]) -> None:
    """Atomic write (temporary file, then rename) of everything needed to resume or detect."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "model_config": model.config.to_dict(),
        "run_config": run.to_dict(),
        "classes": list(classes),
    }
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """torch.load(weights_only=True) with errors that name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from None
    missing = {"format", "step", "model", "model_config", "classes"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise ValueError(f"checkpoint {path} is not an RCL checkpoint (missing {sorted(missing)})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {state['format']}, this version reads {CHECKPOINT_FORMAT}")
    return state


def model_from_checkpoint(path: str, device: torch.device, backend: str | None = None) -> tuple[RCL, dict]:
    state = load_checkpoint(path)
    values = dict(state["model_config"])
    if backend is not None:
        values["backend"] = backend
    model = RCL(model_config_from_dict(values, source=path))
    model.load_state_dict(state["model"])
    return model.to(device), state


def _check_resume_config(given: ModelConfig, stored: dict, path: str) -> None:
    differ = sorted(k for k, v in given.to_dict().items() if k not in RESUMABLE_CHANGES and stored.get(k) != v)
    if differ:
        raise ConfigError(f"--resume {path}: the checkpoint was trained with a different model config "
                          f"({', '.join(f'{k}={stored.get(k)!r} vs {getattr(given, k)!r}' for k in differ)})")


# -- training ------------------------------------------------------------------------------------

def prepare_model_config(model_cfg: ModelConfig, data: SplitData) -> ModelConfig:
    """The network's input size and classes come from the data."""
    model_cfg.feature_dim = feature_dim_of(data)
    model_cfg.num_classes = len(data.videos.classes)
    return model_cfg.validate()


def _batch_to(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    return (batch["features"].to(device, non_blocking=True), batch["mask"].to(device, non_blocking=True),
            batch["segments"].to(device, non_blocking=True), batch["labels"].to(device, non_blocking=True))


@dataclass
class TrainResult:
    model: RCL
    steps: int
    seconds: float
    losses: list[float]  # loss of every step run here
    checkpoint: str | None
    final_terms: dict[str, float] = field(default_factory=dict)  # each loss term, mean of the last 20 steps


def train(model_cfg: ModelConfig, run: RunConfig, train_data: SplitData | None = None) -> TrainResult:
    dist_info = setup_distributed(run)
    device = dist_info.device
    seed_everything(run.seed, device)
    train_data = train_data or load_split(run, "train")
    model_cfg = prepare_model_config(model_cfg, train_data)
    model = RCL(model_cfg).to(device)
    optimizer, scheduler = make_optimizer(model, run)
    start = 0
    checkpoint_path = os.path.join(run.output_dir, "last.pt")
    resume = run.resume
    if resume == "auto":
        resume = checkpoint_path if os.path.isfile(checkpoint_path) else None
    if resume:
        state = load_checkpoint(resume, map_location=device)
        _check_resume_config(model_cfg, state["model_config"], resume)
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
        features, mask, instances, labels = _batch_to(batch, device)
        with autocast(run, device):
            terms = net(features, mask, instances, labels, generator=step_generator(run.seed, step, dist_info.rank, device))
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss.item()} ({ {k: float(v) for k, v in terms.items()} })")
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
    final_terms = {k: sum(t[k] for t in recent_terms) / len(recent_terms) for k in recent_terms[0]} if recent_terms else {}
    return TrainResult(model, steps_done, seconds, losses, checkpoint_path if dist_info.main else None, final_terms)


# -- inference and evaluation --------------------------------------------------------------------

@dataclass
class Evaluation:
    results: dict  # ActivityNet-format {video: [detections]}
    metrics: dict  # protocol, tiou_thresholds, map, average_map, by_length, timing


def detect(model: RCL, run: RunConfig, data: SplitData, device: torch.device) -> tuple[dict, float]:
    """Detections of every video of `data`, and the wall time it took (model + Soft-NMS)."""
    loader = DataLoader(data.items, batch_size=run.eval_batch_size, shuffle=False, collate_fn=data.collate,
                        num_workers=run.num_workers)
    model.eval()
    collector = DetectionCollector()
    began = time.perf_counter()
    with torch.no_grad():
        for batch in tqdm(loader, desc="detect", unit="batch", disable=not run.progress, dynamic_ncols=True):
            features, mask, _, _ = _batch_to(batch, device)
            with autocast(run, device):
                candidates = model.detect(features, mask)
            collector.add(candidates, batch)
    sigma, min_score = run.effective_nms
    results = collector.results(data.videos.classes, top_k=run.effective_top_k, sigma=sigma, min_score=min_score,
                                backend=OP_BACKEND[model.config.backend], class_agnostic=run.class_agnostic,
                                video_ids=[v.video_id for v in data.videos.videos])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return results, time.perf_counter() - began


def ground_truth(data: SplitData, class_agnostic: bool):
    gt = data.videos.ground_truth()
    if class_agnostic:
        import dataclasses

        import numpy as np

        gt = dataclasses.replace(gt, classes=("action",), label=np.zeros_like(gt.label))
    return gt


def evaluate(model: RCL, run: RunConfig, data: SplitData, device: torch.device, *,
             length_edges=None) -> Evaluation:
    results, seconds = detect(model, run, data, device)
    gt = ground_truth(data, run.class_agnostic)
    protocol = run.effective_protocol
    overall = detection_map(results, gt, protocol=protocol)
    by_length = map_by_length(results, gt, data.seconds_per_step(), edges=length_edges, protocol=protocol)
    metrics = {
        "protocol": protocol,
        "class_agnostic": run.class_agnostic,
        "tiou_thresholds": overall.tiou_thresholds.tolist(),
        "map": overall.map.tolist(),
        "average_map": overall.average_map,
        "by_length": by_length,
        "videos": len(data.videos),
        "items": len(data.items),
        "inference_seconds": seconds,
    }
    return Evaluation(results, metrics)


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)


def metrics_table(metrics: dict) -> str:
    """Markdown: mAP (%) per tIoU and average, then per length bin."""
    t = metrics["tiou_thresholds"]
    lines = ["| tIoU | " + " | ".join(f"{x:g}" for x in t) + " | avg |", "|---" * (len(t) + 2) + "|",
             "| mAP | " + " | ".join(f"{100 * m:.2f}" for m in metrics["map"]) + f" | {100 * metrics['average_map']:.2f} |"]
    for row in metrics.get("by_length", []):
        lines.append(f"| len {row['bin']} ({row['instances']}) | " + " | ".join(f"{100 * m:.2f}" for m in row["map"])
                     + f" | {100 * row['average_map']:.2f} |")
    return "\n".join(lines)
