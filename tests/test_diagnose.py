"""rcl_kernels.evaluation.diagnose against DETAD's definitions.

Expected values come from hand-made cases (numbers worked out in the comments) and from
detad_reference below: a plain-loop transcription of DETAD's rules (HumamAlwassel/DETAD src/
action_detector_diagnosis.py, sensitivity_analysis.py, false_positive_analysis.py,
false_negative_analysis.py, utils.py), written independently of the vectorised code.
"""

import json
import math

import numpy as np
import pytest

from rcl_kernels.cli import main
from rcl_kernels.data.annotations import GroundTruth, VideoAnnotation
from rcl_kernels.evaluation.characteristics import (
    DETAD_BINS,
    Bins,
    instance_characteristics,
    read_extra_characteristics,
)
from rcl_kernels.evaluation.diagnose import ERROR_TYPES, diagnose

# -- an independent loop transcription of DETAD -----------------------------------------------------


def tiou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def interpolated_prec_rec(prec, rec):
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def ap_n(flags, npos, n):
    tp = fp = 0
    prec, rec = [], []
    for f in flags:
        tp, fp = tp + f, fp + (not f)
        r = tp / npos
        rec.append(r)
        prec.append(r * n / (r * n + fp))
    return interpolated_prec_rec(prec, rec)


def ranked(rows, preds, ties):
    """A class's predictions (indices, in the order held) from the best score down. "input": ties in
    the order held; "detad": DETAD's np.argsort(scores)[::-1], numpy's own tie order reversed."""
    if ties == "input":
        return sorted(rows, key=lambda i: -preds[i][2])
    return [rows[k] for k in np.argsort(np.array([preds[i][2] for i in rows], dtype=np.float64))[::-1]]


def pandas_sorted(rows, preds, ties):
    """rows by descending score as pandas' sort_values(ascending=False) leaves them under DETAD:
    reverse, numpy argsort, reverse."""
    if ties == "input":
        return sorted(rows, key=lambda i: -preds[i][2])
    backwards = rows[::-1]
    up = np.argsort(np.array([preds[i][2] for i in backwards], dtype=np.float64))
    return [backwards[k] for k in up][::-1]


def limited_rows(rows, preds, n, ties):
    """DETAD's _limit_prediction for one class (DataFrame.nlargest(n)): a sort when n covers them
    all, else the n best by a stable sort."""
    if ties == "input":
        return ranked(rows, preds, ties)[:n]
    if n >= len(rows):
        return pandas_sorted(rows, preds, ties)
    return sorted(rows, key=lambda i: -preds[i][2])[:n]


def match(preds, gts, order_of_class, thresholds):
    """{t: [matched ground truth or None per prediction]}: greedy in each class's order."""
    matched = {}
    for t in thresholds:
        m = [None] * len(preds)
        for c, order in order_of_class.items():
            lock = set()
            for i in order:
                cands = [j for j, g in enumerate(gts) if g[0] == preds[i][0] and g[1] == c]
                cands.sort(key=lambda j: -tiou(preds[i][3], gts[j][2]))
                for j in cands:
                    if tiou(preds[i][3], gts[j][2]) < t:
                        break
                    if j in lock:
                        continue
                    lock.add(j)
                    m[i] = j
                    break
        matched[t] = m
    return matched


def detad_reference(preds, gts, classes, thresholds, n, bins, values, ties="input"):
    """preds: [(video, label, score, (s, e))]; gts: [(video, label, (s, e))]. ties: see ranked()."""
    held = {c: [i for i in range(len(preds)) if preds[i][1] == c] for c in classes}
    by_class = {c: ranked(held[c], preds, ties) for c in classes}
    npos = {c: sum(g[1] == c for g in gts) for c in classes}
    matched = match(preds, gts, by_class, thresholds)
    out = {}
    out["map_n"] = [np.mean([ap_n([matched[t][i] is not None for i in by_class[c]], npos[c], n) for c in classes])
                    for t in thresholds]

    # False positives on the limited set, which DETAD ranks and matches on its own.
    limited_held = {c: limited_rows(held[c], preds, int(npos[c] * 10), ties) for c in classes}
    limited = {c: ranked(limited_held[c], preds, ties) for c in classes}
    lim_matched = match(preds, gts, limited, thresholds)
    types = {}
    for t in thresholds:
        for c in classes:
            for i in limited[c]:
                if lim_matched[t][i] is not None:
                    types[t, i] = 0
                    continue
                cands = [j for j, g in enumerate(gts) if g[0] == preds[i][0]]
                if not cands:
                    types[t, i] = 5
                    continue
                ious = [tiou(preds[i][3], gts[j][2]) for j in cands]
                best = max(ious)
                same = gts[cands[ious.index(best)]][1] == preds[i][1]
                types[t, i] = (1 if same else 2) if best >= t else (3 if same else 4) if best >= 0.1 else 5
    base = np.mean([ap_n([lim_matched[t][i] is not None for i in limited[c]], npos[c], n)
                    for t in thresholds for c in classes])
    out["limited_base"] = base
    out["gains"] = {}
    for code in range(1, 6):
        aps = [ap_n([lim_matched[t][i] is not None for i in limited[c] if types[t, i] != code], npos[c], n)
               for t in thresholds for c in classes]
        out["gains"][ERROR_TYPES[code]] = np.mean(aps) - base
    out["counts"] = [[sum(types[t, i] == e for c in classes for i in limited[c]) for e in range(6)] for t in thresholds]
    # The profile's groups: DETAD sorts the whole limited frame (classes in order of first appearance
    # in the ground truth) and then takes each class's rows in that order.
    if ties == "input":
        walked = limited
    else:
        first_seen = list(dict.fromkeys(g[1] for g in gts))
        frame = [i for c in first_seen for i in limited_held[c]]
        everything = pandas_sorted(frame, preds, ties)
        walked = {c: [i for i in everything if preds[i][1] == c] for c in classes}
    profile = []
    for g in range(10):
        members = [i for c in classes for i in walked[c][g * npos[c]:(g + 1) * npos[c]]]
        if not members:
            profile.append([math.nan] * 6)
            continue
        profile.append([np.mean([sum(types[t, i] == e for i in members) for t in thresholds]) / len(members)
                        for e in range(6)])
    out["profile"] = profile

    # Sensitivity and false negatives, on every prediction; a bin's AP walks each class in pandas' order.
    found = {}
    for t in thresholds:
        found[t] = set()
        for c in classes:
            tp = fp = 0
            for i in by_class[c]:
                hit = matched[t][i] is not None
                tp, fp = tp + hit, fp + (not hit)
                r = tp / npos[c]
                if hit and r * n / (r * n + fp) > 0.05:
                    found[t].add(matched[t][i])
    walk = {c: pandas_sorted(held[c], preds, ties) for c in classes}
    out["sensitivity"], out["false_negative"] = {}, {}
    for name, b in bins.items():
        gt_bin = [b.labels[k] if k >= 0 else None for k in b.assign(values[name])]
        out["sensitivity"][name], out["false_negative"][name] = {}, {}
        for label in b.labels:
            members = [j for j in range(len(gts)) if gt_bin[j] == label]
            if not members:
                continue
            per_class = []
            for c in classes:
                npos_bin = sum(gts[j][1] == c for j in members)
                if npos_bin == 0:
                    continue
                kept = [i for i in walk[c] if all(matched[t][i] is None or gt_bin[matched[t][i]] == label
                                                  for t in thresholds)]
                per_class.append(np.mean([ap_n([matched[t][i] is not None for i in kept], npos_bin, n)
                                          for t in thresholds]))
            out["sensitivity"][name][label] = np.mean(per_class)
            out["false_negative"][name][label] = np.mean(
                [1 - sum(j in found[t] for j in members) / len(members) for t in thresholds])
    return out


def ground_truth_of(gts, classes, durations):
    videos = list(durations)
    records = [VideoAnnotation(v, durations[v], np.array([g[2] for g in gts if g[0] == v], float).reshape(-1, 2),
                               tuple(g[1] for g in gts if g[0] == v)) for v in videos]
    return GroundTruth.from_annotations(records, classes)


def as_results(preds):
    out = {}
    for video, label, score, seg in preds:
        out.setdefault(video, []).append({"label": label, "score": score, "segment": list(seg)})
    return out


# -- hand-made cases ---------------------------------------------------------------------------------

CLASSES = ("a", "b")
# One video: a at [0, 10], b at [20, 30]; "w" has no ground truth.
HAND_GT = [("v", "a", (0.0, 10.0)), ("v", "b", (20.0, 30.0))]
HAND_PREDS = [
    ("v", "a", 0.9, (0.0, 10.0)),    # true positive of a
    ("v", "a", 0.8, (0.0, 9.0)),     # tIoU 0.9 with a, a already taken: double detection
    ("v", "b", 0.7, (0.0, 10.0)),    # tIoU 1 with a, labelled b: wrong label
    ("v", "a", 0.6, (0.0, 3.0)),     # tIoU 0.3 with a: localization
    ("v", "b", 0.5, (7.0, 10.0)),    # tIoU 0.3 with a, labelled b: confusion
    ("v", "a", 0.4, (40.0, 50.0)),   # no overlap: background
    ("w", "b", 0.3, (0.0, 5.0)),     # video without ground truth: background
]


def hand_diagnosis(**kwargs):
    gt = ground_truth_of(HAND_GT, CLASSES, {"v": 100.0, "w": 50.0})
    return diagnose(as_results(HAND_PREDS), gt, "activitynet", tiou_thresholds=[0.5], **kwargs)


def test_every_false_positive_type_by_hand():
    d = hand_diagnosis()
    # One of each type at tIoU 0.5, background twice; all 7 predictions are kept (10 x 1 per class).
    assert d.false_positive_counts.tolist() == [[1, 1, 1, 1, 1, 2]]
    assert d.num_limited_predictions == 7
    # Groups of 1 prediction per class: 1G = the best a (TP) and best b (wrong label).
    assert d.false_positive_profile[0].tolist() == [0.5, 0, 0.5, 0, 0, 0]
    # 2G: a's double detection, b's confusion; 3G: a's localization, b's background (video w).
    assert d.false_positive_profile[1].tolist() == [0, 0.5, 0, 0, 0.5, 0]
    assert d.false_positive_profile[2].tolist() == [0, 0, 0, 0.5, 0, 0.5]
    assert d.false_positive_profile[3].tolist() == [0, 0, 0, 0, 0, 1]
    assert np.isnan(d.false_positive_profile[4:]).all()


def test_normalized_map_and_gains_by_hand():
    d = hand_diagnosis()
    # N = 2 instances // 2 classes = 1. Class a: TP first, so AP_N = 1. Class b: no true positive, AP 0.
    assert d.average_instances == 1
    assert d.map_n.tolist() == [0.5]
    # Removing a type never helps a (already 1) nor b (no TP): every gain is 0.
    assert d.average_map_gain == dict.fromkeys(ERROR_TYPES[1:], 0.0)


def test_gain_of_removing_an_error_type_by_hand():
    # Class a: [double-looking FP ranked first, then the TP]. a's ranking FP(0.9, localization), TP(0.8).
    gt = ground_truth_of([("v", "a", (0.0, 10.0))], ("a",), {"v": 100.0})
    preds = [("v", "a", 0.9, (0.0, 3.0)), ("v", "a", 0.8, (0.0, 10.0))]
    d = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=[0.5])
    # N = 1: at the TP r = 1, fp = 1 -> precision 1 / (1 + 1) = 0.5; AP_N = 0.5.
    assert d.map_n.tolist() == [0.5]
    assert d.false_positive_counts.tolist() == [[1, 0, 0, 1, 0, 0]]
    # Without the localization error the TP is first: AP_N 1, gain 0.5; the others gain nothing.
    assert d.average_map_gain["Localization Err"] == 0.5
    assert d.average_map_gain["Background Err"] == 0.0


def test_normalized_precision_uses_average_instances():
    # 3 instances of a, 1 of b: N = 4 // 2 = 2. Class a ranking: TP, FP, TP (third instance missed).
    gts = [("v", "a", (0.0, 10.0)), ("v", "a", (20.0, 30.0)), ("v", "a", (40.0, 50.0)), ("v", "b", (60.0, 70.0))]
    preds = [("v", "a", 0.9, (0.0, 10.0)), ("v", "a", 0.8, (80.0, 90.0)), ("v", "a", 0.7, (20.0, 30.0))]
    d = diagnose(as_results(preds), ground_truth_of(gts, ("a", "b"), {"v": 100.0}), "activitynet",
                 tiou_thresholds=[0.5])
    # a: r = 1/3, fp 0 -> p 1; r = 2/3, fp 1 -> p = (4/3) / (4/3 + 1) = 4/7. AP = 1/3 + 1/3 * 4/7.
    assert d.average_instances == 2
    assert d.map_n[0] == pytest.approx((1 / 3 + 4 / 21) / 2, abs=1e-15)
    d1 = diagnose(as_results(preds), ground_truth_of(gts, ("a", "b"), {"v": 100.0}), "activitynet",
                  tiou_thresholds=[0.5], average_instances=1)
    # N = 1: p = (2/3) / (2/3 + 1) = 2/5.
    assert d1.map_n[0] == pytest.approx((1 / 3 + 2 / 15) / 2, abs=1e-15)


def test_sensitivity_and_false_negatives_by_hand():
    # Lengths 10 s (bin XS of DETAD's ActivityNet length bins) and 40 s (S); one class.
    gts = [("v", "a", (0.0, 10.0)), ("v", "a", (50.0, 90.0))]
    preds = [("v", "a", 0.9, (50.0, 90.0)), ("v", "a", 0.8, (0.0, 2.0))]
    d = diagnose(as_results(preds), ground_truth_of(gts, ("a",), {"v": 100.0}), "activitynet", tiou_thresholds=[0.5])
    # S: its instance is found first (AP_N 1); the unmatched prediction stays and ranks after it.
    assert d.sensitivity["length"]["S"] == 1.0
    # XS: the prediction matched to the S instance is left out; the other is a FP; AP 0.
    assert d.sensitivity["length"]["XS"] == 0.0
    assert math.isnan(d.sensitivity["length"]["M"])
    assert d.false_negative["length"] == {"XS": 1.0, "S": 0.0}
    # coverage 0.1 (XS) and 0.4 (S, edge 0.4 is in (0.2, 0.4]); 2 instances in the video: num-instances S.
    assert d.false_negative["coverage"] == {"XS": 1.0, "S": 0.0}
    assert d.false_negative["num-instances"] == {"S": 0.5}
    assert d.sensitivity["num-instances"]["S"] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)


def test_false_negative_discards_low_precision_matches():
    # 20 false positives before the only TP: N = 1, precision (1) / (1 + 20) < 0.05 -> not found.
    gt = ground_truth_of([("v", "a", (0.0, 10.0))], ("a",), {"v": 100.0})
    preds = [("v", "a", 1 - i / 100, (200.0 + 10 * i, 205.0 + 10 * i)) for i in range(20)]
    preds.append(("v", "a", 0.01, (0.0, 10.0)))
    d = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=[0.5])
    assert d.false_negative["length"] == {"XS": 1.0}
    d = diagnose(as_results(preds[-19:]), gt, "activitynet", tiou_thresholds=[0.5])  # 18 FPs: 1/19 > 0.05
    assert d.false_negative["length"] == {"XS": 0.0}


def test_ground_truth_of_length_zero_or_coverage_above_one_is_removed():
    gts = [("v", "a", (0.0, 10.0)), ("v", "a", (5.0, 5.0)), ("v", "a", (0.0, 150.0))]
    d = diagnose(as_results([("v", "a", 0.9, (0.0, 10.0))]), ground_truth_of(gts, ("a",), {"v": 100.0}),
                 "activitynet", tiou_thresholds=[0.5])
    assert d.removed_instances == 2
    assert d.map_n.tolist() == [1.0]


# -- against the loop transcription on random inputs --------------------------------------------------

def random_case(seed):
    rng = np.random.default_rng(seed)
    classes = ("a", "b", "c")
    durations = {f"v{i}": float(rng.uniform(40, 120)) for i in range(4)}
    gts = []
    for v in list(durations)[:3]:
        for _ in range(int(rng.integers(1, 5))):
            s = float(rng.uniform(0, 30))
            gts.append((v, classes[int(rng.integers(0, 3))], (s, s + float(rng.uniform(1, 30)))))
    preds, scores = [], rng.permutation(200)[:60] / 200 + 0.001
    for k in range(60):
        if rng.random() < 0.6:
            g = gts[int(rng.integers(len(gts)))]
            s, e = g[2]
            jitter = rng.normal(0, 0.2 * (e - s), 2)
            seg = tuple(sorted((s + jitter[0], e + jitter[1])))
            label = g[1] if rng.random() < 0.7 else classes[int(rng.integers(0, 3))]
            preds.append((g[0], label, float(scores[k]), seg))
        else:
            s = float(rng.uniform(0, 60))
            preds.append((list(durations)[int(rng.integers(4))], classes[int(rng.integers(0, 3))], float(scores[k]),
                          (s, s + float(rng.uniform(0.5, 20)))))
    classes = tuple(sorted({g[1] for g in gts}))
    preds = [p for p in preds if p[1] in classes]
    return preds, gts, classes, durations


BINS = {"length": Bins((0.0, 5.0, 12.0, np.inf), ("S", "M", "L")),
        "coverage": Bins((0.0, 0.1, 0.3, 1.0), ("S", "M", "L")),
        "num-instances": Bins((-1.0, 1.0, 2.0, np.inf), ("XS", "S", "M"))}


def assert_matches_reference(d, ref):
    np.testing.assert_allclose(d.map_n, ref["map_n"], rtol=0, atol=1e-12)
    assert d.limited_average_map_n == pytest.approx(ref["limited_base"], abs=1e-12)
    assert d.false_positive_counts.tolist() == ref["counts"]
    np.testing.assert_allclose(d.false_positive_profile, ref["profile"], rtol=0, atol=1e-12)
    for name in ERROR_TYPES[1:]:
        assert d.average_map_gain[name] == pytest.approx(ref["gains"][name], abs=1e-12)
    for name in BINS:
        got = {k: v for k, v in d.sensitivity[name].items() if not math.isnan(v)}
        assert got.keys() == ref["sensitivity"][name].keys()
        for k in got:
            assert got[k] == pytest.approx(ref["sensitivity"][name][k], abs=1e-12)
        assert d.false_negative[name] == pytest.approx(ref["false_negative"][name], abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_matches_detad_loop_transcription(seed):
    preds, gts, classes, durations = random_case(seed)
    thresholds = [0.3, 0.5, 0.7]
    gt = ground_truth_of(gts, classes, durations)
    d = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=thresholds, bins=BINS)
    n = len(gts) // len(classes)
    ref = detad_reference(preds, gts, classes, thresholds, n, BINS, instance_characteristics(gt))
    assert d.average_instances == n
    assert_matches_reference(d, ref)


# -- equal scores: input order, or DETAD's unstable sorts --------------------------------------------

def tie_case(seed):
    """random_case's layout with 4 score levels (ties everywhere) and a class with one instance and
    more than 10 predictions (DETAD's nlargest selects rather than sorts)."""
    preds, gts, classes, durations = random_case(seed)
    rng = np.random.default_rng(1000 + seed)
    preds = [(v, c, float(rng.integers(1, 5)) / 5, seg) for v, c, _, seg in preds]
    gts = gts + [("v3", "z", (10.0, 20.0))]
    preds += [("v3", "z", float(rng.integers(1, 3)) / 4, (10.0 + k, 20.0 + k)) for k in range(14)]
    # in the order as_results lays them out (video by video), which is the order diagnose holds them
    preds = [p for v in dict.fromkeys(p[0] for p in preds) for p in preds if p[0] == v]
    return preds, gts, tuple(sorted({g[1] for g in gts})), durations


@pytest.mark.parametrize("ties", ["input", "detad"])
@pytest.mark.parametrize("seed", range(4))
def test_ties_match_the_loop_transcription(seed, ties):
    preds, gts, classes, durations = tie_case(seed)
    assert len({p[2] for p in preds}) < len(preds) // 4  # tie-heavy
    thresholds = [0.3, 0.5, 0.7]
    gt = ground_truth_of(gts, classes, durations)
    d = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=thresholds, bins=BINS, ties=ties)
    n = len(gts) // len(classes)
    assert_matches_reference(d, detad_reference(preds, gts, classes, thresholds, n, BINS, instance_characteristics(gt),
                                                ties=ties))


def test_detad_tie_order_changes_the_numbers():
    # Why diagnose differs from DETAD on tie-heavy input (CBR's THUMOS14 file: 497 of 12,653 share a
    # score with another of their class): the two orders give different AP_N on the same input.
    preds, gts, classes, durations = tie_case(0)
    gt = ground_truth_of(gts, classes, durations)
    kwargs = dict(tiou_thresholds=[0.3, 0.5, 0.7], bins=BINS)
    by_input = diagnose(as_results(preds), gt, "activitynet", **kwargs)
    by_detad = diagnose(as_results(preds), gt, "activitynet", ties="detad", **kwargs)
    assert by_input.false_positive_counts.sum() == by_detad.false_positive_counts.sum()
    assert abs(by_input.limited_average_map_n - by_detad.limited_average_map_n) > 1e-4


def test_tied_true_and_false_positive_by_hand():
    # One instance, N = 1; a true positive and a background error with the same score, in that order.
    # Input order: the TP first, precision 1 -> AP_N 1. DETAD: np.argsort([s, s]) is [0, 1] (any sort
    # leaves two equal keys in place), reversed -> the FP first, precision 1 x 1 / (1 x 1 + 1) at the TP.
    assert np.argsort(np.array([0.5, 0.5])).tolist() == [0, 1]
    gt = ground_truth_of([("v", "a", (0.0, 10.0))], ("a",), {"v": 100.0})
    preds = [("v", "a", 0.5, (0.0, 10.0)), ("v", "a", 0.5, (50.0, 60.0))]
    for ties, expected in (("input", 1.0), ("detad", 0.5)):
        d = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=[0.5], ties=ties)
        assert d.map_n.tolist() == [expected] and d.limited_average_map_n == expected
        assert d.average_map_gain["Background Err"] == 1.0 - expected
    with pytest.raises(ValueError, match="ties must be one of"):
        diagnose(as_results(preds), gt, "activitynet", ties="stable")


def test_diagnose_command_ties(tmp_path, capsys):
    gt = {"database": {"v": {"subset": "validation", "duration": 100.0,
                             "annotations": [{"label": "a", "segment": [0.0, 10.0]}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    preds = [("v", "a", 0.5, (0.0, 10.0)), ("v", "a", 0.5, (50.0, 60.0))]
    (tmp_path / "pred.json").write_text(json.dumps({"results": as_results(preds)}))
    args = ["diagnose", "--dataset", "activitynet", "--ground-truth", str(tmp_path / "gt.json"),
            "--predictions", str(tmp_path / "pred.json"), "--tiou", "0.5"]
    assert main(args) == 0 and "average-mAP_N 100.00" in capsys.readouterr().out
    assert main(args + ["--ties", "detad"]) == 0 and "average-mAP_N 50.00" in capsys.readouterr().out


def test_distinct_scores_give_the_same_numbers_in_both_orders():
    preds, gts, classes, durations = random_case(2)
    gt = ground_truth_of(gts, classes, durations)
    a = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=[0.3, 0.5], bins=BINS).to_dict()
    b = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=[0.3, 0.5], bins=BINS, ties="detad").to_dict()
    assert a == b


# -- characteristics and bins -------------------------------------------------------------------------

def test_bins_are_left_open_with_the_lowest_edge_included():
    b = DETAD_BINS["activitynet"]["length"]  # 0, 30, 60, 120, 180, inf
    got = b.assign([0.0, 1e-9, 30.0, 30.0001, 180.0, 1e6, np.nan, -1.0]).tolist()
    assert got == [0, 0, 0, 1, 3, 4, -1, -1]
    cs = DETAD_BINS["activitynet"]["context-distance"]  # (-1, 0] -> Inf, (0, 1] -> N, ...
    assert [cs.labels[i] for i in cs.assign([-1, 0, 1, 2, 3])] == ["Inf", "Inf", "N", "M", "F"]
    ni = DETAD_BINS["thumos14"]["num-instances"]  # XS is one instance
    assert [ni.labels[i] for i in ni.assign([1, 2, 40, 41, 80, 81])] == ["XS", "S", "S", "M", "M", "L"]
    with pytest.raises(ValueError, match="non-decreasing"):
        Bins((0.0, 2.0, 1.0), ("a", "b"))


def test_instance_characteristics_and_extra_file(tmp_path):
    gts = [("v", "a", (0.0, 10.0)), ("v", "b", (20.0, 25.0)), ("w", "a", (1.0, 3.0))]
    gt = ground_truth_of(gts, ("a", "b"), {"v": 100.0, "w": 20.0})
    values = instance_characteristics(gt)
    assert values["length"].tolist() == [10.0, 5.0, 2.0]
    assert values["coverage"].tolist() == [0.1, 0.05, 0.1]
    assert values["num-instances"].tolist() == [2, 2, 1]  # instances of any class in the video
    extra = {"database": {"v": {"annotations": [
        {"label": "b", "segment": [20.0, 25.0], "agreement": 0.7, "context-size": None, "coverage": 0.5},
        {"label": "a", "segment": [0.0, 10.0], "agreement": 0.9, "context-size": 3}]}}}
    path = tmp_path / "extra.json"
    path.write_text(json.dumps(extra))
    read = read_extra_characteristics(path, gt)
    np.testing.assert_array_equal(read["agreement"], [0.9, 0.7, np.nan])
    np.testing.assert_array_equal(read["context-size"], [3, np.nan, np.nan])
    merged = instance_characteristics(gt, read)
    assert merged["coverage"].tolist() == [0.1, 0.5, 0.1]  # the file's value wins where it has one
    d = diagnose(as_results([("v", "a", 0.9, (0.0, 10.0))]), gt, "activitynet", tiou_thresholds=[0.5],
                 extra_characteristics=path)
    assert set(d.sensitivity) == {"coverage", "length", "num-instances", "agreement", "context-size"}
    assert d.false_negative["agreement"] == {"XH": 0.0, "H": 1.0}


def test_thumos14_defaults_on_the_shipped_annotations():
    from rcl_kernels.data import builtin

    gt = builtin.thumos14_ground_truth("test")
    first = {}
    for v, lab, seg in zip(gt.video, gt.label, gt.segments):
        first.setdefault((int(v), int(lab)), seg)
    results = {}
    for (v, lab), seg in first.items():
        results.setdefault(gt.video_ids[v], []).append({"label": gt.classes[lab], "score": 0.5, "segment": seg.tolist()})
    d = diagnose(results, gt, "thumos14")
    assert d.tiou_thresholds.tolist() == [0.5]
    assert d.average_instances == len(gt.label) // 20
    assert set(d.sensitivity) == {"coverage", "length", "num-instances"}
    assert d.false_positive_counts.sum() == d.num_limited_predictions


# -- figures and command line -----------------------------------------------------------------------

def test_figures_draw_the_diagnosis_numbers(tmp_path):
    pytest.importorskip("matplotlib")
    from rcl_kernels.evaluation import diagnose_figures as figures

    preds, gts, classes, durations = random_case(3)
    d = diagnose(as_results(preds), ground_truth_of(gts, classes, durations), "activitynet",
                 tiou_thresholds=[0.3, 0.5], bins=BINS)

    fig, data = figures.sensitivity_figure(d)
    expected = [100 * v for bins in d.sensitivity.values() for v in bins.values() if not math.isnan(v)]
    assert [v for _, _, v in data["bars"]] == pytest.approx(expected)
    bars = fig.axes[0].patches
    assert [r.get_height() for r in bars] == pytest.approx(expected)
    assert data["base"] == pytest.approx(100 * d.average_map_n)

    fig, data = figures.false_positive_figure(d)
    profile = np.nan_to_num(d.false_positive_profile) * 100
    heights = np.array([r.get_height() for r in fig.axes[0].patches]).reshape(6, 10)[::-1].T
    np.testing.assert_allclose(heights, np.cumsum(profile, axis=1), atol=1e-9)
    gains = [r.get_height() for r in fig.axes[1].patches]
    assert gains == pytest.approx([100 * d.average_map_gain[k] for k in ERROR_TYPES[1:]])

    fig, data = figures.false_negative_figure(d)
    expected = [100 * v for bins in d.false_negative.values() for v in bins.values()]
    assert [r.get_height() for r in fig.axes[0].patches] == pytest.approx(expected)

    paths = figures.save_figures(d, tmp_path / "figs")
    assert len(paths) == 6
    for p in paths:
        with open(p, "rb") as fh:
            head = fh.read(8)
        assert head.startswith(b"\x89PNG" if p.endswith(".png") else b"%PDF")


def test_diagnose_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    gt = {"database": {"v": {"subset": "validation", "duration": 100.0, "annotations": [
        {"label": "a", "segment": [0.0, 10.0]}, {"label": "b", "segment": [20.0, 30.0]}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps({"results": as_results(HAND_PREDS)}))
    rc = main(["diagnose", "--dataset", "activitynet", "--ground-truth", str(tmp_path / "gt.json"),
               "--predictions", str(tmp_path / "pred.json"), "--tiou", "0.5", "--output", str(tmp_path / "out"),
               "--json", str(tmp_path / "d.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "average-mAP_N 50.00" in out and "Background Err" in out
    numbers = json.loads((tmp_path / "d.json").read_text())
    assert numbers["false_positive_counts"]["Background Err"] == [2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{n}.{e}" for n in ("sensitivity_analysis", "false_positive_analysis", "false_negative_analysis")
        for e in ("png", "pdf"))
    rc = main(["diagnose", "--dataset", "activitynet", "--ground-truth", str(tmp_path / "missing.json"),
               "--predictions", str(tmp_path / "pred.json")])
    assert rc == 2 and "missing.json" in capsys.readouterr().err


def test_limit_keeps_ten_predictions_per_instance():
    # 1 instance of a: only the 10 best of its 15 predictions enter the false-positive analysis.
    gt = ground_truth_of([("v", "a", (0.0, 10.0))], ("a",), {"v": 100.0})
    preds = [("v", "a", 1 - i / 100, (100.0 + 10 * i, 105.0 + 10 * i)) for i in range(15)]
    d = diagnose(as_results(preds), gt, "activitynet", tiou_thresholds=[0.5])
    assert d.num_predictions == 15 and d.num_limited_predictions == 10
    assert d.false_positive_counts.tolist() == [[0, 0, 0, 0, 0, 10]]
    assert d.false_positive_profile[:, 5].tolist() == [1.0] * 10


def test_model_length_bins_are_the_evaluation_bins():
    from rcl_kernels.models.length_bins import map_by_length

    # Lengths 2 and 4 steps (0.5 s steps): with edges [0, 2, 4], 2 falls in the first bin, (lo, hi] as DETAD bins.
    gt = ground_truth_of([("v", "a", (0.0, 1.0)), ("v", "a", (5.0, 7.0))], ("a",), {"v": 100.0})
    rows = map_by_length({"v": [{"label": "a", "score": 0.9, "segment": [0.0, 1.0]}]}, gt, {"v": 0.5},
                         edges=[0, 2, 4], protocol="activitynet")
    assert [r["bin"] for r in rows] == [b for b in Bins.from_edges([0, 2, 4]).labels] == ["[0, 2]", "(2, 4]"]
    assert [r["instances"] for r in rows] == [1, 1] and [r["detections"] for r in rows] == [1, 0]
