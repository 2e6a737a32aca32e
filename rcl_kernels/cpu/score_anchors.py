"""score_anchors by linearity, the "cpu" backend: interpolate projected features, not features.

SoI is linear in the features, so the SoI part of the first layer is

    h[k, j] = sum_{c, n} W1[j, c N + n] SoI(F; x_k)[c, n] = sum_n interp at x_kn of G[n, :, j],
    G[n, t, j] = sum_c W1[j, c N + n] F[c, t]   (per video: N T C H multiply-adds).

Projecting the features once per video costs T instead of K segments' worth of matmul, and each
segment then gathers 2 N S rows of G (length hidden) instead of doing C N hidden multiply-adds:
about C / (2 S) times less arithmetic than the reference (128x on "anet"), and the (B, K, C, N)
tensor never exists. The projection is one matmul (oneDNN / MKL); the gather-sum runs two ways:

  with autograd    F.embedding_bag with per-sample weights (rows and weights from the reference's
                   own sampling helpers), which has a backward for every input, so autograd gives
                   every gradient;
  without autograd the C++ kernel rcl_kernels::score_anchors_hidden (csrc/cpu/score_anchors_cpu.cpp),
                   which computes the taps itself, sums each block of hidden units in registers
                   and writes every hidden row once with the coordinate term and relu, chunk by
                   chunk of segments against one projection (score_heads_cpu, which also serves
                   several heads over the same segments in one pass); on the "anet" benchmark
                   problem the forward went from 5.1-6.2 ms to 3.1-3.6 ms, and `rcl-kernels
                   detect` on 10 THUMOS14 test videos from 12.2-13.3 s to 6.1 s (2-core EPYC,
                   2026-12-03). Without the compiled extension the first way runs in both cases.

Same sampling rules as the SoI op; the sums run in another order and in float32 (float64 for
float64 inputs), so results match the reference to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rcl_kernels._extension import has_kernel
from rcl_kernels.reference.score_anchors import activation_function, coordinate_features
from rcl_kernels.reference.segment_interp import accumulation_dtype, interpolation_taps, sample_positions


def score_anchors_cpu(
    features: torch.Tensor,
    segments: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor | None,
    w2: torch.Tensor,
    b2: torch.Tensor | None,
    num_samples: int,
    samples_per_point: int = 1,
    context: float = 0.0,
    padding: str = "zeros",
    coord_features: str = "ses",
    activation: str = "relu",
    num_steps: float | None = None,
) -> torch.Tensor:
    """Same contract as score_anchors_reference (inputs already validated)."""
    B, C, T = features.shape
    H = w1.shape[0]
    N, S = num_samples, samples_per_point
    grad_needed = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (features, segments, w1, b1))
    if not grad_needed and kernel_available():
        return score_heads_cpu(features, segments, [(w1, b1, w2, b2)], num_samples, samples_per_point, context,
                               padding, coord_features, activation, num_steps)[0]
    acc = accumulation_dtype(features)
    w_soi = w1[:, : C * N].to(acc).reshape(H, C, N)
    phi = coordinate_features(segments.to(acc), coord_features, float(num_steps or T))
    # (B, T, N H) from one matmul: row (b T + t) N + n of its (B T N, H) view is (video b, step t, point n).
    projected = torch.matmul(features.to(acc).transpose(1, 2), w_soi.permute(1, 2, 0).reshape(C, N * H))
    coordinate_term = F.linear(phi, w1[:, C * N:].to(acc), None if b1 is None else b1.to(acc))
    hidden = activation_function(activation)(
        _interpolated_projection(projected, segments.to(acc), B, N, S, T, context, padding) + coordinate_term)
    return F.linear(hidden, w2.to(acc), None if b2 is None else b2.to(acc)).to(features.dtype)


def kernel_available() -> bool:
    """Whether the C++ inference kernel (score_anchors_hidden) is built."""
    return has_kernel("score_anchors_hidden", "CPU")


# Hidden activations per kernel call: the segments go through score_anchors_hidden and the
# second layers in chunks of about this many bytes of hidden rows, against one projection of the
# features. The scratch then stays the same whatever K is (B = 16, K = 100,000, H = 512 held
# 3.3 GB of hidden rows at once; peak resident memory of that call 4.07 -> 1.16 GB), it is read
# by the second layers while still in the last-level cache, and, below glibc's largest mmap
# threshold (32 MB), its buffer comes back from the heap instead of being mapped and faulted in
# at every call. Not much smaller: each call is a few parallel regions, and on a machine whose
# cores are shared with other processes every region waits for a descheduled thread (16 MB:
# 23 s for that problem with one core busy elsewhere, 4 MB: 28-30 s).
_HIDDEN_BYTES_PER_CALL = 16 << 20


def score_heads_cpu(features, segments, heads, num_samples, samples_per_point=1, context=0.0, padding="zeros",
                    coord_features="ses", activation="relu", num_steps=None) -> list[torch.Tensor]:
    """score_anchors_cpu of each head (w1, b1, w2, b2) over the same segments, without autograd,
    by the C++ kernel: the heads' first layers are stacked, so the features are projected once
    and each segment's taps are computed once for all heads; each hidden row is written once
    (coordinate term, interpolated rows and relu together), then each head's second layer reads
    its part of the row, chunk by chunk of segments."""
    B, C, T = features.shape
    K, N = segments.shape[1], num_samples
    acc = accumulation_dtype(features)
    sizes = [w1.shape[0] for w1, _, _, _ in heads]
    H = sum(sizes)
    w1 = torch.cat([w1 for w1, _, _, _ in heads]).to(acc)
    b1 = torch.cat([torch.zeros(h, dtype=acc) if b is None else b.to(acc) for h, (_, b, _, _) in zip(sizes, heads)])
    W = gather_block_width(T, N, acc)
    padded = -(-H // W) * W
    projected = _blocked_projection(features.to(acc), w1[:, : C * N].reshape(H, C, N), W)
    coord_weight = F.pad(w1[:, C * N:].t(), (0, padded - H)).contiguous()
    bias = F.pad(b1, (0, padded - H))
    segments = segments.to(acc)
    phi = coordinate_features(segments, coord_features, float(num_steps or T))
    relu = activation == "relu"
    second = [(w2.to(acc), None if b2 is None else b2.to(acc)) for _, _, w2, b2 in heads]
    outputs = [torch.empty(B, K, w2.shape[0], dtype=acc) for w2, _ in second]
    for videos, steps in _chunks(B, K, H * torch.empty((), dtype=acc).element_size()):
        hidden = torch.ops.rcl_kernels.score_anchors_hidden(
            projected[videos], segments[videos, steps].contiguous(), phi[videos, steps].contiguous(), coord_weight,
            bias, H, N, samples_per_point, float(context), padding, relu)
        if not relu:
            hidden = activation_function(activation)(hidden)
        first = 0
        for out, (w2, b2), size in zip(outputs, second, sizes):
            out[videos, steps] = F.linear(hidden[..., first:first + size], w2, b2)
            first += size
    return [out.to(features.dtype) for out in outputs]


def _chunks(B: int, K: int, row_bytes: int):
    """(videos, segments) slices of the kernel calls: about _HIDDEN_BYTES_PER_CALL of hidden rows
    each, whole videos where they fit, else runs of one video's segments. Not runs of every
    video's segments: each call reads a (T, N, W) slice of the projection per video and block,
    which pays off only over many segments (THUMOS14 windows, 16 videos of 256 segments a call:
    the kernel 3x slower per segment than with 4,096 of one video)."""
    per_call = max(1, _HIDDEN_BYTES_PER_CALL // row_bytes)
    if B == 0 or K == 0:
        return
    if K >= per_call:
        for b in range(B):
            for k in range(0, K, per_call):
                yield slice(b, b + 1), slice(k, k + per_call)
    else:
        videos = per_call // K
        for b in range(0, B, videos):
            yield slice(b, b + videos), slice(0, K)


# Hidden units per block of the C++ kernel's projected features: whole AVX2 registers (8 floats,
# 4 doubles) up to 8 of them, as many as keep one block's (T, N, W) slice within 256 KB, so the
# slice stays in a 512 KB L2 beside the taps while a run of segments reads it (THUMOS14 windows,
# T = 128, N = 16, H = 128, 2-core EPYC, 2026-12-03: 64 units 68-85 ms a call, 32 units 61-63 ms,
# 16 units 82 ms). Any width from 1 to 64 is valid (widths that are not whole AVX2 blocks run the
# kernel's portable loops).
_SLICE_BYTES = 256 << 10


def gather_block_width(T: int, N: int, dtype: torch.dtype) -> int:
    """Hidden units per block of the projected features for T steps, N points."""
    lane = 8 if dtype == torch.float32 else 4
    size = torch.empty((), dtype=dtype).element_size()
    registers = 8
    while registers > 1 and T * N * registers * lane * size > _SLICE_BYTES:
        registers //= 2
    return registers * lane


def _blocked_projection(features: torch.Tensor, w_soi: torch.Tensor, W: int) -> torch.Tensor:
    """(B, HB, T, N, W): projected[b, hb, t, n, j] = sum_c w_soi[hb W + j, c, n] features[b, c, t],
    the hidden units padded with zero weights to HB W; one batched matmul, whose output is the
    kernel's layout (each block a contiguous (T, N, W) slice)."""
    B, C, T = features.shape
    H, _, N = w_soi.shape
    HB = -(-H // W)
    if HB * W != H:
        w_soi = F.pad(w_soi, (0, 0, 0, 0, 0, HB * W - H))
    blocked = w_soi.view(HB, W, C, N).permute(0, 2, 3, 1).reshape(HB, C, N * W)
    return torch.matmul(features.transpose(1, 2).unsqueeze(1), blocked).view(B, HB, T, N, W)


def _interpolated_projection(projected, segments, B, N, S, T, context, padding):
    """(B, K, H): sum over the M = N S sub-samples of each segment's two taps into `projected`
    (B, T, N H), divided by S, by F.embedding_bag (which has a backward for the rows and the
    weights)."""
    K, H = segments.shape[1], projected.shape[-1] // N
    x = sample_positions(segments, N * S, float(context))  # (B, K, M)
    i0, i1, w0, w1_tap, is_nan = interpolation_taps(x, T, padding)
    point = (torch.arange(N * S, device=segments.device) // S).view(1, 1, N * S)
    video = (torch.arange(B, device=segments.device) * T).view(B, 1, 1)
    rows = torch.cat([(video + i0) * N + point, (video + i1) * N + point], dim=-1)
    weights = torch.cat([w0, w1_tap], dim=-1) / S
    hidden = F.embedding_bag(rows.view(B * K, 2 * N * S), projected.reshape(B * T * N, H),
                             per_sample_weights=weights.view(B * K, 2 * N * S), mode="sum").view(B, K, H)
    # A NaN position makes its SoI value NaN, and so the whole hidden row (as in the reference);
    # filled rather than propagated, so the gradients stay finite.
    return hidden.masked_fill(is_nan.any(dim=-1, keepdim=True), float("nan"))
