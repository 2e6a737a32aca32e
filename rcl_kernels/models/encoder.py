"""The base encoder: 1D convolutions over the input features (BMN's base module, without groups)."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """(B, C_in, T) -> (B, H, ceil(T / stride)); step j of the output is centred on input step
    stride * j, so encoder coordinate u is input coordinate stride * u."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.layers = nn.Sequential(
            nn.Conv1d(in_channels, channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True),
            nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, C, T) with mask (B, T) (True on real steps) -> encoded (B, H, T'), mask (B, T')."""
        out = self.layers(features * mask[:, None, :].to(features.dtype))
        step_mask = mask[:, :: self.stride][:, : out.shape[-1]]
        return out * step_mask[:, None, :].to(out.dtype), step_mask
