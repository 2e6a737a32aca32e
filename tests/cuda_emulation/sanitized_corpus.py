"""Runs every emulated CUDA kernel and every C++ CPU kernel over the edge corpus, in a process
where AddressSanitizer and UndefinedBehaviorSanitizer are loaded (tests/test_sanitizers.py
starts it with LD_PRELOAD; this is not a test module). The libraries it loads are built with
-fsanitize=address,undefined: the emulation libraries (tests/cuda_emulation/kernels.py) and the
schema files csrc/*.cpp with csrc/cpu/*.cpp as an operator library, loaded with
torch.ops.load_library instead of rcl_kernels._C (so rcl_kernels itself is not imported).

Results are compared as well (Soft-NMS: emulated CUDA equal to the CPU kernel bit for bit;
SoI: emulated CUDA close to the CPU kernel, with the same NaN and inf entries), so a kernel that
stopped running would fail. Prints one line per kernel with its number of cases; exits non-zero
on a mismatch, and the sanitizers abort the process on their first report.

    python sanitized_corpus.py EMULATION_DIR CPU_OPS_LIBRARY [--short-buffer]

--short-buffer: instead, gives the emulated SoI forward a features buffer one element shorter
than the T it is told and reads its last element: AddressSanitizer must report it.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import os
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from cuda_emulation import kernels as emulation  # noqa: E402
from cuda_emulation.edge_corpus import segment_interp_cases, segment_interp_empty_shapes, soft_nms_cases  # noqa: E402

RUNS: collections.Counter = collections.Counter()


def close(a: torch.Tensor, b: torch.Tensor, what: str, *, where_finite: bool = False) -> None:
    """Same NaN and inf entries; finite entries within a tolerance for summation order.
    where_finite: only where b is finite."""
    a, b = a.double(), b.double()
    if where_finite:
        a, b = a[b.isfinite()], b[b.isfinite()]
    if not torch.equal(a.isnan(), b.isnan()) or not torch.equal(a.isinf(), b.isinf()):
        raise AssertionError(f"{what}: NaN / inf entries differ")
    finite = a.isfinite()
    if not torch.equal(a[~finite & ~a.isnan()], b[~finite & ~b.isnan()]):
        raise AssertionError(f"{what}: infinite entries differ")
    if finite.any():
        scale = max(1.0, b[finite].abs().max().item())
        err = (a[finite] - b[finite]).abs().max().item()
        if err > 1e-3 * scale:
            raise AssertionError(f"{what}: differs by {err} (scale {scale})")


def run_soft_nms(lib) -> None:
    for case in soft_nms_cases():
        want = torch.ops.rcl_kernels.soft_nms.default(*case.op_args())
        RUNS["soft_nms cpu"] += 1
        paths = [emulation.H100_OPTIN_BYTES] + ([0] if case.scores.shape[1] <= 2048 else [])
        for optin in paths:
            got = emulation.soft_nms(lib, case.segments, case.scores, case.labels, case.lengths, **case.kw,
                                     multiprocessors=case.multiprocessors, optin_bytes=optin)  # fmt: skip
            RUNS["soft_nms cuda (global memory)" if got.global_memory else "soft_nms cuda (shared memory)"] += 1
            for name, g, w in zip(got._fields, got, want):
                if not emulation.same_bits(g, w):
                    raise AssertionError(f"soft_nms {case.name} optin={optin}: {name} differ")


def cpu_segment_interp(case, features, segments, grad, need):
    args = (case.N, case.S, case.context, case.padding)
    out = torch.ops.rcl_kernels.segment_interp.default(features, segments, *args)
    grads = torch.ops.rcl_kernels.segment_interp_backward.default(grad, features, segments, *args, *need)
    return out, grads


def run_segment_interp(lib) -> None:
    for case in segment_interp_cases():
        features, segments64, grad = case.inputs()
        segments = segments64.to(features.dtype)
        args = (case.N, case.S, case.context, case.padding)
        out = emulation.segment_interp_forward(lib, features, segments, *args, max_grid=case.max_grid)
        RUNS["segment_interp cuda forward"] += 1
        for need in ((True, True), (True, False), (False, True)):
            want_out, (want_f, want_s) = cpu_segment_interp(case, features, segments, grad, need)
            RUNS["segment_interp cpu forward + backward"] += 1
            got_f, got_s = emulation.segment_interp_backward(
                lib, grad, features, segments, *args, need=need, max_grid=case.max_grid, sms=case.sms
            )
            slab = 32 * 1024 // (case.T * features.element_size()) >= 1
            variant = {(True, True): "both", (True, False): "features", (False, True): "segments"}[need]
            RUNS[f"segment_interp cuda backward ({variant}{', slab' if slab and need[0] else ''})"] += 1
            # Non-finite features: the CUDA forward drops taps of weight 0 where the CPU kernel
            # and the reference compute 0 x inf = NaN, so only the finite outputs compare.
            close(out, want_out, f"segment_interp {case.name} forward", where_finite=case.special_features)
            if need[0]:
                close(got_f, want_f, f"segment_interp {case.name} grad features")
            if need[1]:
                close(got_s, want_s, f"segment_interp {case.name} grad segments")
    # The CPU kernels alone: the other dtypes, and empty inputs.
    for dtype in (torch.float16, torch.bfloat16):
        for case in segment_interp_cases()[:6]:
            features, segments, grad = case.inputs()
            cpu_segment_interp(case, features.to(dtype), segments.float(), grad.to(dtype), (True, True))
            RUNS["segment_interp cpu forward + backward"] += 1
    for B, C, T, K in segment_interp_empty_shapes():
        for padding in ("zeros", "border", "bmn"):
            f, s = torch.randn(B, C, T), torch.rand(B, K, 2) * 4
            out = torch.ops.rcl_kernels.segment_interp.default(f, s, 4, 2, 0.5, padding)
            torch.ops.rcl_kernels.segment_interp_backward.default(torch.ones_like(out), f, s, 4, 2, 0.5, padding,
                                                                  True, True)  # fmt: skip
            RUNS["segment_interp cpu forward + backward"] += 1


def roi_align_1d_cases():
    """(input, rois, output_size, spatial_scale, sampling_ratio, aligned): tiny and odd sizes, T = 1,
    no rois, rois before, beyond, reversed, zero-length and non-finite, every sampling rule."""
    coords = [(-3.0, 2.0), (0.0, 0.0), (5.0, 1.0), (-1.0, 40.0), (2.5, 2.5), (30.0, 45.0), (float("nan"), 3.0),
              (0.0, float("inf")), (-float("inf"), 1.0), (1e30, 2e30), (0.25, 6.75)]
    for B, C, T in [(1, 1, 1), (2, 3, 7), (3, 17, 33)]:
        for R in (0, 1, len(coords)):
            rois = torch.tensor([[float(i % B), *coords[i % len(coords)]] for i in range(R)]).reshape(R, 3)
            for P, scale, ratio, aligned in [(1, 1.0, -1, False), (3, 0.5, 0, True), (7, 1.0, 2, True), (4, 2.0, 1, False)]:
                yield torch.randn(B, C, T), rois, P, scale, ratio, aligned


def run_roi_align_1d() -> None:
    """The CPU kernels of roi_align_1d, forward and backward twice: the backward promises the same
    bits on every run, so a second run that differs fails too."""
    for x, rois, P, scale, ratio, aligned in roi_align_1d_cases():
        out = torch.ops.rcl_kernels.roi_align_1d.default(x, rois, P, scale, ratio, aligned)
        if out.shape != (rois.shape[0], x.shape[1], P):
            raise AssertionError(f"roi_align_1d: output shape {tuple(out.shape)}")
        grad = torch.randn_like(out)
        first = torch.ops.rcl_kernels.roi_align_1d_backward.default(grad, x, rois, P, scale, ratio, aligned, True, True)
        again = torch.ops.rcl_kernels.roi_align_1d_backward.default(grad, x, rois, P, scale, ratio, aligned, True, True)
        if not all(torch.equal(a.nan_to_num(), b.nan_to_num()) for a, b in zip(first, again)):
            raise AssertionError("roi_align_1d: backward differs between two runs")
        RUNS["roi_align_1d cpu forward + backward"] += 1


def score_anchors_hidden_cases():
    """(projected, segments, coordinates, coord_weight, bias, H, N, S, context, padding, relu): AVX2
    block widths (8 and 64 floats, 32 doubles) and portable ones (5), H filling the last block or
    not, every padding, and coordinates inside, beyond, reversed, NaN, infinite and huge."""
    coords = [(0.5, 3.0), (-3.0, 2.0), (5.0, 1.0), (2.0, 2.0), (float("nan"), 1.0), (0.0, float("inf")),
              (1e30, 2e30), (-1.5, 40.0)]
    shapes = [(1, 1, 1, 8, 8, torch.float32), (2, 9, 3, 64, 100, torch.float32), (2, 7, 2, 5, 13, torch.float32),
              (1, 4, 3, 32, 40, torch.float64)]
    for B, T, N, W, H, dtype in shapes:
        HB = -(-H // W)
        for K, (padding, S, context, relu) in zip((0, 1, 13, 13), [("zeros", 1, 0.0, True), ("border", 2, 0.5, False),
                                                                  ("bmn", 3, 0.25, True), ("zeros", 2, 1.0, False)]):
            segments = torch.tensor([coords[(b + k) % len(coords)] for b in range(B) for k in range(K)],
                                    dtype=dtype).reshape(B, K, 2)
            yield (torch.randn(B, HB, T, N, W, dtype=dtype), segments, torch.randn(B, K, 3, dtype=dtype),
                   torch.randn(3, HB * W, dtype=dtype), torch.randn(HB * W, dtype=dtype), H, N, S, context, padding,
                   relu)


def run_score_anchors_hidden() -> None:
    """score_anchors' CPU inference kernel, AVX2 build (where the CPU has it) against its portable
    loops (RCL_CPU_CAPABILITY=default, read on every call)."""
    for case in score_anchors_hidden_cases():
        native = torch.ops.rcl_kernels.score_anchors_hidden.default(*case)
        os.environ["RCL_CPU_CAPABILITY"] = "default"
        try:
            portable = torch.ops.rcl_kernels.score_anchors_hidden.default(*case)
        finally:
            del os.environ["RCL_CPU_CAPABILITY"]
        if native.shape != (case[1].shape[0], case[1].shape[1], case[5]):
            raise AssertionError(f"score_anchors_hidden: output shape {tuple(native.shape)}")
        close(native, portable, "score_anchors_hidden: AVX2 against portable")
        RUNS["score_anchors_hidden cpu"] += 1


def short_buffer(lib) -> None:
    """features has T - 1 values; the segment's window reaches index T - 1."""
    T = 16
    features = torch.randn(1, 1, T - 1)
    segments = torch.tensor([[[0.0, T - 1.0]]])
    emulation.segment_interp_forward(lib, features, segments, 5, 1, 0.0, "zeros", T=T)
    print("short buffer read without a report", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("emulation_dir", type=pathlib.Path)
    parser.add_argument("cpu_ops", type=pathlib.Path)
    parser.add_argument("--short-buffer", action="store_true")
    args = parser.parse_args()
    soi = ctypes.CDLL(str(args.emulation_dir / "segment_interp_emulated.so"))
    if args.short_buffer:
        short_buffer(soi)
        return 0
    torch.ops.load_library(str(args.cpu_ops))
    run_soft_nms(ctypes.CDLL(str(args.emulation_dir / "soft_nms_emulated.so")))
    run_segment_interp(soi)
    run_roi_align_1d()
    run_score_anchors_hidden()
    for kernel, count in sorted(RUNS.items()):
        print(f"{kernel}: {count} cases")
    print(f"total: {sum(RUNS.values())} kernel runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
