"""Triton backend of score_anchors: launchers and the torch.library operators around the kernels.

rcl_kernels::score_anchors_triton returns the scores and (when a gradient will be needed) the
pre-activation; rcl_kernels::score_anchors_triton_backward computes every gradient. Both are
declared here with torch.library.custom_op (with fake kernels and autograd), so
torch.compile(fullgraph=True) treats them as opaque calls. The kernels, and why they are laid out
as they are, are in _score_anchors_kernels.py. They run on CUDA tensors, and on CPU tensors under
TRITON_INTERPRET=1.
"""

from __future__ import annotations

import torch

from rcl_kernels._triton_support import TRITON_VERSION
from rcl_kernels._vocabulary import ACTIVATION_CODES, COORD_FEATURES, PADDING_CODES
from rcl_kernels.reference.score_anchors import (
    coordinate_features,
    coordinate_features_backward,
)
from rcl_kernels._launch_plan import LaunchPlan
from rcl_kernels.triton import _launching
from rcl_kernels.triton import _score_anchors_tiles as _tiles

AVAILABLE = TRITON_VERSION is not None

if AVAILABLE:
    from rcl_kernels.triton import _score_anchors_kernels as _kernels

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_at_least(x: int, lo: int) -> int:
    p = lo
    while p < x:
        p *= 2
    return p


# Interpreted (CPU) runs: the smallest tiles tl.dot allows, so the tiny CI shapes still span
# several tiles along segments, time steps and hidden units.
_INTERPRETER_BLOCKS = {"BLOCK_K": 16, "BLOCK_T": 16, "BLOCK_H": 16}


def _interpreted(device: torch.device) -> bool:
    """Whether kernels for tensors on `device` run in the Triton interpreter (CPU tensors)."""
    return device.type == "cpu"


def _launch(tuned, plain, grid, device: torch.device, *args, **constexprs) -> None:
    """Run a kernel on the tensors' device: autotuned on a GPU (over the candidates for its tl.dot
    precision, tuned[PREC]), with the interpreter's fixed tiles on CPU tensors. grid(meta) gives
    the launch grid for the chosen block sizes. Fused
    multiply-adds are off, as in SoI: a sample position rounded once more or less can land on
    the other side of an integer, and then reads (and differentiates) another interval."""
    with _launching.device_guard(device):
        if _interpreted(device):
            plain[grid(_INTERPRETER_BLOCKS)](*args, **constexprs, **_INTERPRETER_BLOCKS, num_warps=4, num_stages=1,
                                             **_launching.EXACT_FLOAT_OPTIONS)
        else:
            tuned[constexprs["PREC"]][grid](*args, **constexprs, **_launching.EXACT_FLOAT_OPTIONS)


# Launch grids. Every grid folds the video (and the point) into x: y and z stop at 65,535
# programs, x at 2**31 - 1. The kernels decode program_id(0) in the same order.
def segment_tiles_grid(B: int, K: int):
    """Forward and segment backward: one program per (video, tile of BLOCK_K segments)."""
    return lambda meta: _launching.launch_grid("score_anchors (triton)", B * _cdiv(K, meta["BLOCK_K"]))


def projected_grid(B: int, T: int, H: int, N: int):
    """Projected backward: one program per ((video, point, time tile), hidden tile)."""
    return lambda meta: _launching.launch_grid("score_anchors (triton)", B * N * _cdiv(T, meta["BLOCK_T"]),
                                               _cdiv(H, meta["BLOCK_H"]))


def _tile_span(block_k: int, T: int) -> int:
    """Time steps one point of a tile of block_k segments reads, for segments in grid order
    (consecutive starts one step apart, as RCL and BMN enumerate anchors): two taps each, one
    step apart from segment to segment, so block_k + 1, at most the video."""
    return min(block_k + 1, T)


def _visited(span: int, T: int, block_t: int) -> int:
    """Steps the kernels' loop over [lo, hi] visits for a span of taps: one step of slack below
    and two above (_point_range), in whole time tiles."""
    return _cdiv(min(span + 3, T), block_t) * block_t


def score_anchors_launch_plans(B: int, T: int, K: int, N: int, H: int, O: int, dtype: torch.dtype, *,
                               S: int = 1, tf32: bool = False, span: int | None = None,
                               backward: bool = True, all_configs: bool = False) -> list[LaunchPlan]:
    """The launches of score_anchors' Triton kernels for a problem (B videos of T steps, K
    segments each, N points of S sub-samples, H hidden units, O outputs, features of dtype; tf32
    as torch.backends.cuda.matmul.allow_tf32), as the launchers grid them: the forward, and with
    backward the projected and segment backward kernels (segment gradients asked for). Each
    autotune candidate is one plan with all_configs, else the first (the autotuner times them all
    on a GPU and keeps the fastest).

    Unit: multiply-adds of tl.dot, counting every lane of every tile: masked segment, hidden,
    output and time lanes, the slack steps of the point ranges, and whatever is computed twice.
    Needed: the same dense products over exactly the segments, hidden units and outputs of the
    problem and the time steps each tile's points read (span, by default the grid-order
    _tile_span). The scans of bwd_projected_kernel over segment tiles (one lane per segment and
    point) count too. Not counted: building the interpolation tiles (2 S selects per entry,
    against BLOCK_H multiply-adds) and the PyTorch matmuls around the kernels. The dense tiles
    themselves do span / (2 S) times the multiply-adds of a sparse two-tap gather: that is the
    formulation (tensor cores instead of gathers), not waste, and is left out of the ratio."""
    prec = "ieee" if dtype == torch.float32 and not tf32 else "tf32"
    threads = 32
    plans = []

    def entries(table):
        return table[prec] if all_configs else table[prec][:1]

    fuse = fused_output(O, prec)
    for bk, bt, bh, warps, _ in entries(_tiles.FWD_CONFIGS):
        meta = {"BLOCK_K": bk, "BLOCK_T": bt, "BLOCK_H": bh}
        blocks = segment_tiles_grid(B, K)(meta)[0]
        w = span if span is not None else _tile_span(bk, T)
        h_pad = _cdiv(H, bh) * bh
        done = blocks * bk * h_pad * (N * _visited(w, T, bt) + (output_block(O, prec) if fuse else 0))
        needed = B * K * H * (N * w + (O if fuse else 0))
        plans.append(LaunchPlan("fwd_kernel", blocks, warps * threads, done, needed,
                                f"tl.dot multiply-adds; BLOCK_K/T/H = {bk}/{bt}/{bh}"
                                + ("" if fuse else f"; O = {O} > {FUSED_OUTPUT_LIMIT[prec]}: second layer by torch")))
    if not backward:
        return plans
    for bk, bt, bh, warps, _ in entries(_tiles.PROJECTED_CONFIGS):
        meta = {"BLOCK_K": bk, "BLOCK_T": bt, "BLOCK_H": bh}
        gx, gy = projected_grid(B, T, H, N)(meta)
        w = span if span is not None else _tile_span(bk, T)
        tiles_k = _cdiv(K, bk)
        # A segment tile's [lo, hi] (w + 3 steps) meets (w + 2) / BLOCK_T + 1 time tiles on average.
        meetings = B * N * tiles_k * min((min(w + 3, T) - 1) / bt + 1, _cdiv(T, bt))
        done = meetings * bt * bk * gy * bh + gx * gy * tiles_k * bk
        plans.append(LaunchPlan("bwd_projected_kernel", gx * gy, warps * threads, done, B * K * H * N * w,
                                f"tl.dot multiply-adds + segment-scan lanes; BLOCK_K/T/H = {bk}/{bt}/{bh}"))
    for bk, bt, bh, warps, _ in entries(_tiles.SEGMENTS_CONFIGS):
        meta = {"BLOCK_K": bk, "BLOCK_T": bt, "BLOCK_H": bh}
        blocks = segment_tiles_grid(B, K)(meta)[0]
        w = span if span is not None else _tile_span(bk, T)
        done = blocks * bk * _cdiv(H, bh) * bh * N * _visited(w, T, bt)
        plans.append(LaunchPlan("bwd_segments_kernel", blocks, warps * threads, done, B * K * H * N * w,
                                f"tl.dot multiply-adds; BLOCK_K/T/H = {bk}/{bt}/{bh}"))
    return plans


def _precision(dtype: torch.dtype, device: torch.device) -> dict:
    """tl.dot settings: TF32 for float32 only where torch's allow_tf32 flag says so; the
    interpreter's bf16 workaround (see _mma)."""
    interpreted = _interpreted(device)
    if dtype == torch.float32 and (interpreted or not torch.backends.cuda.matmul.allow_tf32):
        prec = "ieee"
    else:
        prec = "tf32"  # float32 where the user allowed TF32; ignored for 16-bit operands
    return {"PREC": prec, "UPCAST": interpreted and dtype == torch.bfloat16}


def _projection_weights(w1: torch.Tensor, C: int, N: int) -> torch.Tensor:
    """W1's SoI columns as (C, N * hidden): G = F^T @ this gives G[b, t, n, h] (row-major)."""
    H = w1.shape[0]
    return w1[:, : C * N].reshape(H, C, N).permute(1, 2, 0).reshape(C, N * H)


def launchable(T: int, N: int, H: int) -> bool:
    """Whether the kernels can take a video of T steps, N points and H hidden units: offsets
    inside one video's (T, N, H) projected features are 32-bit."""
    return T * N * H < 2**31


def _project(features: torch.Tensor, w1: torch.Tensor, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """G (B, T, N, H) = sum_c F[b, c, t] W1[h, c N + n], contiguous, in the features' dtype (a
    PyTorch matmul: float32 accumulation, TF32 as the user's torch flags say), and F as (B, T, C)."""
    B, C, T = features.shape
    H = w1.shape[0]
    if not launchable(T, N, H):
        raise ValueError(f"score_anchors: backend 'triton' needs T * num_samples * hidden < 2**31 per video, "
                         f"got {T} * {N} * {H}")
    f_tc = features.transpose(1, 2)
    return torch.matmul(f_tc, _projection_weights(w1, C, N)).view(B, T, N, H), f_tc


# The most outputs the forward kernel computes itself, per tl.dot precision. Its second-layer
# accumulator is [BLOCK_K, BLOCK_O >= O] float32 for the whole program. ptxas for sm_90
# (tests/triton_hopper_compile.py), fused: at O = 128 the float32 FMA ("ieee") configs spill
# 344-380 B, at O = 512 every precision spills 6-16 KB and two TF32 configs need 288 KB of shared
# memory, above 512 every config needs 260-264 KB (> 227 KB, OutOfResources on H100 / H200);
# at O = 64 the MMA configs ("tf32", 16-bit) fit without spills, the "ieee" ones spill 264-292 B.
# Above the limit the kernel stops at the pre-activation and the second layer is one library
# matmul (see fused_output).
FUSED_OUTPUT_LIMIT = {"tf32": 64, "ieee": 32}


def fused_output(O: int, prec: str) -> bool:
    """Whether the forward kernel applies the second layer itself (O <= FUSED_OUTPUT_LIMIT[prec]).
    Otherwise it writes the (B, K, H) pre-activation and act + W2 run as a PyTorch matmul: no
    hidden unit computed twice (tiling O over programs would recompute the whole first layer,
    by far the larger part, once per O tile), for one extra write and read of (B, K, H) in the
    features' dtype and one activation pass over it (with a gradient the kernel saves it anyway)."""
    return O <= FUSED_OUTPUT_LIMIT[prec]


def output_block(O: int, prec: str) -> int:
    """BLOCK_O of the forward kernel: the output tile when fused (the smallest power of two >= O
    that tl.dot takes), the smallest tile otherwise (unused)."""
    return _pow2_at_least(O, 16) if fused_output(O, prec) else 16


def _forward_impl(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context, padding,
                  coord_features, activation, num_steps, save_hidden):
    B, C, T = features.shape
    K = segments.shape[1]
    H, O = w1.shape[0], w2.shape[0]
    N = num_samples
    precision = _precision(features.dtype, features.device)
    fuse = fused_output(O, precision["PREC"])
    out = features.new_empty((B, K, O))
    hidden = features.new_empty((B, K, H) if save_hidden or not fuse else (0,))
    if out.numel() == 0 and hidden.numel() == 0:
        return out, hidden
    projected, _ = _project(features, w1, N)
    w1_coord = w1[:, C * N:].float().contiguous()
    _launch(
        _kernels.fwd_tuned, _kernels.fwd_kernel, segment_tiles_grid(B, K), features.device,
        projected, segments.contiguous(), w1_coord, b1.float().contiguous(), w2.contiguous(),
        b2.float().contiguous(), out, hidden, K, T, H, O, N, samples_per_point, float(context), float(num_steps),
        PADDING=PADDING_CODES[padding], NUM_COORD=COORD_FEATURES[coord_features],
        ACTIVATION=ACTIVATION_CODES[activation], SAVE_HIDDEN=save_hidden or not fuse, FUSE_OUTPUT=fuse,
        BLOCK_O=output_block(O, precision["PREC"]), **precision,
    )
    if not fuse:
        # Linear2 as the reference applies it: in the features' dtype, float32 accumulation.
        out = torch.nn.functional.linear(_activation_forward(hidden, activation), w2, b2)
        if not save_hidden:
            hidden = features.new_empty((0,))
    return out, hidden


def _activation_backward(grad_act: torch.Tensor, hidden: torch.Tensor, activation: str) -> torch.Tensor:
    """d hidden from d act(hidden), with PyTorch's own conventions (relu passes NaN's gradient)."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward(grad_act, hidden, 0)
    return torch.ops.aten.gelu_backward(grad_act, hidden)


def _activation_forward(x: torch.Tensor, activation: str) -> torch.Tensor:
    return torch.relu(x) if activation == "relu" else torch.nn.functional.gelu(x)


def _backward_impl(grad_out, hidden, features, segments, w1, w2, num_samples, samples_per_point, context,
                   padding, coord_features, activation, num_steps, need_features, need_segments, need_weights):
    B, C, T = features.shape
    K = segments.shape[1]
    H, O = w1.shape[0], w2.shape[0]
    N = num_samples
    dtype = features.dtype
    device = features.device
    zeros = (torch.zeros_like(features, memory_format=torch.contiguous_format),
             torch.zeros((B, K, 2), dtype=torch.float32, device=device), torch.zeros_like(w1), w1.new_zeros((H,)),
             torch.zeros_like(w2), w2.new_zeros((O,)))
    if B * K == 0:
        return zeros
    grad_features, grad_segments, grad_w1, grad_b1, grad_w2, grad_b2 = zeros
    # The (B, K, hidden)-sized part in PyTorch, in the features' dtype as autograd would do it
    # for the reference (matmuls accumulate in float32): no float32 copies of (B, K, hidden).
    grad_hidden = _activation_backward(grad_out @ w2, hidden, activation).contiguous()  # (B, K, H)
    phi = coordinate_features(segments, coord_features, num_steps)  # (B, K, E) float32
    seg = segments.contiguous()
    common = dict(PADDING=PADDING_CODES[padding], **_precision(dtype, device))
    projected, f_tc = _project(features, w1, N)
    if need_features or need_weights:
        grad_projected = torch.empty((B, T, N, H), dtype=torch.float32, device=device)
        _launch(
            _kernels.bwd_projected_tuned, _kernels.bwd_projected_kernel,
            projected_grid(B, T, H, N), device,
            seg, grad_hidden, grad_projected, K, T, H, N, samples_per_point, float(context), **common,
        )
        grad_projected = grad_projected.to(dtype).view(B, T, N * H)
        w_proj = _projection_weights(w1, C, N)  # (C, N H)
        if need_features:
            grad_features = torch.matmul(grad_projected, w_proj.t()).transpose(1, 2).contiguous()
        if need_weights:
            grad_w_proj = torch.matmul(f_tc.reshape(B * T, C).t(), grad_projected.reshape(B * T, N * H))
            grad_w1_soi = grad_w_proj.view(C, N, H).permute(2, 0, 1).reshape(H, C * N)
            rows_h = grad_hidden.reshape(B * K, H)
            grad_w1_coord = rows_h.t() @ phi.reshape(B * K, -1).to(dtype)
            grad_w1 = torch.cat([grad_w1_soi, grad_w1_coord], dim=1)
            grad_b1 = rows_h.sum(0, dtype=torch.float32).to(dtype)
            rows_out = grad_out.reshape(B * K, O)
            grad_w2 = rows_out.t() @ _activation_forward(hidden, activation).reshape(B * K, H)
            grad_b2 = rows_out.sum(0, dtype=torch.float32).to(dtype)
    if need_segments:
        if N * H > 0:
            _launch(
                _kernels.bwd_segments_tuned, _kernels.bwd_segments_kernel, segment_tiles_grid(B, K), device,
                projected, seg, grad_hidden, grad_segments, K, T, H, N, samples_per_point, float(context), **common,
            )
        if phi.shape[-1] > 0:
            w1_coord = w1[:, C * N:]
            grad_phi = (grad_hidden @ w1_coord).float()  # (B, K, E)
            grad_segments += coordinate_features_backward(grad_phi, coord_features, num_steps)
    return grad_features, grad_segments, grad_w1, grad_b1, grad_w2, grad_b2



@torch.library.custom_op("rcl_kernels::score_anchors_triton", mutates_args=())
def score_anchors_triton_op(
    features: torch.Tensor, segments: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
    b2: torch.Tensor, num_samples: int, samples_per_point: int, context: float, padding: str,
    coord_features: str, activation: str, num_steps: float, save_hidden: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (B, K, O), pre-activation (B, K, H) when save_hidden, else an empty tensor)."""
    return _forward_impl(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context,
                         padding, coord_features, activation, num_steps, save_hidden)


@score_anchors_triton_op.register_fake
def _(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context, padding, coord_features,
      activation, num_steps, save_hidden):
    B, K = segments.shape[0], segments.shape[1]
    out = features.new_empty((B, K, w2.shape[0]))
    hidden = features.new_empty((B, K, w1.shape[0]) if save_hidden else (0,))
    return out, hidden


@torch.library.custom_op("rcl_kernels::score_anchors_triton_backward", mutates_args=())
def score_anchors_triton_backward_op(
    grad_out: torch.Tensor, hidden: torch.Tensor, features: torch.Tensor, segments: torch.Tensor,
    w1: torch.Tensor, w2: torch.Tensor, num_samples: int, samples_per_point: int, context: float,
    padding: str, coord_features: str, activation: str, num_steps: float, need_features: bool,
    need_segments: bool, need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for (features, segments, w1, b1, w2, b2); the ones not asked for are zeros."""
    return _backward_impl(grad_out.contiguous(), hidden, features, segments, w1, w2, num_samples,
                          samples_per_point, context, padding, coord_features, activation, num_steps,
                          need_features, need_segments, need_weights)


@score_anchors_triton_backward_op.register_fake
def _(grad_out, hidden, features, segments, w1, w2, num_samples, samples_per_point, context, padding,
      coord_features, activation, num_steps, need_features, need_segments, need_weights):
    return (features.new_empty(features.shape), segments.new_empty(segments.shape), w1.new_empty(w1.shape),
            w1.new_empty((w1.shape[0],)), w2.new_empty(w2.shape), w2.new_empty((w2.shape[0],)))


def _setup_context(ctx, inputs, output):
    features, segments, w1, b1, w2, b2 = inputs[:6]
    ctx.params = tuple(inputs[6:13])
    ctx.save_for_backward(features, segments, w1, w2, output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_out, _grad_hidden):
    features, segments, w1, w2, hidden = ctx.saved_tensors
    if hidden.dim() != 3:
        raise RuntimeError(
            "rcl_kernels::score_anchors_triton was run with save_hidden=False; call it through "
            "rcl_kernels.score_anchors, which saves the pre-activation when a gradient is needed"
        )
    need = ctx.needs_input_grad
    grads = torch.ops.rcl_kernels.score_anchors_triton_backward.default(
        grad_out, hidden, features, segments, w1, w2, *ctx.params, need[0], need[1], any(need[2:6])
    )
    return tuple(g if need[i] else None for i, g in enumerate(grads)) + (None,) * 8


score_anchors_triton_op.register_autograd(_backward, setup_context=_setup_context)


def score_anchors_triton(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context, padding,
                          coord_features, activation, num_steps):
    """Validated-input entry point used by rcl_kernels.score_anchors (backend="triton")."""
    if not AVAILABLE:
        raise RuntimeError("score_anchors: the triton backend needs the triton package")
    if features.dtype not in DTYPES:
        raise TypeError(f"score_anchors: backend 'triton' supports float16, bfloat16 and float32 features, "
                        f"got {features.dtype}")
    H, O = w1.shape[0], w2.shape[0]
    b1 = w1.new_zeros((H,)) if b1 is None else b1
    b2 = w2.new_zeros((O,)) if b2 is None else b2
    tensors = (features, segments, w1, b1, w2, b2)
    save_hidden = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    out, _ = torch.ops.rcl_kernels.score_anchors_triton.default(
        features, segments.to(torch.float32), w1, b1, w2, b2, num_samples, samples_per_point, float(context),
        padding, coord_features, activation, float(num_steps), save_hidden,
    )
    return out
