"""Deprecated: the training loop's parts now live in one module per job (distributed, schedule,
checkpoints, training, inference, reporting); this module re-exports them for one release."""

import warnings

from rcl_kernels.models.checkpoints import (CHECKPOINT_FORMAT, RESUMABLE_CHANGES, load_checkpoint,
                                            model_from_checkpoint, save_checkpoint)
from rcl_kernels.models.distributed import (Distributed, autocast, resolve_device, seed_everything, setup_distributed,
                                            step_generator)
from rcl_kernels.models.inference import Evaluation, detect, evaluate, ground_truth
from rcl_kernels.models.reporting import metrics_table, write_json
from rcl_kernels.models.schedule import StepBatches, lr_factor, make_optimizer
from rcl_kernels.models.training import TrainResult, prepare_model_config, train

warnings.warn("rcl_kernels.models.train_loop is deprecated: import from rcl_kernels.models.training, inference, "
              "checkpoints, distributed, schedule or reporting", DeprecationWarning, stacklevel=2)

__all__ = ["CHECKPOINT_FORMAT", "RESUMABLE_CHANGES", "Distributed", "Evaluation", "StepBatches", "TrainResult",
           "autocast", "detect", "evaluate", "ground_truth", "load_checkpoint", "lr_factor", "make_optimizer",
           "metrics_table", "model_from_checkpoint", "prepare_model_config", "resolve_device", "save_checkpoint",
           "seed_everything", "setup_distributed", "step_generator", "train", "write_json"]
