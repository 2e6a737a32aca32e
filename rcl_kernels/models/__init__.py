"""A minimal RCL detector built on the library's kernels (RCL, Wang et al., CVPR 2022).

- config: ModelConfig / RunConfig (each key declared once, with its check), from flags or a `key = value` file.
- bmn: BMN (Lin et al., ICCV 2019) as published: TEM, BM layer, PEM confidence maps, its losses.
- rcl: the RCL model (and its "grid" variant), training losses and detection candidates.
- encoder, boundary, sampling, targets, losses, refine: its parts.
- candidates: what every detector returns before Soft-NMS.
- postprocess: candidates -> Soft-NMS -> ActivityNet-format results in seconds.
- prior_baseline: the feature-blind prior (the same segments for every video) every result is read against.
- length_bins: mAP per instance-length bin (DETAD-style sensitivity).
- distributed, schedule, checkpoints: the device and torchrun setup, the step-determined data order
  and learning-rate schedule, resumable checkpoints.
- training: the training loop (seeded, resumable, AMP on GPU, DDP under torchrun).
- inference, reporting: detection and evaluation of a split; metrics as JSON and markdown.
"""

from rcl_kernels.models.bmn import BMN
from rcl_kernels.models.candidates import Candidates
from rcl_kernels.models.config import BMN_PRESET, GRID_PRESET, ConfigError, ModelConfig, RunConfig, build_configs
from rcl_kernels.models.rcl import RCL, build_model

__all__ = ["BMN", "BMN_PRESET", "GRID_PRESET", "RCL", "Candidates", "ConfigError", "ModelConfig", "RunConfig",
           "build_configs", "build_model"]
