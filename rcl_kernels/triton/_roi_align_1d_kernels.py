"""Triton kernels of 1D RoIAlign (imported only when Triton is installed).

Sampling rules: csrc/roi_align_1d_common.h (spec: rcl_kernels.roi_align_1d's docstring);
positions use correctly rounded division and no fused multiply-adds (the launcher disables fp
fusion), as the C++ kernels do.

  forward        one program per (roi, channel block); a vector of BLOCK_P bins, a runtime loop
                 over the roi's sub-samples; coalesced (C, P) output rows.
  input grad     scatter style (the default): one program per (roi, channel block) walks the
                 roi's P * G sub-samples BLOCK_S at a time and atomically adds their two taps'
                 terms into the (B, C, T) gradient, so the work is the problem's (R C P G taps)
                 and the grid is R x channel blocks. Not deterministic in the last bits (the
                 order of the atomic adds varies), as torchvision's roi_align backward.
  input grad     gather style (torch.use_deterministic_algorithms(True)): bitwise deterministic
  (rows)         without atomics: one program per (batch, channel block, time block) owns that
                 tile of the gradient and walks every roi in order, skipping rois of other videos
                 or that do not reach the tile; each sub-sample's weights onto the tile are a
                 [BLOCK_T, BLOCK_P] matrix, reduced against the [BLOCK_C, BLOCK_P] output
                 gradient with a fixed-order sum. It does about BLOCK_T / 2 times the work of
                 the scatter kernel and walks all R rois per tile: a checkable path, not a fast one.
  rois grad      one program per roi, channels and bins in a fixed order.

Every pointer offset is int64: products of sizes (roi * C * P, bin * stride) pass 2^31 at the
sizes detectors run (C = 512, P = 32, R > 131,072), and Triton multiplies int32 arguments in 32
bits. tests/test_roi_align_1d_launch.py checks the TTIR for 32-bit pointer offsets.
"""

from __future__ import annotations

import triton
import triton.language as tl

from rcl_kernels.reference.roi_align_1d import MAX_ADAPTIVE_SAMPLES
from rcl_kernels.triton._segment_interp_kernels import (
    _div_rn,  # correctly rounded, as in SoI
)

_MAX_ADAPTIVE = tl.constexpr(float(MAX_ADAPTIVE_SAMPLES))


@triton.jit
def _roi_geometry(rois_ptr, scale_ptr, r, B, P, SAMPLING_RATIO: tl.constexpr, ALIGNED: tl.constexpr):
    """roi_geometry of csrc/roi_align_1d_common.h: batch, valid, start, bin size, grid (int32),
    d bin / d x1, d bin / d x2, and the spatial scale."""
    acc_dtype: tl.constexpr = scale_ptr.dtype.element_ty
    scale = tl.load(scale_ptr)
    row = rois_ptr + (tl.full([], 0, tl.int64) + r) * 3  # r is an int32 loop index in some callers
    index = tl.load(row)
    x1 = tl.load(row + 1)
    x2 = tl.load(row + 2)
    finite = (tl.abs(x1) < float("inf")) & (tl.abs(x2) < float("inf"))  # False for NaN too
    valid = (index > -1.0) & (index < B.to(acc_dtype)) & finite
    batch = tl.where(valid, index, 0.0).to(tl.int64)  # truncation toward zero
    offset = 0.5 if ALIGNED else 0.0
    start = x1 * scale - offset
    end = x2 * scale - offset
    length = end - start
    clamped = False
    if not ALIGNED:
        clamped = length < 1.0
        length = tl.where(clamped, 1.0, length)
    P_f = P.to(acc_dtype)
    bin_size = _div_rn(length, P_f)
    if SAMPLING_RATIO > 0:
        grid = tl.full([], SAMPLING_RATIO, tl.int32)
    else:
        ratio = tl.minimum(tl.maximum(_div_rn(length, P_f), 0.0), _MAX_ADAPTIVE)
        grid = tl.where(valid, tl.math.ceil(tl.where(valid, ratio, 0.0)), 0.0).to(tl.int32)
    dbin_dx1 = tl.where(clamped, 0.0, _div_rn(-scale, P_f))
    dbin_dx2 = tl.where(clamped, 0.0, _div_rn(scale, P_f))
    return batch, valid, start, bin_size, grid, dbin_dx1, dbin_dx2, scale


@triton.jit
def _position(start, bin_size, p, i, grid):
    """(start + p bin) + ((i + 1/2) bin) / grid, in torchvision's order of operations."""
    acc_dtype: tl.constexpr = start.dtype
    i_f = i + tl.zeros([], acc_dtype)  # the loop index is a Python int under the interpreter
    return (start + p.to(acc_dtype) * bin_size) + _div_rn((i_f + 0.5) * bin_size, grid.to(acc_dtype))


@triton.jit
def _tap(t, T):
    """roi_tap: low, high (inside [0, T-1]), w_low, w_high (zero when dead), sloped."""
    live = (t >= -1.0) & (t <= T.to(t.dtype))  # False for NaN
    sloped = live & (t > 0.0)
    # Clamped before the float-to-int cast, so huge positions are safe.
    tc = tl.minimum(tl.maximum(tl.where(live, t, 0.0), 0.0), T.to(t.dtype))
    low = tc.to(tl.int32)
    at_end = low >= T - 1
    low = tl.where(at_end, T - 1, low)
    high = tl.where(at_end, T - 1, low + 1)
    frac = tl.where(at_end, 0.0, tc - low.to(t.dtype))
    w_low = tl.where(live, 1.0 - frac, 0.0)
    w_high = tl.where(live, frac, 0.0)
    return low, high, w_low, w_high, sloped & ~at_end


@triton.jit(do_not_specialize=["B", "C", "T", "P"])
def roi_align_1d_forward_kernel(
    f_ptr, rois_ptr, scale_ptr, out_ptr,
    B, C, T, P,
    sf_b, sf_c, sf_t,
    SAMPLING_RATIO: tl.constexpr, ALIGNED: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    acc_dtype: tl.constexpr = scale_ptr.dtype.element_ty
    r = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    batch, valid, start, bin_size, grid, _d1, _d2, _scale = _roi_geometry(rois_ptr, scale_ptr, r, B, P,
                                                                         SAMPLING_RATIO, ALIGNED)
    inv = _div_rn(tl.full([BLOCK_P], 1.0, acc_dtype), tl.maximum(grid, 1).to(acc_dtype))
    # An invalid roi (batch index outside [0, B), as every roi has when B = 0) reads nothing.
    grid = tl.where(valid, grid, 0)
    f_rows = f_ptr + batch * sf_b + c.to(tl.int64)[:, None] * sf_c
    out_rows = out_ptr + (r * C + c.to(tl.int64))[:, None] * P
    for p0 in range(0, P, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P).to(tl.int64)
        mask = c_mask[:, None] & (p < P)[None, :]
        acc = tl.zeros([BLOCK_C, BLOCK_P], acc_dtype)
        for i in range(grid):
            low, high, w_low, w_high, _s = _tap(_position(start, bin_size, p, i, grid), T)
            f_low = tl.load(f_rows + low.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
            f_high = tl.load(f_rows + high.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
            acc += w_low[None, :] * f_low + w_high[None, :] * f_high
        value = tl.where(valid, acc * inv[None, :], float("nan"))
        tl.store(out_rows + p[None, :], value.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["B", "C", "T", "P"])
def roi_align_1d_input_grad_scatter_kernel(
    grad_ptr, rois_ptr, scale_ptr, grad_f_ptr,
    B, C, T, P,
    sg_r, sg_c, sg_p,
    SAMPLING_RATIO: tl.constexpr, ALIGNED: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr,
):  # fmt: skip
    """grad_f: (B, C, T) zero-initialised contiguous buffer in the accumulation dtype. Each term
    is (w * (1 / G)) * grad, as the CPU kernel's; only the order of the sums differs."""
    acc_dtype: tl.constexpr = scale_ptr.dtype.element_ty
    r = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    c_mask = c < C
    batch, valid, start, bin_size, grid, _d1, _d2, _scale = _roi_geometry(rois_ptr, scale_ptr, r, B, P,
                                                                         SAMPLING_RATIO, ALIGNED)
    if valid:
        inv = _div_rn(tl.full([], 1.0, acc_dtype), tl.maximum(grid, 1).to(acc_dtype))
        g_rows = grad_ptr + r * sg_r + c[:, None] * sg_c
        f_rows = grad_f_ptr + (batch * C + c)[:, None] * T
        grid64 = grid.to(tl.int64)
        samples = grid64 * P  # sub-sample k = p G + i, in the order of the positions
        for k0 in range(0, samples, BLOCK_S):
            k = k0 + tl.arange(0, BLOCK_S).to(tl.int64)
            mask = c_mask[:, None] & (k < samples)[None, :]
            p = k // grid64
            i = k - p * grid64
            low, high, w_low, w_high, _s = _tap(_position(start, bin_size, p, i.to(acc_dtype), grid), T)
            g = tl.load(g_rows + p[None, :] * sg_p, mask=mask, other=0.0).to(acc_dtype)
            tl.atomic_add(f_rows + low.to(tl.int64)[None, :], (w_low * inv)[None, :] * g, mask=mask, sem="relaxed")
            tl.atomic_add(f_rows + high.to(tl.int64)[None, :], (w_high * inv)[None, :] * g, mask=mask,
                          sem="relaxed")


@triton.jit(do_not_specialize=["B", "C", "T", "P", "R"])
def roi_align_1d_input_grad_gather_kernel(
    grad_ptr, rois_ptr, scale_ptr, grad_f_ptr,
    B, C, T, P, R,
    sg_r, sg_c, sg_p,
    SAMPLING_RATIO: tl.constexpr, ALIGNED: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """grad_f: (B, C, T) contiguous in the accumulation dtype; each program writes its own tile."""
    acc_dtype: tl.constexpr = scale_ptr.dtype.element_ty
    b = tl.program_id(0).to(tl.int64)
    c = (tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)).to(tl.int64)
    t = tl.program_id(2).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    c_mask = c < C
    t0 = (tl.program_id(2) * BLOCK_T).to(acc_dtype)
    tile = tl.zeros([BLOCK_C, BLOCK_T], acc_dtype)
    for r in range(R):
        r64 = tl.full([], 0, tl.int64) + r  # the loop index is int32 (a Python int when interpreted)
        batch, valid, start, bin_size, grid, _d1, _d2, _scale = _roi_geometry(rois_ptr, scale_ptr, r64, B, P,
                                                                             SAMPLING_RATIO, ALIGNED)
        # Every sub-sample lies between start and start + P * bin (either order) up to the
        # rounding of its position, a few ulps, and reads the steps floor(t) and floor(t) + 1.
        # A slack of one step would miss the high tap of a sub-sample rounded past the span's
        # end across an integer (a weight of about an ulp, on the next tile); two steps cover any
        # position error below one step, which holds wherever positions are below 2^23 (float32)
        # and so inside any input a float32 position can address step by step.
        span_end = start + P.to(acc_dtype) * bin_size
        lowest = tl.minimum(start, span_end) - 2.0
        highest = tl.maximum(start, span_end) + 2.0
        reaches = (highest >= t0) & (lowest <= t0 + BLOCK_T) & valid & (batch == b)
        if reaches:
            inv = _div_rn(tl.full([], 1.0, acc_dtype), tl.maximum(grid, 1).to(acc_dtype))
            g_rows = grad_ptr + r64 * sg_r + c[:, None] * sg_c
            for p0 in range(0, P, BLOCK_P):
                p = p0 + tl.arange(0, BLOCK_P).to(tl.int64)
                p_mask = p < P
                g = tl.load(g_rows + p[None, :] * sg_p, mask=c_mask[:, None] & p_mask[None, :], other=0.0)
                g = g.to(acc_dtype) * inv
                for i in range(grid):
                    low, high, w_low, w_high, _s = _tap(_position(start, bin_size, p, i, grid), T)
                    w_low = tl.where(p_mask, w_low, 0.0)
                    w_high = tl.where(p_mask, w_high, 0.0)
                    weights = (tl.where(t[:, None] == low[None, :], w_low[None, :], 0.0)
                               + tl.where(t[:, None] == high[None, :], w_high[None, :], 0.0))  # [T, P]
                    tile += tl.sum(g[:, None, :] * weights[None, :, :], axis=2)
    mask = c_mask[:, None] & (t < T)[None, :]
    tl.store(grad_f_ptr + (b * C + c)[:, None] * T + t[None, :], tile, mask=mask)


@triton.jit(do_not_specialize=["B", "C", "T", "P"])
def roi_align_1d_rois_grad_kernel(
    grad_ptr, f_ptr, rois_ptr, scale_ptr, grad_rois_ptr,
    B, C, T, P,
    sg_r, sg_c, sg_p, sf_b, sf_c, sf_t,
    SAMPLING_RATIO: tl.constexpr, ALIGNED: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    """grad_rois: (R, 3) zero-initialised contiguous buffer in the accumulation dtype."""
    acc_dtype: tl.constexpr = scale_ptr.dtype.element_ty
    r = tl.program_id(0).to(tl.int64)
    batch, valid, start, bin_size, grid, dbin_dx1, dbin_dx2, scale = _roi_geometry(rois_ptr, scale_ptr, r, B, P,
                                                                                  SAMPLING_RATIO, ALIGNED)
    if valid:
        inv = _div_rn(tl.full([], 1.0, acc_dtype), tl.maximum(grid, 1).to(acc_dtype))
        d1 = tl.zeros([BLOCK_P], acc_dtype)
        d2 = tl.zeros([BLOCK_P], acc_dtype)
        for p0 in range(0, P, BLOCK_P):
            p = p0 + tl.arange(0, BLOCK_P).to(tl.int64)
            p_mask = p < P
            for i in range(grid):
                low, high, _wl, _wh, sloped = _tap(_position(start, bin_size, p, i, grid), T)
                dvdt = tl.zeros([BLOCK_P], acc_dtype)
                for c0 in range(0, C, BLOCK_C):
                    c = (c0 + tl.arange(0, BLOCK_C)).to(tl.int64)
                    mask = (c < C)[:, None] & p_mask[None, :]
                    g = tl.load(grad_ptr + r * sg_r + c[:, None] * sg_c + p[None, :] * sg_p, mask=mask,
                                other=0.0).to(acc_dtype)
                    f_rows = f_ptr + batch * sf_b + c[:, None] * sf_c
                    f_low = tl.load(f_rows + low.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
                    f_high = tl.load(f_rows + high.to(tl.int64)[None, :] * sf_t, mask=mask, other=0.0).to(acc_dtype)
                    dvdt += tl.sum(g * (f_high - f_low), axis=0)
                dvdt = tl.where(sloped & p_mask, dvdt * inv, 0.0)
                u = p.to(acc_dtype) + _div_rn((i + tl.zeros([], acc_dtype)) + 0.5, grid.to(acc_dtype))
                d1 += dvdt * (scale + dbin_dx1 * u)
                d2 += dvdt * (dbin_dx2 * u)
        tl.store(grad_rois_ptr + r * 3 + 1, tl.sum(d1, axis=0))
        tl.store(grad_rois_ptr + r * 3 + 2, tl.sum(d2, axis=0))
