"""Triton backend of SoI: launchers and the torch.library operators around the kernels.

rcl_kernels::segment_interp_triton has the schema of rcl_kernels::segment_interp and is
differentiable through rcl_kernels::segment_interp_triton_backward; both have fake kernels, so
torch.compile(fullgraph=True) traces through them. The kernels themselves, and why they are laid
out as they are, are in _segment_interp_kernels.py. They run on CUDA tensors, and on CPU tensors
under TRITON_INTERPRET=1.
"""

from __future__ import annotations

import torch

from rcl_kernels import _segment_interp_registration as _registration
from rcl_kernels._launch_plan import LaunchPlan
from rcl_kernels._triton_support import TRITON_VERSION
from rcl_kernels._vocabulary import PADDING_CODES
from rcl_kernels.reference.segment_interp import (
    accumulation_dtype as _accumulation_dtype,
)
from rcl_kernels.triton import _launching

AVAILABLE = TRITON_VERSION is not None

if AVAILABLE:
    from rcl_kernels.triton import _segment_interp_kernels as _kernels

# Output tile of one program: BLOCK_N points (the contiguous output dimension) x BLOCK_C channels,
# at most 8 per thread of the 4 warps. ptxas for sm_90 at C = 256, N = 32: a 128 x 32 tile needs
# 255 registers and spills (168 B forward, 2.3 KB backward in float32, 5.4 KB in float64);
# 32 x 32 needs 80 / 155 registers (float32), 142 / 230 (float64), without spills
# (tests/triton_hopper_compile.py reports them; tests/test_triton_hopper_compile.py bounds them).
_MAX_BLOCK_N = 64
_TILE_ELEMENTS = 1024


_NUM_WARPS = 4


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block_sizes(C: int, N: int) -> tuple[int, int]:
    block_n = min(_next_pow2(N), _MAX_BLOCK_N)
    block_c = max(1, min(_next_pow2(C), _TILE_ELEMENTS // block_n))
    return block_c, block_n


def _grid(B: int, K: int, C: int, block_c: int) -> tuple[int, int]:
    """One program per (segment, channel block)."""
    return _launching.launch_grid("segment_interp (triton)", B * K, _cdiv(C, block_c))


def segment_interp_launch_plans(B: int, C: int, T: int, K: int, N: int, S: int) -> list[LaunchPlan]:
    """The forward's and the backward's launch for one problem, from the launchers' own
    _block_sizes and _grid (for the size matrix, tests/size_matrix.py). Unit of work: one
    sub-sample of one point for one channel (two taps); a program evaluates its whole
    BLOCK_C x BLOCK_N tile (masked lanes included) for each of the S sub-samples. Both kernels
    use the same tiles and grid. Importable and callable without Triton."""
    block_c, block_n = _block_sizes(C, N)
    grid = _grid(B, K, C, block_c)
    programs = grid[0] * grid[1]
    done = programs * block_c * _cdiv(N, block_n) * block_n * S
    needed = B * K * C * N * S
    unit = f"sub-sample x point x channel evaluations (two taps each); tile {block_c} x {block_n}"
    return [LaunchPlan(name, programs, _NUM_WARPS * 32, done, needed, unit)
            for name in ("segment_interp_forward_kernel", "segment_interp_backward_kernel")]


def _check_launchable(features: torch.Tensor, padding: str) -> None:
    if padding not in PADDING_CODES:
        raise ValueError(
            f"segment_interp (triton): padding must be one of {tuple(PADDING_CODES)}, got {padding!r}"
        )
    if features.shape[2] >= 2**31 - 1:
        raise ValueError(f"segment_interp (triton): T = {features.shape[2]} is too long (must be < 2^31)")


@torch.library.custom_op("rcl_kernels::segment_interp_triton", mutates_args=())
def segment_interp_triton_op(
    features: torch.Tensor,
    segments: torch.Tensor,
    num_samples: int,
    samples_per_point: int,
    context: float,
    padding: str,
) -> torch.Tensor:
    B, C, T = features.shape
    K = segments.shape[1]
    N, S = num_samples, samples_per_point
    out = torch.empty((B, K, C, N), dtype=features.dtype, device=features.device)
    if out.numel() == 0:
        return out
    _check_launchable(features, padding)
    acc = _accumulation_dtype(features)
    seg = segments.to(acc)
    block_c, block_n = _block_sizes(C, N)
    with _launching.device_guard(features.device):
        _kernels.segment_interp_forward_kernel[_grid(B, K, C, block_c)](
            features, seg, _launching.scalar_tensor(context, acc, features.device), out,
            C, T, K, N, S,
            *features.stride(), *seg.stride(),
            PADDING=PADDING_CODES[padding], BLOCK_C=block_c, BLOCK_N=block_n,
            num_warps=_NUM_WARPS, **_launching.EXACT_FLOAT_OPTIONS,
        )  # fmt: skip
    return out


@torch.library.custom_op("rcl_kernels::segment_interp_triton_backward", mutates_args=())
def segment_interp_triton_backward_op(
    grad_output: torch.Tensor,
    features: torch.Tensor,
    segments: torch.Tensor,
    num_samples: int,
    samples_per_point: int,
    context: float,
    padding: str,
    need_features_grad: bool,
    need_segments_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    B, C, T = features.shape
    K = segments.shape[1]
    N, S = num_samples, samples_per_point
    acc = _accumulation_dtype(features)
    grad_features = torch.zeros((B, C, T), dtype=acc, device=features.device)
    grad_segments = torch.zeros((B, K, 2), dtype=acc, device=segments.device)
    if grad_output.numel() > 0 and (need_features_grad or need_segments_grad):
        _check_launchable(features, padding)
        seg = segments.to(acc)
        grad = grad_output.to(features.dtype)
        block_c, block_n = _block_sizes(C, N)
        with _launching.device_guard(features.device):
            _kernels.segment_interp_backward_kernel[_grid(B, K, C, block_c)](
                grad, features, seg, _launching.scalar_tensor(context, acc, features.device), grad_features, grad_segments,
                C, T, K, N, S,
                *grad.stride(), *features.stride(), *seg.stride(),
                PADDING=PADDING_CODES[padding],
                NEED_FEATURES=need_features_grad, NEED_SEGMENTS=need_segments_grad,
                BLOCK_C=block_c, BLOCK_N=block_n, num_warps=_NUM_WARPS, **_launching.EXACT_FLOAT_OPTIONS,
            )  # fmt: skip
    return grad_features.to(features.dtype), grad_segments.to(segments.dtype)


segment_interp_triton_op.register_fake(_registration.fake_forward)
segment_interp_triton_backward_op.register_fake(_registration.fake_backward)
segment_interp_triton_op.register_autograd(_registration.backward_formula(segment_interp_triton_backward_op),
                                           setup_context=_registration.setup_context)


def segment_interp_triton(
    features: torch.Tensor,
    segments: torch.Tensor,
    num_samples: int,
    samples_per_point: int,
    context: float,
    padding: str,
) -> torch.Tensor:
    """The Triton backend of rcl_kernels.segment_interp (arguments already validated there)."""
    if not AVAILABLE:
        raise RuntimeError("segment_interp: the triton backend needs the triton package")
    return segment_interp_triton_op(features, segments, num_samples, samples_per_point, float(context), padding)
