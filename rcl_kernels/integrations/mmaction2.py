"""mmaction2's BMN (open-mmlab/mmaction2 1.2.0, mmaction/models/localizers/bmn.py) on the fused BM layer.

  BMN                    mmaction2's constructor arguments, submodule and parameter names and
                         forward(inputs, data_samples, mode="tensor" | "loss" | "predict"); the
                         boundary-matching layer and the two convolutions after it run through
                         rcl_kernels.nn.BoundaryMatching.project, so neither the (T, N T T) sample
                         mask (122 MiB at the ActivityNet config) nor the (B, C, N, T, T) map exists.
                         predict takes a batch of B videos (mmaction2's reads only the first) and
                         post-processes them together (mmaction2_proposals.bmn_proposals).
  register_in_mmaction2  files BMN in mmaction2's MODELS registry as "RclBMN" (done on import when
                         mmaction2 is installed, so a config's custom_imports switches to it), and on
                         request in place of mmaction2's "BMN"; also makes mmengine's checkpoint
                         loading work with torch >= 2.6 (allow_mmengine_checkpoints).

mmaction2 is optional: this module imports without it; building the model then raises an
ImportError that names the extra to install. Differences from mmaction2's BMN (docs/integrations.md):
- no `sample_mask` parameter: state_dict() has every key of mmaction2's except it. load_state_dict
  (strict=True, also through mmengine's load_checkpoint) accepts mmaction2's checkpoints: their
  sample_mask is checked to have the shape this configuration's mask has, then dropped.
  stock_state_dict() writes the mask back for mmaction2's own BMN (or load ours there with
  strict=False: its constructor builds the mask anyway).
- x_3d_p (Conv3d + ReLU) and x_2d_p[0:2] (1x1 Conv2d + ReLU) keep their parameters but are applied
  functionally inside the fused projection: forward hooks and pre-hooks on those modules (and on the
  x_2d_p container) do not run; x_2d_p[2:] and the 1D modules are called as modules.
- training labels are computed vectorised (the same numbers as mmaction2's numpy loops); the
  match_map / anchors_tmins / anchors_tmaxs attributes, used only by those loops, do not exist.
- a submodule `boundary_matching` (no parameters or persistent buffers) holds the fused layer.
"""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import torch
from torch import nn

from rcl_kernels.integrations.mmaction2_proposals import bmn_proposals
from rcl_kernels.nn.boundary_matching import BoundaryMatching
from rcl_kernels.reference.boundary_matching import bmn_sample_mask

INSTALL_HINT = 'pip install "rcl_kernels[mmaction2]"'
TYPE_NAME = "RclBMN"  # our name in mmaction2's MODELS registry

try:  # optional: mmengine's BaseModel gives Runner's train_step / val_step / data_preprocessor
    from mmaction.registry import MODELS
    from mmengine.model import BaseModel
except Exception as _exc:  # not installed (ImportError), or installed for another torch
    MODELS, BaseModel = None, nn.Module
    _MISSING = _exc.name if isinstance(_exc, ImportError) and _exc.name else \
        f"{type(_exc).__name__}: {str(_exc).splitlines()[0][:120] if str(_exc) else ''}"
else:
    _MISSING = None

# mmaction2 1.2.0's wheel lacks this subpackage (upstream issue #2714), so `import mmaction.models`,
# which MODELS.build triggers, fails there.
_MISSING_DRN = "mmaction.models.localizers.drn"


def require_mmaction2() -> None:
    """Raise a one-line ImportError naming the extra when mmaction2 or mmengine is missing."""
    if _MISSING is not None:
        raise ImportError(f"rcl_kernels.integrations.mmaction2 needs mmaction2 and mmengine "
                          f"(missing: {_MISSING}); install them with: {INSTALL_HINT}")


def _build_from_mmaction2(cfg: dict):
    """MODELS.build(cfg), with a clear message for the 1.2.0 wheel's missing drn subpackage."""
    try:
        return MODELS.build(cfg)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith(_MISSING_DRN):
            raise ImportError(f"mmaction2's registry cannot import mmaction.models: the installed mmaction2 lacks "
                              f"{_MISSING_DRN} (the 1.2.0 wheel; upstream issue #2714); install mmaction2 from its "
                              f"source tree, see docs/integrations.md") from exc
        raise


class BMN(BaseModel):
    """mmaction2's BMN (same arguments, parameter names, modes and outputs) without the sample mask.

    Args: mmaction2's (temporal_dim T, boundary_ratio, num_samples N, num_samples_per_bin,
    feat_dim, soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold, post_process_top_k,
    feature_extraction_interval, loss_cls, hidden_dim_1d, hidden_dim_2d, hidden_dim_3d), plus
    keyword-only backend ("auto", or an rcl_kernels backend name for segment_interp / score_anchors)
    and project_method ("score_anchors" or "soi_linear", see rcl_kernels.nn.BoundaryMatching).

    forward(inputs, data_samples=None, mode="tensor"): inputs a list of (feat_dim, T) tensors (or
    a (B, feat_dim, T) tensor). "tensor" -> (confidence_map (B, 2, T, T) indexed [duration, start],
    start (B, T), end (B, T)); "loss" -> {"loss": ...} from gt_instances.gt_bbox of each data
    sample; "predict" -> one dict(video_name, proposal_list) per video, in mmaction2's format.
    """

    def __init__(self, temporal_dim, boundary_ratio, num_samples, num_samples_per_bin, feat_dim,
                 soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold, post_process_top_k,
                 feature_extraction_interval=16, loss_cls=None, hidden_dim_1d=256, hidden_dim_2d=128,
                 hidden_dim_3d=512, *, backend: str = "auto", project_method: str = "score_anchors"):
        require_mmaction2()
        super().__init__()
        self.tscale = temporal_dim
        self.boundary_ratio = boundary_ratio
        self.num_samples = num_samples
        self.num_samples_per_bin = num_samples_per_bin
        self.feat_dim = feat_dim
        self.soft_nms_alpha = soft_nms_alpha
        self.soft_nms_low_threshold = soft_nms_low_threshold
        self.soft_nms_high_threshold = soft_nms_high_threshold
        self.post_process_top_k = post_process_top_k
        self.feature_extraction_interval = feature_extraction_interval
        self.loss_cls = _build_from_mmaction2(copy.deepcopy(loss_cls) if loss_cls is not None
                                              else dict(type="BMNLoss"))
        self.hidden_dim_1d, self.hidden_dim_2d, self.hidden_dim_3d = hidden_dim_1d, hidden_dim_2d, hidden_dim_3d
        H1, H2, H3 = hidden_dim_1d, hidden_dim_2d, hidden_dim_3d

        def conv1d(cin, cout, k, groups=1):
            return nn.Conv1d(cin, cout, kernel_size=k, padding=k // 2, groups=groups)

        # mmaction2's module tree (the parameter names of its checkpoints)
        self.x_1d_b = nn.Sequential(conv1d(feat_dim, H1, 3, 4), nn.ReLU(inplace=True),
                                    conv1d(H1, H1, 3, 4), nn.ReLU(inplace=True))
        self.x_1d_s = nn.Sequential(conv1d(H1, H1, 3, 4), nn.ReLU(inplace=True), conv1d(H1, 1, 1), nn.Sigmoid())
        self.x_1d_e = nn.Sequential(conv1d(H1, H1, 3, 4), nn.ReLU(inplace=True), conv1d(H1, 1, 1), nn.Sigmoid())
        self.x_1d_p = nn.Sequential(conv1d(H1, H1, 3), nn.ReLU(inplace=True))
        self.x_3d_p = nn.Sequential(nn.Conv3d(H1, H3, kernel_size=(num_samples, 1, 1)), nn.ReLU(inplace=True))
        self.x_2d_p = nn.Sequential(nn.Conv2d(H3, H2, kernel_size=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(H2, H2, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(H2, H2, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                                    nn.Conv2d(H2, 2, kernel_size=1), nn.Sigmoid())
        T = temporal_dim
        # bm_mask[d, s] = 1 where start s + duration d < T (a persistent buffer in mmaction2's checkpoints)
        self.register_buffer("bm_mask", (torch.arange(T)[None, :] < T - torch.arange(T)[:, None]).float())
        self.boundary_matching = BoundaryMatching(T, T, num_samples, num_samples_per_bin, boundary_ratio,
                                                  backend=backend, project_method=project_method)
        self.register_load_state_dict_pre_hook(_drop_stock_sample_mask)

    def init_weights(self) -> None:
        """PyTorch's default initialisation, as mmaction2's BMN (which overrides this to do nothing)."""

    @property
    def sample_mask_shape(self) -> tuple[int, int]:
        """The shape of mmaction2's sample_mask for this configuration: (T, N T T)."""
        return (self.tscale, self.num_samples * self.tscale * self.tscale)

    def stock_state_dict(self, *args, **kwargs) -> dict:
        """state_dict() plus the sample_mask mmaction2's BMN stores (float32, built here on
        request), so that mmaction2's own BMN loads it with strict=True."""
        state = self.state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", "")
        T = self.tscale
        mask = bmn_sample_mask(T, T, self.num_samples, self.num_samples_per_bin, self.boundary_ratio)
        state[prefix + "sample_mask"] = mask.reshape(self.sample_mask_shape).to(self.bm_mask.device)
        return state

    def forward(self, inputs, data_samples=None, mode: str = "tensor", **kwargs):
        if isinstance(inputs, (list, tuple)):
            inputs = torch.stack(list(inputs))
        if mode == "tensor":
            return self._forward(inputs)
        if mode == "predict":
            return self.predict(inputs, data_samples, **kwargs)
        if mode == "loss":
            return self.loss(inputs, data_samples, **kwargs)
        raise RuntimeError(f'Invalid mode "{mode}". Only supports loss, predict and tensor mode')

    def _forward(self, x: torch.Tensor):
        """(B, feat_dim, T) -> confidence_map (B, 2, T, T), start (B, T), end (B, T)."""
        base = self.x_1d_b(x)
        start = self.x_1d_s(base).squeeze(1)
        end = self.x_1d_e(base).squeeze(1)
        conv_n, pointwise = self.x_3d_p[0], self.x_2d_p[0]
        # relu(pointwise(relu(conv_n(BM map)))) without the map: x_3d_p and x_2d_p[0:2] in one call
        hidden = self.boundary_matching.project(self.x_1d_p(base), conv_n.weight, conv_n.bias,
                                                pointwise.weight, pointwise.bias)
        confidence_map = self.x_2d_p[2:](hidden)
        return confidence_map, start, end

    def loss(self, batch_inputs, batch_data_samples, **kwargs) -> dict:
        gt_bbox = [sample.gt_instances["gt_bbox"] for sample in batch_data_samples]
        labels = [t.to(batch_inputs.device) for t in self.generate_labels(gt_bbox)]
        confidence_map, start, end = self._forward(batch_inputs)
        loss = self.loss_cls(confidence_map, start, end, *labels, self.bm_mask)
        return dict(loss=loss[0])

    def predict(self, batch_inputs, batch_data_samples, **kwargs) -> list[dict]:
        """Proposals of every video of the batch: [dict(video_name, proposal_list), ...] with
        proposal_list as mmaction2's post_processing gives (score, segment in seconds), from each
        data sample's metainfo (video_name, duration_frame, duration_second)."""
        confidence_map, start, end = self._forward(batch_inputs)
        metas = [sample.metainfo for sample in batch_data_samples]
        return bmn_proposals(confidence_map, start, end, metas, soft_nms_alpha=self.soft_nms_alpha,
                             soft_nms_low_threshold=self.soft_nms_low_threshold,
                             soft_nms_high_threshold=self.soft_nms_high_threshold,
                             post_process_top_k=self.post_process_top_k,
                             feature_extraction_interval=self.feature_extraction_interval)

    def generate_labels(self, gt_bbox):
        """mmaction2's training labels from each video's (n, 2) gt_bbox (start, end in [0, 1]):
        confidence (B, T, T) = max IoU of cell [duration, start] with the boxes, start and end
        (B, T) = max overlap of each step's anchor with the boxes' padded boundaries. float32 CPU
        tensors, bit-identical to mmaction2's loops (numpy >= 2 promotion rules)."""
        confidence, starts, ends = zip(*(bmn_video_labels(box, self.tscale) for box in gt_bbox))
        return torch.stack(confidence), torch.stack(starts), torch.stack(ends)


def bmn_video_labels(gt_bbox: torch.Tensor, temporal_dim: int):
    """One video's BMN labels as mmaction2 computes them, vectorised: (T, T) confidence, (T,) start,
    (T,) end, float32 on the CPU. Each intermediate has the dtype numpy gives mmaction2's code."""
    T = temporal_dim
    box = torch.as_tensor(gt_bbox).cpu()
    if box.dim() != 2 or box.shape[1] != 2 or box.shape[0] == 0:
        raise ValueError(f"BMN labels: gt_bbox must have shape (n >= 1, 2), got {tuple(box.shape)}")
    gap = 1.0 / T
    # cells [duration d, start s] = [gap s, gap s + gap (d + 1)], float64 as mmaction2's match_map
    tmin = (gap * torch.arange(T, dtype=torch.float64)).expand(T, T)
    tmax = tmin + (gap * torch.arange(1, T + 1, dtype=torch.float64))[:, None]
    gmin, gmax = box[:, 0].double()[:, None, None], box[:, 1].double()[:, None, None]
    inter = (torch.minimum(tmax, gmax) - torch.maximum(tmin, gmin)).clamp(min=0.0)
    iou = inter / ((tmax - tmin) - inter + gmax - gmin)
    confidence = iou.float().amax(dim=0)

    pad = 3 * (1.0 / T)
    anchor_min = torch.tensor([gap * (i - 0.5) for i in range(T)], dtype=torch.float64)
    anchor_max = torch.tensor([gap * (i + 1.5) for i in range(T)], dtype=torch.float64)

    def overlap(edge):  # IoP of each anchor with the boundary windows [edge - pad / 2, edge + pad / 2]
        lo, hi = (edge - pad / 2)[:, None], (edge + pad / 2)[:, None]  # torch arithmetic in gt_bbox's dtype
        # numpy casts the Python-float anchors to the windows' dtype, then divides by the float64 length
        inter = (torch.minimum(anchor_max.to(hi.dtype), hi) - torch.maximum(anchor_min.to(lo.dtype), lo)).clamp(min=0)
        return (inter.double() / (anchor_max - anchor_min)).amax(dim=0).float()

    return confidence, overlap(box[:, 0]), overlap(box[:, 1])


def _drop_stock_sample_mask(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                            error_msgs) -> None:
    """load_state_dict pre-hook: accept mmaction2's sample_mask (after checking its shape) and drop it."""
    mask = state_dict.pop(prefix + "sample_mask", None)
    if mask is not None and tuple(mask.shape) != module.sample_mask_shape:
        error_msgs.append(f"size mismatch for {prefix}sample_mask: the checkpoint's is {tuple(mask.shape)}, "
                          f"mmaction2's BMN with temporal_dim={module.tscale}, num_samples={module.num_samples} "
                          f"builds {module.sample_mask_shape}: the checkpoint is of another configuration")


def _history_buffer_attribute(owner, name: str):
    """getattr for unpickling, limited to HistoryBuffer's registered statistics methods (mmengine's
    message hub pickles them as getattr(HistoryBuffer, name))."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is not HistoryBuffer or name not in HistoryBuffer._statistics_methods:
        raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not an attribute mmengine checkpoints hold")
    return getattr(owner, name)


def mmengine_checkpoint_globals() -> list:
    """What mmengine's Runner pickles besides tensors, for torch.load(weights_only=True): numpy
    arrays, scalars and dtypes (meta and message hub), mmengine's HistoryBuffer, and getattr
    limited to HistoryBuffer's statistics methods."""
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    found = [np.dtype, np.ndarray, HistoryBuffer, (_history_buffer_attribute, "builtins.getattr")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # checkpoints of numpy 1 and 2
        found += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    found += [type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"]  # numpy 2's per-dtype classes
    return found


def allow_mmengine_checkpoints() -> None:
    """Make mmengine's checkpoint loading (load_checkpoint, Runner's load_from / resume) work with
    torch >= 2.6, whose torch.load defaults to weights_only=True and rejects what mmengine 0.10's
    Runner writes. mmengine's loader of local files is replaced (through its own
    CheckpointLoader.register_scheme) by one that loads with weights_only=True and allows exactly
    mmengine_checkpoint_globals() for that call; torch's global allowlist is left alone."""
    require_mmaction2()
    from mmengine.runner.checkpoint import CheckpointLoader

    def load_from_local(filename, map_location):
        filename = os.path.expanduser(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f"{filename} can not be found.")
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)


def register_in_mmaction2(*, replace_bmn: bool = False, checkpoint_loading: bool = True) -> dict[str, type]:
    """File BMN in mmaction2's MODELS registry as TYPE_NAME ("RclBMN"); with replace_bmn=True also
    as "BMN", so that existing configs and checkpoints build ours unchanged. checkpoint_loading
    applies allow_mmengine_checkpoints(). Returns {registered name: class}."""
    require_mmaction2()
    registered = {TYPE_NAME: BMN}
    if replace_bmn:
        # mmaction2's own BMN must be registered first, or its later lazy registration would clash
        MODELS.import_from_location()
        registered["BMN"] = BMN
    for name, cls in registered.items():
        MODELS.register_module(name=name, force=True, module=cls)
    if checkpoint_loading:
        allow_mmengine_checkpoints()
    return registered


if MODELS is not None:  # config files switch with custom_imports=dict(imports=[__name__]), type="RclBMN"
    register_in_mmaction2()
