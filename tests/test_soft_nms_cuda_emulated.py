"""The CUDA Soft-NMS kernel (csrc/cuda/soft_nms_kernels.cuh) run on the CPU through
tests/cuda_emulation, thread by thread with its warp shuffles and block barriers, against the
CPU kernel: every output equal bit for bit, on the shared-memory path and on the
global-memory path, over tests/cuda_emulation/edge_corpus.py. And the launcher's plan (threads,
shared memory, opt-in) for every P around the shared-memory limits."""

from __future__ import annotations

import ctypes

import pytest
import torch
from cuda_emulation import kernels as emulation
from cuda_emulation.edge_corpus import large_case, soft_nms_cases

from rcl_kernels._extension import has_kernel

CASES = soft_nms_cases()
STATIC_BYTES = emulation.STATIC_BYTES


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if emulation.compiler() is None:
        pytest.skip("no C++ compiler for the CUDA emulation")
    return ctypes.CDLL(str(emulation.build("soft_nms_emulated", tmp_path_factory.mktemp("cuda_emulation"))))


def cpu_kernel(case):
    return torch.ops.rcl_kernels.soft_nms.default(*case.op_args())


def assert_emulated_matches_cpu(lib, case, *, optin_bytes, expect_global):
    if not has_kernel("soft_nms", "CPU"):
        pytest.skip("the C++ CPU kernel was not built")
    got = emulation.soft_nms(lib, case.segments, case.scores, case.labels, case.lengths, **case.kw,
                             multiprocessors=case.multiprocessors, optin_bytes=optin_bytes)  # fmt: skip
    want = cpu_kernel(case)
    assert got.global_memory == expect_global
    for name, g, w in zip(("segments", "scores", "labels", "indices", "counts"), got, want):
        assert emulation.same_bits(g, w), f"{case.name}: {name} differ\nemulated cuda {g}\ncpu {w}"


def _shared_fits(case) -> bool:
    bytes_ = case.scores.shape[1] * (12 + (8 if case.labels is not None else 0))
    return STATIC_BYTES + bytes_ <= emulation.H100_OPTIN_BYTES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_emulated_cuda_matches_cpu_kernel(lib, case):
    """The launch as an H100 / H200 plans it: shared memory where the candidates fit."""
    assert_emulated_matches_cpu(
        lib, case, optin_bytes=emulation.H100_OPTIN_BYTES, expect_global=not _shared_fits(case)
    )


SMALL = [c for c in CASES if c.scores.shape[1] <= 2048]


@pytest.mark.parametrize("case", SMALL, ids=[c.name for c in SMALL])
def test_emulated_cuda_global_memory_path_matches_cpu_kernel(lib, case):
    """No shared memory at all (opt-in limit 0): the candidates live in the global scratch."""
    assert_emulated_matches_cpu(lib, case, optin_bytes=0, expect_global=True)


def test_corpus_reaches_both_sides_of_the_capacity(lib):
    sides = {_shared_fits(c) for c in CASES if c.scores.shape[1] > 10_000}
    assert sides == {True, False}


# --------------------------------------------------------------------------------------------
# The launch plan (csrc/cuda/soft_nms_kernels.cuh, plan_launch), as the CUDA launcher calls it.


def assert_valid_plan(plan, P, labels, *, static_bytes=STATIC_BYTES, default_bytes=48 * 1024,
                      optin_bytes=emulation.H100_OPTIN_BYTES):  # fmt: skip
    needed = P * (12 + (8 if labels else 0))
    assert plan.threads % 32 == 0 and 32 <= plan.threads <= 1024
    if plan.global_scratch:
        assert static_bytes + needed > optin_bytes and plan.dynamic_bytes == 0, (P, plan)
    else:
        assert plan.dynamic_bytes == needed, (P, plan)
    total = static_bytes + plan.dynamic_bytes
    # Without opting in a launch may use static + dynamic <= the default limit; with, the
    # dynamic part may be raised to the opt-in limit minus the static part.
    assert total <= optin_bytes, (P, plan)
    assert plan.opt_in == (total > default_bytes), (P, plan)


@pytest.mark.parametrize("labels,P_range", [(False, range(4060, 4110)), (True, range(2435, 2470))])
def test_launch_plan_at_the_default_shared_memory_limit(lib, labels, P_range):
    """Issue 16: the old gate compared the dynamic bytes alone with 48 KiB, so P = 4074..4096
    (2445..2457 with labels) launched without opting in and failed."""
    for P in P_range:
        plan = emulation.soft_nms_plan(lib, P, 3, labels)
        assert_valid_plan(plan, P, labels)
        if P in range(4074, 4097) or (labels and P in range(2445, 2458)):
            assert plan.opt_in and not plan.global_scratch


@pytest.mark.parametrize("labels", [False, True])
def test_launch_plan_every_P_up_to_the_global_memory_path(lib, labels):
    last_shared = (emulation.H100_OPTIN_BYTES - STATIC_BYTES) // (12 + (8 if labels else 0))
    for P in [*range(0, 40), *range(last_shared - 40, last_shared + 40), 10**6, 2**31 - 1]:
        for V, sms in ((1, 132), (2000, 132), (5, 1)):
            plan = emulation.soft_nms_plan(lib, P, V, labels, multiprocessors=sms)
            assert_valid_plan(plan, P, labels)
            assert plan.global_scratch == (P > last_shared)


def test_launch_plan_other_devices(lib):
    """A100 (163 KiB opt-in), an sm_86 card (99 KiB), and a larger static part."""
    for optin in (166_912, 101_376):
        for static in (0, 272, 4096):
            for P in range(1, 20_000, 7):
                plan = emulation.soft_nms_plan(lib, P, 1, True, static_bytes=static, optin_bytes=optin)
                assert_valid_plan(plan, P, True, static_bytes=static, optin_bytes=optin)


def test_static_shared_bytes_cover_the_argmax_scratch(lib):
    """The device build's static shared memory (ptxas: 272 bytes) is the argmax scratch struct,
    rounded up; the plan is tested with that number."""
    assert 0 < lib.soft_nms_static_shared_bytes() <= STATIC_BYTES


# --------------------------------------------------------------------------------------------
# On the GPU: the same boundaries through the real launch, and a second device.


def _cuda_vs_cpu(segments, scores, labels, *, top_k, device="cuda"):
    args = ("gaussian", 0.5, 0.1, 0.001, top_k, False, 0.0, 0.0)
    want = torch.ops.rcl_kernels.soft_nms.default(segments, scores, labels, None, *args)
    on = [t.to(device) if t is not None else None for t in (segments, scores, labels)]
    got = torch.ops.rcl_kernels.soft_nms.default(*on, None, *args)
    for name, g, w in zip(("segments", "scores", "labels", "indices", "counts"), got, want):
        assert g.device == torch.device(device)
        assert emulation.same_bits(g.cpu(), w), f"P = {scores.shape[1]}: {name} differ"


def _require_cuda_kernel():
    if not (torch.cuda.is_available() and has_kernel("soft_nms", "CUDA") and has_kernel("soft_nms", "CPU")):
        pytest.skip("needs the CUDA and CPU kernels and a GPU")


@pytest.mark.gpu
@pytest.mark.parametrize("labelled", [False, True])
def test_gpu_launches_at_every_shared_memory_boundary(labelled):
    """P on both sides of the 48 KiB default limit and of the device's opt-in capacity."""
    _require_cuda_kernel()
    per = 12 + (8 if labelled else 0)
    optin = getattr(torch.cuda.get_device_properties(0), "shared_memory_per_block_optin", emulation.H100_OPTIN_BYTES)
    default_edge = (48 * 1024 - STATIC_BYTES) // per
    capacity_edge = (optin - STATIC_BYTES) // per
    sizes = [default_edge, default_edge + 1, 4074, 4096, 2445, 2457, capacity_edge, capacity_edge + 1]
    for P in sorted(set(sizes)):
        gen = torch.Generator().manual_seed(P)
        start = torch.rand(2, P, generator=gen) * 50
        segments = torch.stack([start, start + torch.rand(2, P, generator=gen) * 5], -1)
        scores = torch.rand(2, P, generator=gen)
        labels = torch.randint(0, 7, (2, P), generator=gen) if labelled else None
        _cuda_vs_cpu(segments, scores, labels, top_k=30)


@pytest.mark.gpu
def test_gpu_second_device():
    """Inputs on cuda:1 while cuda:0 is current: the kernel must run on the inputs' device."""
    _require_cuda_kernel()
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    case = next(c for c in CASES if c.name == "many-labels")
    with torch.cuda.device(0):
        _cuda_vs_cpu(case.segments, case.scores, case.labels, top_k=50, device="cuda:1")
        _cuda_vs_cpu(*large_case(20_000, False, top_k=10).op_args()[:3], top_k=10, device="cuda:1")
