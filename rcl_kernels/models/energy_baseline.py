"""The untrained energy-contrast detector: a baseline that knows the synthetic generator adds energy.

The synthetic features (rcl_kernels.data.synthetic) add each instance's pattern on top of the
background noise, so a step inside an instance has more energy e_t = mean_c x_{c,t}^2 than one
outside. The detector scores every grid cell [s, s + L] (integer start s, length L = 1 .. D, end
inside the item) by the contrast of its mean energy with the mean energy of its context (L / 2
steps on each side, at least one, clipped to the item):

    score = sigmoid((mean_{[s, s + L)} e - mean_context e) / std_t e)

(the sigmoid only keeps scores positive for Soft-NMS; the ranking is the contrast's). Nothing is
learnt: its rows show what the features give away without training, so a trained detector that
does not beat it on a length bin has not learnt that bin. It has the models' detect interface, so
rcl_kernels.models.inference.detect runs it with the same post-processing.
"""

from __future__ import annotations

import torch
from torch import nn

from rcl_kernels.models.candidates import Candidates, cell_candidates
from rcl_kernels.models.config import ModelConfig
from rcl_kernels.models.sampling import grid_segments


class EnergyContrast(nn.Module):
    """config: max_duration (D, in input steps) and backend (for Soft-NMS); nothing else is read."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.validate()

    @torch.no_grad()
    def detect(self, features: torch.Tensor, mask: torch.Tensor, class_agnostic: bool = True,
               neighbours: torch.Tensor | None = None) -> Candidates:
        B, _, T = features.shape
        energy = (features.float() ** 2).mean(dim=1) * mask
        lengths = mask.sum(dim=1)
        # cumulative sums: the mean over any [a, b) in O(1)
        csum = torch.nn.functional.pad(energy.cumsum(dim=1), (1, 0))
        cells = grid_segments(T, self.config.max_duration, device=features.device)
        s, e = cells[:, 0].long(), cells[:, 1].long()
        width = ((e - s) // 2).clamp(min=1)
        end = lengths[:, None].long()

        def mean(a, b):
            a, b = torch.minimum(a.clamp(min=0), end), torch.minimum(b.clamp(min=0), end)
            total = torch.gather(csum, 1, b) - torch.gather(csum, 1, a)
            return total, (b - a).to(total.dtype)

        expand = lambda x: x[None].expand(B, -1)  # noqa: E731
        inside, n_in = mean(expand(s), expand(e))
        left, n_left = mean(expand(s - width), expand(s))
        right, n_right = mean(expand(e), expand(e + width))
        outside = (left + right) / (n_left + n_right).clamp(min=1)
        contrast = inside / n_in.clamp(min=1) - outside
        spread = torch.sqrt(((energy - (energy.sum(1) / lengths.clamp(min=1))[:, None]) ** 2 * mask).sum(1)
                            / lengths.clamp(min=1)).clamp(min=1e-6)
        score = torch.sigmoid(contrast / spread[:, None])
        valid = expand(e) <= end
        segments = cells[None].expand(B, -1, -1).contiguous()
        labels = torch.zeros(B, segments.shape[1], dtype=torch.int64, device=features.device)
        return cell_candidates(segments, score, labels, valid, mask, neighbours)
