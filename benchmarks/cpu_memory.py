"""Peak extra host memory of one call, for CPU rows (common.measure reports device memory on CUDA
only).

Linux only: the peak resident set (VmHWM) is reset by writing 5 to /proc/self/clear_refs, and
read back after the call; the extra peak is VmHWM minus the resident set before the call. The
benchmark runner keeps freed heap memory resident (rcl_kernels.keep_freed_memory(), as the
commands do), which would hide later allocations, so while the measured call runs, large
allocations are pinned to fresh mmaps (M_MMAP_THRESHOLD = 128 KiB, fresh_pages()) and go back to
the system when freed. Pages never written are never resident: a tensor made by torch.empty and
not filled costs nothing here, which is the memory the machine really needs.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import replace
from typing import Callable, Iterator

from common import BenchConfig, Timing, try_measure

from rcl_kernels._freed_memory import keep_freed_memory, serve_large_blocks_by_mmap


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def fresh_pages() -> Iterator[bool]:
    """Within the block, every allocation over 128 KiB is a fresh mmap (faulted in on first
    touch, unmapped at free), as under glibc's defaults; after it, freed memory is kept again
    (rcl_kernels.keep_freed_memory()). Yields False where malloc cannot be told (not glibc)."""
    pinned = serve_large_blocks_by_mmap(128 * 1024)
    try:
        yield pinned
    finally:
        if pinned:
            keep_freed_memory()


def cpu_peak_mib(fn: Callable[[], object]) -> float | None:
    """Peak resident memory added while fn() runs, in MiB (None where it cannot be measured)."""
    gc.collect()
    with fresh_pages() as pinned:
        if not pinned:
            return None
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            return None
        before = _status_kib("VmRSS:")
        result = fn()
        peak = _status_kib("VmHWM:")
        del result
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024


def try_measure_with_memory(fn: Callable[[], object], cfg: BenchConfig, **kw) -> tuple[Timing | None, str | None]:
    """common.try_measure, plus the peak extra host memory of one call on the CPU."""
    timing, skipped = try_measure(fn, cfg, **kw)
    if timing is None or cfg.is_cuda:
        return timing, skipped
    return replace(timing, peak_mib=cpu_peak_mib(fn)), None
