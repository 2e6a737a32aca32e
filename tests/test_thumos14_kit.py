"""The THUMOS14 kit's formats (rcl_kernels.evaluation.thumos14_kit), reversed-interval policies, and bad input.

The kit groundtruth folder is built from the shipped real THUMOS14 Test annotations (G-TAD csv,
with its Ambiguous regions) in tmp_path.
"""

import json
import warnings

import numpy as np
import pytest

from rcl_kernels.cli import main
from rcl_kernels.data import builtin
from rcl_kernels.data.annotations import AnnotationError, GroundTruth
from rcl_kernels.evaluation import detection_map, load_ground_truth
from rcl_kernels.evaluation import thumos14_kit as kit


@pytest.fixture(scope="module")
def real_test_gt():
    return load_ground_truth(builtin.THUMOS14_CSV["Test"], classes=builtin.thumos14_classes())


@pytest.fixture()
def kit_folder(tmp_path, real_test_gt):
    folder = tmp_path / "groundtruth"
    kit.write_ground_truth(folder, real_test_gt, subset="test")
    return folder


def instance_set(gt: GroundTruth):
    return sorted((gt.video_ids[v], gt.classes[c], float(s), float(e))
                  for v, c, (s, e) in zip(gt.video, gt.label, gt.segments))


def ambiguous_set(gt: GroundTruth):
    return sorted((gt.video_ids[v], float(s), float(e)) for v, (s, e) in zip(gt.ambiguous_video, gt.ambiguous_segments))


def some_detections(gt: GroundTruth, seed=0, n=3000):
    """Detections near the real instances (and some elsewhere), as an ActivityNet results mapping."""
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(gt.label), n)
    seg = gt.segments[pick] + rng.normal(0, 1.0, (n, 2))
    seg.sort(axis=1)
    label = np.where(rng.random(n) < 0.8, gt.label[pick], rng.integers(0, len(gt.classes), n))
    score = rng.permutation(n) / n
    results = {}
    for i in range(n):
        results.setdefault(gt.video_ids[gt.video[pick[i]]], []).append(
            {"label": gt.classes[label[i]], "score": float(score[i]), "segment": seg[i].tolist()})
    return results


def test_class_list_is_the_kits():
    entries = kit.read_class_list()
    assert len(entries) == 20 and entries[0] == (7, "BaseballPitch") and entries[-1] == (97, "VolleyballSpiking")
    assert tuple(n for _, n in entries) == builtin.thumos14_classes()


def test_ground_truth_folder_round_trip(kit_folder, real_test_gt):
    files = sorted(p.name for p in kit_folder.iterdir())
    assert "Ambiguous_test.txt" in files and "BaseballPitch_test.txt" in files and "detclasslist.txt" in files
    assert len(files) == 22
    first = (kit_folder / "BaseballPitch_test.txt").read_text().splitlines()[0].split()
    assert len(first) == 3 and first[0].startswith("video_test_")
    back = load_ground_truth(kit_folder)
    assert back.classes == real_test_gt.classes
    assert instance_set(back) == instance_set(real_test_gt)
    assert ambiguous_set(back) == ambiguous_set(real_test_gt)
    assert len(back.ambiguous_video) == 99 and len(back.label) == len(real_test_gt.label)


def test_detection_file_round_trip_scores_as_the_json(tmp_path, real_test_gt, kit_folder):
    results = some_detections(real_test_gt)
    kit.write_detections(tmp_path / "run.txt", results)
    line = (tmp_path / "run.txt").read_text().splitlines()[0].split()
    assert len(line) == 5 and int(line[3]) in dict(kit.read_class_list())
    (tmp_path / "run.json").write_text(json.dumps({"results": results}))
    from_json = detection_map(tmp_path / "run.json", real_test_gt, protocol="thumos14")
    from_kit = detection_map(tmp_path / "run.txt", kit_folder, protocol="thumos14")
    np.testing.assert_array_equal(from_kit.ap, from_json.ap)
    assert from_kit.input_report.unknown_class_ids == 0
    assert from_kit.average_map > 0.1


def test_cli_eval_on_kit_files(tmp_path, real_test_gt, kit_folder, capsys):
    results = some_detections(real_test_gt, seed=1)
    kit.write_detections(tmp_path / "run.txt", results)
    # a detection on a test video without ground truth: the kit counts it as a false positive
    with open(tmp_path / "run.txt", "a") as fh:
        fh.write("video_test_9999999.mp4 1.0 2.0 7 0.5\n")
    rc = main(["eval", "--protocol", "thumos14", "--ground-truth", str(kit_folder), "--predictions",
               str(tmp_path / "run.txt"), "--json", str(tmp_path / "out.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "1 detections on videos without ground truth" in out
    numbers = json.loads((tmp_path / "out.json").read_text())
    expected = detection_map(tmp_path / "run.txt", kit_folder, protocol="thumos14", unknown_videos="false_positive")
    assert numbers["map"] == expected.map.tolist()
    assert numbers["input"]["unknown_video_detections"] == 1


def test_video_suffixes_are_stripped(tmp_path, kit_folder):
    (tmp_path / "a.txt").write_text("video_test_0000004.mp4 0.2 1.1 22 0.9\nvideo_test_0000004.mpeg 0.2 1.1 22 0.8\n")
    det = kit.read_detections(tmp_path / "a.txt")[0]
    assert det["video"] == ["video_test_0000004", "video_test_0000004"]
    assert det["label"] == ["CliffDiving", "CliffDiving"] and det["line"].tolist() == [1, 2]


def test_unknown_class_ids_are_counted_and_warned(tmp_path, kit_folder):
    (tmp_path / "a.txt").write_text("video_test_0000004 0.2 1.1 22 0.9\nvideo_test_0000004 0.2 1.1 3 0.8\n"
                                    "video_test_0000004 0.2 1.1 3 0.7\n")
    with pytest.warns(UserWarning, match=r"2 detections have class ids not among .*\[3\]; first at line 2"):
        result = detection_map(tmp_path / "a.txt", kit_folder, protocol="thumos14")
    assert result.input_report.unknown_class_ids == 2 and result.num_detections == 1
    assert "2 detections with a class id outside the class list left out" in result.table()
    with pytest.raises(AnnotationError, match=r"a\.txt line 2: class id 3 is not in the THUMOS14 class list"):
        detection_map(tmp_path / "a.txt", kit_folder, protocol="thumos14", unknown_class_ids="error")


@pytest.mark.parametrize("text, match", [
    ("video_test_0000004 0.2 1.1 22\n", r"line 1: expected 5 fields"),
    ("video_test_0000004 0.2 1.1 22 0.9\nvideo_test_0000004 0.2 x 22 0.9\n", r"line 2: expected 'video start end"),
    ("video_test_0000004 0.2 1.1 2.5 0.9\n", r"line 1: .*integer class id"),
    ("video_test_0000004 0.2 nan 22 0.9\n", r"line 1: video 'video_test_0000004': field 'segment' must be finite"),
])
def test_malformed_detection_lines_name_file_and_line(tmp_path, kit_folder, text, match):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(AnnotationError, match=r"bad\.txt.*" + match):
        detection_map(tmp_path / "bad.txt", kit_folder, protocol="thumos14")


def test_bad_ground_truth_folder(tmp_path, kit_folder):
    (kit_folder / "Diving_test.txt").unlink()
    with pytest.raises(AnnotationError, match=r"Diving_test\.txt: class file missing"):
        load_ground_truth(kit_folder)
    (kit_folder / "Diving_test.txt").write_text("video_test_0000004 1.0\n")
    with pytest.raises(AnnotationError, match=r"Diving_test\.txt line 1: expected 'video start end'"):
        load_ground_truth(kit_folder)
    (kit_folder / "detclasslist.txt").write_text("7 BaseballPitch\nnine BasketballDunk\n")
    with pytest.raises(AnnotationError, match=r"detclasslist\.txt line 2: expected 'class_id ClassName'"):
        load_ground_truth(kit_folder)
    with pytest.raises(FileNotFoundError, match="not found"):
        kit.read_detections(tmp_path / "none.txt")


def test_reversed_ground_truth_in_kit_files_is_ordered(tmp_path, kit_folder, real_test_gt):
    path = kit_folder / "Diving_test.txt"
    lines = path.read_text().splitlines()
    v, s, e = lines[0].split()
    path.write_text("\n".join([f"{v} {e} {s}"] + lines[1:]) + "\n")
    back = load_ground_truth(kit_folder)
    assert back.num_reordered == 1 and instance_set(back) == instance_set(real_test_gt)


# -- reversed detection intervals -----------------------------------------------------------------

def reversed_case(gt):
    results = some_detections(gt, seed=2, n=600)
    flipped = json.loads(json.dumps(results))
    count = 0
    for entries in flipped.values():
        for e in entries[::3]:
            e["segment"] = e["segment"][::-1]
            count += e["segment"][1] < e["segment"][0]
    return results, flipped, count


def test_thumos14_orders_reversed_intervals_as_the_kit(real_test_gt):
    results, flipped, count = reversed_case(real_test_gt)
    ordered = detection_map(results, real_test_gt, protocol="thumos14")
    got = detection_map(flipped, real_test_gt, protocol="thumos14")
    np.testing.assert_array_equal(got.ap, ordered.ap)
    assert got.input_report.reordered == count > 100
    assert f"{count} reversed intervals (end < start) ordered" in got.table()
    assert got.to_dict()["input"]["reordered"] == count


def test_activitynet_reversed_policies(real_test_gt):
    results, flipped, count = reversed_case(real_test_gt)
    with pytest.raises(AnnotationError, match=r"entry 0: field 'segment' has negative length .*reversed='swap'"):
        detection_map(flipped, real_test_gt)
    swapped = detection_map(flipped, real_test_gt, reversed="swap")
    np.testing.assert_array_equal(swapped.ap, detection_map(results, real_test_gt).ap)
    assert swapped.input_report.reordered == count
    dropped = detection_map(flipped, real_test_gt, reversed="drop")
    kept = {v: [e for e in entries if e["segment"][0] <= e["segment"][1]] for v, entries in flipped.items()}
    np.testing.assert_array_equal(dropped.ap, detection_map(kept, real_test_gt).ap)
    assert dropped.input_report.dropped == count and dropped.num_detections == 600 - count
    with pytest.raises(ValueError, match="reversed must be one of"):
        detection_map(results, real_test_gt, reversed="ignore")


def test_cli_reversed_flag(tmp_path, real_test_gt, capsys):
    results, flipped, count = reversed_case(real_test_gt)
    (tmp_path / "p.json").write_text(json.dumps({"results": flipped}))
    args = ["eval", "--ground-truth", "thumos14:test", "--predictions", str(tmp_path / "p.json")]
    assert main(args) == 2 and "negative length" in capsys.readouterr().err
    assert main(args + ["--reversed", "drop"]) == 0
    assert f"{count} reversed intervals (end < start) left out" in capsys.readouterr().out


def test_no_warning_for_clean_kit_files(tmp_path, kit_folder, real_test_gt):
    kit.write_detections(tmp_path / "run.txt", some_detections(real_test_gt, n=50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detection_map(tmp_path / "run.txt", kit_folder, protocol="thumos14")
