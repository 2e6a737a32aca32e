"""Keep freed memory in the process, so that large CPU tensors made again and again (a batch's
features, SoI's output, score maps) reuse pages that are already resident instead of faulting
fresh ones in.

Why: torch's CPU allocator takes its memory from glibc's malloc (posix_memalign), and glibc
serves every block above its mmap threshold (128 KiB at first, raised at most to 32 MiB by its
dynamic rule) with a fresh mmap that it unmaps at free. Each first touch of a 4 KiB page of such
a block is a page fault in which the OS zeroes the page; a loop that allocates tens of MB per
step spends as much time in the kernel as in its own work (`rcl-kernels detect` on 10 THUMOS14
test videos on a 2-core AMD EPYC VM, 2026-12-02: 60 s wall, 44 s user, 58 s sys under glibc's
defaults; 25 s wall, 39 s user, 3.7 s sys with freed memory kept; benchmarks/bench_detect_command.py
measures it). With the settings
below, large blocks come from the heap, freed blocks stay there for the next allocation, and the
heap is never trimmed: the process keeps about its peak footprint (the pages are reused; the
heap grows by a few blocks more while torch's 64-byte-aligned requests find no freed block of
their size, until freed neighbours coalesce: glibc serves an aligned request only from a block a
little larger than asked; the package's CPU kernels take their outputs from plain malloc for that
reason, csrc/cpu/heap_reusing_allocation.h), which is what a training or detection loop wants.

The settings are glibc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD and M_TOP_PAD, the same as the
environment variables MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ and MALLOC_TOP_PAD_ (which
glibc reads only at start-up, hence this function). The command line (`rcl-kernels train`,
`detect`, python/train.py, python/detect.py) and the benchmark runner call it; a library user
who calls the ops from their own loop calls rcl_kernels.keep_freed_memory() once, early. Freed
memory is kept for allocations made from the main thread (glibc's main arena); a thread's own
arena serves blocks over 32 MiB with mmap regardless.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# Blocks up to 2 GiB - 1 (mallopt takes an int) come from the heap; the heap is trimmed only when
# 2 GiB - 1 are free at its top; it grows by at least 256 MiB beyond each request at a time.
KEEP_FREED_SETTINGS = {M_MMAP_THRESHOLD: 2**31 - 1, M_TRIM_THRESHOLD: 2**31 - 1, M_TOP_PAD: 256 << 20}


def _libc():
    """The C library this process runs on, or None. CDLL(None) opens the process's own symbols:
    no search (ctypes.util.find_library would spawn ldconfig, too slow for a CLI's start-up)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no mallopt (macOS, Windows): nothing to set
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return libc


def _mallopt(settings: dict[int, int]) -> bool:
    libc = _libc()
    return libc is not None and all(libc.mallopt(param, value) == 1 for param, value in settings.items())


def serve_large_blocks_by_mmap(threshold: int = 128 * 1024) -> bool:
    """Undo keep_freed_memory() for blocks above threshold bytes: each is a fresh mmap again,
    faulted in on first touch and unmapped at free (for measuring peak memory or fresh-page
    costs). The free memory the heap kept is given back first (malloc_trim): malloc serves a
    request from a free block of its heap before it considers the threshold, so without that a
    large block would still land on resident pages. Returns False where malloc cannot be told."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim(0)
    return _mallopt({M_MMAP_THRESHOLD: threshold})


def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed memory for reuse (see the module docstring).

    Call it once, before the loop that allocates (calling it again is harmless). Returns True
    where every setting was applied (glibc), False where the C library has no mallopt or refused
    one, or where the environment sets RCL_KEEP_FREED_MEMORY=0 (glibc's defaults are then left
    alone, for comparison or for a process that must give memory back); nothing changes for
    tensors allocated before the call.
    """
    if os.environ.get("RCL_KEEP_FREED_MEMORY") == "0":
        return False
    return _mallopt(KEEP_FREED_SETTINGS)
