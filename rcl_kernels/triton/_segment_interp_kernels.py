"""Triton kernels of SoI (imported only when Triton is installed).

Design: one program per (segment, channel block). The program works out the taps of a block of
BLOCK_N output points (one sub-sample at a time, so S is a runtime loop) as vectors, then
gathers a [BLOCK_C, BLOCK_N] tile of the feature rows and writes the output tile, whose rows are
contiguous in the (B, K, C, N) output: the writes, which bound the forward pass, are coalesced.
The backward pass is one fused kernel over the same grid: it reads each grad_output tile once,
scatters it onto the feature gradient with atomic adds into a float32 (float64) buffer, and
reduces d/dstart, d/dend over its channel block, adding the two partial sums atomically.

The sampling rules are those of csrc/segment_interp_common.h; positions are computed with
correctly rounded division and without fused multiply-adds (the launcher disables fp fusion),
so they equal the CPU kernel's and the reference's bit for bit.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rcl_kernels._vocabulary import PADDING_CODES

_BORDER = tl.constexpr(PADDING_CODES["border"])
_BMN = tl.constexpr(PADDING_CODES["bmn"])


@triton.jit
def _div_rn(x, y):
    # Triton's fp32 "/" is approximate on the GPU; fp64 division is always correctly rounded.
    if x.dtype == tl.float32:
        return tl.math.div_rn(x, y)
    else:
        return x / y


@triton.jit
def _segment_window(seg_ptr, ctx_ptr, bk, K, ss_b, ss_k, ss_e):
    """Window ends a = s - context (e - s), b = e + context (e - s) of segment bk, and context."""
    acc_dtype: tl.constexpr = ctx_ptr.dtype.element_ty
    base = seg_ptr + (bk // K) * ss_b + (bk % K) * ss_k
    start = tl.load(base).to(acc_dtype)
    end = tl.load(base + ss_e).to(acc_dtype)
    context = tl.load(ctx_ptr)
    length = end - start
    return start - context * length, end + context * length, context


@triton.jit
def _sample_fraction(n, s, S, M, acc_dtype: tl.constexpr):
    """t = m / (M - 1) for sub-sample m = n S + s (1/2 when M == 1)."""
    m = (n * S + s).to(acc_dtype)
    denominator = tl.maximum(M - 1, 1).to(acc_dtype)
    return tl.where(M > 1, _div_rn(m, denominator), 0.5)


@triton.jit
def _taps(x, T, PADDING: tl.constexpr):
    """make_tap of csrc/segment_interp_common.h on a vector of positions.

    Returns i0, i1 (always inside [0, T-1]), weights w0, w1, slopes g0, g1 and the NaN mask;
    NaN positions get zero weights and slopes. Positions are clamped before the float-to-int
    cast, so inf and 1e30 are safe.
    """
    is_nan = x != x  # noqa: PLR0124 (the NaN test)
    x = tl.where(is_nan, 0.0, x)
    last = (T - 1).to(x.dtype)
    if PADDING == _BORDER:
        inside = (x >= 0.0) & (x <= last)
        xc = tl.minimum(tl.maximum(x, 0.0), last)
        i0 = tl.minimum(tl.floor(xc).to(tl.int32), T - 1)
        i1 = tl.minimum(i0 + 1, T - 1)
        frac = xc - i0.to(x.dtype)
        w0 = 1.0 - frac
        w1 = frac
        slope = tl.where(inside & (i1 != i0), 1.0, 0.0)
        g0 = -slope
        g1 = slope
    else:
        xc = tl.minimum(tl.maximum(x, -2.0), last + 2.0)
        f = tl.floor(xc).to(tl.int32)
        frac = xc - f.to(x.dtype)
        valid0 = (f >= 0) & (f <= T - 1)
        valid1 = (f + 1 >= 0) & (f + 1 <= T - 1)
        i0 = tl.where(valid0, f, 0)
        i1 = tl.where(valid1, f + 1, 0)
        w0 = tl.where(valid0, 1.0 - frac, 0.0)
        w1 = tl.where(valid1, frac, 0.0)
        g0 = tl.where(valid0, -1.0, 0.0)
        g1 = tl.where(valid1, 1.0, 0.0)
        if PADDING == _BMN:
            # BMN's math.modf truncates toward zero: x in (-1, 0) reads F[0] with weight 1.
            trunc = (x > -1.0) & (x < 0.0)
            i1 = tl.where(trunc, 0, i1)
            w0 = tl.where(trunc, 1.0, w0)
            w1 = tl.where(trunc, 0.0, w1)
            g0 = tl.where(trunc, 0.0, g0)
            g1 = tl.where(trunc, 0.0, g1)
    w0 = tl.where(is_nan, 0.0, w0)
    w1 = tl.where(is_nan, 0.0, w1)
    g0 = tl.where(is_nan, 0.0, g0)
    g1 = tl.where(is_nan, 0.0, g1)
    i0 = tl.where(is_nan, 0, i0)
    i1 = tl.where(is_nan, 0, i1)
    return i0, i1, w0, w1, g0, g1, is_nan


# Sizes that may be 1 are not specialised: Triton would turn them into constants otherwise.
@triton.jit(do_not_specialize=["C", "T", "K", "N", "S"])
def segment_interp_forward_kernel(
    f_ptr, seg_ptr, ctx_ptr, out_ptr,
    C, T, K, N, S,
    sf_b, sf_c, sf_t, ss_b, ss_k, ss_e,
    PADDING: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    acc_dtype: tl.constexpr = ctx_ptr.dtype.element_ty
    bk = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    a, b, _context = _segment_window(seg_ptr, ctx_ptr, bk, K, ss_b, ss_k, ss_e)
    M = N.to(tl.int64) * S
    inv_s = _div_rn(tl.full([BLOCK_N], 1.0, acc_dtype), S.to(acc_dtype))
    f_rows = f_ptr + (bk // K) * sf_b + c.to(tl.int64)[:, None] * sf_c
    out_rows = out_ptr + (bk * C + c.to(tl.int64))[:, None] * N
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        mask = c_mask[:, None] & (n < N)[None, :]
        acc = tl.zeros([BLOCK_C, BLOCK_N], acc_dtype)
        any_nan = tl.zeros([BLOCK_N], tl.int1)
        for s in range(S):
            x = a + (b - a) * _sample_fraction(n, s, S, M, acc_dtype)
            i0, i1, w0, w1, _g0, _g1, is_nan = _taps(x, T, PADDING)
            f0 = tl.load(f_rows + i0.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
            f1 = tl.load(f_rows + i1.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
            acc += w0[None, :] * f0 + w1[None, :] * f1
            any_nan = any_nan | is_nan
        value = tl.where(any_nan[None, :], float("nan"), acc * inv_s[None, :])
        tl.store(out_rows + n[None, :], value.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["C", "T", "K", "N", "S"])
def segment_interp_backward_kernel(
    grad_ptr, f_ptr, seg_ptr, ctx_ptr, grad_f_ptr, grad_seg_ptr,
    C, T, K, N, S,
    sg_b, sg_k, sg_c, sg_n, sf_b, sf_c, sf_t, ss_b, ss_k, ss_e,
    PADDING: tl.constexpr, NEED_FEATURES: tl.constexpr, NEED_SEGMENTS: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """grad_f (B, C, T) and grad_seg (B, K, 2) are zero-initialised contiguous buffers in the
    accumulation dtype; both are added to atomically."""
    acc_dtype: tl.constexpr = ctx_ptr.dtype.element_ty
    bk = tl.program_id(0).to(tl.int64)
    batch = bk // K
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    c64 = c.to(tl.int64)
    a, b, context = _segment_window(seg_ptr, ctx_ptr, bk, K, ss_b, ss_k, ss_e)
    M = N.to(tl.int64) * S
    inv_s = _div_rn(tl.full([BLOCK_N], 1.0, acc_dtype), S.to(acc_dtype))
    g_rows = grad_ptr + batch * sg_b + (bk % K) * sg_k + c64[:, None] * sg_c
    f_rows = f_ptr + batch * sf_b + c64[:, None] * sf_c
    grad_f_rows = grad_f_ptr + (batch * C + c64)[:, None] * T
    d_start = tl.zeros([BLOCK_N], acc_dtype)
    d_end = tl.zeros([BLOCK_N], acc_dtype)
    for n0 in range(0, N, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        mask = c_mask[:, None] & (n < N)[None, :]
        g = tl.load(g_rows + n[None, :] * sg_n, mask=mask, other=0.0).to(acc_dtype)
        for s in range(S):
            t = _sample_fraction(n, s, S, M, acc_dtype)
            i0, i1, w0, w1, g0, g1, is_nan = _taps(a + (b - a) * t, T, PADDING)
            if NEED_FEATURES:
                g_scaled = g * inv_s[None, :]
                # Zero weights (padding, NaN positions) and zero gradients add nothing: skip
                # those atomics.
                live = mask & (g != 0.0)
                tl.atomic_add(grad_f_rows + i0[None, :], w0[None, :] * g_scaled, mask=live & (w0 != 0.0)[None, :])
                tl.atomic_add(grad_f_rows + i1[None, :], w1[None, :] * g_scaled, mask=live & (w1 != 0.0)[None, :])
            if NEED_SEGMENTS:
                f0 = tl.load(f_rows + i0.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
                f1 = tl.load(f_rows + i1.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
                dvalue_dx = tl.sum(g * (g0[None, :] * f0 + g1[None, :] * f1), axis=0)
                dx_dstart = (1.0 + context) * (1.0 - t) - context * t
                dx_dend = -context * (1.0 - t) + (1.0 + context) * t
                # NaN positions contribute nothing, even where the feature is not finite.
                d_start += tl.where(is_nan, 0.0, dvalue_dx * dx_dstart)
                d_end += tl.where(is_nan, 0.0, dvalue_dx * dx_dend)
    if NEED_SEGMENTS:
        tl.atomic_add(grad_seg_ptr + bk * 2, tl.sum(d_start * inv_s, axis=0))
        tl.atomic_add(grad_seg_ptr + bk * 2 + 1, tl.sum(d_end * inv_s, axis=0))
