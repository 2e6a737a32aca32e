"""rcl_kernels.integrations.mmaction2 against the real mmaction2 1.2.0 package (skipped where it is
not installed): same weights, same outputs, loss, gradients, proposals and checkpoints as
mmaction2's own BMN, and configs that switch to ours through mmaction2's registry.

The stand-in for the 1.2.0 wheel's missing drn subpackage comes from tests/mmaction2_support.py.
Every test but the first needs mmaction2 and skips, saying why, where it is missing.
Most cases use a reduced BMN (T = 23, odd sizes) for speed; one runs the published ActivityNet
config (T = 100, N = 32 x 3, 400-dim features, 256 / 128 / 512 channels).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmaction2_support import import_mmaction_models, mmaction2_missing, skip_or_fail
from tolerances import assert_close_to_reference

import rcl_kernels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = dict(temporal_dim=23, boundary_ratio=0.5, num_samples=8, num_samples_per_bin=3, feat_dim=24,
             soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9, post_process_top_k=100,
             hidden_dim_1d=16, hidden_dim_2d=8, hidden_dim_3d=24)
# configs/_base_/models/bmn_400x100.py (with BMN's default hidden sizes)
PUBLISHED = dict(temporal_dim=100, boundary_ratio=0.5, num_samples=32, num_samples_per_bin=3, feat_dim=400,
                 soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9, post_process_top_k=100)


@pytest.fixture(scope="module")
def mm():
    """(mmaction2's BMN class, our module); skips where mmaction2 is missing or unusable."""
    missing = mmaction2_missing()
    if missing:
        skip_or_fail(missing)
    try:
        models = import_mmaction_models()
    except Exception as exc:  # e.g. the oldest-torch stack, where the installed torchvision cannot load
        skip_or_fail(f"mmaction.models cannot be imported here: {type(exc).__name__}: "
                     f"{str(exc).splitlines()[0][:150]}")
    from rcl_kernels.integrations import mmaction2

    return models.localizers.BMN, mmaction2


def stock_mask_float64(stock) -> torch.Tensor:
    """mmaction2's sample mask in float64: its own per-cell rule (_get_interp1d_bin_mask), without the
    final cast to float32 its constructor applies."""
    T, N, S, r = stock.tscale, stock.num_samples, stock.num_samples_per_bin, stock.boundary_ratio
    mask = np.zeros((T, N, T, T))
    for s in range(T):
        for d in range(T - s):
            widen = (d + 1) * r
            mask[:, :, d, s] = stock._get_interp1d_bin_mask(s - widen, s + d + widen, T, N, S)
    return torch.from_numpy(mask).view(T, -1)


def pair(mm, config, dtype=torch.float32, seed=0, **ours_kw):
    """mmaction2's BMN and ours with the same (random) weights, in dtype; stock's mask exact in float64."""
    Stock, integration = mm
    torch.manual_seed(seed)
    stock = Stock(**config)
    for p in stock.parameters():  # PyTorch's init leaves the sigmoid heads near 0.5: spread them
        if p.requires_grad:
            p.data.add_(torch.randn_like(p) * 0.05)
    ours = integration.BMN(**config, **ours_kw)
    ours.load_state_dict(stock.state_dict(), strict=True)
    if dtype == torch.float64:
        mask = stock_mask_float64(stock)
        stock.double()
        stock.sample_mask.data = mask
    return stock.to(dtype), ours.to(dtype)


def data_samples(batch, T, *, with_boxes=True, seed=0):
    from mmaction.structures import ActionDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(seed)
    samples = []
    for b in range(batch):
        sample = ActionDataSample()
        boxes = torch.rand(1 + b % 3, 2, generator=gen, dtype=torch.float64).sort(dim=1).values
        if with_boxes:
            sample.gt_instances = InstanceData(gt_bbox=boxes)
        sample.set_metainfo(dict(video_name=f"v_video{b}", duration_second=30.0 + 7 * b,
                                 duration_frame=900 + 211 * b, feature_frame=896 + 208 * b))
        samples.append(sample)
    return samples


def test_importing_without_mmaction2_works_and_building_names_the_extra():
    code = ("import sys; sys.modules['mmaction'] = None; sys.modules['mmengine'] = None\n"
            "from rcl_kernels.integrations import mmaction2\n"
            "try:\n    mmaction2.BMN(100, 0.5, 32, 3, 400, 0.4, 0.5, 0.9, 100)\n"
            "except ImportError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ROOT}, check=True).stdout.strip()
    assert out.startswith("ERR ") and "\n" not in out
    assert 'pip install "rcl_kernels[mmaction2]"' in out and "mmaction" in out


@pytest.mark.parametrize("project_method", ["score_anchors", "soi_linear"])
def test_outputs_match_mmaction2_float32_and_float64(mm, project_method):
    x = torch.randn(3, SMALL["feat_dim"], SMALL["temporal_dim"], dtype=torch.float64)
    stock64, ours64 = pair(mm, SMALL, torch.float64, project_method=project_method)
    stock32, ours32 = pair(mm, SMALL, torch.float32, project_method=project_method)
    assert set(ours32.state_dict()) == set(stock32.state_dict()) - {"sample_mask"}
    assert not hasattr(ours32, "sample_mask")
    with torch.no_grad():
        exact = stock64._forward(x)
        ours = ours64.forward(list(x), mode="tensor")
        stock_f32 = stock32._forward(x.float())
        ours_f32 = ours32.forward(x.float(), None, "tensor")
    for what, e, o, s, o32 in zip(("confidence_map", "start", "end"), exact, ours, stock_f32, ours_f32):
        assert o.dtype == torch.float64 and o.shape == e.shape
        torch.testing.assert_close(o, e, atol=1e-10, rtol=0, msg=f"{what} float64")
        assert_close_to_reference(o32, e, s, torch.float32, what=f"{what} float32")
    assert torch.equal(ours_f32[1], stock_f32[1]) and torch.equal(ours_f32[2], stock_f32[2])  # the same modules


def test_published_activitynet_config_matches(mm):
    stock, ours = pair(mm, PUBLISHED)
    x = torch.randn(1, 400, 100)
    with torch.no_grad():
        for what, s, o in zip(("confidence_map", "start", "end"), stock._forward(x), ours._forward(x)):
            torch.testing.assert_close(o, s, atol=1e-6, rtol=1e-5, msg=what)
    assert stock.sample_mask.shape == ours.sample_mask_shape == (100, 32 * 100 * 100)


def test_labels_are_mmaction2s_bit_for_bit(mm):
    stock, ours = pair(mm, SMALL)
    for dtype in (torch.float64, torch.float32):
        boxes = [torch.rand(n, 2, dtype=dtype).sort(dim=1).values for n in (1, 4, 7)]
        boxes[0][0] = torch.tensor([0.0, 1.0], dtype=dtype)
        boxes[1][0] = torch.tensor([3 / 23, 7 / 23], dtype=dtype)  # on the grid: ties in the IoU
        for what, s, o in zip(("confidence", "start", "end"), stock.generate_labels(boxes),
                              ours.generate_labels(boxes)):
            assert o.dtype == s.dtype == torch.float32 and torch.equal(o, s), f"{what} {dtype}"
    with pytest.raises(ValueError, match="gt_bbox"):
        ours.generate_labels([torch.zeros(0, 2)])


def test_loss_and_parameter_gradients_match(mm):
    stock, ours = pair(mm, SMALL, torch.float64)
    x = torch.randn(4, SMALL["feat_dim"], SMALL["temporal_dim"], dtype=torch.float64)
    samples = data_samples(4, SMALL["temporal_dim"])
    losses = {}
    for name, model in (("stock", stock), ("ours", ours)):
        torch.manual_seed(7)  # BMNLoss samples its regression mask with torch.rand_like
        losses[name] = model(list(x), samples, mode="loss")["loss"]
        losses[name].backward()
    torch.testing.assert_close(losses["ours"], losses["stock"], atol=1e-10, rtol=0)
    stock_grads = dict(stock.named_parameters())
    for name, p in ours.named_parameters():
        g = stock_grads[name].grad
        assert p.grad is not None and g is not None, name
        torch.testing.assert_close(p.grad, g, atol=1e-9 * max(g.abs().max().item(), 1.0), rtol=1e-7, msg=name)


def test_predict_gives_mmaction2s_proposals_for_every_video_of_the_batch(mm):
    stock, ours = pair(mm, SMALL, seed=3)
    B, T = 3, SMALL["temporal_dim"]
    x = torch.randn(B, SMALL["feat_dim"], T)
    samples = data_samples(B, T, with_boxes=False)
    with torch.no_grad():
        got = ours(list(x), samples, mode="predict")
        want = [stock([x[b]], [samples[b]], mode="predict")[0] for b in range(B)]
    assert len(got) == B
    for g, w in zip(got, want):
        assert g["video_name"] == w["video_name"] and len(g["proposal_list"]) == len(w["proposal_list"]) > 0
        for pg, pw in zip(g["proposal_list"], w["proposal_list"]):
            assert pg["score"] == pytest.approx(pw["score"], abs=1e-6)
            assert pg["segment"] == pytest.approx(pw["segment"], abs=1e-5)


def test_checkpoints_load_both_ways(mm):
    stock, ours = pair(mm, SMALL)
    x = torch.randn(2, SMALL["feat_dim"], SMALL["temporal_dim"])
    fresh_stock = mm[0](**SMALL)
    result = fresh_stock.load_state_dict(ours.stock_state_dict(), strict=True)  # with the mask written back
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(ours.stock_state_dict()["sample_mask"], stock.sample_mask.data, atol=1e-12, rtol=0)
    result = mm[0](**SMALL).load_state_dict(ours.state_dict(), strict=False)  # or without it
    assert result.missing_keys == ["sample_mask"] and not result.unexpected_keys
    with torch.no_grad():
        for s, o in zip(fresh_stock._forward(x), ours._forward(x)):
            torch.testing.assert_close(o, s, atol=1e-6, rtol=1e-5)
    # a stock checkpoint of another configuration: its mask's shape is named
    other = mm[0](**{**SMALL, "num_samples": 4}).state_dict()
    state = {**stock.state_dict(), "sample_mask": other["sample_mask"]}
    with pytest.raises(RuntimeError, match="sample_mask"):
        ours.load_state_dict(state, strict=True)


def test_mmengine_load_checkpoint_with_numpy_meta(mm, tmp_path):
    from mmengine.runner import load_checkpoint

    stock, ours = pair(mm, SMALL)
    path = tmp_path / "stock.pth"
    torch.save({"meta": {"seed": np.int64(3), "eta": np.float64(1.5), "hist": np.arange(3.0)},
                "state_dict": stock.state_dict()}, path)
    with pytest.raises(Exception):  # torch >= 2.6 rejects numpy in a weights-only load
        torch.load(path)
    target = mm[1].BMN(**SMALL)
    checkpoint = load_checkpoint(target, str(path), map_location="cpu", strict=True)
    assert checkpoint["meta"]["seed"] == 3
    for name, p in stock.state_dict().items():
        if name != "sample_mask":
            assert torch.equal(target.state_dict()[name], p), name


def test_mmengine_rejects_what_its_runner_never_writes(mm, tmp_path):
    from mmengine.runner import load_checkpoint

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": {"call": os.getcwd}}, path)
    with pytest.raises(Exception, match="getcwd|Unsupported global"):
        load_checkpoint(mm[1].BMN(**SMALL), str(path), map_location="cpu")


def _config_file(tmp_path, model_type, imports):
    base = os.path.join(os.path.dirname(sys.modules["mmaction"].__file__), ".mim", "configs", "_base_", "models",
                        "bmn_400x100.py")
    sizes = ", ".join(f"{k}={v!r}" for k, v in SMALL.items() if k not in PUBLISHED or PUBLISHED[k] != v)
    path = tmp_path / f"bmn_{model_type}.py"
    path.write_text(f"_base_ = [{base!r}]\ncustom_imports = dict(imports={imports!r}, allow_failed_imports=False)\n"
                    f"model = dict(type={model_type!r}, {sizes})\n")
    return str(path)


def test_config_switches_through_custom_imports_and_runner_checkpoints_load(mm, tmp_path, monkeypatch):
    """The published model config with custom_imports and type="RclBMN" (our module imported fresh
    by mmengine), trained one iteration by mmengine's Runner; its checkpoint loads into ours
    (strict) and into mmaction2's BMN (strict=False: only sample_mask is missing)."""
    from mmaction.registry import MODELS
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.runner import Runner, load_checkpoint

    name = "rcl_kernels.integrations.mmaction2"
    monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(MODELS._module_dict, "RclBMN")
    monkeypatch.setattr(rcl_kernels.integrations, "mmaction2", None, raising=False)
    cfg = Config.fromfile(_config_file(tmp_path, "RclBMN", [name]))
    assert name in sys.modules and cfg.model.temporal_dim == SMALL["temporal_dim"]
    assert cfg.model.soft_nms_alpha == PUBLISHED["soft_nms_alpha"]
    ours_cls = sys.modules[name].BMN

    T = SMALL["temporal_dim"]
    items = [dict(inputs=torch.randn(SMALL["feat_dim"], T), data_samples=s) for s in data_samples(2, T)]
    loader = torch.utils.data.DataLoader(items, batch_size=2, collate_fn=pseudo_collate)
    runner = Runner(model=cfg.model, work_dir=str(tmp_path / "work"), train_dataloader=loader,
                    train_cfg=dict(by_epoch=False, max_iters=1), default_scope="mmaction",
                    optim_wrapper=dict(optimizer=dict(type="Adam", lr=1e-3)),
                    default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1, by_epoch=False)),
                    log_level="WARNING")
    assert type(runner.model) is ours_cls
    runner.train()
    path = str(tmp_path / "work" / "iter_1.pth")
    with pytest.raises(Exception):  # torch's own default (weights_only) refuses the Runner's file
        torch.load(path)
    reloaded = ours_cls(**SMALL)
    load_checkpoint(reloaded, path, map_location="cpu", strict=True)
    stock = mm[0](**SMALL)
    load_checkpoint(stock, path, map_location="cpu", strict=False)
    x = torch.randn(1, SMALL["feat_dim"], T)
    with torch.no_grad():
        for s, o, r in zip(stock._forward(x), reloaded._forward(x), runner.model._forward(x)):
            torch.testing.assert_close(o, r, atol=0, rtol=0)
            torch.testing.assert_close(o, s, atol=1e-6, rtol=1e-5)


def test_replacing_mmaction2s_bmn(mm, monkeypatch):
    from mmaction.registry import MODELS

    Stock, integration = mm
    MODELS.import_from_location()
    monkeypatch.setitem(MODELS._module_dict, "BMN", Stock)  # restored after the test
    registered = integration.register_in_mmaction2(replace_bmn=True)
    assert registered == {"RclBMN": integration.BMN, "BMN": integration.BMN}
    model = MODELS.build(dict(type="BMN", **SMALL))
    assert type(model) is integration.BMN
    assert math.prod(model.sample_mask_shape) == SMALL["temporal_dim"] ** 3 * SMALL["num_samples"]


def test_bad_arguments_are_named(mm):
    integration = mm[1]
    with pytest.raises(ValueError, match="project_method"):
        integration.BMN(**SMALL, project_method="dense")
    model = integration.BMN(**SMALL)
    x = torch.randn(1, SMALL["feat_dim"], SMALL["temporal_dim"])
    with pytest.raises(RuntimeError, match='Invalid mode "train"'):
        model(x, None, mode="train")
    with pytest.raises(ValueError, match="temporal_scale = 23"):
        model(torch.randn(1, SMALL["feat_dim"], 20), None)
