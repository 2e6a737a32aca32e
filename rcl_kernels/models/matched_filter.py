"""The matched-filter detector: a reference that knows how the synthetic features were made.

The synthetic generator (rcl_kernels.data.synthetic) adds to the background noise, for an
instance [s, e] of class c, the template

    m(t) = env(t) (cos(phi(t)) a_c + sin(phi(t)) b_c),
    env(t) = sigmoid(k (t - s)) sigmoid(k (e - t)),  phi(t) = clip((t - s) / (e - s), 0, 1) pi / 2

with the class's pattern vectors a_c, b_c and the boundary sharpness k. This detector is given
a_c, b_c, k and the noise level sigma, and scores every grid cell [s, s + L] (integer start,
L = 1 .. D, end inside the item) by the best class's log-likelihood ratio of "this template is
present" against "noise only", with the noise taken as white with variance sigma^2 per channel:

    llr = (<x, m> - ||m||^2 / 2) / sigma^2,   score = max(llr, 0) / (max(llr, 0) + 1)

(the map keeps scores in [0, 1) for Soft-NMS without saturating float32 as a sigmoid would). The
background is in fact partly smooth, so this is not the optimal detector, but it is the one a
person who read the generator would write: an upper reference for what the features allow
at a noise level, against which the trained detectors' numbers are read. Nothing is learnt.
The template is summed over the cell and its ramps (12 / k steps beyond each boundary, where the
envelope is below 6e-6), clipped to the item; the inner products are two matmuls per batch:

    <x, m_c> = W_cos (a_c . x)^T + W_sin (b_c . x)^T,   W_cos[cell, t] = env cos(phi), W_sin likewise.

It has the models' detect interface, so rcl_kernels.models.inference.detect runs it with the same
post-processing as the energy detector and the trained models.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rcl_kernels.models.candidates import Candidates, cell_candidates
from rcl_kernels.models.config import ModelConfig
from rcl_kernels.models.sampling import grid_segments


class MatchedFilter(nn.Module):
    """config: max_duration (D, in input steps); onset / offset: (classes, C) pattern vectors of the
    data (SyntheticDataset.onset / .offset); sharpness and noise: the generator's knobs."""

    def __init__(self, config: ModelConfig, onset: np.ndarray, offset: np.ndarray, *, sharpness: float,
                 noise: float):
        super().__init__()
        self.config = config.validate()
        if onset.shape != offset.shape or onset.ndim != 2:
            raise ValueError(f"MatchedFilter: onset and offset must both be (classes, C), got {onset.shape} and "
                             f"{offset.shape}")
        if not (sharpness > 0 and math.isfinite(sharpness)):
            raise ValueError(f"MatchedFilter: sharpness must be a finite number > 0, got {sharpness!r}")
        if not (noise > 0 and math.isfinite(noise)):
            raise ValueError(f"MatchedFilter: noise must be a finite number > 0 (the LLR divides by it), got {noise!r}")
        self.register_buffer("onset", torch.as_tensor(onset, dtype=torch.float32), persistent=False)
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32), persistent=False)
        self.sharpness, self.noise = float(sharpness), float(noise)

    def templates(self, cells: torch.Tensor, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_cos, W_sin), each (cells, T): the envelope times cos / sin of the phase at every step."""
        t = torch.arange(num_steps, dtype=torch.float32, device=cells.device)[None, :]
        s, e = cells[:, 0:1], cells[:, 1:2]
        envelope = torch.sigmoid(self.sharpness * (t - s)) * torch.sigmoid(self.sharpness * (e - t))
        reach = 12.0 / self.sharpness
        envelope = envelope * ((t >= s - reach) & (t <= e + reach))  # as the generator: 0 beyond the reach
        phase = ((t - s) / (e - s).clamp(min=1e-6)).clamp(0.0, 1.0) * (0.5 * math.pi)
        return envelope * torch.cos(phase), envelope * torch.sin(phase)

    @torch.no_grad()
    def detect(self, features: torch.Tensor, mask: torch.Tensor, class_agnostic: bool = True,
               neighbours: torch.Tensor | None = None) -> Candidates:
        if features.dim() != 3 or mask.shape != (features.shape[0], features.shape[2]):
            raise ValueError(f"MatchedFilter: features must be (B, C, T) and mask (B, T), got "
                             f"{tuple(features.shape)} and {tuple(mask.shape)}")
        B, C, T = features.shape
        if C != self.onset.shape[1]:
            raise ValueError(f"MatchedFilter: the features have {C} channels, the patterns {self.onset.shape[1]}")
        x = features.float() * mask[:, None, :]
        cells = grid_segments(T, self.config.max_duration, device=features.device)
        w_cos, w_sin = self.templates(cells, T)
        a, b = self.onset, self.offset
        # <x, m_c> for every cell and class: (B, cells, classes)
        inner = w_cos @ torch.einsum("kc,bct->btk", a, x) + w_sin @ torch.einsum("kc,bct->btk", b, x)
        # ||m_c||^2 over the item's steps only, from the per-cell sums of cos^2, sin^2 and cos sin
        m = mask.float().T  # (T, B)
        cc, ss, cs = (((w @ m).T)[..., None] for w in (w_cos ** 2, w_sin ** 2, w_cos * w_sin))  # (B, cells, 1)
        norm = cc * (a * a).sum(1) + ss * (b * b).sum(1) + 2 * cs * (a * b).sum(1)
        llr = (inner - 0.5 * norm) / self.noise ** 2
        best, label = llr.max(dim=-1)
        positive = best.clamp(min=0)
        score = positive / (positive + 1)
        valid = cells[None, :, 1] <= mask.sum(dim=1)[:, None]
        labels = torch.zeros_like(label) if class_agnostic else label
        segments = cells[None].expand(B, -1, -1).contiguous()
        return cell_candidates(segments, score, labels, valid, mask, neighbours)
