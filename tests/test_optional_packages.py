"""Optional packages (matplotlib for figures, triton for the Triton backend): without them, the
feature that needs one fails first, with one line that names the extra to install."""

from __future__ import annotations

import json
import sys

import pytest

from rcl_kernels import _optional
from rcl_kernels.cli import main
from rcl_kernels.evaluation import diagnose_command


def make_unimportable(monkeypatch, package: str) -> None:
    """`import package` (and its submodules) raises ImportError until the test ends."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # None in sys.modules: the import machinery refuses it


def test_require_names_the_extra(monkeypatch):
    make_unimportable(monkeypatch, "matplotlib")
    with pytest.raises(_optional.MissingOptionalDependency) as info:
        _optional.require("matplotlib.figure", "drawing")
    message = str(info.value)
    assert "\n" not in message
    assert message == ("drawing needs matplotlib, which is not installed: "
                       "pip install 'rcl_kernels[figures]' (or pip install matplotlib)")
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback
    with pytest.raises(ValueError, match="not an optional dependency"):
        _optional.require("numpy", "anything")


def test_every_extra_named_is_in_pyproject():
    import pathlib
    import tomllib

    pyproject = tomllib.loads((pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for package, extra in _optional.EXTRAS.items():
        assert any(req.startswith(package) for req in extras[extra]), (package, extra)


def test_figures_module_without_matplotlib(monkeypatch):
    make_unimportable(monkeypatch, "matplotlib")
    monkeypatch.delitem(sys.modules, "rcl_kernels.evaluation.diagnose_figures", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'rcl_kernels\[figures\]'"):
        import rcl_kernels.evaluation.diagnose_figures  # noqa: F401


def test_diagnose_output_without_matplotlib_fails_before_any_work(monkeypatch, tmp_path, capsys):
    make_unimportable(monkeypatch, "matplotlib")
    monkeypatch.delitem(sys.modules, "rcl_kernels.evaluation.diagnose_figures", raising=False)

    def no_work(*args, **kwargs):
        raise AssertionError("the analysis ran before the missing package was reported")

    monkeypatch.setattr(diagnose_command, "ground_truth_from_args", no_work)
    monkeypatch.setattr(diagnose_command, "diagnose", no_work)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"results": {}}))
    status = main(["diagnose", "--dataset", "thumos14", "--ground-truth", "thumos14:test",
                   "--predictions", str(pred), "--output", str(tmp_path / "figures")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "rcl-kernels diagnose: error: rcl-kernels diagnose --output needs matplotlib, which is not installed: "
        "pip install 'rcl_kernels[figures]' (or pip install matplotlib)"]
    assert not (tmp_path / "figures").exists()


def test_diagnose_without_output_does_not_need_matplotlib(monkeypatch, tmp_path, capsys):
    make_unimportable(monkeypatch, "matplotlib")
    gt = {"database": {"v": {"subset": "validation", "duration": 100.0,
                             "annotations": [{"label": "a", "segment": [0.0, 10.0]}]}}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred = {"results": {"v": [{"label": "a", "score": 0.9, "segment": [0.0, 10.0]}]}}
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    assert main(["diagnose", "--dataset", "activitynet", "--ground-truth", str(tmp_path / "gt.json"),
                 "--predictions", str(tmp_path / "pred.json")]) == 0
    assert "average-mAP_N 100.00" in capsys.readouterr().out


def test_triton_backend_without_triton_names_the_extra(monkeypatch):
    torch = pytest.importorskip("torch")
    import rcl_kernels
    from rcl_kernels import _backends
    from rcl_kernels.ops.segment_interp import SEGMENT_INTERP_BACKENDS

    monkeypatch.setattr(_backends, "TRITON_VERSION", None)
    with pytest.raises(RuntimeError) as info:
        SEGMENT_INTERP_BACKENDS._resolve_uncached("triton", "cpu")  # uncached: the real choice is cached
    assert str(info.value) == ("segment_interp: backend 'triton' needs triton, which is not installed: "
                               "pip install 'rcl_kernels[triton]' (or pip install triton)")
    assert rcl_kernels.segment_interp(torch.randn(1, 2, 5), torch.rand(1, 3, 2), 2).shape == (1, 3, 2, 2)  # other backends still work
