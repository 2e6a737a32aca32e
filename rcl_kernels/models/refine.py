"""The recurrent refine module (RCL, Sec. 3.5): M steps, each re-sampling the features at the current
segments, updating a per-segment GRU state, and predicting new confidences, offsets and classes.

    h_0 = 0, c_0 = the first stage's confidences (p1, p2) of x_1
    e_m = relu(AnchorScorer_e(F; x_m))                SoI features at x_m and its coordinates
    h_m = GRUCell([e_m, c_{m-1}], sg(h_{m-1}))        c_{m-1}: the previous step's confidences
    y_m = S_0(F; x_m) + Linear(h_m)                   (p1, p2, offsets, class logits) at x_m
    x_{m+1} = x_m + offsets_m * (x_e - x_s)           (no gradient through the coordinates)

S_0 is the model's own first-stage scoring (shared, not a copy): each step starts from the
continuous representation's answer at the new coordinates, and the recurrent state learns a
correction from the path the segment took. The correction layer starts at zero, so an untrained
refiner is exactly iterated scoring and cannot make the first-stage result worse by chance.
Weights are shared across steps (recurrence); each step is supervised at its own x_m. Like the
coordinates, the state and the previous confidences enter step m without gradient (sg), so each
step's loss trains that step's update only and no step is pulled by later ones through the chain.
"""

from __future__ import annotations

import torch
from torch import nn

from rcl_kernels.models.sampling import ordered
from rcl_kernels.models.targets import apply_offsets
from rcl_kernels.nn.score_anchors import AnchorScorer

# Refined coordinates are kept within this many window lengths of the window, so a wild early
# prediction cannot produce inf / NaN segments.
COORDINATE_RANGE = 2.0
NUM_CONFIDENCES = 2  # p1, p2 logits: the first two output channels


def step_segments(segments: torch.Tensor, offsets: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The next segments: offsets applied, no gradient, ordered and kept in a sane range."""
    moved = apply_offsets(segments.detach().float(), offsets.detach().float())
    moved = torch.nan_to_num(moved, nan=0.0).clamp(-COORDINATE_RANGE * num_steps, (1 + COORDINATE_RANGE) * num_steps)
    return ordered(moved)


class RecurrentRefiner(nn.Module):
    def __init__(self, scorer: AnchorScorer, state: int, steps: int, embed_hidden: int | None = None):
        super().__init__()
        self.steps = steps
        self.embed = AnchorScorer(scorer.in_channels, scorer.num_samples, embed_hidden or scorer.hidden, state,
                                  samples_per_point=scorer.samples_per_point, context=scorer.context,
                                  padding=scorer.padding, backend=scorer.backend)
        self.cell = nn.GRUCell(state + NUM_CONFIDENCES, state)
        self.correction = nn.Linear(state, scorer.out_channels)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, score, features: torch.Tensor, segments: torch.Tensor,
                confidences: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """features (B, H, T), segments (B, R, 2) and the confidence logits that led to them (B, R, 2)
        -> [(x_m, y_m)] for m = 1..M: the segments each step scored and its outputs (B, R, out_channels).
        score(features, segments) is the model's first-stage scoring."""
        B, R, _ = segments.shape
        T = features.shape[-1]
        x = segments.detach().float()
        c = torch.sigmoid(confidences.detach().float())
        h = features.new_zeros((B * R, self.cell.hidden_size), dtype=torch.float32)
        steps = []
        for _ in range(self.steps):
            e = torch.relu(self.embed(features, x, num_steps=T))
            inputs = torch.cat([e.reshape(B * R, e.shape[-1]).float(), c.reshape(B * R, NUM_CONFIDENCES)], dim=-1)
            h = self.cell(inputs, h.detach())  # autocast casts both to its dtype on the GPU
            y = score(features, x).float() + self.correction(h).float().view(B, R, self.correction.out_features)
            c = torch.sigmoid(y[..., :NUM_CONFIDENCES].detach())
            steps.append((x, y))
            x = step_segments(x, y[..., 2:4], T)
        return steps
