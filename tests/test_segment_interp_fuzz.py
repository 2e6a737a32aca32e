"""Property-based fuzzing of SoI (rcl_kernels.segment_interp): every backend on this machine
(reference, the C++ cpu kernel, Triton under the interpreter at small sizes) against the float64
reference, forward and gradients, over sizes (empty, 1, odd), dtypes, paddings, context,
samples_per_point, strided layouts and extreme coordinates (NaN, +-inf, 1e30, 3e38, integers,
reversed, zero-length and very short segments).

The comparison is tests/fuzz_inputs.py's assert_close_where_defined: the NaN pattern of the
same-dtype reference, and elsewhere tests/tolerances.py's bound.

Budget: the hypothesis profile of tests/conftest.py ("ci": fixed examples; RCL_FUZZ_EXAMPLES=N
for N random ones per test; the Triton test runs a fifth of it)."""

from __future__ import annotations

import math

import pytest
import torch
from fuzz_inputs import assert_close_where_defined, segment, size, with_layout
from hypothesis import given, settings
from hypothesis import strategies as st

import rcl_kernels
from rcl_kernels._vocabulary import PADDINGS
from rcl_kernels.ops.segment_interp import SEGMENT_INTERP_BACKENDS
from rcl_kernels.reference.segment_interp import segment_interp_reference

CPU_BACKENDS = [b for b in SEGMENT_INTERP_BACKENDS.available("cpu") if b != "triton"]
TRITON_OK = "triton" in SEGMENT_INTERP_BACKENDS.available("cpu")
FEATURE_TYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
FEATURE_LAYOUTS = ("contiguous", "channels_last", "strided_time")
SEGMENT_LAYOUTS = ("contiguous", "planes", "strided")
TRITON_EXAMPLES = max(1, settings.default.max_examples // 5)

@st.composite
def soi_problems(draw, *, small: bool):
    """Sizes, sampling options, layouts and inputs of one SoI call."""
    B = draw(size(2 if small else 3))
    C = draw(size(4 if small else 6))
    T = draw(st.integers(1, 9 if small else 13))
    K = draw(size(5 if small else 7))
    options = dict(
        num_samples=draw(st.integers(1, 4 if small else 6)),
        samples_per_point=draw(st.integers(1, 3 if small else 4)),
        context=draw(st.one_of(st.sampled_from([0.0, 0.5]), st.floats(0, 2))),
        padding=draw(st.sampled_from(PADDINGS)),
    )
    pairs = draw(st.lists(segment(T, extreme=draw(st.booleans())), min_size=B * K, max_size=B * K))
    segments = torch.tensor(pairs, dtype=torch.float64).reshape(B, K, 2)
    segments = segments.to(draw(st.sampled_from([torch.float32, torch.float64])))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    features = torch.randn(B, C, T, generator=gen, dtype=torch.float64) * draw(st.sampled_from([1.0, 100.0]))
    layouts = (draw(st.sampled_from(FEATURE_LAYOUTS)), draw(st.sampled_from(SEGMENT_LAYOUTS)))
    return features, segments, options, layouts


def output_and_grads(fn, features, segments, grad_out):
    f = features.detach().clone().requires_grad_(grad_out is not None)
    s = segments.detach().clone().requires_grad_(grad_out is not None)
    out = fn(f, s)
    if grad_out is None or out.numel() == 0:
        return out, None
    return out, torch.autograd.grad(out, (f, s), grad_out.to(out.dtype))


def check_backend(backend, problem, dtype, with_grads, seed):
    features, segments, options, (feature_layout, segment_layout) = problem
    B, C, T = features.shape
    K = segments.shape[1]
    N, S = options["num_samples"], options["samples_per_point"]
    context, padding = options["context"], options["padding"]
    grad_out = torch.randn(B, K, C, N, generator=torch.Generator().manual_seed(seed)) if with_grads else None

    def ours_fn(f, s):
        return rcl_kernels.segment_interp(with_layout(f, feature_layout), with_layout(s, segment_layout), N,
                                          samples_per_point=S, context=context, padding=padding, backend=backend)

    def reference_fn(f, s):
        return segment_interp_reference(f, s, N, S, context, padding)

    ours, our_grads = output_and_grads(ours_fn, features.to(dtype), segments, grad_out)
    exact, exact_grads = output_and_grads(reference_fn, features, segments.double(), grad_out)
    same, same_grads = output_and_grads(reference_fn, features.to(dtype), segments, grad_out)
    assert ours.shape == (B, K, C, N) and ours.dtype == dtype
    # The floors are for values of order 1; features are drawn up to 100. (This matters for Triton
    # in the interpreter, whose implicit float32 -> bfloat16 casts truncate (triton 3.8,
    # interpreter.py's cast_impl passes no rounding mode), 1 ulp where the GPU rounds to nearest.)
    magnitude = max(1.0, features.abs().max().item()) if features.numel() else 1.0
    assert_close_where_defined(ours, exact, same, dtype, scale=magnitude, what=f"{backend} forward")
    if our_grads is None:
        return
    assert our_grads[0].dtype == dtype and our_grads[1].dtype == segments.dtype
    assert_close_where_defined(our_grads[0], exact_grads[0], same_grads[0], dtype, scale=magnitude * math.sqrt(K * N * S),
                               what=f"{backend} grad features")
    assert_close_where_defined(our_grads[1], exact_grads[1], same_grads[1], dtype,
                               scale=magnitude * math.sqrt(C * N * S) * T * (1 + 2 * context),
                               what=f"{backend} grad segments")


@given(soi_problems(small=False), st.sampled_from(FEATURE_TYPES), st.booleans(), st.integers(0, 2**16))
def test_cpu_backends_match_float64_reference(problem, dtype, with_grads, seed):
    for backend in CPU_BACKENDS:
        check_backend(backend, problem, dtype, with_grads, seed)


@pytest.mark.skipif(not TRITON_OK, reason="Triton cannot run here")
@pytest.mark.filterwarnings("ignore:invalid value encountered", "ignore:overflow encountered")  # numpy on inf
@settings(max_examples=TRITON_EXAMPLES)
@given(soi_problems(small=True), st.sampled_from(FEATURE_TYPES), st.booleans(), st.integers(0, 2**16))
def test_triton_matches_float64_reference(problem, dtype, with_grads, seed):
    check_backend("triton", problem, dtype, with_grads, seed)
