"""Builds the CUDA kernels' CPU emulation libraries (tests/cuda_emulation/*_emulated.cpp on top
of cuda_emulation.h) and calls them through ctypes on CPU tensors.

Used by the emulation tests (tests/test_segment_interp_kernels.py,
tests/test_soft_nms_cuda_emulated.py, tests/test_roi_align_1d_cuda_emulated.py) and, built with sanitizers, by the memcheck corpus
(tests/cuda_emulation/sanitized_corpus.py, run from tests/test_sanitizers.py).
"""

from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess
from typing import NamedTuple

import torch

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The C++ enum values (csrc/segment_interp_common.h, csrc/soft_nms_common.h). Spelled out here,
# not imported from rcl_kernels._vocabulary: the sanitized process must not import rcl_kernels
# (its _C would register the ops a second time); tests/test_segment_interp_kernels.py checks
# that the two agree.
PADDING_CODES = {"zeros": 0, "border": 1, "bmn": 2}
METHOD_CODES = {"gaussian": 0, "linear": 1, "hard": 2}
# Every check of -fsanitize=undefined, plus float-to-int casts that overflow (not part of it in
# GCC); the first report aborts the process.
SANITIZE_FLAGS = [
    "-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g",
]  # fmt: skip
# Contraction off: the kernels' float results must match the CPU backend bit for bit.
BASE_FLAGS = ["-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-Wall", "-Wno-unknown-pragmas"]
INCLUDES = [f"-I{ROOT / 'csrc'}", f"-I{HERE}"]


def compiler() -> str | None:
    return shutil.which("c++") or shutil.which("g++")


def build(stem: str, directory: pathlib.Path, *, sanitize: bool = False) -> pathlib.Path:
    """Compiles tests/cuda_emulation/<stem>.cpp into <directory>/<stem>.so."""
    lib = directory / f"{stem}.so"
    cmd = [compiler(), *BASE_FLAGS, *(SANITIZE_FLAGS if sanitize else []), "-shared", "-fPIC", *INCLUDES,
           str(HERE / f"{stem}.cpp"), "-o", str(lib)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building {stem} failed:\n{result.stderr}")
    return lib


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtypes, shapes and bits (float32 compared as its bit patterns: NaN equals NaN, -0
    differs from +0)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.float32:
        return torch.equal(a.view(torch.int32), b.view(torch.int32))
    return torch.equal(a, b)


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def _sizes(*values) -> list[ctypes.c_int64]:
    return [ctypes.c_int64(v) for v in values]


# --------------------------------------------------------------------------------------------
# SoI (segment_interp_emulated.cpp)


def segment_interp_forward(lib, features, segments, N, S, context, padding, *, max_grid=1 << 30, T=None):
    """The emulated CUDA forward. T: the length the kernel is told (default: the features')."""
    B, C, T_real = features.shape
    K = segments.shape[1]
    f = features.contiguous()
    seg = segments.to(f.dtype).contiguous()
    out = torch.full((B, K, C, N), 12345.0, dtype=f.dtype)  # every entry must be overwritten
    entry = lib.soi_forward_f64 if f.dtype == torch.float64 else lib.soi_forward_f32
    entry(_ptr(f), _ptr(seg), _ptr(out), *_sizes(B, C, T if T is not None else T_real, K, N, S),
          ctypes.c_double(context), ctypes.c_int(PADDING_CODES[padding]), ctypes.c_int64(max_grid))  # fmt: skip
    return out


def segment_interp_backward(
    lib, grad_output, features, segments, N, S, context, padding, *, need=(True, True), max_grid=1 << 30, sms=4
):
    """The emulated CUDA backward: (grad_features, grad_segments), zero where not wanted."""
    B, C, T = features.shape
    K = segments.shape[1]
    f = features.contiguous()
    seg = segments.to(f.dtype).contiguous()
    g = grad_output.to(f.dtype).contiguous()
    grad_f = torch.zeros_like(f)
    grad_s = torch.zeros((B, K, 2), dtype=f.dtype)
    entry = lib.soi_backward_f64 if f.dtype == torch.float64 else lib.soi_backward_f32
    entry(_ptr(g), _ptr(f), _ptr(seg), _ptr(grad_f), _ptr(grad_s), *_sizes(B, C, T, K, N, S),
          ctypes.c_double(context), ctypes.c_int(PADDING_CODES[padding]), ctypes.c_int(need[0]),
          ctypes.c_int(need[1]), ctypes.c_int64(max_grid), ctypes.c_int64(sms))  # fmt: skip
    return grad_f, grad_s


class SoiLaunchPlan(NamedTuple):
    forward_grid: int
    forward_block: tuple[int, int]
    backward_grid: int
    backward_block: tuple[int, int]
    channel_tile: int
    channel_tiles: int
    segments_per_group: int
    segment_groups: int
    use_slab: bool
    slab_bytes: int


def segment_interp_plan(lib, B, C, T, K, N, S, *, acc_bytes=4, multiprocessors=132, need_features=True) -> SoiLaunchPlan:
    """The CUDA SoI launches (csrc/cuda/segment_interp_kernels.cuh's point_block, grid_for and
    plan_backward, as csrc/cuda/segment_interp_cuda.cu calls them)."""
    v = (ctypes.c_int64 * 12)()
    lib.soi_launch_plan(*_sizes(B, C, T, K, N, S, acc_bytes, multiprocessors), ctypes.c_int(need_features), v)
    return SoiLaunchPlan(v[0], (v[1], v[2]), v[3], (v[4], v[5]), v[6], v[7], v[8], v[9], bool(v[10]), v[11])


# --------------------------------------------------------------------------------------------
# Soft-NMS (soft_nms_emulated.cpp)

# cudaDevAttrMaxSharedMemoryPerBlockOptin of the H100 / H200 (227 KiB).
H100_OPTIN_BYTES = 232_448
# Static shared memory of every soft_nms_kernel instance (ptxas, sm_90: the argmax scratch).
STATIC_BYTES = 272


class SoftNmsRun(NamedTuple):
    segments: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    counts: torch.Tensor
    global_memory: bool  # the candidates went to the global scratch buffer, not shared memory


def soft_nms(lib, segments, scores, labels=None, lengths=None, *, method="gaussian", sigma=0.5,
             iou_threshold=0.0, min_score=0.001, top_k=100, width_gate=None, multiprocessors=132,
             static_bytes=STATIC_BYTES, optin_bytes=H100_OPTIN_BYTES) -> SoftNmsRun:  # fmt: skip
    """The emulated CUDA Soft-NMS on (V, P, 2) segments, with the arguments of
    torch.ops.rcl_kernels.soft_nms. Outputs start as garbage: the kernel must write them all."""
    V, P = scores.shape
    seg = segments.to(torch.float32).contiguous()
    sc = scores.to(torch.float32).contiguous()
    lab = labels.to(torch.int64).contiguous() if labels is not None else None
    lens = lengths.to(torch.int64).contiguous() if lengths is not None else None
    out_seg = torch.full((V, top_k, 2), 12345.0)
    out_sc = torch.full((V, top_k), 12345.0)
    out_lab = torch.full((V, top_k) if lab is not None else (0,), 12345, dtype=torch.int64)
    out_idx = torch.full((V, top_k), 12345, dtype=torch.int64)
    out_cnt = torch.full((V,), 12345, dtype=torch.int64)
    t1, t2 = width_gate if width_gate is not None else (0.0, 0.0)
    global_memory = lib.soft_nms_emulated(
        _ptr(seg), _ptr(sc), ctypes.c_int(lab is not None), _ptr(lab), _ptr(lens), *_sizes(V, P),
        ctypes.c_int(METHOD_CODES[method]),
        ctypes.c_double(sigma), ctypes.c_double(iou_threshold), ctypes.c_double(min_score), ctypes.c_int64(top_k),
        ctypes.c_int(width_gate is not None), ctypes.c_double(t1), ctypes.c_double(t2),
        ctypes.c_int(multiprocessors), *_sizes(static_bytes, optin_bytes), _ptr(out_seg), _ptr(out_sc),
        _ptr(out_lab if lab is not None else None), _ptr(out_idx), _ptr(out_cnt),
    )  # fmt: skip
    return SoftNmsRun(out_seg, out_sc, out_lab, out_idx, out_cnt, bool(global_memory))


class LaunchPlan(NamedTuple):
    threads: int
    dynamic_bytes: int
    global_scratch: bool
    opt_in: bool


def soft_nms_plan(lib, P, V, labels, *, multiprocessors=132, static_bytes=STATIC_BYTES,
                  default_bytes=48 * 1024, optin_bytes=H100_OPTIN_BYTES) -> LaunchPlan:  # fmt: skip
    """csrc/cuda/soft_nms_kernels.cuh's plan_launch (what the CUDA launcher decides)."""
    plan = (ctypes.c_int64 * 4)()
    lib.soft_nms_plan(*_sizes(P, V), ctypes.c_int(labels), ctypes.c_int(multiprocessors),
                      *_sizes(static_bytes, default_bytes, optin_bytes), plan)  # fmt: skip
    return LaunchPlan(int(plan[0]), int(plan[1]), bool(plan[2]), bool(plan[3]))


# --------------------------------------------------------------------------------------------
# 1D RoIAlign (roi_align_1d_emulated.cpp)

# The kernel codes of roi_align_1d_plan, and the kernel names rcl_kernels/_roi_align_1d_launch.py
# gives them.
ROI_ALIGN_1D_KERNELS = {"forward_kernel": 0, "input_grad_atomic_kernel": 1, "input_grad_rows_kernel": 2,
                        "rois_grad_kernel": 3}


def roi_align_1d_plan(lib, kernel: str, B, C, T, R, P) -> tuple[int, int]:
    """(blocks, threads) of csrc/cuda/roi_align_1d_kernels.cuh's plan for `kernel`."""
    plan = (ctypes.c_int64 * 2)()
    lib.roi_align_1d_plan(ctypes.c_int(ROI_ALIGN_1D_KERNELS[kernel]), *_sizes(B, C, T, R, P), plan)
    return int(plan[0]), int(plan[1])


def roi_align_1d_forward(lib, features, rois, P, scale, sampling_ratio, aligned, *, max_blocks=1 << 30):
    """The emulated CUDA forward on float32 / float64 (B, C, T) features and (R, 3) rois."""
    B, C, T = features.shape
    f = features.contiguous()
    r = rois.to(f.dtype).contiguous()
    out = torch.full((r.shape[0], C, P), 12345.0, dtype=f.dtype)  # every entry must be overwritten
    entry = lib.roi_align_1d_forward_f64 if f.dtype == torch.float64 else lib.roi_align_1d_forward_f32
    entry(_ptr(f), _ptr(r), _ptr(out), *_sizes(B, C, T, r.shape[0], P), ctypes.c_double(scale),
          ctypes.c_int64(sampling_ratio), ctypes.c_int(aligned), ctypes.c_int64(max_blocks))  # fmt: skip
    return out


def roi_align_1d_backward(lib, grad_output, features, rois, P, scale, sampling_ratio, aligned, *,
                          deterministic=False, need=(True, True), max_blocks=1 << 30):  # fmt: skip
    """The emulated CUDA backward: (grad_features, grad_rois), zero where not wanted."""
    B, C, T = features.shape
    f = features.contiguous()
    r = rois.to(f.dtype).contiguous()
    g = grad_output.to(f.dtype).contiguous()
    grad_f = torch.zeros_like(f)
    grad_r = torch.zeros((r.shape[0], 3), dtype=f.dtype)
    entry = lib.roi_align_1d_backward_f64 if f.dtype == torch.float64 else lib.roi_align_1d_backward_f32
    entry(_ptr(g), _ptr(f), _ptr(r), _ptr(grad_f), _ptr(grad_r), *_sizes(B, C, T, r.shape[0], P),
          ctypes.c_double(scale), ctypes.c_int64(sampling_ratio), ctypes.c_int(aligned), ctypes.c_int(deterministic),
          ctypes.c_int(need[0]), ctypes.c_int(need[1]), ctypes.c_int64(max_blocks))  # fmt: skip
    return grad_f, grad_r


# --------------------------------------------------------------------------------------------
# The C++ CPU kernels as a sanitized operator library


def build_sanitized_cpu_ops(directory: pathlib.Path) -> pathlib.Path:
    """csrc's schema file(s) and csrc/cpu/*.cpp built with the sanitizers into one library for
    torch.ops.load_library (not importable next to rcl_kernels._C: both register the ops).
    The compiler is called directly (torch.utils.cpp_extension.load would load the library
    into this process, which has no sanitizer runtime). Sources compile in parallel."""
    from torch.utils.cpp_extension import include_paths, library_paths

    sources = [s for s in sorted((ROOT / "csrc").glob("*.cpp")) if s.name != "python_module.cpp"]
    sources += sorted((ROOT / "csrc" / "cpu").glob("*.cpp"))
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
    flags = ["-std=c++20", "-O1", "-ffp-contract=off", "-fPIC", "-fopenmp", abi, f"-I{ROOT / 'csrc'}", *SANITIZE_FLAGS]
    flags += [f"-isystem{p}" for p in include_paths()]
    objects, jobs = [], []
    for source in sources:
        obj = directory / f"{source.parent.name}_{source.stem}.o"
        objects.append(obj)
        jobs.append(subprocess.Popen([compiler(), *flags, "-c", str(source), "-o", str(obj)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))  # fmt: skip
    for source, job in zip(sources, jobs):
        log, _ = job.communicate()
        if job.returncode != 0:
            raise RuntimeError(f"compiling {source} failed:\n{log}")
    lib = directory / "rcl_kernels_sanitized_ops.so"
    libs = [f"-L{p}" for p in library_paths()] + [f"-Wl,-rpath,{p}" for p in library_paths()]
    cmd = [compiler(), "-shared", "-fopenmp", *SANITIZE_FLAGS[:1], *map(str, objects), "-o", str(lib), *libs,
           "-lc10", "-ltorch_cpu"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"linking the sanitized CPU kernels failed:\n{result.stderr}")
    return lib
