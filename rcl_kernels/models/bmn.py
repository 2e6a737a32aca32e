"""BMN: Boundary-Matching Network (Lin et al., ICCV 2019), the baseline RCL plugs into.

    features (B, C, T) -> Encoder (base module) -> F (B, H, T')
    F -> BoundaryHead (temporal evaluation module, TEM) -> start / end probabilities (B, 2, T')
    F -> boundary_matching -> (B, H, N, D, T') BM feature map: N samples of every cell
         -> Conv3d over N (kernel (N, 1, 1)) -> (B, pem_channels, D, T')
         -> 1x1, 3x3, 3x3, 1x1 Conv2d (proposal evaluation module, PEM)
         -> two confidence maps (B, 2, D, T'): regression (tIoU) and classification (tIoU > 0.9)

Map cell (d, s), d = 0 .. D-1, is the proposal [s, s + d + 1] in encoder steps (BMN's indexing:
start index s, end index s + d + 1); its BM samples span [s - r L, s + d + r L] with L = d + 1 and
r = context (BMN's prop_boundary_ratio 0.5), N * samples_per_point points, both ends included,
S = samples_per_point consecutive ones averaged (BMN: N = 32, S = 3). A cell is valid when the
proposal ends inside the item (s + L <= length); invalid cells are zero in the BM map, as BMN's
sample mask makes them.

Losses (BMN Sec. 3.4): L = L_TEM + lambda_regression (10) L_reg + L_cls, where
  L_TEM  balanced BCE of start and end probabilities against BMN's boundary targets (boundary.py),
  L_reg  MSE of the regression map against the cell's max tIoU with the instances, balanced over
         the bands tIoU > 0.7, (0.3, 0.7] and (0, 0.3] (BMN draws as many cells from the lower
         bands as the top band holds; averaging each band and then the bands is that balance in
         expectation, without the random draw); cells with tIoU = 0 are not regressed, as in BMN,
  L_cls  balanced BCE of the classification map against tIoU > pem_positive_tiou (0.9).

Inference (BMN Sec. 3.5): a cell is a candidate when its start index is a start-probability peak
or above half the item's maximum (and likewise its end index); its score is
start_prob * end_prob * p_cls * p_reg. Soft-NMS (rcl_kernels.soft_nms) follows in postprocessing.
BMN proposes class-agnostic segments: every candidate has label 0.

Deviation from the published code: an end index equal to the item's length (the proposal reaching
the last boundary) reads the end probability of the last step instead of being dropped, so an
instance that ends with the video can be proposed.
"""

from __future__ import annotations

import torch
from torch import nn

from rcl_kernels.models.boundary import BoundaryHead, boundary_loss, boundary_targets
from rcl_kernels.models.config import ModelConfig
from rcl_kernels.models.encoder import Encoder
from rcl_kernels.models.losses import balanced_bce, banded_mse
from rcl_kernels.models.candidates import OP_BACKEND, Candidates, cell_candidates
from rcl_kernels.models.targets import pairwise_tiou
from rcl_kernels.ops.segment_interp import segment_interp

REGRESSION, CLASSIFICATION = 0, 1  # channels of the confidence maps (BMN's order)
HIGH_BOUNDARY_FRACTION = 0.5  # BMN: a boundary above half the maximum probability is a candidate


def map_cells(num_steps: int, max_duration: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(D, T, 2): cell (d, s) is the proposal [s, s + d + 1]."""
    start = torch.arange(num_steps, device=device, dtype=dtype)
    length = torch.arange(1, max_duration + 1, device=device, dtype=dtype)
    start, length = torch.broadcast_tensors(start[None, :], length[:, None])
    return torch.stack([start, start + length], dim=-1)


def boundary_matching(features: torch.Tensor, num_samples: int, max_duration: int, *, samples_per_point: int = 3,
                      context: float = 0.5, backend: str = "auto") -> torch.Tensor:
    """BMN's boundary-matching layer: (B, C, T) -> (B, C, N, D, T), zero at cells ending past T.

    One segment_interp call over every cell's sampling window (padding "bmn" reproduces BMN's
    sample mask exactly, tests/test_segment_interp.py); rcl_kernels.nn.BoundaryMatching can
    replace this function one for one.
    """
    B, C, T = features.shape
    cells = map_cells(T, max_duration, device=features.device)
    length = cells[..., 1] - cells[..., 0]
    window = torch.stack([cells[..., 0] - context * length, cells[..., 1] - 1 + context * length], dim=-1)
    sampled = segment_interp(features, window.reshape(1, -1, 2).expand(B, -1, -1).contiguous(), num_samples,
                             samples_per_point=samples_per_point, padding="bmn", backend=backend)
    sampled = sampled.view(B, max_duration, T, C, num_samples).permute(0, 3, 4, 1, 2)
    inside = (cells[..., 1] <= T).to(sampled.dtype)
    return sampled * inside


def boundary_candidates(probabilities: torch.Tensor, step_mask: torch.Tensor, keep_first: bool) -> torch.Tensor:
    """(B, T) probabilities -> (B, T) bool: local peaks, or above half the item's maximum, and the
    item's first step (start, keep_first) or last real step (end) always (BMN's start / end bins)."""
    p = torch.where(step_mask, probabilities, torch.full_like(probabilities, -1.0))
    prev = torch.nn.functional.pad(p[:, :-1], (1, 0), value=float("inf"))
    nxt = torch.nn.functional.pad(p[:, 1:], (0, 1), value=float("inf"))
    peak = (p > prev) & (p > nxt)
    high = p > HIGH_BOUNDARY_FRACTION * p.amax(dim=1, keepdim=True)
    steps = torch.arange(p.shape[1], device=p.device)
    lengths = step_mask.sum(dim=1, keepdim=True)
    edge = steps[None] == (0 if keep_first else lengths - 1)
    return (peak | high | edge) & step_mask


class ProposalEvaluation(nn.Module):
    """BMN's PEM: the convolution over the N samples of each cell, then 2D convolutions over the
    (duration, start) map; (B, C, N, D, T) -> (B, 2, D, T) logits (regression, classification)."""

    def __init__(self, in_channels: int, num_samples: int, channels: int, hidden: int):
        super().__init__()
        self.over_samples = nn.Sequential(
            nn.Conv3d(in_channels, channels, (num_samples, 1, 1), stride=(num_samples, 1, 1)), nn.ReLU(inplace=True))
        self.maps = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2, 1))

    def forward(self, bm_features: torch.Tensor) -> torch.Tensor:
        return self.maps(self.over_samples(bm_features).squeeze(2))


class BaseAndTEM(nn.Module):
    """BMN's base module and temporal evaluation module, the network both BMN and RCL build on:
    features (B, C, T) and mask (B, T) -> encoded (B, H, T'), start / end logits (B, 2, T'), mask (B, T')."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.op_backend = OP_BACKEND[config.backend]
        self.encoder = Encoder(config.feature_dim, config.hidden, config.encoder_stride)
        self.boundary = BoundaryHead(config.hidden)

    def encode(self, features: torch.Tensor, mask: torch.Tensor):
        if features.dim() != 3 or features.shape[1] != self.config.feature_dim:
            raise ValueError(f"{type(self).__name__}: features must have shape (B, feature_dim="
                             f"{self.config.feature_dim}, T), got {tuple(features.shape)} (check --feature-dim "
                             f"against the data)")
        features, mask = rescale_input(features, mask, self.config.input_scale)
        encoded, step_mask = self.encoder(features, mask)
        return encoded, self.boundary(encoded), step_mask

    @property
    def units_per_step(self) -> float:
        """Encoder steps per input step (input_scale / encoder_stride): instances in input steps times
        this are in encoder steps; detections in encoder steps divided by it are in input steps."""
        return self.config.input_scale / self.config.encoder_stride


class BMN(BaseAndTEM):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.pem = ProposalEvaluation(config.hidden, config.num_samples, config.pem_channels, config.pem_hidden)

    def confidence_maps(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, 2, D, T') logits of the regression and classification maps."""
        cfg = self.config
        bm = boundary_matching(encoded, cfg.num_samples, cfg.max_duration, samples_per_point=cfg.samples_per_point,
                               context=cfg.context, backend=self.op_backend)
        return self.pem(bm)

    def cell_validity(self, step_mask: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """(B, D, T'): the cell's proposal ends inside the item."""
        lengths = step_mask.sum(dim=1).to(cells.dtype)
        return cells[None, ..., 1] <= lengths[:, None, None]

    def forward(self, features: torch.Tensor, mask: torch.Tensor, instances: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Losses of a batch (RCL.forward's interface; `generator` is unused: BMN draws nothing)."""
        cfg = self.config
        encoded, boundary_logits, step_mask = self.encode(features, mask)
        B, _, T = encoded.shape
        valid_instances = labels >= 0
        instances = instances.float() * self.units_per_step
        maps = self.confidence_maps(encoded).float()
        cells = map_cells(T, cfg.max_duration, device=encoded.device)
        valid = self.cell_validity(step_mask, cells)
        tiou = cell_tiou(cells, instances, valid_instances)
        terms = {
            "boundary": boundary_loss(boundary_logits.float(),
                                      boundary_targets(instances, valid_instances, T, cfg.boundary_region), step_mask),
            "regression": banded_mse(torch.sigmoid(maps[:, REGRESSION]), tiou, valid),
            "classification": balanced_bce(maps[:, CLASSIFICATION], tiou > cfg.pem_positive_tiou, valid),
        }
        terms["loss"] = (cfg.lambda_boundary * terms["boundary"] + cfg.lambda_regression * terms["regression"]
                         + terms["classification"])
        return terms

    @torch.no_grad()
    def detect(self, features: torch.Tensor, mask: torch.Tensor, class_agnostic: bool = True,
               neighbours: torch.Tensor | None = None) -> Candidates:
        """Candidates of a batch (before Soft-NMS), in input steps, label 0 (BMN is class-agnostic).

        With map_upsample = k > 1 the maps and the boundary probabilities are first bilinearly
        upsampled k times (upsample_maps, upsample_probabilities): cell (l - 1, s) of the fine map is
        the proposal [s / k, (s + l) / k] in encoder steps, scored exactly as BMN scores its cells.
        neighbours (B, 2): window gaps (rcl_kernels.models.candidates.cell_candidates)."""
        cfg = self.config
        k = cfg.map_upsample
        encoded, boundary_logits, step_mask = self.encode(features, mask)
        B, _, T = encoded.shape
        probabilities = upsample_probabilities(torch.sigmoid(boundary_logits.float()), k)
        maps = upsample_maps(torch.sigmoid(self.confidence_maps(encoded).float()), k)
        cells = map_cells(k * T, k * cfg.max_duration, device=encoded.device)
        lengths = step_mask.sum(dim=1)
        # fine steps j stand for coarse positions j / k: the last real one is k (length - 1)
        fine_mask = torch.arange(k * T, device=encoded.device)[None] <= k * (lengths[:, None] - 1)
        start_index = cells[..., 0].long()[None].expand(B, -1, -1)
        end_index = torch.minimum(cells[..., 1].long()[None], k * (lengths[:, None, None] - 1)).clamp(min=0)
        start_ok = boundary_candidates(probabilities[:, 0], fine_mask, keep_first=True)
        end_ok = boundary_candidates(probabilities[:, 1], fine_mask, keep_first=False)
        flat = lambda x: x.reshape(B, -1)  # noqa: E731
        start_prob = torch.gather(probabilities[:, 0], 1, flat(start_index))
        end_prob = torch.gather(probabilities[:, 1], 1, flat(end_index))
        valid = (flat(cells[None, ..., 1] <= k * lengths[:, None, None]) & torch.gather(start_ok, 1, flat(start_index))
                 & torch.gather(end_ok, 1, flat(end_index)))
        score = start_prob * end_prob * flat(maps[:, CLASSIFICATION]) * flat(maps[:, REGRESSION])
        segments = (cells.reshape(1, -1, 2) / (k * self.units_per_step)).expand(B, -1, -1).contiguous()
        labels = torch.zeros(B, segments.shape[1], dtype=torch.int64, device=segments.device)
        return cell_candidates(segments, score, labels, valid, mask, neighbours)

    def extra_repr(self) -> str:
        c = self.config
        return (f"num_samples={c.num_samples}, max_duration={c.max_duration}, samples_per_point={c.samples_per_point}, "
                f"context={c.context}, input_scale={c.input_scale}, map_upsample={c.map_upsample}, "
                f"backend={c.backend!r}")


def rescale_input(features: torch.Tensor, mask: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """features (B, C, T), mask (B, T) -> (B, C, scale T), (B, scale T): linear interpolation (step t
    of the input covers [t, t + 1], so coordinate x becomes scale x), each mask step repeated."""
    if scale == 1:
        return features, mask
    masked = features * mask[:, None, :].to(features.dtype)
    return (torch.nn.functional.interpolate(masked, scale_factor=scale, mode="linear", align_corners=False),
            mask.repeat_interleave(scale, dim=1))


def upsample_maps(maps: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 2, D, T) maps -> (B, 2, scale D, scale T), bilinear: fine cell (l - 1, s), the proposal of
    length l / scale starting at s / scale, reads the coarse map at duration index l / scale - 1 and
    start index s / scale (clamped to the map: lengths below one coarse step read the shortest)."""
    if scale == 1:
        return maps
    B, C, D, T = maps.shape
    start = torch.arange(scale * T, device=maps.device, dtype=maps.dtype) / scale
    duration = torch.arange(1, scale * D + 1, device=maps.device, dtype=maps.dtype) / scale - 1
    x = 2 * start / max(T - 1, 1) - 1
    y = 2 * duration / max(D - 1, 1) - 1
    grid = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None]), dim=-1)
    return torch.nn.functional.grid_sample(maps, grid[None].expand(B, -1, -1, -1), mode="bilinear",
                                           padding_mode="border", align_corners=True)


def upsample_probabilities(probabilities: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, 2, T) -> (B, 2, scale T): fine step j is coarse position j / scale, linearly interpolated
    (the last coarse step extends past the end)."""
    if scale == 1:
        return probabilities
    T = probabilities.shape[-1]
    position = (torch.arange(scale * T, device=probabilities.device, dtype=probabilities.dtype) / scale).clamp(max=T - 1)
    lo = position.floor().long()
    hi = (lo + 1).clamp(max=T - 1)
    w = position - lo.to(position.dtype)
    return probabilities[..., lo] * (1 - w) + probabilities[..., hi] * w


def cell_tiou(cells: torch.Tensor, instances: torch.Tensor, valid_instances: torch.Tensor) -> torch.Tensor:
    """(D, T, 2) cells, (B, G, 2) instances -> (B, D, T) max tIoU with the valid instances (0 if none)."""
    B = instances.shape[0]
    D, T, _ = cells.shape
    if instances.shape[1] == 0:
        return cells.new_zeros((B, D, T))
    with torch.no_grad():
        tiou = pairwise_tiou(cells.reshape(1, -1, 2).expand(B, -1, -1), instances)
        tiou = torch.where(valid_instances[:, None, :], tiou, torch.zeros_like(tiou))
        return tiou.amax(dim=2).view(B, D, T)
