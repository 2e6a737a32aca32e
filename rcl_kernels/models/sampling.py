"""Segments to score: the regular grid, random samples around it, and scale-invariant samples.

Coordinates are in encoder steps (feature index t sits at coordinate t). A grid cell is the
segment [i r, i r + d r] for start index i >= 0 and duration index 1 <= d <= D / r with its end
at most T: with resolution r = 1 and D = T these are BMN's T (T + 1) / 2 start <= end cells.
RCL's training samples (Sec. 3.3 of the paper) come from three sources, each switchable:
  grid    every grid cell (resolution 1),
  random  the same number of segments, each a grid cell with both boundaries moved by
          U(-jitter, jitter) steps, so the scorer sees continuous coordinates everywhere,
  sis     scale-invariant samples: n per ground-truth instance g, boundaries g_s + sigma L e1,
          g_e + sigma L e2 (L = g_e - g_s, e ~ N(0, 1)), so every instance gets the same number of
          nearby samples whatever its length (the grid gives long instances far more).
"""

from __future__ import annotations

import torch

MIN_LENGTH = 0.05  # shortest sampled segment, in encoder steps: keeps offsets (g - x) / (x_e - x_s) finite


def grid_segments(num_steps: int, max_duration: int, resolution: float = 1.0, *, device=None,
                  dtype=torch.float32) -> torch.Tensor:
    """(K, 2) grid cells [i r, i r + d r], d = 1 .. D / r, end <= T; ordered by duration, then start."""
    if num_steps < 1 or max_duration < 1:
        raise ValueError(f"grid_segments: num_steps and max_duration must be >= 1, got {num_steps}, {max_duration}")
    per_step = round(1 / resolution)
    if per_step < 1 or abs(per_step * resolution - 1) > 1e-6:
        raise ValueError(f"grid_segments: resolution must be 1 / n for an int n >= 1, got {resolution}")
    units = num_steps * per_step  # the grid in units of r, so coordinates are exact multiples of r
    longest = min(max_duration * per_step, units)
    duration = torch.arange(1, longest + 1, device=device)
    start = torch.arange(units, device=device)
    start, duration = torch.broadcast_tensors(start[None, :], duration[:, None])
    keep = start + duration <= units
    start, duration = start[keep], duration[keep]
    return torch.stack([start, start + duration], dim=-1).to(dtype) / per_step


def num_grid_segments(num_steps: int, max_duration: int) -> int:
    """How many cells grid_segments(num_steps, max_duration) returns at resolution 1."""
    d = min(max_duration, num_steps)
    return d * num_steps - d * (d - 1) // 2


def ordered(segments: torch.Tensor, min_length: float = MIN_LENGTH) -> torch.Tensor:
    """Swap inverted boundaries and widen segments shorter than min_length around their centre."""
    start = torch.minimum(segments[..., 0], segments[..., 1])
    end = torch.maximum(segments[..., 0], segments[..., 1])
    centre = 0.5 * (start + end)
    half = torch.clamp(0.5 * (end - start), min=0.5 * min_length)
    return torch.stack([centre - half, centre + half], dim=-1)


def random_around_grid(grid: torch.Tensor, batch: int, jitter: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, K, 2): each grid cell with both boundaries moved by U(-jitter, jitter), per video."""
    noise = torch.rand((batch,) + tuple(grid.shape), generator=generator, device=grid.device, dtype=grid.dtype)
    return ordered(grid[None] + (2 * noise - 1) * jitter)


def scale_invariant_samples(instances: torch.Tensor, valid: torch.Tensor, per_instance: int, spread: float,
                            generator: torch.Generator | None = None, *,
                            lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """instances (B, G, 2), valid (B, G) -> samples (B, G * n, 2) and their validity (B, G * n).

    Sample j of instance g has boundaries (g_s + spread L e1, g_e + spread L e2), e ~ N(0, 1),
    L = g_e - g_s: the spread is proportional to the instance's length (scale invariance).
    lengths (B,): each item's length; boundaries are clipped to [0, length] (a segment outside the
    video is never scored at inference, so training on it spends samples where nothing is asked).
    """
    B, G, _ = instances.shape
    n = per_instance
    noise = torch.randn((B, G, n, 2), generator=generator, device=instances.device, dtype=instances.dtype)
    length = (instances[..., 1] - instances[..., 0]).clamp(min=0)[..., None, None]
    samples = instances[:, :, None, :] + spread * length * noise
    if lengths is not None:
        samples = torch.minimum(samples.clamp(min=0), lengths.to(samples.dtype)[:, None, None, None])
    samples = ordered(samples).reshape(B, G * n, 2)
    return samples, valid[:, :, None].expand(B, G, n).reshape(B, G * n)


def training_samples(sources, num_steps: int, max_duration: int, instances: torch.Tensor, valid: torch.Tensor, *,
                     jitter: float, per_instance: int, spread: float, lengths: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The concatenated samples of the chosen sources: (B, K, 2) and a (B, K) validity mask."""
    B = instances.shape[0]
    device, dtype = instances.device, instances.dtype
    parts, masks = [], []
    grid = grid_segments(num_steps, max_duration, device=device, dtype=dtype)
    if "grid" in sources:
        parts.append(grid[None].expand(B, -1, -1))
        masks.append(torch.ones(B, grid.shape[0], dtype=torch.bool, device=device))
    if "random" in sources:
        parts.append(random_around_grid(grid, B, jitter, generator))
        masks.append(torch.ones(B, grid.shape[0], dtype=torch.bool, device=device))
    if "sis" in sources and instances.shape[1] > 0:
        samples, mask = scale_invariant_samples(instances, valid, per_instance, spread, generator, lengths=lengths)
        parts.append(samples)
        masks.append(mask)
    if not parts:
        return instances.new_zeros((B, 0, 2)), torch.zeros(B, 0, dtype=torch.bool, device=device)
    return torch.cat(parts, dim=1).contiguous(), torch.cat(masks, dim=1)

