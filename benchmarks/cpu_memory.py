"""Peak extra host memory of one call, for CPU rows (common.measure reports device memory on CUDA
only).

Linux only: the peak resident set (VmHWM) is reset by writing 5 to /proc/self/clear_refs, and
read back after the call; the extra peak is VmHWM minus the resident set before the call. glibc
keeps freed heap blocks resident, which would hide later allocations, so large allocations are
pinned to mmap (M_MMAP_THRESHOLD = 128 KiB, which also stops glibc from raising the threshold)
and go back to the system when freed. Pages never written are never resident: a tensor made by
torch.empty and not filled costs nothing here, which is the memory the machine really needs.
"""

from __future__ import annotations

import ctypes
import gc
from dataclasses import replace
from typing import Callable

from common import BenchConfig, Timing, try_measure

_M_MMAP_THRESHOLD = -3


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _pin_large_allocations_to_mmap() -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024))
    except (OSError, AttributeError):
        return False


_READY = _pin_large_allocations_to_mmap()


def cpu_peak_mib(fn: Callable[[], object]) -> float | None:
    """Peak resident memory added while fn() runs, in MiB (None where it cannot be measured)."""
    if not _READY:
        return None
    gc.collect()
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
