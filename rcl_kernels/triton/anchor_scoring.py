"""Fused anchor scoring in Triton: SoI and the two-layer scoring MLP in one kernel.

score(x) = W2 act(W1 [flatten(SoI(F; x)), phi(x)] + b1) + b2, without ever writing the
(B, K, C, N) SoI tensor: a program owns BLOCK_K segments of one video, builds each
[BLOCK_K, BLOCK_C] slice of their interpolated features in registers (two gathered rows of F per
sub-sample, blended with the interpolation weights) and feeds it straight to tl.dot with the
matching W1 tile. The reduction over W1's C * N columns runs point by point (n outer, channels
inner), so the interpolation taps are computed once per point, not per element, and the gathers
read contiguous channel rows of F stored time-major (B, T, C).

Backward recomputes the interpolation instead of storing it (only the (B, K, hidden)
pre-activation is kept, in the features' dtype, and only when a gradient is needed):
  * dh = (dout @ W2) * act'(h) and the small gradients (W2, b1, b2, the coordinate columns of
    W1 and the coordinate term of d segments) are plain PyTorch on (B, K, hidden) tensors;
  * _bwd_input_kernel: dV = dh @ W1 per [BLOCK_K, BLOCK_C] tile, scattered into a float32
    d features buffer with atomic adds and contracted with dF/dx into d segments;
  * _bwd_w1_kernel: dW1 = dh^T @ V per (hidden, point, channel) tile, reducing over all segments
    of all videos (split across programs, combined with atomic adds in float32).

Sampling rules (positions, taps, slopes, NaN handling) are those of the SoI op, spelled in
csrc/segment_interp_common.h and rcl_kernels/reference/segment_interp.py; _tap below follows
make_tap line by line.

The ops are registered as rcl_kernels::anchor_scoring_triton and
rcl_kernels::anchor_scoring_triton_backward (torch.library.custom_op, with fake kernels and
autograd), so torch.compile(fullgraph=True) treats them as opaque calls.
"""

from __future__ import annotations

import torch

from rcl_kernels._triton_support import TRITON_VERSION
from rcl_kernels.reference.anchor_scoring import (
    COORD_FEATURES,
    coordinate_features,
    coordinate_features_backward,
)

AVAILABLE = TRITON_VERSION is not None

PADDING_CODES = {"zeros": 0, "border": 1, "bmn": 2}
ACTIVATION_CODES = {"relu": 0, "gelu": 1}
DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2_at_least(x: int, lo: int) -> int:
    p = lo
    while p < x:
        p *= 2
    return p


if AVAILABLE:
    import triton
    import triton.language as tl

    @triton.jit
    def _tap(x, T, PADDING: tl.constexpr):
        """Interpolation taps of positions x (see make_tap in csrc/segment_interp_common.h).

        value(x) = w0 F[i0] + w1 F[i1] and dvalue/dx = g0 F[i0] + g1 F[i1]; indices are always in
        [0, T-1], weights are zero where padding applies and for NaN positions (flagged).
        """
        is_nan = x != x
        x = tl.where(is_nan, 0.0, x)
        last = (T - 1).to(tl.float32)
        if PADDING == 1:  # border: clamp, then interpolate; no slope where the clamp is active
            inside = (x >= 0.0) & (x <= last)
            xc = tl.minimum(tl.maximum(x, 0.0), last)
            i0 = tl.minimum(tl.floor(xc).to(tl.int32), T - 1)
            i1 = tl.minimum(i0 + 1, T - 1)
            w1 = xc - i0.to(tl.float32)
            w0 = 1.0 - w1
            g1 = tl.where(inside & (i1 != i0), 1.0, 0.0)
            g0 = -g1
        else:  # zeros (and bmn): clamp before the float-to-int cast, so inf and 1e30 stay safe
            xc = tl.minimum(tl.maximum(x, -2.0), last + 2.0)
            fl = tl.floor(xc)
            f = fl.to(tl.int32)
            frac = xc - fl
            valid0 = (f >= 0) & (f <= T - 1)
            valid1 = (f + 1 >= 0) & (f + 1 <= T - 1)
            i0 = tl.where(valid0, f, 0)
            i1 = tl.where(valid1, f + 1, 0)
            w0 = tl.where(valid0, 1.0 - frac, 0.0)
            w1 = tl.where(valid1, frac, 0.0)
            g0 = tl.where(valid0, -1.0, 0.0)
            g1 = tl.where(valid1, 1.0, 0.0)
            if PADDING == 2:  # BMN's math.modf truncates toward zero: (-1, 0) reads F[0] fully
                trunc = (x > -1.0) & (x < 0.0)
                i0 = tl.where(trunc, 0, i0)
                w0 = tl.where(trunc, 1.0, w0)
                w1 = tl.where(trunc, 0.0, w1)
                g0 = tl.where(trunc, 0.0, g0)
                g1 = tl.where(trunc, 0.0, g1)
        w0 = tl.where(is_nan, 0.0, w0)
        w1 = tl.where(is_nan, 0.0, w1)
        g0 = tl.where(is_nan, 0.0, g0)
        g1 = tl.where(is_nan, 0.0, g1)
        return i0, i1, w0, w1, g0, g1, is_nan

    @triton.jit
    def _sample_fraction(m, M):
        """t_m = m / (M - 1), or 1/2 when M == 1 (sample_fraction in segment_interp_common.h)."""
        return tl.where(M > 1, m.to(tl.float32) / tl.maximum(M - 1, 1).to(tl.float32), 0.5)

    @triton.jit
    def _interp_point(f_base, T, C, offs_c, mask_kc, win_a, win_b, n, S, NS, PADDING: tl.constexpr,
                      BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
        """SoI values of point n (of NS = N * S sub-samples) for BLOCK_K segments and channels
        offs_c: [BLOCK_K, BLOCK_C] float32, the mean of sub-samples n*S .. n*S+S-1.

        f_base points at one video's features stored (T, C) row-major; win_a / win_b are the
        window ends. NaN wherever a position is NaN, as in the SoI op.
        """
        v = tl.zeros((BLOCK_K, BLOCK_C), dtype=tl.float32)
        any_nan = win_a != win_a
        for s in range(S):
            t = _sample_fraction(n * S + s, NS)
            x = win_a + (win_b - win_a) * t
            i0, i1, w0, w1, g0, g1, is_nan = _tap(x, T, PADDING)
            # 32-bit offsets inside one video (the launcher checks T * C < 2**31): fewer registers
            f0 = tl.load(f_base + (i0[:, None] * C + offs_c[None, :]), mask=mask_kc, other=0.0)
            f1 = tl.load(f_base + (i1[:, None] * C + offs_c[None, :]), mask=mask_kc, other=0.0)
            v += w0[:, None] * f0.to(tl.float32) + w1[:, None] * f1.to(tl.float32)
            any_nan = any_nan | is_nan
        v = v / S
        return tl.where(any_nan[:, None], float("nan"), v)

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
    def _load_window(seg_ptr, row0, local, mask_k, context):
        """Start, end and window ends a = s - ctx (e - s), b = e + ctx (e - s) of the segments in
        rows row0 + local of the flattened (B * K, 2) segments."""
        row = seg_ptr + row0 * 2 + local * 2
        start = tl.load(row, mask=mask_k, other=0.0)
        end = tl.load(row + 1, mask=mask_k, other=0.0)
        length = end - start
        return start, end, start - context * length, end + context * length

    @triton.jit
    def _fwd_kernel(
        f_ptr, seg_ptr, w1_ptr, wc_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr, hid_ptr,
        K, C, T, H, O, N, S, context, num_steps,
        PADDING: tl.constexpr, NUM_COORD: tl.constexpr, ACTIVATION: tl.constexpr,
        SAVE_HIDDEN: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_O: tl.constexpr,
    ):
        """out[b, k] = W2 act(W1 [SoI(b, k), phi(b, k)] + b1) + b2 for BLOCK_K segments of video b.

        f: (B, T, C); seg: (B, K, 2) float32; w1: (H, N, C) (W1's SoI columns, point-major);
        wc: (H, NUM_COORD) float32; b1: (H,) float32; w2: (O, H); b2: (O,) float32;
        out: (B, K, O); hid: (B, K, H) pre-activation, written when SAVE_HIDDEN. All contiguous.
        """
        k0 = tl.program_id(0) * BLOCK_K
        b = tl.program_id(1).to(tl.int64)
        local = tl.arange(0, BLOCK_K)
        mask_k = k0 + local < K
        row0 = b * K + k0  # 64-bit row of the tile's first segment; offsets inside a tile are 32-bit
        start, end, win_a, win_b = _load_window(seg_ptr, row0, local, mask_k, context)
        f_base = f_ptr + b * T * C
        NS = N * S
        offs_o = tl.arange(0, BLOCK_O)
        mask_o = offs_o < O
        dtype = w1_ptr.dtype.element_ty
        out_acc = tl.zeros((BLOCK_K, BLOCK_O), dtype=tl.float32)
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + tl.arange(0, BLOCK_H)
            mask_h = offs_h < H
            acc = tl.zeros((BLOCK_K, BLOCK_H), dtype=tl.float32)
            for n in range(N):
                for c0 in range(0, C, BLOCK_C):
                    offs_c = c0 + tl.arange(0, BLOCK_C)
                    mask_c = offs_c < C
                    v = _interp_point(f_base, T, C, offs_c, mask_k[:, None] & mask_c[None, :], win_a, win_b,
                                      n, S, NS, PADDING, BLOCK_K, BLOCK_C)
                    w = tl.load(w1_ptr + offs_h[None, :] * (N * C) + n * C + offs_c[:, None],
                                mask=mask_c[:, None] & mask_h[None, :], other=0.0)  # [BLOCK_C, BLOCK_H]
                    acc = _mma(v.to(dtype), w, acc, PREC, UPCAST)
            # coordinate features phi(x), in float32 (coordinate_features in the reference)
            if NUM_COORD >= 2:
                wc0 = tl.load(wc_ptr + offs_h * NUM_COORD, mask=mask_h, other=0.0)
                wc1 = tl.load(wc_ptr + offs_h * NUM_COORD + 1, mask=mask_h, other=0.0)
                acc += (start / num_steps)[:, None] * wc0[None, :] + (end / num_steps)[:, None] * wc1[None, :]
            if NUM_COORD == 3:
                wc2 = tl.load(wc_ptr + offs_h * NUM_COORD + 2, mask=mask_h, other=0.0)
                acc += ((end - start) / num_steps)[:, None] * wc2[None, :]
            acc += tl.load(b1_ptr + offs_h, mask=mask_h, other=0.0)[None, :]
            hidden = acc.to(dtype)  # Linear1's output in the features' dtype, as in the reference
            if SAVE_HIDDEN:
                tl.store(hid_ptr + row0 * H + (local[:, None] * H + offs_h[None, :]), hidden,
                         mask=mask_k[:, None] & mask_h[None, :])
            act = _activate(hidden.to(tl.float32), ACTIVATION).to(dtype)
            w2t = tl.load(w2_ptr + offs_o[None, :] * H + offs_h[:, None],
                          mask=mask_h[:, None] & mask_o[None, :], other=0.0)  # [BLOCK_H, BLOCK_O]
            out_acc = _mma(act, w2t, out_acc, PREC, UPCAST)
        out_acc += tl.load(b2_ptr + offs_o, mask=mask_o, other=0.0)[None, :]
        tl.store(out_ptr + row0 * O + (local[:, None] * O + offs_o[None, :]), out_acc.to(out_ptr.dtype.element_ty),
                 mask=mask_k[:, None] & mask_o[None, :])

    @triton.jit
    def _bwd_input_kernel(
        f_ptr, seg_ptr, w1_ptr, dh_ptr, df_ptr, dseg_ptr,
        K, C, T, H, N, S, context,
        PADDING: tl.constexpr, NEED_FEATURES: tl.constexpr, NEED_SEGMENTS: tl.constexpr,
        PREC: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
    ):
        """Gradients of the SoI columns for BLOCK_K segments of video b: dV = dh @ W1 per point
        and channel tile, scattered into df (B, T, C) float32 (atomic adds) and contracted with
        the interpolation slope into dseg (B, K, 2) float32 (the coordinate term comes later)."""
        k0 = tl.program_id(0) * BLOCK_K
        b = tl.program_id(1).to(tl.int64)
        local = tl.arange(0, BLOCK_K)
        mask_k = k0 + local < K
        row0 = b * K + k0
        start, end, win_a, win_b = _load_window(seg_ptr, row0, local, mask_k, context)
        f_base = f_ptr + b * T * C
        df_base = df_ptr + b * T * C
        dh_base = dh_ptr + row0 * H
        NS = N * S
        d_start = tl.zeros((BLOCK_K,), dtype=tl.float32)
        d_end = tl.zeros((BLOCK_K,), dtype=tl.float32)
        for n in range(N):
            for c0 in range(0, C, BLOCK_C):
                offs_c = c0 + tl.arange(0, BLOCK_C)
                mask_c = offs_c < C
                mask_kc = mask_k[:, None] & mask_c[None, :]
                dv = tl.zeros((BLOCK_K, BLOCK_C), dtype=tl.float32)
                for h0 in range(0, H, BLOCK_H):
                    offs_h = h0 + tl.arange(0, BLOCK_H)
                    mask_h = offs_h < H
                    dh = tl.load(dh_base + (local[:, None] * H + offs_h[None, :]),
                                 mask=mask_k[:, None] & mask_h[None, :], other=0.0)
                    w = tl.load(w1_ptr + offs_h[:, None] * (N * C) + n * C + offs_c[None, :],
                                mask=mask_h[:, None] & mask_c[None, :], other=0.0)  # [BLOCK_H, BLOCK_C]
                    dv = _mma(dh, w, dv, PREC, UPCAST)
                dv = dv / S  # each sub-sample carries 1/S of its point's gradient
                for s in range(S):
                    t = _sample_fraction(n * S + s, NS)
                    x = win_a + (win_b - win_a) * t
                    i0, i1, w0, w1, g0, g1, is_nan = _tap(x, T, PADDING)
                    rows0 = i0[:, None] * C + offs_c[None, :]
                    rows1 = i1[:, None] * C + offs_c[None, :]
                    if NEED_FEATURES:
                        # zero-weight taps (padding, NaN) are skipped: no traffic, no contention on F[0]
                        tl.atomic_add(df_base + rows0, w0[:, None] * dv, mask=mask_kc & (w0 != 0.0)[:, None],
                                      sem="relaxed")
                        tl.atomic_add(df_base + rows1, w1[:, None] * dv, mask=mask_kc & (w1 != 0.0)[:, None],
                                      sem="relaxed")
                    if NEED_SEGMENTS:
                        f0 = tl.load(f_base + rows0, mask=mask_kc, other=0.0).to(tl.float32)
                        f1 = tl.load(f_base + rows1, mask=mask_kc, other=0.0).to(tl.float32)
                        dx = tl.sum(dv * (g0[:, None] * f0 + g1[:, None] * f1), axis=1)
                        # dx/ds and dx/de of x = a + (b - a) t (dposition_dstart / _dend in C++)
                        d_start += dx * ((1.0 + context) * (1.0 - t) - context * t)
                        d_end += dx * ((1.0 + context) * t - context * (1.0 - t))
        if NEED_SEGMENTS:
            tl.store(dseg_ptr + row0 * 2 + local * 2, d_start, mask=mask_k)
            tl.store(dseg_ptr + row0 * 2 + local * 2 + 1, d_end, mask=mask_k)

    @triton.jit
    def _bwd_w1_kernel(
        f_ptr, seg_ptr, dh_ptr, dw_ptr,
        B, K, C, T, H, N, S, context,
        PADDING: tl.constexpr, PREC: tl.constexpr, UPCAST: tl.constexpr,
        BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr,
    ):
        """dW1[h, n, c] += sum over segments of dh[., h] V[., c, n] for one (hidden, point,
        channel) tile; axis 2 of the grid is N * splits, each split reducing over its share of
        the B * cdiv(K, BLOCK_K) segment tiles. dw: (H, N, C) float32, zero-initialised."""
        pid_h = tl.program_id(0)
        pid_c = tl.program_id(1)
        pid_z = tl.program_id(2)
        n = pid_z % N
        split = pid_z // N
        num_splits = tl.num_programs(2) // N
        k_tiles = tl.cdiv(K, BLOCK_K)
        total = B * k_tiles
        per_split = tl.cdiv(total, num_splits)
        first = split * per_split
        last = tl.minimum(first + per_split, total)
        offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
        mask_c = offs_c < C
        NS = N * S
        dtype = dh_ptr.dtype.element_ty
        acc = tl.zeros((BLOCK_H, BLOCK_C), dtype=tl.float32)
        for tile in range(first, last):
            b = (tile // k_tiles).to(tl.int64)
            k0 = (tile % k_tiles) * BLOCK_K
            local = tl.arange(0, BLOCK_K)
            mask_k = k0 + local < K
            row0 = b * K + k0
            start, end, win_a, win_b = _load_window(seg_ptr, row0, local, mask_k, context)
            v = _interp_point(f_ptr + b * T * C, T, C, offs_c, mask_k[:, None] & mask_c[None, :], win_a, win_b,
                              n, S, NS, PADDING, BLOCK_K, BLOCK_C)
            dht = tl.load(dh_ptr + row0 * H + (local[None, :] * H + offs_h[:, None]),
                          mask=mask_h[:, None] & mask_k[None, :], other=0.0)  # [BLOCK_H, BLOCK_K]
            acc = _mma(dht, v.to(dtype), acc, PREC, UPCAST)
        tl.atomic_add(dw_ptr + offs_h[:, None] * (N * C) + n * C + offs_c[None, :], acc,
                      mask=mask_h[:, None] & mask_c[None, :], sem="relaxed")

    def _configs(entries):
        return [triton.Config({"BLOCK_K": k, "BLOCK_C": c, "BLOCK_H": h}, num_warps=w, num_stages=st)
                for k, c, h, w, st in entries]

    # GPU candidates (BLOCK_K, BLOCK_C, BLOCK_H, warps, stages): each compiles for sm_90 without
    # register spills in bf16 and in TF32 float32 (checked with triton.compile for the "anet"
    # sizes); the autotuner times them once per (C, H, N, S, O, dtypes). The kernels that
    # accumulate with atomics get their outputs zeroed between trials.
    _fwd_tuned = triton.autotune(
        _configs([(64, 64, 128, 8, 2), (64, 32, 128, 8, 3), (64, 64, 64, 4, 2)]), key=["C", "H", "N", "S", "O"]
    )(_fwd_kernel)
    _bwd_input_tuned = triton.autotune(
        _configs([(64, 128, 64, 8, 2), (64, 64, 64, 8, 2), (64, 64, 128, 8, 2)]), key=["C", "H", "N", "S"],
        reset_to_zero=["df_ptr"],
    )(_bwd_input_kernel)
    _bwd_w1_tuned = triton.autotune(
        _configs([(64, 128, 128, 8, 2), (64, 64, 128, 8, 3), (128, 64, 128, 8, 2)]), key=["C", "H", "N", "S"],
        reset_to_zero=["dw_ptr"],
    )(_bwd_w1_kernel)

# Interpreted (CPU) runs: the smallest tiles tl.dot allows, so the tiny CI shapes still span
# several tiles along segments, channels and hidden units.
_INTERPRETER_BLOCKS = {"BLOCK_K": 16, "BLOCK_C": 16, "BLOCK_H": 16}


def _launch(tuned, plain, grid, interpreted: bool, *args, **constexprs) -> None:
    """Run a kernel: autotuned on a GPU, with the interpreter's fixed tiles on CPU tensors.
    grid(meta) gives the launch grid for the chosen block sizes."""
    if interpreted:
        plain[grid(_INTERPRETER_BLOCKS)](*args, **constexprs, **_INTERPRETER_BLOCKS, num_warps=4, num_stages=1)
    else:
        tuned[grid](*args, **constexprs)


def _precision(dtype: torch.dtype, device: torch.device) -> dict:
    """tl.dot settings: TF32 for float32 only where torch's allow_tf32 flag says so; the
    interpreter's bf16 workaround (see _mma)."""
    interpreted = device.type == "cpu"
    if dtype == torch.float32 and (interpreted or not torch.backends.cuda.matmul.allow_tf32):
        prec = "ieee"
    else:
        prec = "tf32"  # float32 where the user allowed TF32; ignored for 16-bit operands
    return {"PREC": prec, "UPCAST": interpreted and dtype == torch.bfloat16}


def _prepare(features, segments, w1, num_samples, coord_features):
    """Contiguous kernel layouts: features time-major (B, T, C), W1's SoI columns point-major
    (H, N, C), its coordinate columns (H, E) in float32."""
    B, C, T = features.shape
    H = w1.shape[0]
    N = num_samples
    if T * C >= 2**31:
        raise ValueError(f"score_anchors: backend 'triton' needs T * C < 2**31 per video, got T={T}, C={C}")
    f_tc = features.transpose(1, 2).contiguous()
    w1_soi = w1[:, : C * N].reshape(H, C, N).transpose(1, 2).contiguous()
    w1_coord = w1[:, C * N:].float().contiguous()
    assert w1_coord.shape[1] == COORD_FEATURES[coord_features]
    return f_tc, segments.contiguous(), w1_soi, w1_coord


def _forward_impl(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context, padding,
                  coord_features, activation, num_steps, save_hidden):
    B, C, T = features.shape
    K = segments.shape[1]
    H, O = w1.shape[0], w2.shape[0]
    out = features.new_empty((B, K, O))
    hidden = features.new_empty((B, K, H) if save_hidden else (0,))
    if out.numel() == 0 and hidden.numel() == 0:
        return out, hidden
    f_tc, seg, w1_soi, w1_coord = _prepare(features, segments, w1, num_samples, coord_features)
    _launch(
        _fwd_tuned, _fwd_kernel, lambda meta: (_cdiv(K, meta["BLOCK_K"]), B), features.device.type == "cpu",
        f_tc, seg, w1_soi, w1_coord, b1.float().contiguous(), w2.contiguous(), b2.float().contiguous(), out,
        hidden, K, C, T, H, O, num_samples, samples_per_point, float(context), float(num_steps),
        PADDING=PADDING_CODES[padding], NUM_COORD=COORD_FEATURES[coord_features],
        ACTIVATION=ACTIVATION_CODES[activation], SAVE_HIDDEN=save_hidden, BLOCK_O=_pow2_at_least(O, 16),
        **_precision(features.dtype, features.device),
    )
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
    interpreted = device.type == "cpu"
    grad_features = torch.zeros((B, T, C), dtype=torch.float32, device=device)
    grad_segments = torch.zeros((B, K, 2), dtype=torch.float32, device=device)
    if B * K == 0:
        return (_channels_first(grad_features, dtype), grad_segments, torch.zeros_like(w1),
                w1.new_zeros((H,)), torch.zeros_like(w2), w2.new_zeros((O,)))
    # The (B, K, hidden)-sized part in PyTorch, in the features' dtype as autograd would do it
    # for the reference (matmuls accumulate in float32): no float32 copies of (B, K, hidden).
    grad_hidden = _activation_backward(grad_out @ w2, hidden, activation).contiguous()  # (B, K, H)
    phi = coordinate_features(segments, coord_features, num_steps)  # (B, K, E) float32
    f_tc, seg, w1_soi, w1_coord = _prepare(features, segments, w1, N, coord_features)
    common = dict(PADDING=PADDING_CODES[padding], **_precision(dtype, device))
    if (need_features or need_segments) and C * N > 0:
        _launch(
            _bwd_input_tuned, _bwd_input_kernel, lambda meta: (_cdiv(K, meta["BLOCK_K"]), B), interpreted,
            f_tc, seg, w1_soi, grad_hidden, grad_features, grad_segments, K, C, T, H, N, samples_per_point,
            float(context), NEED_FEATURES=need_features, NEED_SEGMENTS=need_segments, **common,
        )
    if need_segments and phi.shape[-1] > 0:
        grad_phi = (grad_hidden @ w1_coord.to(dtype)).float()  # (B, K, E)
        grad_segments += coordinate_features_backward(grad_phi, coord_features, num_steps)
    if not need_weights:
        return (_channels_first(grad_features, dtype), grad_segments, torch.zeros_like(w1), w1.new_zeros((H,)),
                torch.zeros_like(w2), w2.new_zeros((O,)))
    grad_w1_soi = torch.zeros((H, N, C), dtype=torch.float32, device=device)
    if C * N * H > 0:
        sms = 1 if interpreted else torch.cuda.get_device_properties(device).multi_processor_count

        def w1_grid(meta):
            # Split the reduction over segment tiles until there are about 4 programs per SM
            # (2 in the interpreter, to exercise the split reduction on tiny shapes).
            h_tiles, c_tiles = _cdiv(H, meta["BLOCK_H"]), _cdiv(C, meta["BLOCK_C"])
            tiles = B * _cdiv(K, meta["BLOCK_K"])
            wanted = 2 if interpreted else _cdiv(4 * sms, h_tiles * c_tiles * N)
            return h_tiles, c_tiles, N * max(1, min(tiles, wanted))

        _launch(_bwd_w1_tuned, _bwd_w1_kernel, w1_grid, interpreted,
                f_tc, seg, grad_hidden, grad_w1_soi, B, K, C, T, H, N, samples_per_point, float(context), **common)
    rows_h = grad_hidden.reshape(B * K, H)
    grad_w1_coord = rows_h.t() @ phi.reshape(B * K, -1).to(dtype)
    grad_w1 = torch.cat([grad_w1_soi.transpose(1, 2).reshape(H, C * N).to(dtype), grad_w1_coord], dim=1)
    grad_b1 = rows_h.sum(0, dtype=torch.float32).to(dtype)
    rows_out = grad_out.reshape(B * K, O)
    grad_w2 = rows_out.t() @ _activation_forward(hidden, activation).reshape(B * K, H)
    grad_b2 = rows_out.sum(0, dtype=torch.float32).to(dtype)
    return _channels_first(grad_features, dtype), grad_segments, grad_w1, grad_b1, grad_w2, grad_b2


def _channels_first(grad_tc: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T, C) float32 accumulator -> contiguous (B, C, T) in the features' dtype."""
    return grad_tc.transpose(1, 2).to(dtype).contiguous()




if AVAILABLE:

    @torch.library.custom_op("rcl_kernels::anchor_scoring_triton", mutates_args=())
    def anchor_scoring_triton_op(
        features: torch.Tensor, segments: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
        b2: torch.Tensor, num_samples: int, samples_per_point: int, context: float, padding: str,
        coord_features: str, activation: str, num_steps: float, save_hidden: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (B, K, O), pre-activation (B, K, H) when save_hidden, else an empty tensor)."""
        return _forward_impl(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context,
                             padding, coord_features, activation, num_steps, save_hidden)

    @anchor_scoring_triton_op.register_fake
    def _(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context, padding, coord_features,
          activation, num_steps, save_hidden):
        B, K = segments.shape[0], segments.shape[1]
        out = features.new_empty((B, K, w2.shape[0]))
        hidden = features.new_empty((B, K, w1.shape[0]) if save_hidden else (0,))
        return out, hidden

    @torch.library.custom_op("rcl_kernels::anchor_scoring_triton_backward", mutates_args=())
    def anchor_scoring_triton_backward_op(
        grad_out: torch.Tensor, hidden: torch.Tensor, features: torch.Tensor, segments: torch.Tensor,
        w1: torch.Tensor, w2: torch.Tensor, num_samples: int, samples_per_point: int, context: float,
        padding: str, coord_features: str, activation: str, num_steps: float, need_features: bool,
        need_segments: bool, need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradients for (features, segments, w1, b1, w2, b2); the ones not asked for are zeros."""
        return _backward_impl(grad_out.contiguous(), hidden, features, segments, w1, w2, num_samples,
                              samples_per_point, context, padding, coord_features, activation, num_steps,
                              need_features, need_segments, need_weights)

    @anchor_scoring_triton_backward_op.register_fake
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
                "rcl_kernels::anchor_scoring_triton was run with save_hidden=False; call it through "
                "rcl_kernels.score_anchors, which saves the pre-activation when a gradient is needed"
            )
        need = ctx.needs_input_grad
        grads = torch.ops.rcl_kernels.anchor_scoring_triton_backward.default(
            grad_out, hidden, features, segments, w1, w2, *ctx.params, need[0], need[1], any(need[2:6])
        )
        return tuple(g if need[i] else None for i, g in enumerate(grads)) + (None,) * 8

    anchor_scoring_triton_op.register_autograd(_backward, setup_context=_setup_context)


def anchor_scoring_triton(features, segments, w1, b1, w2, b2, num_samples, samples_per_point, context, padding,
                          coord_features, activation, num_steps):
    """Validated-input entry point used by rcl_kernels.score_anchors (backend="triton")."""
    if features.dtype not in DTYPES:
        raise TypeError(f"score_anchors: backend 'triton' supports float16, bfloat16 and float32 features, "
                        f"got {features.dtype}")
    H, O = w1.shape[0], w2.shape[0]
    b1 = w1.new_zeros((H,)) if b1 is None else b1
    b2 = w2.new_zeros((O,)) if b2 is None else b2
    tensors = (features, segments, w1, b1, w2, b2)
    save_hidden = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    out, _ = torch.ops.rcl_kernels.anchor_scoring_triton.default(
        features, segments.to(torch.float32), w1, b1, w2, b2, num_samples, samples_per_point, float(context),
        padding, coord_features, activation, float(num_steps), save_hidden,
    )
    return out
