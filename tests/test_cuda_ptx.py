"""The CUDA kernels as nvcc compiles them for sm_90 with the build's flags (tests/cuda_ptx.py):
no instruction flushes subnormals to zero.

Flush-to-zero (what --use_fast_math implies) acts on the GPU only, so neither the CPU emulation
of the kernels nor the CPU kernels can show it: Soft-NMS's tIoU of segments [0, 1e-39] and
[0, 1e-39] is 0 / 0 under .ftz (both kept by hard NMS at iou 0.5) and 1 without (one kept, as on
the CPU), and SoI / roi_align positions with subnormal inputs read other taps. The PTX shows it:
sub.rn.ftz.f32, setp.lt.ftz.f32, cvt.rzi.ftz.s32.f32. Skipped without nvcc, except where
FORCE_CUDA=1 (CI), where a missing nvcc fails.
"""

from __future__ import annotations

import os

import pytest

import cuda_ptx


@pytest.fixture(scope="module")
def modules() -> dict[str, str]:
    if cuda_ptx.nvcc() is None:
        if os.environ.get("FORCE_CUDA") == "1":
            pytest.fail("FORCE_CUDA=1 but no nvcc found (set CUDA_HOME)")
        pytest.skip("needs nvcc (CUDA toolkit)")
    return cuda_ptx.compile_all()


def test_build_flags_turn_off_flush_to_zero():
    flags = cuda_ptx.build_flags()
    assert "-ftz=false" in flags and "--use_fast_math" not in flags and "-use_fast_math" not in flags


def test_no_kernel_flushes_subnormals(modules):
    names = {"segment_interp_cuda", "soft_nms_cuda", "roi_align_1d_cuda"}
    assert names <= set(modules)
    flushing = {}
    for stem, ptx in modules.items():
        bodies = cuda_ptx.kernels(ptx)
        assert bodies, f"{stem}: no kernels in the PTX"
        # The check reads real float code: every module has float32 arithmetic and compares.
        assert any(".f32" in body for body in bodies.values()), stem
        for name, body in bodies.items():
            if found := cuda_ptx.ftz_instructions(body):
                flushing[name] = sorted(set(found))
    readable = cuda_ptx.demangle(flushing)
    assert not flushing, "\n".join(f"{readable[n]}: {', '.join(v)}" for n, v in flushing.items())


def test_ftz_detector_sees_flushing_instructions():
    body = "\tsub.rn.ftz.f32 \t%f3, %f2, %f1;\n\t@%p1 setp.lt.ftz.f32 \t%p2, %f3, %f4;\n\tadd.rn.f32 %f5, %f1, %f2;\n"
    assert cuda_ptx.ftz_instructions(body) == ["sub.rn.ftz.f32", "setp.lt.ftz.f32"]
