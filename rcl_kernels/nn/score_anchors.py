"""AnchorScorer: rcl_kernels.score_anchors as an nn.Module, RCL's scoring head over continuous anchors."""

from __future__ import annotations

import math

import torch
from torch import nn

from rcl_kernels._vocabulary import ACTIVATIONS, COORD_FEATURES, PADDINGS
from rcl_kernels.ops.score_anchors import score_anchors, score_anchors_heads


class AnchorScorer(nn.Module):
    """Score segments x = (start, end) of a feature sequence:
    W2 act(W1 [flatten(SoI(F; x)), phi(x)] + b1) + b2 (see rcl_kernels.score_anchors).

    Holds w1 (hidden, in_channels * num_samples + E), b1 (hidden,), w2 (out_channels, hidden) and
    b2 (out_channels,), initialised as nn.Linear layers of those shapes are. In forward the
    parameters are cast to the features' dtype (so float32 master weights serve bfloat16
    features, as under autocast); the backend argument picks the implementation, "auto" the
    fastest available one for the features' device.

    forward(features (B, in_channels, T), segments (B, K, 2), num_steps=None) -> (B, K, out_channels);
    num_steps is the T the coordinate features are normalised by (default: the feature length).
    """

    def __init__(self, in_channels: int, num_samples: int, hidden: int, out_channels: int, *,
                 samples_per_point: int = 1, context: float = 0.0, padding: str = "zeros",
                 coord_features: str = "ses", activation: str = "relu", backend: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("num_samples", num_samples, 1),
                                 ("hidden", hidden, 1), ("out_channels", out_channels, 1),
                                 ("samples_per_point", samples_per_point, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"AnchorScorer: {name} must be an int >= {low}, got {value!r}")
        if coord_features not in COORD_FEATURES:
            raise ValueError(f"AnchorScorer: coord_features must be one of {tuple(COORD_FEATURES)}, "
                             f"got {coord_features!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"AnchorScorer: activation must be one of {ACTIVATIONS}, got {activation!r}")
        if padding not in PADDINGS:
            raise ValueError(f"AnchorScorer: padding must be one of {PADDINGS}, got {padding!r}")
        self.in_channels, self.num_samples = in_channels, num_samples
        self.hidden, self.out_channels = hidden, out_channels
        self.samples_per_point, self.context, self.padding = samples_per_point, float(context), padding
        self.coord_features, self.activation, self.backend = coord_features, activation, backend
        kw = {"device": device, "dtype": dtype}
        in_features = in_channels * num_samples + COORD_FEATURES[coord_features]
        self.w1 = nn.Parameter(torch.empty(hidden, in_features, **kw))
        self.b1 = nn.Parameter(torch.empty(hidden, **kw))
        self.w2 = nn.Parameter(torch.empty(out_channels, hidden, **kw))
        self.b2 = nn.Parameter(torch.empty(out_channels, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's initialisation: kaiming-uniform weights (a = sqrt(5)), biases U(+-1/sqrt(fan_in)).
        for weight, bias in ((self.w1, self.b1), (self.w2, self.b2)):
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            bound = 1 / math.sqrt(weight.shape[1]) if weight.shape[1] > 0 else 0.0
            nn.init.uniform_(bias, -bound, bound)

    def forward(self, features: torch.Tensor, segments: torch.Tensor, num_steps: float | None = None) -> torch.Tensor:
        dtype = features.dtype if isinstance(features, torch.Tensor) else self.w1.dtype
        return score_anchors(
            features, segments, self.w1.to(dtype), self.b1.to(dtype), self.w2.to(dtype), self.b2.to(dtype),
            num_samples=self.num_samples, samples_per_point=self.samples_per_point, context=self.context,
            padding=self.padding, coord_features=self.coord_features, activation=self.activation,
            num_steps=num_steps, backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, num_samples={self.num_samples}, hidden={self.hidden}, "
                f"out_channels={self.out_channels}, samples_per_point={self.samples_per_point}, "
                f"context={self.context}, padding={self.padding!r}, coord_features={self.coord_features!r}, "
                f"activation={self.activation!r}, backend={self.backend!r}")


# What AnchorScorers must share to be scored in one pass: everything but their weights' values.
_SHARED_SAMPLING = ("in_channels", "num_samples", "samples_per_point", "context", "padding", "coord_features",
                    "activation", "backend")


def score_with_scorers(scorers, features: torch.Tensor, segments: torch.Tensor,
                       num_steps: float | None = None) -> list[torch.Tensor]:
    """[scorer(features, segments, num_steps) for scorer in scorers], by score_anchors_heads: at
    inference on the CPU the scorers share one projection of the features and one set of
    interpolation taps per segment. They must agree on every setting but hidden and
    out_channels (ValueError naming the first that differs)."""
    scorers = list(scorers)
    if not scorers or not all(isinstance(s, AnchorScorer) for s in scorers):
        raise ValueError("score_with_scorers: scorers must be a non-empty sequence of AnchorScorer")
    for name in _SHARED_SAMPLING:
        values = [getattr(s, name) for s in scorers]
        if len(set(values)) != 1:
            raise ValueError(f"score_with_scorers: the scorers differ in {name} ({values}); score them one by one")
    first = scorers[0]
    dtype = features.dtype if isinstance(features, torch.Tensor) else first.w1.dtype
    heads = [(s.w1.to(dtype), s.b1.to(dtype), s.w2.to(dtype), s.b2.to(dtype)) for s in scorers]
    return score_anchors_heads(features, segments, heads, num_samples=first.num_samples,
                               samples_per_point=first.samples_per_point, context=first.context,
                               padding=first.padding, coord_features=first.coord_features,
                               activation=first.activation, num_steps=num_steps, backend=first.backend)
