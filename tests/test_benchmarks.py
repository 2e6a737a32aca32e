"""The main job's harness (benchmarks/run.py): results survive a failing benchmark, --compare
flags real slowdowns only, and a real benchmark's rows check our kernel against its reference."""

import json
import os
import sys
import types

import pytest
import torch

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH_DIR)

import run as main_job  # noqa: E402
from common import Timing, row  # noqa: E402

import rcl_kernels  # noqa: E402


def _timed_row(impl, ms, spread=0.1, ours=True):
    return row("op", "prob", impl, "fwd", Timing(ms=ms, ms_p20=ms - spread, ms_p80=ms + spread, peak_mib=None),
               ours=ours)


@pytest.fixture
def fake_benchmarks(monkeypatch):
    """Two benchmark modules, one of which raises, and no ceiling measurement."""
    working = types.ModuleType("bench_fake_working")
    working.run = lambda cfg: [_timed_row("ours", 1.0), _timed_row("baseline", 5.0, ours=False)]
    working.problems = lambda quick: {"prob": {"quick": quick}}
    broken = types.ModuleType("bench_fake_broken")

    def fail(cfg):
        raise RuntimeError("kernel exploded\nsecond line")

    broken.run = fail
    monkeypatch.setitem(sys.modules, "bench_fake_working", working)
    monkeypatch.setitem(sys.modules, "bench_fake_broken", broken)
    monkeypatch.setattr(main_job, "BENCHMARKS", {"broken": "bench_fake_broken", "working": "bench_fake_working"})
    monkeypatch.setattr(main_job, "measure_ceilings", lambda cfg: {"copy_gbps": 10.0, "matmul_tflops": {}})


def test_failing_benchmark_is_reported_and_the_rest_kept(fake_benchmarks, tmp_path, capsys):
    code = main_job.main(["--device", "cpu", "--out", str(tmp_path), "--no-plots"])
    assert code == 1  # a failed benchmark fails the run, after the others have been written
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["skipped_benchmarks"] == {"broken": "failed: RuntimeError: kernel exploded"}
    assert [r["impl"] for r in result["rows"]] == ["ours", "baseline"]
    assert result["problems"] == {"working": {"prob": {"quick": True}}}
    summary = (tmp_path / "summary.md").read_text()
    assert "benchmark broken skipped: failed: RuntimeError: kernel exploded" in summary
    assert "5.00x" in summary  # the ratio of the rows that did run
    assert "Traceback" in capsys.readouterr().err


def test_only_runs_the_named_benchmark(fake_benchmarks, tmp_path):
    assert main_job.main(["--device", "cpu", "--out", str(tmp_path), "--no-plots", "--only", "working"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["skipped_benchmarks"] == {} and len(result["rows"]) == 2


def test_compare_flags_only_slowdowns_beyond_the_spread(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"rows": [_timed_row("a", 1.0), _timed_row("b", 1.0), _timed_row("c", 1.0)]}))
    new = [_timed_row("a", 1.15), _timed_row("b", 1.5), _timed_row("c", 0.5), _timed_row("d", 9.0)]
    text = main_job.compare(str(old), new)
    assert "SLOWER op/prob/b/fwd/float32: 1.000 -> 1.500" in text
    assert "/a/" not in text and "/c/" not in text and "/d/" not in text  # within spread, faster, new
    assert "nothing got slower" in main_job.compare(str(old), new[:1])


def test_ceiling_fractions_use_the_copy_measured_next_to_the_row():
    near = {**_timed_row("ours", 2.0), "gbps": 8.0, "copy_gbps_same_run": 16.0}
    far = {**_timed_row("ours", 2.0), "gbps": 8.0}
    rate = {**_timed_row("ours", 2.0), "rate_per_s": 3e6, "rate_unit": "candidate-decays",
            "ceiling_name": "decay_loop", "ceiling_rate_per_s": 4e6}
    main_job.add_ceiling_fractions([near, far, rate], {"copy_gbps": 32.0, "matmul_tflops": {}})
    assert near["fraction_of_copy_bandwidth"] == 0.5 and far["fraction_of_copy_bandwidth"] == 0.25
    assert rate["fraction_of_rate_ceiling"] == 0.75
    table = main_job.ceiling_table([near, far, rate])
    assert "8.0 GB/s | copy 16.0 GB/s | 50%" in table and "copy 32.0 GB/s | 25%" in table
    assert "3.00 M candidate-decays/s | decay_loop 4.00 M/s | 75%" in table


@pytest.mark.skipif(not rcl_kernels._extension.has_kernel("soft_nms", "CPU"), reason="CPU kernels not built")
def test_soft_nms_benchmark_rows(monkeypatch):
    """The real Soft-NMS benchmark on tiny problems: our kernel's row says it matched the bit-exact
    reference, and every baseline the issue names is there, timed or with a reason."""
    import bench_soft_nms
    from common import BenchConfig

    tiny = {"anet": dict(V=3, P=50, top_k=10, classes=0, method="gaussian", sigma=0.5, iou_threshold=0.0,
                         min_score=0.001),
            "thumos": dict(V=2, P=60, top_k=20, classes=4, method="gaussian", sigma=0.5, iou_threshold=0.1,
                           min_score=0.001)}
    monkeypatch.setattr(bench_soft_nms, "problems", lambda quick: tiny)
    rows = bench_soft_nms.run(BenchConfig(device=torch.device("cpu"), quick=True, warmup=0, reps=1))
    for problem, p in tiny.items():
        mine = {r["impl"]: r for r in rows if r["problem"] == problem}
        assert {"cpu", "torch_batched", "cpp_single_thread", "numpy_loop", "torchvision_hard"} <= set(mine)
        assert mine["cpu"]["ours"] and mine["cpu"]["matches_reference_on_videos"] == p["V"]
        assert mine["cpu"]["rate_per_s"] > 0 and mine["cpu"]["ceiling_rate_per_s"] > 0
        assert all(r["ms"] is not None or r["skipped"] for r in mine.values())
        # float64 numpy against our float32: the same picks on these well-separated random scores
        assert mine["numpy_loop"]["index_agreement_with_ours"] > 0.9


def test_model_benchmark_times_the_reference_on_a_subset_and_scales(monkeypatch):
    """The full-size inference path: ours on every video, the reference on the leading batches
    that hold REFERENCE_VIDEOS_FULL videos, scaled to the whole set."""
    import bench_model
    from common import BenchConfig

    monkeypatch.setattr(bench_model, "REFERENCE_VIDEOS_FULL", 17)
    p = dict(model=dict(feature_dim=8, hidden=8, encoder_stride=1, max_duration=12, num_samples=3,
                        samples_per_point=1, scorer_hidden=8, num_classes=3, refine_state=8,
                        refine_train_segments=8, candidates=12),
             videos=30, temporal_scale=16, batch=8)
    rows = bench_model._inference_rows("inference_tiny", p, BenchConfig(device=torch.device("cpu"), warmup=0, reps=1))
    fast, reference = rows
    assert fast["ours"] and fast["timed_videos"] == fast["videos"] == 30
    assert not reference["ours"] and reference["timed_videos"] == 24  # three batches of 8 hold >= 17
    assert reference["ms"] > 0 and reference["videos_per_s"] == pytest.approx(30 / (reference["ms"] / 1e3))


def test_mmaction2_benchmark_rows(monkeypatch):
    """The mmaction2 benchmark on a tiny BMN: a row per figure, each timed in a fresh process (or
    skipped, saying why, where mmaction2 is missing), and our post-processing gives mmaction2's
    proposals on every compared video."""
    import bench_mmaction2
    from common import BenchConfig

    tiny = dict(temporal_dim=12, boundary_ratio=0.5, num_samples=4, num_samples_per_bin=3, feat_dim=8,
                soft_nms_alpha=0.4, soft_nms_low_threshold=0.5, soft_nms_high_threshold=0.9, post_process_top_k=100,
                hidden_dim_1d=8, hidden_dim_2d=8, hidden_dim_3d=8)
    problems = {"model": dict(config=tiny, batches=(2,), tasks=("train_step",), reps={"mmaction2": 1, "rcl_kernels": 2}),
                "pipeline": dict(config=tiny, videos=6, batch=4, postprocess_stock_videos=3, pipeline_stock_videos=2,
                                 pipeline_ours_videos=4)}
    monkeypatch.setattr(bench_mmaction2, "problems", lambda quick: problems)
    rows = bench_mmaction2.run(BenchConfig(device=torch.device("cpu"), quick=True, warmup=0, reps=1))
    assert [(r["problem"], r["impl"]) for r in rows] == [
        (p, impl) for p in ("train_step_B2", "postprocess_6", "test_pipeline_6") for impl in ("mmaction2", "rcl_kernels")]
    missing = bench_mmaction2.support.mmaction2_missing()
    if missing:
        assert all(r["ms"] is None and r["skipped"] == missing for r in rows)
        return
    assert all(r["ms"] > 0 and r["skipped"] is None for r in rows), [r["skipped"] for r in rows]
    train = {r["impl"]: r for r in rows if r["mode"] == "train_step"}
    assert len(train["rcl_kernels"]["times_ms"]) == 2 and train["mmaction2"]["peak_mib"] is not None
    post = next(r for r in rows if r["mode"] == "postprocess" and r["ours"])
    assert post["videos_compared"] == 3 and post["videos_with_same_proposals"] == 3
    assert all(r["projected_4728_s"] > 0 for r in rows if r["mode"] != "train_step")
