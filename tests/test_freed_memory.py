"""rcl_kernels.keep_freed_memory(): large tensors made again reuse resident pages (counted as
minor page faults, never timed), and the command line entry points apply it before any work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import rcl_kernels
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


# The CPU kernels' large outputs come from plain malloc (csrc/cpu/heap_reusing_allocation.h):
# a block freed by one call is exactly what the next call of the same shape asks for, even when
# something allocated after it keeps it from merging with the rest of the free heap (torch's
# aligned requests ask for a little more, so they would take fresh pages there). Printed: whether
# each op's second output landed in its first one's block.
OUTPUT_REUSE = textwrap.dedent("""
    import torch
    import rcl_kernels
    assert rcl_kernels.keep_freed_memory()
    ops = rcl_kernels.ops
    features, segments = torch.randn(2, 32, 100), torch.rand(2, 5000, 2).sort(-1).values * 99
    rois = torch.cat([torch.zeros(4000, 1), segments[0, :4000]], 1)
    projected = torch.randn(1, 1, 100, 16, 8)
    calls = {
        "segment_interp": lambda: torch.ops.rcl_kernels.segment_interp(features, segments, 32, 3, 0.5, "bmn"),
        "roi_align_1d": lambda: torch.ops.rcl_kernels.roi_align_1d(features, rois, 64, 1.0, 2, True),
        "score_anchors_hidden": lambda: torch.ops.rcl_kernels.score_anchors_hidden(
            projected, segments[:1] % 99, torch.zeros(1, 5000, 3), torch.zeros(3, 8), torch.zeros(8),
            8, 16, 1, 0.0, "zeros", True),
    }
    for name, call in calls.items():
        first = call()
        address = first.data_ptr()
        assert address % 64 == 0 and first.is_contiguous()
        later = torch.empty(50_000)  # allocated after the output: the freed block cannot merge upwards
        del first
        second = call()
        print(name, second.data_ptr() == address)
        del second, later
""")


@needs_glibc
@pytest.mark.skipif(not rcl_kernels._extension.has_kernel("segment_interp", "CPU"), reason="CPU kernels not built")
def test_kernel_outputs_reuse_the_block_their_last_call_freed():
    done = subprocess.run([sys.executable, "-c", OUTPUT_REUSE], capture_output=True, text=True, check=True)
    reused = dict(line.split() for line in done.stdout.splitlines())
    assert reused == {"segment_interp": "True", "roi_align_1d": "True", "score_anchors_hidden": "True"}


@pytest.mark.skipif(not rcl_kernels._extension.has_kernel("segment_interp", "CPU"), reason="CPU kernels not built")
def test_kernel_outputs_are_ordinary_resizable_tensors():
    features, segments = torch.randn(1, 4, 10), torch.tensor([[[1.0, 5.0], [2.0, 8.0]]])
    out = torch.ops.rcl_kernels.segment_interp(features, segments, 3, 1, 0.0, "zeros")
    expected = out.clone()
    assert out.data_ptr() % 64 == 0 and out.is_contiguous() and out.dtype == torch.float32
    out.resize_(4, 2, 4, 3)  # a larger storage from the same allocator, the old values first
    torch.testing.assert_close(out[:1], expected, rtol=0, atol=0)
    assert torch.ops.rcl_kernels.segment_interp(features, segments[:, :0], 3, 1, 0.0, "zeros").shape == (1, 0, 4, 3)


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
