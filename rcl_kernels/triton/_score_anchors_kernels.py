"""Triton kernels of score_anchors (imported only when Triton is installed): SoI and the
two-layer scoring MLP, forward and backward, never writing the (B, K, C, N) SoI tensor.

score(x) = W2 act(W1 [flatten(SoI(F; x)), phi(x)] + b1) + b2.

Formulation. SoI is linear in the features, so the SoI part of the first layer factors through
the projected features G[b, t, n, :] = sum_c W1[:, c N + n] F[b, c, t] (one matmul per call,
(B, T, N, hidden), far smaller than (B, K, C, N) since T << K):

    W1 flatten(SoI(F; x_k)) = sum_n sum_t A_n[k, t] G[b, t, n, :],

where A_n[k, t] is the interpolation weight with which point n of segment k reads step t (at most
2 S nonzeros per row). The forward kernel builds each [BLOCK_K, BLOCK_T] tile of A_n in
registers from the segment coordinates (comparisons, no memory reads) and feeds it to tl.dot
with the matching G tile, accumulating the hidden pre-activation in float32; then it adds the
coordinate term and bias, applies the activation and multiplies by W2 (also tl.dot), writing
only (B, K, out_channels). That second layer is fused only for a few outputs (the launcher's
FUSED_OUTPUT_LIMIT: its accumulator lives in registers for the whole program); for more, the
kernel writes the pre-activation and the launcher applies act and W2 as a library matmul. Only the time steps a tile of segments actually reads are visited:
for each point n the loop runs over [min, max] of the tile's taps. With segments in grid order
(all start <= end pairs, as RCL / BMN enumerate them) that range is about BLOCK_K steps, so the
reduction per point is ~64 steps instead of C (256) for the direct product with W1: about 3x
fewer multiply-adds on the "anet" and "dense" problems, and no gathers in the inner loop.
Worst case (segments in random order over a long video) the range is the whole video: T / C
times the direct cost.

Backward recomputes A instead of storing anything but the (B, K, hidden) pre-activation (kept in
the features' dtype, and only when a gradient is needed):
  * dh = (dout @ W2) * act'(h) and the small gradients (W2, b1, b2, the coordinate columns of
    W1, the coordinate term of d segments) are PyTorch on (B, K, hidden) tensors;
  * bwd_projected_kernel: dG[b, t, n, :] = sum_k A_n[k, t] dh[k, :], one program per
    (time tile, hidden tile, video, point), looping over the video's segment tiles and skipping
    those whose taps miss its time tile; no atomics. The scan costs a few hundred cycles per
    segment tile: negligible for "anet" (79 tiles per video), the likely bottleneck for "dense"
    (7,821 tiles; not measured). Then d features = dG W1^T and dW1 = F^T dG are two small
    matmuls (PyTorch).
  * bwd_segments_kernel (only when segments need a gradient): dh G^T over the same ranges,
    contracted with the interpolation slopes times d position / d start (end).

Sampling rules (positions, taps, slopes, NaN handling) are those of the SoI op, spelled in
csrc/segment_interp_common.h and rcl_kernels/reference/segment_interp.py; the taps and sample
fractions come from the SoI op's Triton helpers (rcl_kernels/triton/_segment_interp_kernels.py).
As in SoI, the launcher turns fp fusion off and every float32 division is correctly rounded, so
positions (and the coordinate features) are rounded as on the CPU. Matmul operands are the
features' dtype (bf16 / fp16) with float32 accumulation; float32 uses TF32 only where
torch.backends.cuda.matmul.allow_tf32 says so.
"""

from __future__ import annotations

import triton
import triton.language as tl

# The SoI op's own Triton helpers: make_tap of csrc/segment_interp_common.h on vectors, and
# the correctly rounded sub-sample fraction, so both ops sample identically.
from rcl_kernels.triton._score_anchors_tiles import FWD_CONFIGS, PROJECTED_CONFIGS, SEGMENTS_CONFIGS
from rcl_kernels.triton._segment_interp_kernels import _div_rn, _sample_fraction, _taps

# What _point_matrix builds for point n: the interpolation weights A_n[k, t], or their
# derivatives with respect to the segment's start or end.
WEIGHTS = tl.constexpr(0)
D_START = tl.constexpr(1)
D_END = tl.constexpr(2)

@triton.jit
def _position(win_a, win_b, n, s, S, NS):
    """x = a + (b - a) t of sub-sample n S + s (of NS) of each window, and t."""
    t = _sample_fraction(n, s, S, NS, tl.float32)
    return win_a + (win_b - win_a) * t, t


@triton.jit
def _point_range(win_a, win_b, mask_k, n, S, NS, T):
    """[lo, hi]: a superset of the time steps point n of the (unmasked) segments reads (lo > hi
    when none). Positions are affine in t, so the extremes over a point's S sub-samples sit at
    its first and last one; taps are floor(x) and floor(x) + 1, clipped to [0, T - 1]. Two
    reductions per point, however many sub-samples."""
    x_first, _ = _position(win_a, win_b, n, 0, S, NS)
    x_last, _ = _position(win_a, win_b, n, S - 1, S, NS)
    x_low = tl.minimum(x_first, x_last)
    x_high = tl.maximum(x_first, x_last)
    ok = mask_k & (x_low == x_low) & (x_high == x_high)  # NaN positions read nothing
    # Clamp before the float-to-int cast (inf, 1e30). With no rows left, lo = T > hi = 0.
    x_min = tl.minimum(tl.maximum(tl.min(tl.where(ok, x_low, float("inf"))), -2.0), (T + 1).to(tl.float32))
    x_max = tl.minimum(tl.maximum(tl.max(tl.where(ok, x_high, -float("inf"))), -2.0), (T + 1).to(tl.float32))
    # One step of slack on each side: rounding can never drop a tap.
    # Capped at T - 1: with border padding a position beyond the end reads the last step.
    lo = tl.minimum(tl.maximum(tl.floor(x_min).to(tl.int32) - 1, 0), T - 1)
    hi = tl.minimum(tl.floor(x_max).to(tl.int32) + 2, T - 1)
    return lo, hi


@triton.jit
def _nan_rows(win_a, win_b, N, S, NS):
    """Segments with a NaN sub-sample position (their scores are NaN, as in the reference)."""
    rows = (win_a != win_a) | (win_b != win_b)
    for n in range(N):
        for s in range(S):
            x, _ = _position(win_a, win_b, n, s, S, NS)
            rows = rows | (x != x)
    return rows


@triton.jit
def _point_matrix(win_a, win_b, context, offs_t, n, S, NS, T, PADDING: tl.constexpr, WHAT: tl.constexpr,
                  BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr):
    """[BLOCK_K, BLOCK_T] float32, averaged over the S sub-samples of point n:
    WHAT = WEIGHTS: A_n[k, t], the weight with which the point reads step t;
    WHAT = D_START / D_END: d A_n[k, t] / d start (end) = slope times d position / d start (end)
    (dposition_dstart / dposition_dend in segment_interp_common.h)."""
    mat = tl.zeros((BLOCK_K, BLOCK_T), dtype=tl.float32)
    for s in range(S):
        x, t = _position(win_a, win_b, n, s, S, NS)
        i0, i1, w0, w1, g0, g1, is_nan = _taps(x, T, PADDING)
        if WHAT == WEIGHTS:
            c0 = w0
            c1 = w1
        else:
            if WHAT == D_START:
                dpos = (1.0 + context) * (1.0 - t) - context * t
            else:
                dpos = (1.0 + context) * t - context * (1.0 - t)
            c0 = g0 * dpos
            c1 = g1 * dpos
        mat += tl.where(offs_t[None, :] == i0[:, None], c0[:, None], 0.0)
        mat += tl.where(offs_t[None, :] == i1[:, None], c1[:, None], 0.0)
    # The mean over sub-samples as SoI's Triton kernels take it: times the correctly rounded
    # 1 / S (exact for S = 1, 2, 4), one multiply per entry; Triton's fp32 "/" would be the
    # approximate div.full.f32 on the GPU.
    return mat * _div_rn(tl.full([1], 1.0, tl.float32), tl.zeros([1], tl.float32) + S)  # S may be a constexpr 1


@triton.jit
def _mma(a, b, acc, PREC: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ b with float32 accumulation. UPCAST: the Triton interpreter's bf16 tl.dot is
    broken (garbage results, triton 3.8), so there the bf16 operands are widened first; the
    products of bf16 values are exact in float32, so this keeps the kernel's arithmetic."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision=PREC)


@triton.jit
def _activate(x, ACTIVATION: tl.constexpr):
    if ACTIVATION == 0:  # relu; NaN passes through, as in torch.relu
        return tl.where(x < 0.0, 0.0, x)
    return 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))  # exact gelu


@triton.jit
def _video_and_tile(pid, K, BLOCK_K: tl.constexpr):
    """(video, first segment) of program pid of the folded (video, segment tile) grid."""
    tiles = tl.cdiv(K, BLOCK_K)
    return (pid // tiles).to(tl.int64), (pid % tiles) * BLOCK_K


@triton.jit
def _load_window(seg_ptr, row0, local, mask_k, context):
    """Start, end and window ends a = s - ctx (e - s), b = e + ctx (e - s) of the segments in
    rows row0 + local of the flattened (B * K, 2) segments."""
    row = seg_ptr + row0 * 2 + local * 2
    start = tl.load(row, mask=mask_k, other=0.0)
    end = tl.load(row + 1, mask=mask_k, other=0.0)
    length = end - start
    return start, end, start - context * length, end + context * length


@triton.jit
def fwd_kernel(
    g_ptr, seg_ptr, wc_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr, hid_ptr,
    K, T, H, O, N, S, context, num_steps,
    PADDING: tl.constexpr, NUM_COORD: tl.constexpr, ACTIVATION: tl.constexpr,
    SAVE_HIDDEN: tl.constexpr, FUSE_OUTPUT: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_O: tl.constexpr,
):
    """out[b, k] = W2 act(sum_n A_n G[b, :, n] + Wc phi + b1) + b2 for BLOCK_K segments of video b.

    g: (B, T, N, H) projected features; seg: (B, K, 2) float32; wc: (H, NUM_COORD) float32;
    b1: (H,) float32; w2: (O, H); b2: (O,) float32; out: (B, K, O); hid: (B, K, H), the
    pre-activation, written when SAVE_HIDDEN. All contiguous. Offsets inside one video or
    tile are 32-bit (the launcher checks T N H < 2**31); per-video bases are 64-bit.

    FUSE_OUTPUT: the second layer is done here, into a [BLOCK_K, BLOCK_O >= O] accumulator
    held in registers for the whole program; the launcher does this only for O up to
    FUSED_OUTPUT_LIMIT[PREC]. Without it the kernel stops at the pre-activation (SAVE_HIDDEN must be
    set) and the launcher applies act and W2 as one library matmul: no hidden unit is computed
    twice, at the price of writing and reading (B, K, H) once.
    """
    b, k0 = _video_and_tile(tl.program_id(0), K, BLOCK_K)
    local = tl.arange(0, BLOCK_K)
    mask_k = k0 + local < K
    row0 = b * K + k0
    start, end, win_a, win_b = _load_window(seg_ptr, row0, local, mask_k, context)
    g_video = g_ptr + b * T * N * H
    NS = N * S
    offs_o = tl.arange(0, BLOCK_O)
    mask_o = offs_o < O
    dtype = g_ptr.dtype.element_ty
    if FUSE_OUTPUT:
        out_acc = tl.zeros((BLOCK_K, BLOCK_O), dtype=tl.float32)
    nan_rows = _nan_rows(win_a, win_b, N, S, NS)
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        acc = tl.zeros((BLOCK_K, BLOCK_H), dtype=tl.float32)
        for n in range(N):
            lo, hi = _point_range(win_a, win_b, mask_k, n, S, NS, T)
            for t0 in range(lo, hi + 1, BLOCK_T):
                offs_t = t0 + tl.arange(0, BLOCK_T)
                a = _point_matrix(win_a, win_b, context, offs_t, n, S, NS, T, PADDING, WEIGHTS, BLOCK_K, BLOCK_T)
                g = tl.load(g_video + (offs_t[:, None] * (N * H) + n * H + offs_h[None, :]),
                            mask=(offs_t < T)[:, None] & mask_h[None, :], other=0.0)  # [BLOCK_T, BLOCK_H]
                acc = _mma(a.to(dtype), g, acc, PREC, UPCAST)
        # A NaN position makes its SoI value, and so the whole hidden row, NaN (reference rule).
        acc = tl.where(nan_rows[:, None], float("nan"), acc)
        # coordinate features phi(x), in float32 (coordinate_features in the reference)
        if NUM_COORD >= 2:
            wc0 = tl.load(wc_ptr + offs_h * NUM_COORD, mask=mask_h, other=0.0)
            wc1 = tl.load(wc_ptr + offs_h * NUM_COORD + 1, mask=mask_h, other=0.0)
            # Correctly rounded, as coordinate_features divides in float32.
            acc += _div_rn(start, num_steps)[:, None] * wc0[None, :] + _div_rn(end, num_steps)[:, None] * wc1[None, :]
        if NUM_COORD == 3:
            wc2 = tl.load(wc_ptr + offs_h * NUM_COORD + 2, mask=mask_h, other=0.0)
            acc += _div_rn(end - start, num_steps)[:, None] * wc2[None, :]
        acc += tl.load(b1_ptr + offs_h, mask=mask_h, other=0.0)[None, :]
        hidden = acc.to(dtype)  # Linear1's output in the features' dtype, as in the reference
        if SAVE_HIDDEN:
            tl.store(hid_ptr + row0 * H + (local[:, None] * H + offs_h[None, :]), hidden,
                     mask=mask_k[:, None] & mask_h[None, :])
        if FUSE_OUTPUT:
            act = _activate(hidden.to(tl.float32), ACTIVATION).to(dtype)
            w2t = tl.load(w2_ptr + offs_o[None, :] * H + offs_h[:, None],
                          mask=mask_h[:, None] & mask_o[None, :], other=0.0)  # [BLOCK_H, BLOCK_O]
            out_acc = _mma(act, w2t, out_acc, PREC, UPCAST)
    if FUSE_OUTPUT:
        out_acc += tl.load(b2_ptr + offs_o, mask=mask_o, other=0.0)[None, :]
        tl.store(out_ptr + row0 * O + (local[:, None] * O + offs_o[None, :]), out_acc.to(out_ptr.dtype.element_ty),
                 mask=mask_k[:, None] & mask_o[None, :])


@triton.jit
def bwd_projected_kernel(
    seg_ptr, dh_ptr, dg_ptr,
    K, T, H, N, S, context,
    PADDING: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """dG[b, t, n, h] = sum_k A_n[k, t] dh[b, k, h] for one (time tile, hidden tile) of
    (video b, point n): program_id(0) = (b N + n) tiles_t + time tile, program_id(1) = hidden
    tile. Segment tiles whose taps for point n miss the time tile are skipped. dh: (B, K, H);
    dg: (B, T, N, H) float32, fully written."""
    tiles_t = tl.cdiv(T, BLOCK_T)
    video_point = tl.program_id(0) // tiles_t
    t_first = (tl.program_id(0) % tiles_t) * BLOCK_T
    offs_t = t_first + tl.arange(0, BLOCK_T)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask_h = offs_h < H
    b = (video_point // N).to(tl.int64)
    n = video_point % N
    NS = N * S
    dtype = dh_ptr.dtype.element_ty
    local = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_T, BLOCK_H), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        mask_k = k0 + local < K
        row0 = b * K + k0
        start, end, win_a, win_b = _load_window(seg_ptr, row0, local, mask_k, context)
        lo, hi = _point_range(win_a, win_b, mask_k, n, S, NS, T)
        if (lo < t_first + BLOCK_T) & (hi >= t_first):
            a = _point_matrix(win_a, win_b, context, offs_t, n, S, NS, T, PADDING, WEIGHTS, BLOCK_K, BLOCK_T)
            dh = tl.load(dh_ptr + row0 * H + (local[:, None] * H + offs_h[None, :]),
                         mask=mask_k[:, None] & mask_h[None, :], other=0.0)  # [BLOCK_K, BLOCK_H]
            acc = _mma(tl.trans(a.to(dtype)), dh, acc, PREC, UPCAST)
    tl.store(dg_ptr + b * T * N * H + (offs_t[:, None] * (N * H) + n * H + offs_h[None, :]), acc,
             mask=(offs_t < T)[:, None] & mask_h[None, :])


@triton.jit
def bwd_segments_kernel(
    g_ptr, seg_ptr, dh_ptr, dseg_ptr,
    K, T, H, N, S, context,
    PADDING: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """d start, d end of BLOCK_K segments of video b through the SoI term:
    sum_n sum_t (dh G[b, t, n, :]) dA_n[k, t] / d start (end). dseg: (B, K, 2) float32 (the
    coordinate-feature term is added by the caller)."""
    b, k0 = _video_and_tile(tl.program_id(0), K, BLOCK_K)
    local = tl.arange(0, BLOCK_K)
    mask_k = k0 + local < K
    row0 = b * K + k0
    start, end, win_a, win_b = _load_window(seg_ptr, row0, local, mask_k, context)
    g_video = g_ptr + b * T * N * H
    NS = N * S
    d_start = tl.zeros((BLOCK_K,), dtype=tl.float32)
    d_end = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for n in range(N):
        lo, hi = _point_range(win_a, win_b, mask_k, n, S, NS, T)
        for t0 in range(lo, hi + 1, BLOCK_T):
            offs_t = t0 + tl.arange(0, BLOCK_T)
            mask_t = offs_t < T
            d_read = tl.zeros((BLOCK_K, BLOCK_T), dtype=tl.float32)  # d score / d A_n[k, t]
            for h0 in range(0, H, BLOCK_H):
                offs_h = h0 + tl.arange(0, BLOCK_H)
                mask_h = offs_h < H
                dh = tl.load(dh_ptr + row0 * H + (local[:, None] * H + offs_h[None, :]),
                             mask=mask_k[:, None] & mask_h[None, :], other=0.0)  # [BLOCK_K, BLOCK_H]
                g_t = tl.load(g_video + (offs_t[None, :] * (N * H) + n * H + offs_h[:, None]),
                              mask=mask_h[:, None] & mask_t[None, :], other=0.0)  # [BLOCK_H, BLOCK_T]
                d_read = _mma(dh, g_t, d_read, PREC, UPCAST)
            da_ds = _point_matrix(win_a, win_b, context, offs_t, n, S, NS, T, PADDING, D_START, BLOCK_K, BLOCK_T)
            d_start += tl.sum(d_read * da_ds, axis=1)
            da_de = _point_matrix(win_a, win_b, context, offs_t, n, S, NS, T, PADDING, D_END, BLOCK_K, BLOCK_T)
            d_end += tl.sum(d_read * da_de, axis=1)
    tl.store(dseg_ptr + row0 * 2 + local * 2, d_start, mask=mask_k)
    tl.store(dseg_ptr + row0 * 2 + local * 2 + 1, d_end, mask=mask_k)


def _configs(entries):
    return [triton.Config({"BLOCK_K": k, "BLOCK_T": t, "BLOCK_H": h}, num_warps=w, num_stages=st)
            for k, t, h, w, st in entries]


def _tuned(kernel, configs: dict, key: list) -> dict:
    """tl.dot precision -> the kernel autotuned over that precision's candidates."""
    return {prec: triton.autotune(_configs(entries), key=key)(kernel) for prec, entries in configs.items()}


# The autotuner times the candidates once per (T, H, N, S, O, dtypes).
fwd_tuned = _tuned(fwd_kernel, FWD_CONFIGS, ["T", "H", "N", "S", "O"])
bwd_projected_tuned = _tuned(bwd_projected_kernel, PROJECTED_CONFIGS, ["T", "H", "N", "S"])
bwd_segments_tuned = _tuned(bwd_segments_kernel, SEGMENTS_CONFIGS, ["T", "H", "N", "S"])
