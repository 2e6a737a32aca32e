"""rcl_kernels.nn.BoundaryMatching: BMN's BM layer via SoI, and its fused convolutions via
score_anchors, against the dense mask product with the mask built from BMN's published loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rcl_kernels.nn import BoundaryMatching
from rcl_kernels.ops.score_anchors import SCORE_ANCHORS_BACKENDS
from rcl_kernels.ops.segment_interp import SEGMENT_INTERP_BACKENDS
from rcl_kernels.reference.boundary_matching import bmn_sample_mask, boundary_matching_dense
from test_segment_interp import bmn_sample_mask as bmn_published_mask  # BMN's loop, from the paper's code

BACKENDS = [b for b in ("reference", "cpu") if b in SEGMENT_INTERP_BACKENDS.available("cpu")
            and b in SCORE_ANCHORS_BACKENDS.available("cpu")]


def published_mask(T: int, D: int, N: int, S: int, ratio: float) -> torch.Tensor:
    """BMN's (T, N, D, T) mask from its loop (built for D = T); durations >= T hold no cell."""
    mask = torch.from_numpy(bmn_published_mask(T, N, S, ratio))
    if D <= T:
        return mask[:, :, :D]
    return torch.cat([mask, mask.new_zeros(T, N, D - T, T)], dim=2)


@pytest.mark.parametrize("T,D,N,S,ratio", [(12, 12, 5, 3, 0.5), (9, 6, 4, 2, 0.25), (7, 10, 3, 3, 0.3)])
def test_vectorised_mask_equals_bmn_loop(T, D, N, S, ratio):
    torch.testing.assert_close(bmn_sample_mask(T, D, N, S, ratio, dtype=torch.float64),
                               published_mask(T, D, N, S, ratio), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T,D,N,S,ratio", [(12, 12, 5, 3, 0.5), (9, 6, 4, 2, 0.25), (7, 10, 3, 3, 0.3)])
def test_forward_equals_dense_mask_product(backend, T, D, N, S, ratio):
    x = torch.randn(2, 4, T, dtype=torch.float64)
    layer = BoundaryMatching(T, D, N, S, ratio, backend=backend)
    dense = boundary_matching_dense(x, published_mask(T, D, N, S, ratio))
    ours = layer(x)
    assert ours.shape == (2, 4, N, D, T)
    torch.testing.assert_close(ours, dense, rtol=0, atol=1e-12)
    d, s = torch.meshgrid(torch.arange(D), torch.arange(T), indexing="ij")
    assert torch.all(ours[:, :, :, s + d >= T] == 0), "cells with start + duration >= T are zero"
    # float32 as BMN runs it
    torch.testing.assert_close(layer(x.float()), dense.float(), rtol=1e-5, atol=1e-5)


def dense_convolutions(x, mask, w1, b1, w2, b2):
    """BMN's head on the dense map, as OpenTAD's BMNExtractor: Conv2d (N, 1) stride (N, 1) over the
    (B, C, N, D*T) map, ReLU, 1x1 Conv2d, ReLU."""
    bm = boundary_matching_dense(x, mask)
    B, C, N, D, T = bm.shape
    h = F.relu(F.conv2d(bm.flatten(3), w1.reshape(w1.shape[0], C, N, 1), b1, stride=(N, 1)))
    if w2 is None:
        return h.view(B, -1, D, T)
    return F.relu(F.conv2d(h, w2.reshape(w2.shape[0], -1, 1, 1), b2)).view(B, -1, D, T)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weight_dims", [3, 4, 5])
@pytest.mark.parametrize("pointwise", [True, False])
@pytest.mark.parametrize("method", ["score_anchors", "soi_linear"])
def test_project_equals_dense_convolutions(backend, weight_dims, pointwise, method):
    T, D, N, S, ratio, C, H, O = 11, 8, 4, 3, 0.5, 5, 7, 3
    x = torch.randn(2, C, T, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(H, C, N, *([1] * (weight_dims - 3)), dtype=torch.float64, requires_grad=True)
    b1 = torch.randn(H, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(O, H, 1, 1, dtype=torch.float64, requires_grad=True) if pointwise else None
    b2 = torch.randn(O, dtype=torch.float64, requires_grad=True) if pointwise else None
    layer = BoundaryMatching(T, D, N, S, ratio, backend=backend, project_method=method)
    ours = layer.project(x, w1, b1, w2, b2)
    expected = dense_convolutions(x, published_mask(T, D, N, S, ratio), w1, b1, w2, b2)
    assert ours.shape == (2, O if pointwise else H, D, T)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)
    params = [t for t in (x, w1, b1, w2, b2) if t is not None]
    grad_out = torch.randn_like(ours)
    g_ours = torch.autograd.grad(ours, params, grad_out)
    g_dense = torch.autograd.grad(expected, params, grad_out)
    for a, b in zip(g_ours, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_project_float32_and_more_cells_than_one_call(monkeypatch):
    """project() scores the cells in chunks (one score_anchors call each): the chunks must line up."""
    import rcl_kernels.nn.boundary_matching as module

    monkeypatch.setattr(module, "_CELLS_PER_CALL", 700)  # 2080 cells: three calls, the last one partial
    monkeypatch.setattr(module, "_CELLS_PER_SOI_CALL", 900)
    T, N, S, C, H, O = 64, 8, 3, 6, 16, 4
    x = torch.randn(1, C, T)
    w1, b1 = torch.randn(H, C, N, 1) * 0.2, torch.randn(H)
    w2, b2 = torch.randn(O, H, 1, 1) * 0.2, torch.randn(O)
    expected = dense_convolutions(x.double(), published_mask(T, T, N, S, 0.5), w1.double(), b1.double(),
                                  w2.double(), b2.double())
    for method in ("score_anchors", "soi_linear"):
        layer = BoundaryMatching(T, num_sample=N, num_sample_perbin=S, project_method=method)
        torch.testing.assert_close(layer.project(x, w1, b1, w2, b2).double(), expected, rtol=1e-4, atol=1e-4)


def test_layer_has_no_state_and_moves_with_the_module():
    layer = BoundaryMatching(10, num_sample=4)
    assert layer.state_dict() == {} and list(layer.parameters()) == []
    x = torch.randn(1, 2, 10, dtype=torch.float64)
    torch.testing.assert_close(layer.half()(x), layer(x))  # the cell geometry is not rounded by .half()
    assert "temporal_scale=10" in repr(layer)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temporal_scale=0), "temporal_scale"),
        (dict(duration_scale=1.5), "duration_scale"),
        (dict(num_sample=0), "num_sample"),
        (dict(num_sample_perbin=True), "num_sample_perbin"),
        (dict(prop_boundary_ratio=-0.1), "prop_boundary_ratio"),
        (dict(prop_boundary_ratio=float("nan")), "prop_boundary_ratio"),
        (dict(project_method="dense"), "project_method"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, match):
    args = dict(temporal_scale=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        BoundaryMatching(**args)


def test_bad_call_arguments_name_the_argument():
    layer = BoundaryMatching(8, num_sample=4)
    with pytest.raises(ValueError, match="temporal_scale = 8"):
        layer(torch.randn(1, 3, 9))
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="weight must have shape"):
        layer.project(x, torch.randn(5, 3, 3))
    with pytest.raises(ValueError, match="pointwise_weight must have shape"):
        layer.project(x, torch.randn(5, 3, 4), None, torch.randn(2, 4))


def saved_bytes(fn) -> tuple[object, int]:
    """fn()'s result and the bytes of distinct storages autograd saved for its backward."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values())


@pytest.mark.parametrize("project_method", ["soi_linear", "score_anchors"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_project_keeps_at_most_one_chunk_for_the_backward(backend, project_method):
    """project runs in chunks of cells (1024 per SoI call for "soi_linear", 2048 per score_anchors
    call); what autograd keeps for the backward is below one chunk's activations plus the inputs
    and output (it used to keep every chunk: the whole SoI tensor, 2.0 GiB at OpenTAD's sizes, or
    every chunk's hidden activations and interpolation taps, 150 MB per 10^4 cells of a BMN batch
    of 8 on the CPU); the gradients are those of the dense convolutions."""
    B, C, T, N, H, O = 2, 16, 64, 8, 8, 4  # 2080 cells: three SoI chunks, two score_anchors chunks
    x = torch.randn(B, C, T, requires_grad=True)
    w1, b1 = (torch.randn(H, C, N) * 0.2).requires_grad_(), torch.randn(H, requires_grad=True)
    w2, b2 = (torch.randn(O, H) * 0.2).requires_grad_(), torch.randn(O, requires_grad=True)
    layer = BoundaryMatching(T, num_sample=N, backend=backend, project_method=project_method)
    out, saved = saved_bytes(lambda: layer.project(x, w1, b1, w2, b2))
    chunk = B * 1024 * C * N * 4 if project_method == "soi_linear" else B * 2048 * H * 4
    inputs = sum(t.numel() * t.element_size() for t in (x, w1, b1, w2, b2, out))
    assert saved < chunk + inputs, (saved, chunk, inputs)

    params64 = [t.detach().double().requires_grad_() for t in (x, w1, b1, w2, b2)]
    ours = layer.project(*params64)
    expected = dense_convolutions(params64[0], published_mask(T, T, N, 3, 0.5), *params64[1:])
    grad_out = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, params64, grad_out), torch.autograd.grad(expected, params64, grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
