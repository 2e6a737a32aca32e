"""rcl_kernels.data: annotation parsing, the shipped files, the three real-feature layouts (on
small files written here and on shared/data's samples), windows, collate and unit conversion."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

import numpy as np
import pytest
import torch

from rcl_kernels.data import builtin
from rcl_kernels.data.actionformer import actionformer_dataset
from rcl_kernels.data.annotations import (
    AnnotationError,
    VideoAnnotation,
    load_annotations,
    parse_database,
    read_gtad_csv,
    select_subset,
)
from rcl_kernels.data.bsn import bsn_dataset, rescale_features
from rcl_kernels.data.dataset import Timeline, VideoDataset, clip_instances, collate_videos, to_seconds, to_steps
from rcl_kernels.data.gtad import gtad_thumos14_dataset
from rcl_kernels.data.windows import WindowedDataset, window_starts, window_to_video

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = next((p for p in (os.path.join(REPO, "shared", "data"), os.path.join(REPO, "..", "shared", "data"))
                    if os.path.isdir(p)), None)
needs_shared = pytest.mark.skipif(SHARED_DATA is None, reason="shared/data not present")


# ---------------------------------------------------------------- shipped annotation files

def test_shipped_files_match_sources_md():
    sources = open(os.path.join(builtin.ANNOTATION_DIR, "SOURCES.md")).read()
    rows = re.findall(r"^\| (\S+) \|.*\| ([0-9a-f]{64}) \|$", sources, flags=re.M)
    assert len(rows) == 6
    for rel, digest in rows:
        with open(os.path.join(builtin.ANNOTATION_DIR, rel), "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == digest, rel


@needs_shared
def test_shipped_files_are_copies_of_shared_data():
    for rel in ("thumos14/thumos14.json", "thumos14/test_Annotation.csv", "thumos14/val_Annotation.csv",
                "activitynet/anet_anno_action.json", "activitynet/video_info_new.csv", "activitynet/action_name.csv"):
        with open(os.path.join(SHARED_DATA, rel), "rb") as a:
            with open(os.path.join(builtin.ANNOTATION_DIR, rel), "rb") as b:
                assert a.read() == b.read(), rel


def test_thumos14_splits():
    train, test = builtin.thumos14_annotations("train"), builtin.thumos14_annotations("test")
    assert len(train) == 200 and len(test) == 212
    assert {v.subset for v in train} == {"Validation"} and {v.subset for v in test} == {"Test"}
    assert sum(v.num_instances for v in train) == 3007 and sum(v.num_instances for v in test) == 3358
    # Ambiguous regions come from the G-TAD csv (99 in Test, 3 of them on a video the json omits)
    assert sum(len(v.ambiguous) for v in test) == 96 and sum(len(v.ambiguous) for v in train) == 89
    classes = builtin.thumos14_classes()
    assert len(classes) == 20 and classes[0] == "BaseballPitch" and classes[19] == "VolleyballSpiking"
    assert all(label in classes for v in test for label in v.labels)
    with pytest.raises(ValueError, match="THUMOS14: split must be one of"):
        builtin.thumos14_annotations("dev")


def test_activitynet_splits():
    val = builtin.activitynet_annotations("validation")
    assert len(val) == 4728 and sum(v.num_instances for v in val) == 7293
    assert len(builtin.activitynet_annotations("train")) == 9649
    assert len(builtin.activitynet_classes()) == 200
    v = val[0]
    assert v.fps > 0 and v.num_frames > 0 and v.feature_frames > 0 and v.subset == "validation"
    gt = builtin.activitynet_ground_truth("val")
    assert len(gt.video_ids) == 4728 and gt.num_instances.sum() == 7293


# ---------------------------------------------------------------- parsing and errors

def test_parse_layouts_and_ambiguous():
    records = parse_database({"database": {"v": {"subset": "Test", "duration": 9.5, "fps": 25, "annotations": [
        {"label": "a", "segment": [1, 2]}, {"label": "Ambiguous", "segment": [3, 4]}]}}})
    (r,) = records
    assert r.labels == ("a",) and r.ambiguous.tolist() == [[3.0, 4.0]] and r.fps == 25.0 and r.duration == 9.5
    bsn = parse_database({"v": {"duration_second": 10.0, "duration_frame": 300, "feature_frame": 288,
                                "annotations": [{"label": "a", "segment": [1, 2]}]}})
    assert bsn[0].num_frames == 300 and bsn[0].feature_frames == 288 and bsn[0].subset is None
    with pytest.raises(AnnotationError, match="name no subsets"):
        select_subset(bsn, "validation")


@pytest.mark.parametrize("annotation, match", [
    ({"label": "a", "segment": [2, 1]}, r"video 'v' annotation 0: field 'segment' has negative length"),
    ({"label": "a", "segment": [0, "x"]}, r"video 'v' annotation 0: field 'segment' must be two numbers"),
    ({"label": "a", "segment": [0, float("nan")]}, r"video 'v' annotation 0: field 'segment' must be finite"),
    ({"label": "", "segment": [0, 1]}, r"video 'v' annotation 0: field 'label'"),
    ({"segment": [0, 1]}, r"video 'v' annotation 0: must be an object with fields"),
])
def test_bad_annotations_name_video_and_field(annotation, match):
    with pytest.raises(AnnotationError, match=match):
        parse_database({"database": {"v": {"annotations": [annotation]}}})


def test_bad_files(tmp_path):
    bad = tmp_path / "a.json"
    bad.write_text("{")
    with pytest.raises(AnnotationError, match="malformed JSON"):
        load_annotations(bad)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_annotations(tmp_path / "missing.json")
    csv = tmp_path / "a.csv"
    csv.write_text("video,type,start,end\nv,a,3.0,1.0\n")
    with pytest.raises(AnnotationError, match=r"line 2: video 'v': field 'segment' has negative length"):
        read_gtad_csv(csv)
    csv.write_text("video,kind,start,end\n")
    with pytest.raises(AnnotationError, match=r"missing csv column\(s\) \['type'\]"):
        read_gtad_csv(csv)


@needs_shared
def test_gtad_csv_on_shared_data():
    records = read_gtad_csv(os.path.join(SHARED_DATA, "thumos14", "test_Annotation.csv"))
    assert len(records) == 213  # one video has only Ambiguous regions
    assert sum(r.num_instances for r in records) == 3358 and sum(len(r.ambiguous) for r in records) == 99


# ---------------------------------------------------------------- unit conversion

def test_timeline_actionformer_convention():
    tl = Timeline.from_clips(100, fps=30.0, feature_stride=4, clip_frames=16)
    # time of feature t = (t * stride + clip / 2) / fps
    assert tl.to_seconds(10) == pytest.approx((10 * 4 + 8) / 30)
    np.testing.assert_allclose(tl.to_steps(tl.to_seconds([0.5, 7.25])), [0.5, 7.25])
    item = {"time_offset": tl.time_offset, "seconds_per_step": tl.seconds_per_step}
    assert to_seconds(10, item) == pytest.approx(tl.to_seconds(10))
    batch = {"time_offset": torch.tensor([0.0, 1.0], dtype=torch.float64),
             "seconds_per_step": torch.tensor([0.5, 2.0], dtype=torch.float64)}
    steps = torch.tensor([[[1.0, 2.0]], [[1.0, 2.0]]])  # (B, K, 2)
    secs = to_seconds(steps, batch)
    assert secs.tolist() == [[[0.5, 1.0]], [[3.0, 5.0]]]
    torch.testing.assert_close(to_steps(secs, batch), steps.double())


def test_clip_instances():
    seg = np.array([[0.0, 10.0], [8.0, 12.0], [9.0, 30.0], [5.0, 5.0], [20.0, 20.0]])
    out, lab = clip_instances(seg, np.arange(5), 0.0, 10.0, 0.5)
    # [8,12]: 2 of 4 inside -> kept; [9,30]: 1 of 21 -> dropped; points: inside kept
    assert lab.tolist() == [0, 1, 3] and out.tolist() == [[0, 10], [8, 10], [5, 5]]


# ---------------------------------------------------------------- ActionFormer layout

def _write_actionformer(tmp_path, lengths=(40, 23), dim=6):
    db = {}
    rng = np.random.default_rng(0)
    (tmp_path / "feats").mkdir()
    for i, t in enumerate(lengths):
        vid = f"video_{i}"
        db[vid] = {"subset": "Test" if i else "Validation", "duration": t * 4 / 30 + 0.5, "fps": 30.0,
                   "annotations": [{"label": "jump", "segment": [1.0, 2.0], "label_id": 1},
                                   {"label": "run", "segment": [0.3, 0.9], "label_id": 0}]}
        np.save(tmp_path / "feats" / f"{vid}.npy", rng.standard_normal((t, dim)).astype(np.float32))
    path = tmp_path / "anno.json"
    path.write_text(json.dumps({"version": "x", "database": db}))
    return path


def test_actionformer_loader(tmp_path):
    path = _write_actionformer(tmp_path)
    ds = actionformer_dataset(path, tmp_path / "feats", ["Validation", "Test"])
    assert ds.classes == ("run", "jump")  # label_id order
    item = ds[0]
    raw = np.load(tmp_path / "feats" / "video_0.npy")
    torch.testing.assert_close(item["features"], torch.from_numpy(raw.T.copy()))
    assert item["features"].dtype == torch.float32 and item["labels"].tolist() == [1, 0]
    # seconds -> steps: (s * fps - clip / 2) / stride
    expected = (np.array([[1.0, 2.0], [0.3, 0.9]]) * 30 - 8) / 4
    np.testing.assert_allclose(item["segments"].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(to_seconds(item["segments"].numpy(), item), [[1, 2], [0.3, 0.9]], rtol=1e-6)
    assert item["fps"] == 30.0 and item["feature_stride"] == 4.0
    gt = ds.ground_truth()
    assert gt.video_ids == ("video_0", "video_1") and len(gt.label) == 4
    assert len(actionformer_dataset(path, tmp_path / "feats", "test")) == 1


def test_actionformer_loader_errors(tmp_path):
    path = _write_actionformer(tmp_path)
    os.remove(tmp_path / "feats" / "video_1.npy")
    with pytest.raises(FileNotFoundError, match=r"video 'video_1': feature file not found"):
        actionformer_dataset(path, tmp_path / "feats", "Test")
    np.save(tmp_path / "feats" / "video_1.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"video 'video_1': feature file .* must hold a \(T, D\) array"):
        actionformer_dataset(path, tmp_path / "feats", "Test")
    np.save(tmp_path / "feats" / "video_1.npy", np.full((9, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"video 'video_1': .* NaN or inf"):
        actionformer_dataset(path, tmp_path / "feats", "Test")[0]
    with pytest.raises(ValueError, match=r"video 'video_0' annotation 0: field 'label' 'jump' is not one of"):
        actionformer_dataset(path, tmp_path / "feats", "Validation", classes=["run"])


# ---------------------------------------------------------------- BSN / BMN layout

def _bsn_files(tmp_path, rows: np.ndarray):
    anno = {"v_a": {"duration_second": 10.0, "duration_frame": 300, "feature_frame": 288,
                    "annotations": [{"label": "Ballet", "segment": [2.4, 4.8]}]}}
    (tmp_path / "anno.json").write_text(json.dumps(anno))
    (tmp_path / "info.csv").write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
                                       "v_a,300,10.0,30.0,30.0,validation,288\n")
    (tmp_path / "feats").mkdir(exist_ok=True)
    header = ",".join(f"f{i}" for i in range(rows.shape[1]))
    np.savetxt(tmp_path / "feats" / "v_a.csv", rows, delimiter=",", header=header, comments="")


def test_bsn_loader(tmp_path):
    rows = np.arange(5 * 3, dtype=np.float64).reshape(5, 3)
    _bsn_files(tmp_path, rows)
    ds = bsn_dataset(tmp_path / "anno.json", tmp_path / "info.csv", tmp_path / "feats", "validation")
    item = ds[0]
    assert item["features"].shape == (3, 100)
    # BMN: the features cover 288 of 300 frames -> 9.6 s; step t at t / 100 of it
    assert item["seconds_per_step"] == pytest.approx(0.096)
    np.testing.assert_allclose(item["segments"].numpy(), [[25.0, 50.0]], rtol=1e-6)
    # linear interpolation at input rows t * 5 / 100
    t = 30
    x = t * 5 / 100
    want = rows[int(x)] * (1 - (x - int(x))) + rows[int(x) + 1] * (x - int(x))
    np.testing.assert_allclose(item["features"][:, t].numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(rescale_features(rows, 5), rows.T)  # N == T: unchanged


@needs_shared
def test_bsn_loader_on_shared_feature_csv(tmp_path):
    _bsn_files(tmp_path, np.zeros((1, 1)))
    shutil.copy(os.path.join(SHARED_DATA, "feature_formats", "v_test1.csv"), tmp_path / "feats" / "v_a.csv")
    item = bsn_dataset(tmp_path / "anno.json", tmp_path / "info.csv", tmp_path / "feats", "validation")[0]
    assert item["features"].shape == (400, 100) and torch.isfinite(item["features"]).all()


def test_bsn_loader_errors(tmp_path):
    _bsn_files(tmp_path, np.zeros((4, 2)))
    (tmp_path / "feats" / "v_a.csv").write_text("f0,f1\n1,oops\n")
    ds = bsn_dataset(tmp_path / "anno.json", tmp_path / "info.csv", tmp_path / "feats", "validation")
    with pytest.raises(ValueError, match=r"video 'v_a': malformed feature csv"):
        ds[0]
    with pytest.raises(AnnotationError, match="no video in subset 'training'"):
        bsn_dataset(tmp_path / "anno.json", tmp_path / "info.csv", tmp_path / "feats", "training")


# ---------------------------------------------------------------- G-TAD THUMOS14 layout

def test_gtad_loader_keeps_ambiguous(tmp_path):
    test = {v.video_id: v for v in builtin.thumos14_annotations("test")}
    vid = next(v for v, r in test.items() if len(r.ambiguous))
    rec = test[vid]
    lines = ["video,type,type_idx,start,end,startFrame,endFrame"]
    lines += [f"{vid},{lab},0,{s},{e},0,0" for lab, (s, e) in zip(rec.labels, rec.segments)]
    lines += [f"{vid},Ambiguous,0,{s},{e},0,0" for s, e in rec.ambiguous]
    lines += ["video_only_ambiguous,Ambiguous,0,1.0,2.0,0,0"]
    (tmp_path / "anno.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "feats").mkdir()
    steps = int(rec.duration * rec.fps) // 4
    np.save(tmp_path / "feats" / f"{vid}.npy", np.zeros((steps, 4), dtype=np.float32))
    ds = gtad_thumos14_dataset(tmp_path / "anno.csv", tmp_path / "feats")
    assert len(ds) == 1 and ds.classes == builtin.thumos14_classes()
    gt = ds.ground_truth()
    assert len(gt.ambiguous_video) == len(rec.ambiguous) and len(gt.label) == rec.num_instances
    assert ds[0]["fps"] == rec.fps


# ---------------------------------------------------------------- windows and collate

class _Ramp(VideoDataset):
    """Videos whose feature at step t is t (checks slicing); 0.5 s per step, segments in seconds."""

    def __init__(self, lengths, segments, max_steps=None):
        self.lengths = list(lengths)
        videos = [VideoAnnotation(f"v{i}", n * 0.5, np.asarray(seg, dtype=float).reshape(-1, 2), ("a",) * len(seg))
                  for i, (n, seg) in enumerate(zip(lengths, segments))]
        super().__init__(videos, ["a"], [Timeline(n, 0.5, 0.0, 2.0, 1.0) for n in lengths], max_steps=max_steps)

    def load_features(self, index):
        return np.tile(np.arange(self.lengths[index], dtype=np.float32), (2, 1))


def test_window_starts():
    assert window_starts(10, 16, 8) == [0]
    assert window_starts(32, 16, 8) == [0, 8, 16]
    assert window_starts(35, 16, 8) == [0, 8, 16, 19]
    with pytest.raises(ValueError, match="window and stride must be >= 1"):
        window_starts(10, 0, 1)


def test_windowed_dataset_round_trip():
    base = _Ramp([35, 10], [[[2.0, 6.0], [14.0, 20.0], [30.0, 34.0]], [[1.0, 3.0]]])  # steps 4-12, 28-40, 60-68
    windows = WindowedDataset(base, window=16, stride=8)
    assert [(v, s) for v, s, _ in windows.index] == [(0, 0), (0, 8), (0, 16), (0, 19), (1, 0)]
    item = windows[1]  # video 0, steps 8..23
    assert item["window_start"] == 8 and item["features"][0].tolist() == list(range(8, 24))
    # steps 4-12: half inside (8-12) -> kept, clipped, in window coordinates 0-4; 28-40 lies outside
    assert item["segments"].tolist() == [[0.0, 4.0]]
    video_steps = window_to_video(item["segments"], torch.tensor([8]))
    np.testing.assert_allclose(to_seconds(item["segments"].numpy(), item), to_seconds(video_steps.numpy(), base[0]))
    assert len(WindowedDataset(base, 16, 8, keep_empty=False)) == 4


def test_collate_pads_and_returns_lengths():
    base = _Ramp([7, 3], [[[1.0, 2.0], [2.0, 3.0]], []])
    batch = collate_videos([base[0], base[1]], pad_multiple=4)
    assert batch["features"].shape == (2, 2, 8) and batch["lengths"].tolist() == [7, 3]
    assert batch["mask"].sum(1).tolist() == [7, 3] and batch["features"][1, :, 3:].abs().sum() == 0
    assert batch["segments"].shape == (2, 2, 2) and batch["labels"].tolist() == [[0, 0], [-1, -1]]
    assert batch["num_instances"].tolist() == [2, 0] and batch["video_id"] == ["v0", "v1"]
    assert batch["seconds_per_step"].dtype == torch.float64
    assert collate_videos([base[1]], pad_to=10)["features"].shape == (1, 2, 10)
    with pytest.raises(ValueError, match=r"video 'v0' has 7 steps, more than pad_to=5"):
        collate_videos([base[0]], pad_to=5)
    windows = WindowedDataset(base, window=4, stride=2)
    assert collate_videos([windows[0], windows[1]])["window_start"].tolist() == [0, 2]


def test_max_steps_crops_instances_and_ground_truth():
    base = _Ramp([40], [[[1.0, 3.0], [9.0, 11.0], [14.0, 19.0]]], max_steps=24)  # steps 2-6, 18-22, 28-38
    item = base[0]
    assert item["features"].shape == (2, 24)
    assert item["segments"].tolist() == [[2.0, 6.0], [18.0, 22.0]]
    gt = base.ground_truth()
    np.testing.assert_allclose(gt.segments, [[1.0, 3.0], [9.0, 11.0]])
