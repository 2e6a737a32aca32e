"""rcl_kernels.data.synthetic: real structure, determinism, the signal model and its knobs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rcl_kernels.data import builtin, synthetic
from rcl_kernels.data.dataset import collate_videos, to_seconds
from rcl_kernels.data.windows import WindowedDataset
from rcl_kernels.evaluation import detection_map


def test_thumos14_structure_matches_the_real_split():
    train, test = synthetic.thumos14("train"), synthetic.thumos14("test")
    assert len(train) == 200 and len(test) == 212 and test.classes == builtin.thumos14_classes()
    gt, real = test.ground_truth(), builtin.thumos14_ground_truth("test")
    assert sorted(gt.video_ids) == sorted(real.video_ids)
    assert gt.num_instances.tolist() == real.num_instances.tolist()
    assert len(gt.ambiguous_video) == len(real.ambiguous_video)
    i = 3
    item = test[i]
    record = test.videos[i]
    # one step per 4 frames, 16-frame clips: T = (frames - 16) // 4 + 1
    assert item["features"].shape == (64, (round(record.duration * record.fps) - 16) // 4 + 1)
    assert item["seconds_per_step"] == pytest.approx(4 / record.fps)
    np.testing.assert_allclose(to_seconds(item["segments"].numpy().astype(np.float64), item), record.segments,
                               rtol=1e-5, atol=1e-4)
    assert [test.classes[c] for c in item["labels"]] == list(record.labels)


def test_activitynet_rescaled_to_100_steps():
    ds = synthetic.activitynet("validation", max_videos=5, feature_dim=16)
    item = ds[0]
    record = ds.videos[0]
    assert item["features"].shape == (16, 100) and len(ds.classes) == 200
    np.testing.assert_allclose(item["segments"].numpy(), record.segments / record.duration * 100, rtol=1e-5)


def test_deterministic_and_independent_of_subset_and_order():
    a = synthetic.thumos14("test", max_videos=6, seed=3)
    b = synthetic.thumos14("test", seed=3, cache=True)
    for i in (5, 0, 2):  # any order of access
        torch.testing.assert_close(a[i]["features"], b[i]["features"], rtol=0, atol=0)
    torch.testing.assert_close(b[2]["features"], b[2]["features"], rtol=0, atol=0)  # cached
    c = synthetic.thumos14("test", max_videos=6, seed=4)
    assert not torch.equal(a[0]["features"], c[0]["features"])
    assert a[0]["features"].dtype == torch.float32 and torch.isfinite(a[0]["features"]).all()


def _clean(**kw):
    return synthetic.thumos14("train", max_videos=3, noise=0.0, **kw)


def test_signal_model_without_noise():
    ds = _clean(feature_dim=32, boundary_sharpness=2.0)
    v = 0
    features = ds[v]["features"].numpy().T.astype(np.float64)  # (T, C)
    segments, labels = ds.instances(v)
    # far from every instance: exactly zero
    near = np.zeros(len(features), dtype=bool)
    for s, e in segments:
        near[max(0, int(s) - 10):int(e) + 12] = True
    assert np.abs(features[~near]).max() == 0
    # an isolated instance longer than 8 steps: at its middle, the pattern at that phase (envelope ~1)
    isolated = [g for g, (s, e) in enumerate(segments) if e - s > 8 and np.sum(
        (segments[:, 0] < e + 10) & (segments[:, 1] > s - 10)) == 1]
    assert isolated
    (s, e), c = segments[isolated[0]], labels[isolated[0]]
    mid = int(round((s + e) / 2))
    u = (mid - s) / (e - s) * np.pi / 2
    np.testing.assert_allclose(features[mid], np.cos(u) * ds.onset[c] + np.sin(u) * ds.offset[c], rtol=1e-3, atol=1e-3)
    # a softer boundary leaks more signal one step before the onset
    t = int(np.floor(s)) - 1
    soft = _clean(feature_dim=32, boundary_sharpness=0.5)[v]["features"].numpy().T
    assert np.linalg.norm(features[t]) < np.linalg.norm(soft[t])


def test_noise_level_follows_the_knob():
    ds = synthetic.thumos14("test", max_videos=4, noise=2.0, feature_dim=48)
    values = []
    for i in range(len(ds)):
        x = ds[i]["features"].numpy()
        far = np.ones(x.shape[1], dtype=bool)
        for s, e in ds.instances(i)[0]:
            far[max(0, int(s) - 15):int(e) + 16] = False
        values.append(x[:, far].ravel())
    assert np.std(np.concatenate(values)) == pytest.approx(2.0, rel=0.1)


def test_knob_validation():
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        synthetic.thumos14(noise=-1.0)
    with pytest.raises(ValueError, match="boundary_sharpness must be a finite number > 0"):
        synthetic.thumos14(boundary_sharpness=0.0)
    with pytest.raises(ValueError, match="feature_dim must be an int >= 1"):
        synthetic.thumos14(feature_dim=0)
    with pytest.raises(ValueError, match="max_videos must be an int >= 1"):
        synthetic.thumos14(max_videos=0)
    with pytest.raises(ValueError, match="temporal_scale must be an int >= 2"):
        synthetic.activitynet(temporal_scale=1)
    with pytest.raises(ValueError, match="split must be one of"):
        synthetic.thumos14("validation-set")


def test_max_steps_and_evaluation_round_trip():
    ds = synthetic.thumos14("test", max_videos=8, max_steps=512, feature_dim=8)
    gt = ds.ground_truth()
    results = {}
    for i in range(len(ds)):
        item = ds[i]
        assert item["features"].shape[1] <= 512
        secs = to_seconds(item["segments"].numpy().astype(np.float64), item)
        results[item["video_id"]] = [{"label": ds.classes[c], "score": 1.0, "segment": s.tolist()}
                                     for s, c in zip(secs, item["labels"].tolist())]
    # the items' instances, converted to seconds, are the ground truth: mAP 1 with both protocols
    for protocol in ("thumos14", "activitynet"):
        assert detection_map({"results": results}, gt, protocol=protocol).average_map == pytest.approx(1.0)


def test_batches_and_windows():
    ds = synthetic.thumos14("train", max_videos=3, feature_dim=8)
    batch = collate_videos([ds[0], ds[1], ds[2]])
    assert batch["features"].shape[:2] == (3, 8) and batch["lengths"].max() == batch["features"].shape[2]
    windows = WindowedDataset(ds, window=256, stride=128, keep_empty=False)
    item = windows[1]
    assert item["features"].shape[1] <= 256 and len(item["labels"]) >= 1
    full = ds[windows.index[1][0]]["features"]
    start = item["window_start"]
    torch.testing.assert_close(item["features"], full[:, start:start + 256])
