"""Drop-ins (rcl_kernels.integrations): OpenTAD's BMNExtractor, ROIAlignExtractor, Align1DLayer and
G-TAD's Align1DLayer. OpenTAD is not on PyPI, so the expected modules are written here from the
published algorithms: same parameter names and shapes, state dicts loaded with strict=True both
ways, outputs compared."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_torchvision
from test_boundary_matching import published_mask
from test_roi_align_1d import align1d_published
from torch import nn

from rcl_kernels.integrations import gtad, opentad

# ---------------------------------------------------------------------------------------------
# BMNExtractor


class PublishedBMNExtractor(nn.Module):
    """OpenTAD's BMNExtractor as published: Conv1d + ReLU, tensordot with BMN's dense mask,
    Conv2d over N, ReLU, 1x1 Conv2d, ReLU."""

    def __init__(self, in_channels, hid_channels, roi_channels, out_channels, tscale, dscale, num_sample,
                 num_sample_perbin, prop_extend_ratio):
        super().__init__()
        self.reduce_dim = nn.Sequential(nn.Conv1d(in_channels, hid_channels, 3, 1, 1), nn.ReLU())
        self.conv3d = nn.Sequential(nn.Conv2d(hid_channels, roi_channels, (num_sample, 1), (num_sample, 1)), nn.ReLU())
        self.conv2d = nn.Sequential(nn.Conv2d(roi_channels, out_channels, 1), nn.ReLU())
        self.sample_mask = published_mask(tscale, dscale, num_sample, num_sample_perbin, prop_extend_ratio)

    def forward(self, x):
        x = self.reduce_dim(x)
        bm = torch.tensordot(x, self.sample_mask.to(x.dtype), dims=([2], [0]))  # (B, C, N, D, T)
        D, T = bm.shape[-2:]
        h = self.conv3d(bm.flatten(3, 4)).squeeze(2).unflatten(2, (D, T))
        return self.conv2d(h)


BMN_SMALL = dict(in_channels=10, hid_channels=6, roi_channels=9, out_channels=5, tscale=14, dscale=9, num_sample=4,
                 num_sample_perbin=3, prop_extend_ratio=0.5)


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_bmn_extractor_state_dict_round_trip_and_outputs(backend):
    published = PublishedBMNExtractor(**BMN_SMALL).double()
    ours = opentad.BMNExtractor(**BMN_SMALL, backend=backend).double()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in published.state_dict().items()}
    ours.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(2, 10, 14, dtype=torch.float64)
    torch.testing.assert_close(ours(x), published(x), rtol=1e-10, atol=1e-10)
    # and back: a checkpoint trained with the drop-in loads into OpenTAD's module
    for p in ours.parameters():
        nn.init.normal_(p, std=0.3)
    published.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(ours(x), published(x), rtol=1e-10, atol=1e-10)
    # gradients for the parameters and the input agree too
    x.requires_grad_()
    g_ours = torch.autograd.grad(ours(x).square().sum(), [x, *ours.parameters()])
    g_pub = torch.autograd.grad(published(x).square().sum(), [x, *published.parameters()])
    for a, b in zip(g_ours, g_pub):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_bmn_extractor_float32_and_sample_mask():
    published = PublishedBMNExtractor(**BMN_SMALL)
    ours = opentad.BMNExtractor(**BMN_SMALL)
    ours.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(3, 10, 14)
    torch.testing.assert_close(ours(x), published(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.sample_mask, published.sample_mask.float(), rtol=0, atol=1e-6)


def test_bmn_extractor_default_parameter_shapes():
    shapes = {k: tuple(v.shape) for k, v in opentad.BMNExtractor().state_dict().items()}
    assert shapes == {"reduce_dim.0.weight": (128, 256, 3), "reduce_dim.0.bias": (128,),
                      "conv3d.0.weight": (512, 128, 32, 1), "conv3d.0.bias": (512,),
                      "conv2d.0.weight": (128, 512, 1, 1), "conv2d.0.bias": (128,)}


# ---------------------------------------------------------------------------------------------
# ROIAlignExtractor


def published_extend(p, ratio, stride):
    length = p[..., 1] - p[..., 0]
    return torch.stack((p[..., 0] - ratio * length, p[..., 1] + ratio * length), dim=-1) / stride


def published_torchvision_align(feature, rois, roi_size):
    """OpenTAD's method="torchvision": torchvision.ops.roi_align on (B, C, T, 1), boxes
    (b, 0, start, 1, end), output (roi_size, 1), aligned=True -> (R, C, roi_size)."""
    boxes = torch.stack((rois[:, 0], torch.zeros_like(rois[:, 0]), rois[:, 1], torch.ones_like(rois[:, 0]),
                         rois[:, 2]), dim=1)
    torchvision = require_torchvision()
    return torchvision.ops.roi_align(feature.unsqueeze(3), boxes, output_size=(roi_size, 1), aligned=True).squeeze(-1)


def random_proposals(B, K, T, dtype=torch.float64):
    start = torch.rand(B, K, dtype=dtype) * T * 1.1 - 0.05 * T
    length = torch.rand(B, K, dtype=dtype) * T * 0.5 + 0.01  # torchvision cannot take reversed ones here
    return torch.stack([start, start + length], dim=-1)


def with_batch(proposals):
    return torch.cat([torch.cat([p.new_full((p.shape[0], 1), b), p], 1) for b, p in enumerate(proposals)])


def test_roi_align_extractor_torchvision_method_tensor_and_list():
    ours = opentad.ROIAlignExtractor(roi_size=6, extend_ratio=0.25, base_stride=2)
    assert ours.state_dict() == {}
    ours.load_state_dict({}, strict=True)
    B, C, T, K = 3, 5, 20, 7
    feat = torch.randn(B, C, T, dtype=torch.float64)
    proposals = random_proposals(B, K, 2 * T)
    ext = published_extend(proposals, 0.25, 2)
    expected = published_torchvision_align(feat, with_batch(ext), 6).unflatten(0, (B, K))
    torch.testing.assert_close(ours(feat, proposals), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours([feat], proposals), expected, rtol=1e-12, atol=1e-12)
    as_list = [proposals[b, : b + 2] for b in range(B)]
    expected_list = published_torchvision_align(feat, with_batch([published_extend(p, 0.25, 2) for p in as_list]), 6)
    torch.testing.assert_close(ours(feat, as_list), expected_list, rtol=1e-12, atol=1e-12)


def test_roi_align_extractor_gives_proposal_gradients():
    ours = opentad.ROIAlignExtractor(roi_size=4)
    feat = torch.randn(2, 3, 16, requires_grad=True)
    proposals = random_proposals(2, 5, 16, torch.float32).requires_grad_()
    ours(feat, proposals).square().sum().backward()
    assert proposals.grad is not None and proposals.grad.abs().sum() > 0 and torch.isfinite(proposals.grad).all()


def test_roi_align_extractor_fpn_levels():
    ours = opentad.ROIAlignExtractor(roi_size=4, extend_ratio=0.5, fpn_extract=True, base_scale=4)
    B, C, T = 2, 3, 32
    levels = [torch.randn(B, C, T // 2**i, dtype=torch.float64) for i in range(3)]
    proposals = [random_proposals(1, 6, T)[0], random_proposals(1, 4, T)[0]]
    flat = torch.cat(proposals)
    level = torch.ceil(torch.log2((flat[:, 1] - flat[:, 0]).clamp(min=1e-6) / 4)).clamp(0, 2).long()
    batch = torch.cat([torch.full((6,), 0.0), torch.full((4,), 1.0)]).double()
    expected = torch.zeros(10, C, 4, dtype=torch.float64)
    for i in range(3):
        idx = (level == i).nonzero().squeeze(1)
        if idx.numel():
            rois = torch.cat([batch[idx, None], published_extend(flat[idx], 0.5, 1) / 2**i], 1)
            expected[idx] = published_torchvision_align(levels[i], rois, 4)
    assert len(set(level.tolist())) > 1, "the test should exercise several levels"
    torch.testing.assert_close(ours(levels, proposals), expected, rtol=1e-12, atol=1e-12)


def test_roi_align_extractor_align1d_method_and_deterministic_rounding():
    B, C, T, K = 2, 4, 18, 5
    feat = torch.randn(B, C, T, dtype=torch.float64)
    proposals = random_proposals(B, K, T)
    ext = published_extend(proposals, 0.5, 1)
    rois = with_batch(ext)
    # OpenTAD's Align1DLayer rounds its inputs through float16 and computes in float64.
    expected = align1d_published(feat.half().double().numpy(), rois.half().double().numpy(), 8, 0)
    ours = opentad.ROIAlignExtractor(roi_size=8, method="align1d")
    np.testing.assert_allclose(ours(feat, proposals).reshape(B * K, C, 8).numpy(), expected, rtol=1e-12, atol=1e-12)
    # deterministic=True rounds the torchvision path's inputs the same way
    det = opentad.ROIAlignExtractor(roi_size=8, deterministic=True)
    expected = published_torchvision_align(feat.half().double(), rois.half().double(), 8).unflatten(0, (B, K))
    torch.testing.assert_close(det(feat, proposals), expected, rtol=1e-12, atol=1e-12)


def test_align1d_layers_gtad_and_opentad():
    feat = torch.randn(2, 3, 15, dtype=torch.float64)
    rois = torch.tensor([[0, 1.3, 9.7], [1, -2.0, 4.0], [1, 7.0, 7.2], [0, 12.0, 18.0], [0, 9.0, 3.0]],
                        dtype=torch.float64)
    for ratio in (0, 2):
        layer = gtad.Align1DLayer(5, ratio=ratio)
        np.testing.assert_allclose(layer(feat, rois).numpy(), align1d_published(feat.numpy(), rois.numpy(), 5, ratio),
                                   rtol=1e-12, atol=1e-12)
        rounded = opentad.Align1DLayer(5, ratio=ratio)
        expected = align1d_published(feat.half().double().numpy(), rois.half().double().numpy(), 5, ratio)
        np.testing.assert_allclose(rounded(feat, rois).numpy(), expected, rtol=1e-12, atol=1e-12)
        assert repr(layer) == f"Align1DLayer(feature_dim=5, sampling_ratio={ratio})"
    unrounded = opentad.Align1DLayer(5, round_inputs_to_half=False)
    torch.testing.assert_close(unrounded(feat, rois), gtad.Align1DLayer(5)(feat, rois))
    assert gtad.Align1DLayer(5).state_dict() == {}


@pytest.mark.parametrize("kwargs,match", [(dict(feature_dim=0), "feature_dim"), (dict(feature_dim=3, ratio=0.5), "ratio")])
def test_align1d_layer_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gtad.Align1DLayer(**kwargs)


def test_align1d_layer_device_mismatch_and_extractor_method_errors():
    with pytest.raises(ValueError, match="method"):
        opentad.ROIAlignExtractor(method="bilinear")
    with pytest.raises(TypeError, match="feat_list"):
        opentad.ROIAlignExtractor()("features", torch.zeros(1, 1, 2))
    with pytest.raises(TypeError, match="proposals"):
        opentad.ROIAlignExtractor()(torch.zeros(1, 2, 8), "proposals")
    with pytest.raises(ValueError, match=r"rois must have shape \(R, 3\)"):
        gtad.Align1DLayer(3)(torch.zeros(1, 2, 8), torch.zeros(2, 3, 3))


# ---------------------------------------------------------------------------------------------
# OpenTAD registry


def test_register_in_opentad_without_opentad_returns_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentad", None)  # import fails
    assert opentad.register_in_opentad() is None


def test_register_in_opentad_files_the_classes(monkeypatch):
    class Registry:  # the part of mmengine's Registry that registration uses
        def __init__(self):
            self.modules = {}

        def register_module(self, name=None, force=False, module=None):
            assert force or name not in self.modules
            self.modules[name] = module

    registry = Registry()
    builder = types.ModuleType("opentad.models.builder")
    builder.ROI_EXTRACTORS = registry
    models = types.ModuleType("opentad.models")
    models.builder = builder
    package = types.ModuleType("opentad")
    package.models = models
    monkeypatch.setitem(sys.modules, "opentad", package)
    monkeypatch.setitem(sys.modules, "opentad.models", models)
    monkeypatch.setitem(sys.modules, "opentad.models.builder", builder)
    assert set(opentad.register_in_opentad()) == {"RclBMNExtractor", "RclROIAlignExtractor"}
    assert opentad.register_in_opentad(replace=True)["BMNExtractor"] is opentad.BMNExtractor
    assert registry.modules["ROIAlignExtractor"] is opentad.ROIAlignExtractor


def test_conv_layout_assumption():
    """project() reads the Conv2d (N, 1) kernel as column c * N + n: that is how conv2d weights
    flatten; checked once directly."""
    w = torch.randn(3, 2, 4, 1)
    x = torch.randn(1, 2, 4, 1)
    torch.testing.assert_close(F.conv2d(x, w).flatten(), w.reshape(3, -1) @ x.flatten())
