"""rcl_kernels.evaluation: hand-computed cases of both protocols, cross-checks against the
per-prediction loop versions on random data, AR@AN, input forms and errors, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rcl_kernels.cli import main as cli_main
from rcl_kernels.data import builtin
from rcl_kernels.evaluation import (
    EvaluationInputError,
    GroundTruth,
    average_recall,
    detection_map,
    load_detections,
    load_ground_truth,
    pairwise_tiou,
)
from rcl_kernels.evaluation.reference import activitynet_ap_loop, average_recall_loop, thumos14_ap_loop
from rcl_kernels.evaluation.tiou import paired_tiou


def database(videos: dict) -> dict:
    """{video: [(label, start, end), ...]} -> an ActivityNet ground-truth object."""
    return {"database": {v: {"subset": "validation", "annotations": [{"label": lab, "segment": [s, e]}
                                                                      for lab, s, e in inst]}
                         for v, inst in videos.items()}}


def results(videos: dict) -> dict:
    """{video: [(label, score, start, end), ...]} -> an ActivityNet results object."""
    return {"results": {v: [{"label": lab, "score": sc, "segment": [s, e]} for lab, sc, s, e in dets]
                        for v, dets in videos.items()}}


# ---------------------------------------------------------------- tIoU

def test_tiou_hand_values():
    a = np.array([[0.0, 10.0], [0.0, 2.0], [5.0, 5.0], [3.0, 4.0]])
    b = np.array([[5.0, 15.0], [0.0, 1.0], [5.0, 5.0], [4.0, 6.0]])
    # 5/15; 1/2; zero-length pair -> 0; touching -> 0
    np.testing.assert_array_equal(paired_tiou(a, b), [1 / 3, 0.5, 0.0, 0.0])
    m = pairwise_tiou(a, b)
    assert m.shape == (4, 4)
    assert m[0, 3] == pytest.approx(2 / 10)
    np.testing.assert_array_equal(np.diag(m), paired_tiou(a, b))
    assert pairwise_tiou(np.zeros((0, 2)), b).shape == (0, 4)


# ---------------------------------------------------------------- ActivityNet protocol, by hand

def test_activitynet_duplicates_and_video_without_ground_truth():
    gt = database({"v1": [("a", 0, 10), ("a", 20, 30)], "v2": [("b", 0, 5)]})
    pred = results({
        "v1": [("a", 0.9, 0, 10), ("a", 0.8, 0, 9), ("a", 0.7, 20, 25)],
        "v2": [("a", 0.95, 0, 5)],  # v2 has no instance of "a": false positive
    })
    r = detection_map(pred, gt, [0.5, 0.9])
    # class a at 0.5: ranking FP, TP, FP (duplicate of the locked [0,10]), TP (tIoU 0.5 >= 0.5)
    # precision 0, 1/2, 1/3, 1/2 -> interpolated 1/2 at both TPs -> AP = (1/2 + 1/2) / 2
    # at 0.9: FP, TP, FP, FP -> AP = (1/2) / 2
    np.testing.assert_allclose(r.ap[:, 0], [0.5, 0.25])
    # class b: no predictions -> AP 0, still in the mean
    np.testing.assert_array_equal(r.ap[:, 1], [0.0, 0.0])
    np.testing.assert_allclose(r.map, [0.25, 0.125])
    assert r.average_map == pytest.approx(0.1875)


def test_activitynet_interpolated_precision():
    gt = database({"v": [("a", 0, 10), ("a", 20, 30), ("a", 40, 50)]})
    pred = results({"v": [("a", 0.9, 0, 10), ("a", 0.8, 60, 70), ("a", 0.7, 62, 70), ("a", 0.6, 20, 30),
                          ("a", 0.5, 40, 50)]})
    # TP FP FP TP TP: precision 1, 1/2, 1/3, 1/2, 3/5; interpolated at the TPs 1, 3/5, 3/5
    r = detection_map(pred, gt, [0.5])
    assert r.ap[0, 0] == pytest.approx((1 + 0.6 + 0.6) / 3)
    # THUMOS14 is not interpolated: (1 + 1/2 + 3/5) / 3
    r = detection_map(pred, gt, [0.5], protocol="thumos14")
    assert r.ap[0, 0] == pytest.approx((1 + 0.5 + 0.6) / 3)


def test_activitynet_matches_highest_tiou_unlocked_instance():
    gt = database({"v": [("a", 0, 10), ("a", 4, 14)]})
    # p1 overlaps both: tIoU 0.6 with [0,10] and ~0.82 with [4,14] -> takes [4,14];
    # p2 = [0,10] then finds [0,10] free.
    pred = results({"v": [("a", 0.9, 3, 12), ("a", 0.8, 0, 10)]})
    r = detection_map(pred, gt, [0.55])
    assert r.ap[0, 0] == pytest.approx(1.0)
    # If p1 had taken [0,10], p2's only candidate would be [4,14] at tIoU 6/14 < 0.55.


def test_activitynet_skips_locked_instance_to_next_candidate():
    gt = database({"v": [("a", 0, 10), ("a", 1, 11)]})
    pred = results({"v": [("a", 0.9, 0, 10), ("a", 0.8, 0, 10)]})
    # p2's best instance [0,10] is locked, its second [1,11] has tIoU 9/11 -> still a TP at 0.8
    r = detection_map(pred, gt, [0.8, 0.85])
    np.testing.assert_allclose(r.ap[:, 0], [1.0, 0.5])


def test_threshold_exactly_at_tiou():
    # tIoU exactly 0.5 ([0,1] in [0,2]) and 0.3 ([0,3] in [0,10]): both are exact doubles.
    gt = database({"v": [("a", 0, 2), ("b", 0, 10)]})
    pred = results({"v": [("a", 1.0, 0, 1), ("b", 1.0, 0, 3)]})
    anet = detection_map(pred, gt, [0.3, 0.5])
    np.testing.assert_array_equal(anet.ap, [[1, 1], [1, 0]])  # >=
    thumos = detection_map(pred, gt, [0.3, 0.5], protocol="thumos14")
    np.testing.assert_array_equal(thumos.ap, [[1, 0], [0, 0]])  # strictly >
    # the default threshold lists hold the decimal values themselves
    assert 0.9 in detection_map(pred, gt).tiou_thresholds
    assert detection_map(pred, gt, protocol="thumos14").tiou_thresholds.tolist() == [0.3, 0.4, 0.5, 0.6, 0.7]


def test_activitynet_score_ties_keep_input_order():
    gt = database({"v": [("a", 0, 10)]})
    good, dup = ("a", 0.5, 0, 10), ("a", 0.5, 0, 9)
    # first listed is taken first: TP then FP -> AP 1; FP-looking order -> dup takes the instance
    assert detection_map(results({"v": [good, dup]}), gt, [0.95]).ap[0, 0] == pytest.approx(1.0)
    assert detection_map(results({"v": [dup, good]}), gt, [0.95]).ap[0, 0] == pytest.approx(0.5)


# ---------------------------------------------------------------- THUMOS14 protocol, by hand

def test_thumos14_ground_truth_picks_largest_overlap_whatever_the_score():
    gt = database({"v": [("a", 0, 10)]})
    pred = results({"v": [("a", 0.9, 0, 6), ("a", 0.5, 0, 10)]})
    # THUMOS14: the instance takes [0,10] (overlap 1) -> ranking FP, TP -> AP 1/2
    assert detection_map(pred, gt, [0.5], protocol="thumos14").ap[0, 0] == pytest.approx(0.5)
    # ActivityNet: the higher score matches first ([0,6], tIoU 0.6) -> TP, FP -> AP 1
    assert detection_map(pred, gt, [0.5]).ap[0, 0] == pytest.approx(1.0)


def test_thumos14_instances_in_annotation_order_and_first_on_ties():
    # Instance 1 [0,10] sees d1 [0,10] (1.0) and d2 [2,12] (2/3): takes d1.
    # Instance 2 [2,12] then takes d2. Swapping the annotation order changes nothing here, but
    # two detections with the same overlap go to the first in confidence order.
    gt = database({"v": [("a", 0, 10), ("a", 2, 12)]})
    pred = results({"v": [("a", 0.3, 0, 10), ("a", 0.6, 2, 12)]})
    assert detection_map(pred, gt, [0.5], protocol="thumos14").ap[0, 0] == pytest.approx(1.0)
    gt = database({"v": [("a", 0, 10)]})
    tie = results({"v": [("a", 0.3, 0, 8), ("a", 0.6, 2, 10)]})  # both overlap 0.8
    # the 0.6 detection comes first in confidence order -> TP; the 0.3 one FP -> AP 1
    assert detection_map(tie, gt, [0.5], protocol="thumos14").ap[0, 0] == pytest.approx(1.0)


def test_thumos14_ambiguous_regions():
    gt = database({"v": [("a", 0, 10), ("Ambiguous", 20, 30)]})
    pred = results({"v": [("a", 0.9, 22, 28),   # unmatched, inside the ambiguous region: ignored
                          ("a", 0.8, 30, 35),   # touches it at one point only: a false positive
                          ("a", 0.7, 0, 10)]})  # TP
    r = detection_map(pred, gt, [0.5], protocol="thumos14")
    assert r.ap[0, 0] == pytest.approx(0.5)  # ranking (ignored), FP, TP
    gtobj = load_ground_truth(gt)
    assert gtobj.classes == ("a",) and len(gtobj.ambiguous_video) == 1  # never a class
    # ActivityNet ignores ambiguous regions: FP, FP, TP -> AP 1/3
    assert detection_map(pred, gt, [0.5]).ap[0, 0] == pytest.approx(1 / 3)
    # a matched detection that overlaps an ambiguous region stays a TP
    gt2 = database({"v": [("a", 0, 10), ("Ambiguous", 5, 30)]})
    assert detection_map(results({"v": [("a", 0.9, 0, 10)]}), gt2, [0.5], protocol="thumos14").ap[0, 0] == 1.0


def test_thumos14_confidence_ties_broken_by_video_name():
    gt = database({"a_vid": [("x", 0, 10)], "b_vid": [("y", 0, 10)]})
    # same confidence in two videos: a_vid's TP ranks before b_vid's FP, whatever the input order
    pred = results({"b_vid": [("x", 0.5, 0, 10)], "a_vid": [("x", 0.5, 0, 10)]})
    assert detection_map(pred, gt, [0.5], protocol="thumos14").ap[0, 0] == pytest.approx(1.0)
    gt = database({"a_vid": [("y", 0, 10)], "b_vid": [("x", 0, 10)]})
    assert detection_map(pred, gt, [0.5], protocol="thumos14").ap[0, 0] == pytest.approx(0.5)


def test_class_without_ground_truth_is_left_out():
    gt = load_ground_truth(database({"v": [("a", 0, 10)]}), classes=["a", "b"])
    r = detection_map(results({"v": [("a", 1.0, 0, 10), ("b", 0.5, 0, 10)]}), gt, [0.5])
    assert np.isnan(r.ap[0, 1]) and r.map[0] == 1.0
    assert r.num_instances.tolist() == [1, 0]


def test_empty_predictions():
    gt = database({"v": [("a", 0, 10)]})
    for protocol in ("activitynet", "thumos14"):
        r = detection_map({"results": {}}, gt, protocol=protocol)
        assert np.all(r.ap == 0) and r.num_detections == 0


# ---------------------------------------------------------------- cross-checks with the loops

def random_case(rng: np.random.Generator, num_videos=12, num_classes=4, with_ambiguous=True):
    videos = {}
    for v in range(num_videos):
        inst = []
        for _ in range(rng.integers(0, 6)):
            s = float(rng.integers(0, 80))
            inst.append((f"c{rng.integers(num_classes)}", s, s + float(rng.integers(1, 20))))
        if with_ambiguous and rng.random() < 0.4:
            s = float(rng.integers(0, 80))
            inst.append(("Ambiguous", s, s + 10.0))
        videos[f"vid{v:02d}"] = inst
    gt = load_ground_truth(database(videos), classes=[f"c{i}" for i in range(num_classes)])
    dets = {}
    for v, inst in videos.items():
        out = []
        for _ in range(rng.integers(0, 30)):
            if inst and rng.random() < 0.7:  # near an instance (or an ambiguous region)
                lab, s, e = inst[rng.integers(len(inst))]
                lab = lab if lab != "Ambiguous" else f"c{rng.integers(num_classes)}"
                s, e = s + float(rng.integers(-3, 4)), e + float(rng.integers(-3, 4))
            else:
                lab, s = f"c{rng.integers(num_classes)}", float(rng.integers(0, 90))
                e = s + float(rng.integers(0, 15))
            s, e = min(s, e), max(s, e)
            out.append((lab if rng.random() < 0.85 else f"c{rng.integers(num_classes)}",
                        float(rng.integers(0, 8)) / 8, s, e))  # coarse scores: many ties
        dets[v] = out
    # integer coordinates make many tIoUs land exactly on thresholds like 0.5
    return gt, results(dets)


@pytest.mark.parametrize("seed", range(8))
def test_activitynet_matches_loop_reference(seed):
    rng = np.random.default_rng(seed)
    gt, pred = random_case(rng, with_ambiguous=False)
    thresholds = np.array([0.1, 0.3, 0.5, 0.55, 0.7, 0.9])
    got = detection_map(pred, gt, thresholds).ap
    want = activitynet_ap_loop(load_detections(pred, gt), gt, thresholds)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_thumos14_matches_loop_reference(seed):
    rng = np.random.default_rng(100 + seed)
    gt, pred = random_case(rng)
    thresholds = np.array([0.1, 0.3, 0.5, 0.6, 0.7])
    got = detection_map(pred, gt, thresholds, protocol="thumos14").ap
    want = thumos14_ap_loop(load_detections(pred, gt), gt, thresholds)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_loop_references_agree_with_hand_case():
    gt = load_ground_truth(database({"v": [("a", 0, 10)]}))
    det = load_detections(results({"v": [("a", 0.9, 0, 6), ("a", 0.5, 0, 10)]}), gt)
    assert activitynet_ap_loop(det, gt, [0.5])[0, 0] == pytest.approx(1.0)
    assert thumos14_ap_loop(det, gt, [0.5])[0, 0] == pytest.approx(0.5)


def test_real_thumos14_ground_truth_as_predictions_scores_one():
    gt = builtin.thumos14_ground_truth("test")
    pred = {"video": [gt.video_ids[v] for v in gt.video], "label": gt.label, "score": np.ones(len(gt.label)),
            "segment": gt.segments}
    for protocol in ("activitynet", "thumos14"):
        r = detection_map(pred, gt, protocol=protocol)
        np.testing.assert_allclose(r.map, 1.0)
        assert r.num_instances.sum() == 3358 and len(r.classes) == 20


# ---------------------------------------------------------------- AR@AN

def test_average_recall_hand_case():
    gt = database({"v1": [("a", 0, 10), ("a", 20, 30)], "v2": [("b", 0, 10)], "v3": []})
    props = {"results": {
        "v1": [{"score": 0.9, "segment": [0, 10]}, {"score": 0.8, "segment": [0, 10]},
               {"score": 0.1, "segment": [21, 30]}],
        "v2": [{"score": 0.5, "segment": [0, 6]}, {"score": 0.6, "segment": [50, 60]}],
    }}
    r = average_recall(props, gt, max_proposals=3, tiou_thresholds=[0.5, 0.9])
    # AN=1: v1's [0,10] recalls 1 of 3 at both; AN=2: v2 adds [0,6] (tIoU 0.6: recalled at 0.5 only);
    # AN=3: v1's [21,30] (tIoU 0.9, a duplicate-free count) recalls [20,30] at both.
    np.testing.assert_allclose(r.recall, [[1 / 3, 2 / 3, 1.0], [1 / 3, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(r.average_recall, [1 / 3, 0.5, 5 / 6])
    # trapezoid over AN = 1..3, divided by 3
    assert r.auc == pytest.approx(((1 / 3 + 0.5) / 2 + (0.5 + 5 / 6) / 2) / 3)
    assert r.at(2) == pytest.approx(0.5)
    assert "AR@1" in r.table()


@pytest.mark.parametrize("seed", range(3))
def test_average_recall_matches_loop_reference(seed):
    rng = np.random.default_rng(200 + seed)
    gt, pred = random_case(rng, with_ambiguous=False)
    thresholds = np.array([0.3, 0.5, 0.75])
    got = average_recall(pred, gt, max_proposals=12, tiou_thresholds=thresholds).recall
    want = average_recall_loop(load_detections(pred, gt, with_labels=False), gt, thresholds, 12)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- input forms

def test_input_forms_agree(tmp_path):
    rng = np.random.default_rng(5)
    gt_obj, pred = random_case(rng)
    gt_dict = {"database": {}}
    for v in gt_obj.video_ids:
        i = gt_obj.video_ids.index(v)
        ann = [{"label": gt_obj.classes[c], "segment": s.tolist()} for c, s, vv in
               zip(gt_obj.label, gt_obj.segments, gt_obj.video) if vv == i]
        ann += [{"label": "Ambiguous", "segment": s.tolist()} for s, vv in
                zip(gt_obj.ambiguous_segments, gt_obj.ambiguous_video) if vv == i]
        gt_dict["database"][v] = {"subset": "validation", "annotations": ann}
    (tmp_path / "gt.json").write_text(json.dumps(gt_dict))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    base = detection_map(pred, gt_obj, protocol="thumos14").ap
    np.testing.assert_array_equal(detection_map(tmp_path / "pred.json", tmp_path / "gt.json",
                                                protocol="thumos14", subset="validation").ap, base)
    # arrays form, labels as class indices, shuffled order inside a video changes nothing but ties
    flat = [(v, d["label"], d["score"], d["segment"]) for v, ds in pred["results"].items() for d in ds]
    arrays = {"video": [f[0] for f in flat], "label": [gt_obj.classes.index(f[1]) for f in flat],
              "score": [f[2] for f in flat], "segment": [f[3] for f in flat]}
    np.testing.assert_array_equal(detection_map(arrays, gt_obj, protocol="thumos14").ap, base)
    # BSN layout ground truth (no subsets) gives the same classes and instances
    bsn = {v: {"duration_second": 100.0, "annotations": d["annotations"]} for v, d in gt_dict["database"].items()}
    np.testing.assert_array_equal(detection_map(pred, load_ground_truth(bsn, classes=gt_obj.classes),
                                                protocol="thumos14").ap, base)


def test_ground_truth_from_arrays_and_gtad_csv(tmp_path):
    gt = GroundTruth.from_arrays(["v1", "v1", "v2"], ["a", "Ambiguous", "b"], [[0, 1], [2, 3], [0, 5]],
                                 video_ids=["v0"])
    assert gt.video_ids == ("v0", "v1", "v2") and gt.classes == ("a", "b")
    assert gt.ambiguous_video.tolist() == [1]
    csv = tmp_path / "gt.csv"
    csv.write_text("video,type,type_idx,start,end,startFrame,endFrame\n"
                   "v1,a,7,0.0,1.0,0,30\nv1,Ambiguous,0,2.0,3.0,60,90\nv2,b,9,0,5,0,150\n")
    from_csv = load_ground_truth(csv)
    assert from_csv.video_ids == ("v1", "v2") and from_csv.ambiguous_segments.tolist() == [[2.0, 3.0]]
    np.testing.assert_array_equal(from_csv.segments, gt.segments)


def test_unknown_video_policy():
    gt = database({"v": [("a", 0, 10)]})
    pred = results({"v": [("a", 0.5, 0, 10)], "other": [("a", 0.9, 0, 10)]})
    with pytest.raises(EvaluationInputError, match="video 'other' is not in the ground truth"):
        detection_map(pred, gt)
    for protocol in ("activitynet", "thumos14"):
        r = detection_map(pred, gt, [0.5], protocol=protocol, unknown_videos="false_positive")
        assert r.ap[0, 0] == pytest.approx(0.5)  # FP (the unknown video) then TP


# ---------------------------------------------------------------- errors name the video and field

@pytest.mark.parametrize("entry, match", [
    ({"label": "zzz", "score": 0.5, "segment": [0, 1]}, r"video 'v' entry 1: field 'label' 'zzz'"),
    ({"label": "a", "score": float("nan"), "segment": [0, 1]}, r"video 'v' entry 1: field 'score' must be finite"),
    ({"label": "a", "score": 0.5, "segment": [3, 1]}, r"video 'v' entry 1: field 'segment' has negative length"),
    ({"label": "a", "score": 0.5, "segment": [0, float("inf")]}, r"video 'v' entry 1: field 'segment' must be finite"),
    ({"label": "a", "score": 0.5, "segment": [0, 1, 2]}, r"video 'v' entry 1: field 'segment' must be two numbers"),
    ({"label": "a", "segment": [0, 1]}, r"video 'v' entry 1: missing field 'score'"),
    ({"label": "a", "score": "high", "segment": [0, 1]}, r"video 'v' entry 1: field 'score' must be a number"),
    ({"score": 0.5, "segment": [0, 1]}, r"video 'v' entry 1: missing field 'label'"),
])
def test_bad_predictions_name_video_and_field(entry, match):
    gt = database({"v": [("a", 0, 10)]})
    pred = {"results": {"v": [{"label": "a", "score": 0.1, "segment": [0, 2]}, entry]}}
    with pytest.raises(EvaluationInputError, match=match):
        detection_map(pred, gt)


def test_bad_ground_truth_and_files(tmp_path):
    with pytest.raises(EvaluationInputError, match=r"video 'v' annotation 0: field 'segment' has negative length"):
        detection_map({"results": {}}, database({"v": [("a", 5, 1)]}))
    with pytest.raises(EvaluationInputError, match=r"video 'v' annotation 0: field 'label'"):
        load_ground_truth({"database": {"v": {"annotations": [{"segment": [0, 1], "label": 3}]}}})
    bad = tmp_path / "bad.json"
    bad.write_text('{"results": {"v": [')
    with pytest.raises(EvaluationInputError, match="bad.json: malformed JSON"):
        detection_map(bad, database({"v": [("a", 0, 1)]}))
    with pytest.raises(EvaluationInputError, match="no video in subset 'testing'"):
        load_ground_truth(database({"v": [("a", 0, 1)]}), subset="testing")
    with pytest.raises(EvaluationInputError, match=r"'segment' has negative length"):
        load_detections({"video": ["v"], "label": ["a"], "score": [1.0], "segment": [[2, 1]]},
                        load_ground_truth(database({"v": [("a", 0, 1)]})))
    with pytest.raises(ValueError, match="protocol must be one of"):
        detection_map({"results": {}}, database({"v": [("a", 0, 1)]}), protocol="coco")
    with pytest.raises(ValueError, match="tiou_thresholds must be"):
        detection_map({"results": {}}, database({"v": [("a", 0, 1)]}), [1.5])


# ---------------------------------------------------------------- CLI

def test_cli_eval_prints_table(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(database({"v1": [("a", 0, 10), ("Ambiguous", 20, 30)]})))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(results({"v1": [("a", 0.9, 0, 10), ("a", 0.5, 21, 29)]})))
    out_json = tmp_path / "out.json"
    assert cli_main(["eval", "--ground-truth", str(gt), "--predictions", str(pred), "--protocol", "thumos14",
                     "--per-class", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "| mAP | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 |" in text
    assert json.loads(out_json.read_text())["average_map"] == 1.0
    assert cli_main(["eval", "--ground-truth", str(gt), "--predictions", str(pred), "--proposals",
                     "--max-proposals", "2"]) == 0
    assert "AUC" in capsys.readouterr().out
    pred.write_text(json.dumps(results({"v1": [("b", 0.9, 0, 10)]})))
    assert cli_main(["eval", "--ground-truth", str(gt), "--predictions", str(pred)]) == 2
    assert "field 'label' 'b'" in capsys.readouterr().err


def test_cli_shipped_ground_truth(tmp_path, capsys):
    gt = builtin.thumos14_ground_truth("test")
    first = gt.video_ids[gt.video[0]]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(results({first: [(gt.classes[gt.label[0]], 1.0, *gt.segments[0].tolist())]})))
    assert cli_main(["eval", "--ground-truth", "thumos14:test", "--predictions", str(pred),
                     "--protocol", "thumos14"]) == 0
    assert "thumos14 protocol; 20 classes, 3358 instances, 1 detections" in capsys.readouterr().out


def test_import_rcl_kernels_does_not_load_evaluation_or_data():
    import subprocess
    import sys

    code = ("import sys, rcl_kernels; assert 'rcl_kernels.evaluation' not in sys.modules; "
            "assert 'rcl_kernels.data' not in sys.modules; "
            "assert rcl_kernels.evaluation.detection_map is not None and rcl_kernels.data.synthetic")
    subprocess.run([sys.executable, "-c", code], check=True)
