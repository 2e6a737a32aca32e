"""Memcheck and racecheck without a GPU.

- AddressSanitizer + UndefinedBehaviorSanitizer: the emulated CUDA kernels (SoI forward, every
  backward variant, Soft-NMS on both memory paths) and the C++ CPU kernels, built with
  -fsanitize=address,undefined (tests/cuda_emulation/kernels.py), run over the edge corpus
  (tests/cuda_emulation/edge_corpus.py) in a Python process that preloads the sanitizer
  runtimes (tests/cuda_emulation/sanitized_corpus.py). Any report aborts it and fails here. Two
  probes show that the checking is live: a features buffer one element short, and a signed
  overflow.
- ThreadSanitizer: the kernels that share memory between threads (Soft-NMS's block argmax, the
  SoI backward's shared-memory slab) on one OS thread per CUDA thread, in a standalone driver
  (tests/tsan/racecheck.cpp; TSan cannot be loaded into Python). Zero reports, and a mutant with
  the argmax's result barrier removed must be reported.

Linux with GCC's sanitizer runtimes only; skipped elsewhere, except where RCL_REQUIRE_SANITIZERS=1
(CI sets it), where a missing runtime fails.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import subprocess
import sys

import pytest
from cuda_emulation import kernels as emulation

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "cuda_emulation" / "sanitized_corpus.py"
REPORT_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "WARNING: ThreadSanitizer", "ERROR: LeakSanitizer")


def skip_unless_required(reason: str) -> None:
    if os.environ.get("RCL_REQUIRE_SANITIZERS") == "1":
        pytest.fail(f"RCL_REQUIRE_SANITIZERS=1 but {reason}")
    pytest.skip(reason)


def runtime(name: str) -> str | None:
    """Path of GCC's sanitizer runtime `name` (e.g. libasan.so), or None."""
    if emulation.compiler() is None or not sys.platform.startswith("linux"):
        return None
    path = subprocess.run([emulation.compiler(), f"-print-file-name={name}"], capture_output=True, text=True).stdout
    path = path.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def asan_build(tmp_path_factory):
    preload = [runtime("libasan.so"), runtime("libubsan.so")]
    if None in preload:
        skip_unless_required("GCC's libasan / libubsan not found")
    directory = tmp_path_factory.mktemp("sanitized")
    for stem in ("segment_interp_emulated", "soft_nms_emulated"):
        emulation.build(stem, directory, sanitize=True)
    return directory, emulation.build_sanitized_cpu_ops(directory), " ".join(preload)


def run_sanitized(build, *extra) -> subprocess.CompletedProcess:
    directory, ops, preload = build
    env = dict(os.environ, LD_PRELOAD=preload, ASAN_OPTIONS="detect_leaks=0", UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([sys.executable, str(CORPUS), str(directory), str(ops), *extra], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def reports(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if any(m in line for m in REPORT_MARKERS)]


def test_every_kernel_over_the_edge_corpus_is_clean_under_asan_and_ubsan(asan_build):
    result = run_sanitized(asan_build)
    assert result.returncode == 0 and not reports(result), result.stdout + result.stderr[-20000:]
    print(result.stdout)
    counts = dict(line.rsplit(": ", 1) for line in result.stdout.splitlines() if line.endswith(" cases"))
    # Every kernel ran, on both Soft-NMS paths and on every SoI backward variant.
    for kernel in ("soft_nms cpu", "soft_nms cuda (shared memory)", "soft_nms cuda (global memory)",
                   "segment_interp cuda forward", "segment_interp cuda backward (both)",
                   "segment_interp cuda backward (both, slab)", "segment_interp cuda backward (features)",
                   "segment_interp cuda backward (features, slab)", "segment_interp cuda backward (segments)",
                   "segment_interp cpu forward + backward", "roi_align_1d cpu forward + backward",
                   "score_anchors_hidden cpu"):  # fmt: skip
        assert int(counts.get(kernel, "0 cases").split()[0]) > 0, kernel


def test_asan_reports_a_buffer_one_element_short(asan_build):
    result = run_sanitized(asan_build, "--short-buffer")
    assert result.returncode != 0, result.stdout
    assert "heap-buffer-overflow" in result.stderr and "READ of size 4" in result.stderr, result.stderr[-5000:]
    assert "segment_interp_kernels.cuh" in result.stderr


def test_ubsan_is_live_and_fatal(asan_build):
    directory, _, preload = asan_build
    code = (f"import ctypes; lib = ctypes.CDLL({str(directory / 'segment_interp_emulated.so')!r}); "
            "lib.sanitizer_probe_signed_overflow(1); print('no report')")  # fmt: skip
    env = dict(os.environ, LD_PRELOAD=preload, ASAN_OPTIONS="detect_leaks=0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "signed integer overflow" in result.stderr, result.stdout + result.stderr


def test_probe_is_harmless_without_overflow(tmp_path):
    if emulation.compiler() is None:
        pytest.skip("no C++ compiler")
    lib = ctypes.CDLL(str(emulation.build("segment_interp_emulated", tmp_path)))
    assert lib.sanitizer_probe_signed_overflow(-5) == 2**31 - 6


# --------------------------------------------------------------------------------------------
# ThreadSanitizer

RACECHECK = ROOT / "tests" / "tsan" / "racecheck.cpp"
MUTANT = "-DRCL_ARGMAX_RESULT_BARRIER()="  # block_argmax without the barrier that publishes its result


def build_racecheck(directory: pathlib.Path, *defines: str) -> pathlib.Path:
    exe = directory / ("racecheck_mutant" if defines else "racecheck")
    cmd = [emulation.compiler(), *emulation.BASE_FLAGS, "-g", "-fsanitize=thread", *defines, *emulation.INCLUDES,
           str(RACECHECK), "-o", str(exe)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return exe


def run_racecheck(exe: pathlib.Path) -> subprocess.CompletedProcess:
    # Some kernels place mappings where TSan's fixed memory layout expects none; without address
    # randomisation (setarch -R) it always starts.
    setarch = ["setarch", os.uname().machine, "-R"] if subprocess.run(
        ["setarch", os.uname().machine, "-R", "true"], capture_output=True).returncode == 0 else []  # fmt: skip
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=0 exitcode=66")
    return subprocess.run([*setarch, str(exe)], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tsan_dir(tmp_path_factory):
    if runtime("libtsan.so") is None:
        skip_unless_required("GCC's libtsan not found")
    return tmp_path_factory.mktemp("tsan")


def test_shared_memory_kernels_are_race_free_under_tsan(tsan_dir):
    result = run_racecheck(build_racecheck(tsan_dir))
    assert result.returncode == 0 and not reports(result), result.stdout + result.stderr[-20000:]
    assert "0 failures" in result.stdout
    print(result.stdout)


def test_tsan_catches_a_missing_barrier(tsan_dir):
    result = run_racecheck(build_racecheck(tsan_dir, MUTANT))
    assert result.returncode == 66, result.stdout + result.stderr[-5000:]
    assert "WARNING: ThreadSanitizer: data race" in result.stderr
    assert "block_argmax" in result.stderr
