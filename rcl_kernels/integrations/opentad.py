"""Drop-ins for OpenTAD's roi extractors (sming256/OpenTAD, opentad/models/roi_heads/roi_extractors/).

  BMNExtractor       BMN's boundary-matching layer and its convolutions, through
                     rcl_kernels.nn.BoundaryMatching.project: no (T, N, D, T) sample mask and no
                     (B, C, N, D, T) map (OpenTAD's defaults: 256 MiB each, per video).
  ROIAlignExtractor  proposal features by 1D RoIAlign (method "torchvision": torchvision's
                     roi_align on a (B, C, T, 1) image, aligned=True; "align1d": G-TAD's Align1D),
                     through rcl_kernels.roi_align_1d, with gradients for the proposals.
  Align1DLayer       OpenTAD's copy of G-TAD's layer, which rounds its inputs to float16 (for
                     determinism of its atomic-add backward) before computing in float64.

Constructor arguments, submodule and parameter names and shapes are OpenTAD's, so its
checkpoints load with strict=True; the outputs are OpenTAD's up to float rounding.
register_in_opentad() puts these classes into OpenTAD's registry when OpenTAD is installed.
"""

from __future__ import annotations

import torch
from torch import nn

from rcl_kernels.integrations import gtad
from rcl_kernels.nn.boundary_matching import BoundaryMatching
from rcl_kernels.ops.roi_align_1d import roi_align_1d, segments_to_rois
from rcl_kernels.reference.boundary_matching import bmn_sample_mask


class Align1DLayer(gtad.Align1DLayer):
    """OpenTAD's Align1DLayer(feature_dim, ratio=0): as G-TAD's, but the input and rois are rounded
    to float16 first, as OpenTAD does (its float64 computation of the rounded values is not needed
    here: the backward is deterministic anyway). Pass round_inputs_to_half=False for G-TAD's
    unrounded numbers."""

    round_inputs_to_half = True

    def __init__(self, feature_dim: int, ratio: int = 0, *, round_inputs_to_half: bool = True,
                 backend: str = "auto"):
        super().__init__(feature_dim, ratio, backend=backend)
        self.round_inputs_to_half = bool(round_inputs_to_half)


class BMNExtractor(nn.Module):
    """BM layer as in BMN (OpenTAD's BMNExtractor): Conv1d(in, hid, 3) + ReLU, the boundary-matching
    sampling of N points per (duration, start) cell, Conv over N to roi_channels + ReLU, 1x1 Conv
    to out_channels + ReLU. forward(x (B, in_channels, tscale)) -> (B, out_channels, dscale, tscale).

    Parameters (OpenTAD's names and shapes): reduce_dim.0 Conv1d(in_channels, hid_channels, 3,
    padding=1); conv3d.0 Conv2d(hid_channels, roi_channels, (num_sample, 1), stride (num_sample, 1));
    conv2d.0 Conv2d(roi_channels, out_channels, 1). backend and project_method: see
    rcl_kernels.nn.BoundaryMatching.
    """

    def __init__(self, in_channels=256, hid_channels=128, roi_channels=512, out_channels=128, tscale=128,
                 dscale=128, num_sample=32, num_sample_perbin=3, prop_extend_ratio=0.5, *, backend: str = "auto",
                 project_method: str = "score_anchors"):
        super().__init__()
        self.num_sample = num_sample
        self.num_sample_perbin = num_sample_perbin
        self.prop_extend_ratio = prop_extend_ratio
        self.reduce_dim = nn.Sequential(nn.Conv1d(in_channels, hid_channels, kernel_size=3, stride=1, padding=1),
                                        nn.ReLU(inplace=True))
        self.conv3d = nn.Sequential(nn.Conv2d(hid_channels, roi_channels, kernel_size=(num_sample, 1),
                                              stride=(num_sample, 1)), nn.ReLU(inplace=True))
        self.conv2d = nn.Sequential(nn.Conv2d(roi_channels, out_channels, kernel_size=1, stride=1, padding=0),
                                    nn.ReLU(inplace=True))
        self.boundary_matching = BoundaryMatching(tscale, dscale, num_sample, num_sample_perbin, prop_extend_ratio,
                                                  backend=backend, project_method=project_method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce_dim(x)
        return self.boundary_matching.project(x, self.conv3d[0].weight, self.conv3d[0].bias,
                                              self.conv2d[0].weight, self.conv2d[0].bias)

    @property
    def sample_mask(self) -> torch.Tensor:
        """OpenTAD's dense (tscale, num_sample, dscale, tscale) mask, built on request (the layer
        itself never uses it)."""
        bm = self.boundary_matching
        return bmn_sample_mask(bm.temporal_scale, bm.duration_scale, bm.num_sample, bm.num_sample_perbin,
                               bm.prop_boundary_ratio)


class ROIAlignExtractor(nn.Module):
    """OpenTAD's ROIAlignExtractor: features of extended proposals by 1D RoIAlign.

    forward(feat_list, proposals): feat_list a (B, C, T) tensor or a list of levels (the first is
    used unless fpn_extract); proposals (B, K, 2) -> (B, K, C, roi_size), or a list of (K_b, 2)
    -> (sum K_b, C, roi_size). Each proposal is widened by extend_ratio * length on both sides and
    divided by base_stride. With fpn_extract, a proposal of length L goes to level
    ceil(log2(L / (base_scale * base_stride))) (clamped to the levels), its coordinates divided
    by 2^level. method "torchvision" samples as torchvision.ops.roi_align (aligned=True,
    adaptive sampling), "align1d" as G-TAD's Align1D (OpenTAD's Align1DLayer, which rounds to
    float16). deterministic=True rounds features and proposals to float16 first, as OpenTAD does
    to make its backward deterministic; this backward is deterministic either way.
    """

    def __init__(self, roi_size=8, extend_ratio=0.5, base_stride=1, fpn_extract=False, base_scale=8,
                 method="torchvision", deterministic=False, *, backend: str = "auto"):
        super().__init__()
        if method not in ("torchvision", "align1d"):
            raise ValueError(f"ROIAlignExtractor: method must be 'torchvision' or 'align1d', got {method!r}")
        self.roi_size = roi_size
        self.extend_ratio = extend_ratio
        self.base_stride = base_stride
        self.fpn_extract = fpn_extract
        self.base_scale = base_scale
        self.method = method
        self.deterministic = deterministic
        self.backend = backend
        if method == "align1d":
            self.align1d = Align1DLayer(roi_size, ratio=0, backend=backend)

    def forward(self, feat_list, proposals):
        if self.fpn_extract:
            return self._forward_levels(feat_list, proposals)
        if isinstance(feat_list, (list, tuple)):
            feat = feat_list[0]
        elif isinstance(feat_list, torch.Tensor):
            feat = feat_list
        else:
            raise TypeError(f"ROIAlignExtractor: feat_list must be a tensor or a list of tensors, "
                            f"got {type(feat_list).__name__}")
        return self._align(feat, self._extend(proposals))

    def _extend(self, proposals):
        def extend(p):
            length = p[..., 1] - p[..., 0]
            return torch.stack((p[..., 0] - self.extend_ratio * length, p[..., 1] + self.extend_ratio * length),
                               dim=-1) / self.base_stride

        if isinstance(proposals, (list, tuple)):
            return [extend(p) for p in proposals]
        if isinstance(proposals, torch.Tensor):
            return extend(proposals)
        raise TypeError(f"ROIAlignExtractor: proposals must be a (B, K, 2) tensor or a list of (K, 2) tensors, "
                        f"got {type(proposals).__name__}")

    def _align(self, feature, proposals):
        if isinstance(proposals, list):
            rois = torch.cat([torch.cat([p.new_full((p.shape[0], 1), b), p], dim=-1)
                              for b, p in enumerate(proposals)], dim=0)
            return self.align_tool(feature, rois)  # (sum K, C, roi_size)
        return self.align_tool(feature, proposals)  # (B, K, 2) -> (B, K, C, roi_size)

    def _forward_levels(self, feat_list, proposals):
        if not isinstance(feat_list, (list, tuple)):
            raise TypeError("ROIAlignExtractor: fpn_extract needs feat_list to be a list of levels")
        if isinstance(proposals, torch.Tensor):
            proposals = list(proposals)
        num_levels = len(feat_list)
        flat = torch.cat(list(proposals), dim=0)
        length = (flat[:, 1] - flat[:, 0]).clamp(min=1e-6)
        level = torch.ceil(torch.log2(length / (self.base_scale * self.base_stride))).clamp(0, num_levels - 1).long()
        batch = torch.cat([torch.full((p.shape[0], 1), float(b), device=flat.device, dtype=flat.dtype)
                           for b, p in enumerate(proposals)], dim=0)
        out = feat_list[0].new_zeros(flat.shape[0], feat_list[0].shape[1], self.roi_size)
        for i in range(num_levels):
            idx = (level == i).nonzero(as_tuple=False).squeeze(1)
            if idx.numel() > 0:
                rois = torch.cat((batch[idx], self._extend(flat[idx]) / 2**i), dim=1)
                out = out.index_copy(0, idx, self.align_tool(feat_list[i], rois).to(out.dtype))
        return out

    def align_tool(self, feature, rois):
        """rois (R, 3) -> (R, C, roi_size), or segments (B, K, 2) -> (B, K, C, roi_size)."""
        if self.deterministic:
            feature, rois = feature.half().to(feature.dtype), rois.half().to(rois.dtype)
        if self.method == "align1d":
            if rois.dim() == 3:  # Align1DLayer takes (R, 3) rows
                B, K = rois.shape[:2]
                return self.align1d(feature, segments_to_rois(rois)).unflatten(0, (B, K))
            return self.align1d(feature, rois)
        return roi_align_1d(feature, rois, self.roi_size, 1.0, -1, True, backend=self.backend)


# Names under which register_in_opentad() files the classes.
DROP_INS = {"BMNExtractor": BMNExtractor, "ROIAlignExtractor": ROIAlignExtractor}


def register_in_opentad(*, replace: bool = False, prefix: str = "Rcl") -> dict[str, type] | None:
    """Register the drop-ins in OpenTAD's model registry (opentad.models.builder.ROI_EXTRACTORS,
    an mmengine Registry). replace=False files them as <prefix><name> (configs opt in with
    type="RclBMNExtractor"); replace=True overrides OpenTAD's own names, so existing configs and
    checkpoints use them unchanged. Returns {registered name: class}, or None when OpenTAD is not
    importable."""
    try:
        from opentad.models.builder import ROI_EXTRACTORS
    except ImportError:
        return None
    registered = {}
    for name, cls in DROP_INS.items():
        key = name if replace else f"{prefix}{name}"
        ROI_EXTRACTORS.register_module(name=key, force=True, module=cls)
        registered[key] = cls
    return registered

