"""Checkpoints: everything needed to resume a run or detect with its model, written atomically and
read with weights_only=True."""

from __future__ import annotations

import os

import torch

from rcl_kernels.models.config import ConfigError, ModelConfig, RunConfig, model_config_from_dict
from rcl_kernels.models.rcl import Detector, build_model

CHECKPOINT_FORMAT = 1
# Model config keys that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = {"backend", "candidates", "classes_per_segment", "use_boundary_score", "inference_resolution"}


def save_checkpoint(path: str, model: Detector, optimizer, scheduler, step: int, run: RunConfig,
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


def model_from_checkpoint(path: str, device: torch.device, backend: str | None = None) -> tuple[Detector, dict]:
    state = load_checkpoint(path)
    values = dict(state["model_config"])
    if backend is not None:
        values["backend"] = backend
    model = build_model(model_config_from_dict(values, source=path))
    model.load_state_dict(state["model"])
    return model.to(device), state


def check_resume_config(given: ModelConfig, stored: dict, path: str) -> None:
    differ = sorted(k for k, v in given.to_dict().items() if k not in RESUMABLE_CHANGES and stored.get(k) != v)
    if differ:
        raise ConfigError(f"--resume {path}: the checkpoint was trained with a different model config "
                          f"({', '.join(f'{k}={stored.get(k)!r} vs {getattr(given, k)!r}' for k in differ)})")


