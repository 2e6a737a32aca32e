"""rcl_kernels.keep_freed_memory(): large tensors made again reuse resident pages (counted as
minor page faults, never timed), and the command line entry points apply it before any work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rcl_kernels import cli
from rcl_kernels.models import detect_command, train_command

needs_glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")

# A loop's allocations: each round makes tensors of 64, 12 and 36 MiB and 2.7 MB, fills them,
# computes one more and frees them all. Printed: the minor page faults of rounds 10 to 29. With
# freed memory kept, the early rounds still touch new heap pages (an aligned request is a little
# larger than the block freed before it, so glibc takes fresh space until freed neighbours
# coalesce), then the heap holds what a round needs and nothing faults.
LOOP_FAULTS = textwrap.dedent("""
    import resource, sys, torch
    import rcl_kernels
    if sys.argv[1] == "keep":
        assert rcl_kernels.keep_freed_memory()
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    sizes = [16 << 20, 3 << 20, 9 << 20, 700_000]
    for i in range(30):
        if i == 10:
            before = faults()
        xs = [torch.empty(n).fill_(i) for n in sizes]
        y = xs[0] * 2
        del xs, y
    print(faults() - before)
""")


def _loop_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", LOOP_FAULTS, mode], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


@needs_glibc
def test_freed_memory_is_reused_without_page_faults():
    round_pages = (2 * (64 << 20) + (12 << 20) + (36 << 20) + 2_800_000) // 4096
    assert _loop_faults("default") > 10 * round_pages  # 20 rounds of fresh mmaps: their pages fault in again
    # the freed blocks' pages, still resident: at most a late step of the heap's growth (one
    # 64 MiB block of new pages was seen once), against 20 rounds of faults under the defaults
    assert _loop_faults("keep") < round_pages


FRESH_AFTER_KEEP = textwrap.dedent("""
    import resource, torch
    from rcl_kernels import _freed_memory
    assert _freed_memory.keep_freed_memory()
    x = torch.empty(32 << 20).fill_(1)
    del x  # 128 MiB of free, resident heap: room for the 64 MiB below
    assert _freed_memory.serve_large_blocks_by_mmap()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    y = torch.empty(16 << 20).fill_(2)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


@needs_glibc
def test_fresh_pages_after_kept_memory_fault_in_again():
    """serve_large_blocks_by_mmap() (the benchmarks' fresh_pages()) gives fresh pages even where
    the heap holds a freed block large enough: its pages fault in on first touch."""
    done = subprocess.run([sys.executable, "-c", FRESH_AFTER_KEEP], capture_output=True, text=True, check=True)
    assert int(done.stdout.split()[-1]) > (64 << 20) // 4096 // 2


@pytest.mark.parametrize("entry", [
    lambda: cli.main(["detect", "--help"]),
    lambda: cli.main(["train", "--help"]),
    lambda: detect_command.main(["--help"]),
    lambda: train_command.main(["--help"]),
], ids=["cli detect", "cli train", "python/detect.py", "python/train.py"])
def test_entry_points_keep_freed_memory_before_parsing(monkeypatch, entry):
    calls = []
    for module in (cli, detect_command, train_command):
        monkeypatch.setattr(module, "keep_freed_memory", lambda: calls.append(1) or True)
    with pytest.raises(SystemExit):
        entry()
    assert calls
