"""BoundaryMatching: BMN's boundary-matching layer without its dense sample mask.

BMN (Lin et al., ICCV 2019) turns a (B, C, T) sequence into a (B, C, N, D, T) map: for each
proposal with start s and duration d, N points sampled over the proposal widened by
prop_boundary_ratio * (d + 1) on both sides (rcl_kernels/reference/boundary_matching.py spells
out the rule). BMN multiplies by a (T, N, D, T) mask (256 MiB at OpenTAD's T = D = 128, N = 32);
here the same numbers come from rcl_kernels.segment_interp with padding="bmn", which reproduces
the mask's math.modf split, on the T (T + 1) / 2 valid cells only.

BMN then applies a convolution that collapses N (Conv3d with kernel (N, 1, 1), or OpenTAD's Conv2d
with kernel (N, 1)), a ReLU, a 1x1 convolution and a ReLU. That is score_anchors' two-layer MLP
over SoI samples, so `project` computes it through rcl_kernels.score_anchors without ever
writing the (B, C, N, D, T) map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rcl_kernels.ops.score_anchors import score_anchors
from rcl_kernels.ops.segment_interp import segment_interp
from rcl_kernels.reference.boundary_matching import boundary_matching_cells

_CELLS_PER_CALL = 2048  # cells per score_anchors call in project: bounds its scratch memory (~15 MiB)
_CELLS_PER_SOI_CALL = 1024  # cells per segment_interp call of project_method="soi_linear" (C N values each)
PROJECT_METHODS = ("score_anchors", "soi_linear")


def _check_int(owner: str, name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")


class BoundaryMatching(nn.Module):
    """BMN's BM layer: (B, C, T) -> (B, C, N, D, T), equal to the dense mask product.

    Args (BMN's names): temporal_scale T, duration_scale D (default T; OpenTAD's dscale),
    num_sample N, num_sample_perbin (sub-samples averaged per point), prop_boundary_ratio
    (BMN's widening of each proposal, OpenTAD's prop_extend_ratio); backend for the SoI and
    scoring ops ("auto" picks the fastest available).

    forward(x) gives the map; project(x, weight, bias, pointwise_weight, pointwise_bias) gives
    what BMN computes from it, relu(conv_1x1(relu(conv_N(map)))), as (B, out, D, T), without the
    map. Cells with start + duration >= T are zero in the map (so the convolutions see zeros there,
    as in BMN). The layer has no parameters or persistent buffers: checkpoints are unaffected.

    project_method: "score_anchors" (default) runs the convolutions through the fused scorer,
    which interpolates features projected by the first convolution (about C / (2 S) times less
    arithmetic than the convolution, but a memory-bound gather); "soi_linear" samples SoI blocks
    of 1024 cells and applies the convolutions as matrix products (the convolution's arithmetic,
    at matmul speed). Both keep only a chunk's worth of samples; which is faster depends on C and
    the machine (benchmarks/bench_boundary_matching.py times both).
    """

    def __init__(self, temporal_scale: int, duration_scale: int | None = None, num_sample: int = 32,
                 num_sample_perbin: int = 3, prop_boundary_ratio: float = 0.5, *, backend: str = "auto",
                 project_method: str = "score_anchors"):
        super().__init__()
        if project_method not in PROJECT_METHODS:
            raise ValueError(f"BoundaryMatching: project_method must be one of {PROJECT_METHODS}, "
                             f"got {project_method!r}")
        self.project_method = project_method
        duration_scale = temporal_scale if duration_scale is None else duration_scale
        for name, value in (("temporal_scale", temporal_scale), ("duration_scale", duration_scale),
                            ("num_sample", num_sample), ("num_sample_perbin", num_sample_perbin)):
            _check_int("BoundaryMatching", name, value, 1)
        if isinstance(prop_boundary_ratio, bool) or not isinstance(prop_boundary_ratio, (int, float)) \
                or not prop_boundary_ratio >= 0 or prop_boundary_ratio == float("inf"):
            raise ValueError(f"BoundaryMatching: prop_boundary_ratio must be a finite number >= 0, "
                             f"got {prop_boundary_ratio!r}")
        self.temporal_scale, self.duration_scale = temporal_scale, duration_scale
        self.num_sample, self.num_sample_perbin = num_sample, num_sample_perbin
        self.prop_boundary_ratio, self.backend = float(prop_boundary_ratio), backend
        # Integer buffers: module.half() / .to(dtype) leave them alone, so the windows are always
        # made in float64 and rounded once to the positions' dtype.
        flat, _ = boundary_matching_cells(temporal_scale, duration_scale, self.prop_boundary_ratio)
        self.register_buffer("cell_index", flat, persistent=False)  # (K,) d * T + s

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != self.temporal_scale:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"BoundaryMatching: x must have shape (B, C, temporal_scale = {self.temporal_scale}), "
                             f"got {shape}")

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """(K, 2) sampling windows in the positions' dtype (float64 for float64 x, else float32)."""
        T = self.temporal_scale
        index = self.cell_index.to(x.device)
        duration, start = (index // T).double(), (index % T).double()
        widen = (duration + 1) * self.prop_boundary_ratio
        windows = torch.stack([start - widen, start + duration + widen], dim=-1)
        return windows.to(torch.float64 if x.dtype == torch.float64 else torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        B, C, T = x.shape
        N, D = self.num_sample, self.duration_scale
        windows = self._windows(x).expand(B, -1, -1)
        soi = segment_interp(x, windows, N, samples_per_point=self.num_sample_perbin, padding="bmn",
                             backend=self.backend)  # (B, K, C, N)
        out = x.new_zeros(B, C, N, D * T)
        out = out.index_copy(3, self.cell_index.to(x.device), soi.permute(0, 2, 3, 1))
        return out.view(B, C, N, D, T)

    def project(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                pointwise_weight: torch.Tensor | None = None,
                pointwise_bias: torch.Tensor | None = None) -> torch.Tensor:
        """relu(pointwise(relu(conv_N(forward(x))))) as (B, out, D, T), without the (B, C, N, D, T) map.

        weight: the convolution over N, (hidden, C, N) or with trailing unit dims ((hidden, C, N, 1)
        as OpenTAD's Conv2d, (hidden, C, N, 1, 1) as BMN's Conv3d); bias (hidden,) or None.
        pointwise_weight: the 1x1 convolution, (out, hidden) or (out, hidden, 1, 1), or None to
        stop after the first ReLU (out = hidden); pointwise_bias (out,) or None. Parameters are cast
        to x's dtype. Differentiable in x and every parameter.
        """
        self._check_input(x)
        B, C, T = x.shape
        N, D = self.num_sample, self.duration_scale
        w1 = self._matrix(weight, "weight", (C, N)).to(x.dtype)
        H = w1.shape[0]
        if pointwise_weight is None:
            w2, b2 = torch.eye(H, dtype=x.dtype, device=x.device), None  # relu(I relu(h)) = relu(h)
        else:
            w2, b2 = self._matrix(pointwise_weight, "pointwise_weight", (H,)).to(x.dtype), pointwise_bias
        b1 = None if bias is None else bias.to(x.dtype)
        b2 = None if b2 is None else b2.to(x.dtype)
        windows = self._windows(x)
        K = windows.shape[0]
        parts = []
        if self.project_method == "soi_linear":
            for k0 in range(0, K, _CELLS_PER_SOI_CALL):
                chunk = windows[k0:k0 + _CELLS_PER_SOI_CALL].expand(B, -1, -1)
                # F.linear saves its input for the backward: kept, every chunk's SoI block would
                # stay alive until then (the whole (B, K, C, N) tensor). Checkpointed, the
                # backward samples each chunk again, so one chunk exists at a time.
                parts.append(checkpoint(self._soi_linear_chunk, x, chunk, w1, b1, w2, b2,
                                        use_reentrant=False, preserve_rng_state=False))
        else:
            # On the CPU, score_anchors is a composition of library calls whose autograd keeps each
            # chunk's hidden activations and interpolation taps (about 150 MB per 10^4 cells of a
            # BMN batch of 8) until the backward; checkpointed, only the chunk's inputs are kept and
            # the backward scores one chunk again at a time. The Triton op saves only its inputs and its
            # (B, k, hidden) activations: not recomputed there.
            recompute = torch.is_grad_enabled() and x.device.type == "cpu"
            for k0 in range(0, K, _CELLS_PER_CALL):
                chunk = windows[k0:k0 + _CELLS_PER_CALL].expand(B, -1, -1)
                if recompute:
                    parts.append(checkpoint(self._score_chunk, x, chunk, w1, b1, w2, b2,
                                            use_reentrant=False, preserve_rng_state=False))
                else:
                    parts.append(self._score_chunk(x, chunk, w1, b1, w2, b2))
        scores = torch.relu(torch.cat(parts, dim=1))  # (B, K, out)
        # Cells outside the map are zero before the convolutions: the MLP of a zero input there.
        hidden0 = torch.relu(b1) if b1 is not None else x.new_zeros(H)
        empty = torch.relu(w2 @ hidden0 + (b2 if b2 is not None else 0))  # (out,)
        out = empty.view(1, -1, 1).expand(B, -1, D * T)
        out = out.index_copy(2, self.cell_index.to(x.device), scores.transpose(1, 2))
        return out.view(B, -1, D, T)

    def _score_chunk(self, x, chunk, w1, b1, w2, b2):
        """Linear2(relu(Linear1(SoI))) of one chunk of cells by the fused op, (B, k, out)."""
        return score_anchors(x, chunk, w1, b1, w2, b2, num_samples=self.num_sample,
                             samples_per_point=self.num_sample_perbin, padding="bmn", coord_features="none",
                             activation="relu", backend=self.backend)

    def _soi_linear_chunk(self, x, chunk, w1, b1, w2, b2):
        """Linear2(relu(Linear1(flatten(SoI)))) of one chunk of cells, (B, k, out)."""
        soi = segment_interp(x, chunk, self.num_sample, samples_per_point=self.num_sample_perbin, padding="bmn",
                             backend=self.backend)  # (B, k, C, N): column c * N + n of w1
        return F.linear(torch.relu(F.linear(soi.flatten(2), w1, b1)), w2, b2)

    @staticmethod
    def _matrix(weight: torch.Tensor, name: str, inner: tuple[int, ...]) -> torch.Tensor:
        """(rows, *inner) with optional trailing unit dims -> (rows, prod(inner))."""
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
        core = shape[: 1 + len(inner)] if shape else None
        if shape is None or core[1:] != inner or any(s != 1 for s in shape[1 + len(inner):]):
            raise ValueError(f"BoundaryMatching.project: {name} must have shape (out, {', '.join(map(str, inner))}) "
                             f"with optional trailing 1s, got {shape if shape is not None else type(weight).__name__}")
        return weight.reshape(shape[0], -1)

    def extra_repr(self) -> str:
        return (f"temporal_scale={self.temporal_scale}, duration_scale={self.duration_scale}, "
                f"num_sample={self.num_sample}, num_sample_perbin={self.num_sample_perbin}, "
                f"prop_boundary_ratio={self.prop_boundary_ratio}, backend={self.backend!r}, "
                f"project_method={self.project_method!r}")
