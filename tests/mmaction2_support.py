"""The real mmaction2 package for the tests (and benchmarks/bench_mmaction2.py), where installed
(pip install "rcl_kernels[mmaction2]").

mmaction2 1.2.0's wheel lacks mmaction/models/localizers/drn/ (upstream issue #2714), so
`import mmaction.models` fails there. provide_missing_drn() supplies the smallest stand-in for that
one subpackage: a `DRN` that raises when built. Nothing else of mmaction2 is replaced, and where the
subpackage exists (a source install) nothing is done.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

DRN_PACKAGE = "mmaction.models.localizers.drn"


class DRN:
    """Stand-in for mmaction2's DRN, missing from the 1.2.0 wheel (upstream issue #2714)."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("DRN is missing from the installed mmaction2 (the 1.2.0 wheel lacks "
                           f"{DRN_PACKAGE}); this is the tests' stand-in")


REQUIRED = os.environ.get("RCL_REQUIRE_MMACTION2") == "1"  # .ci/run's mmaction2 step: fail instead of skipping


def mmaction2_missing() -> str | None:
    """Why mmaction2 cannot be used here, or None."""
    for name in ("mmengine", "mmcv", "mmaction"):
        if importlib.util.find_spec(name) is None:
            return f'{name} is not installed (pip install "rcl_kernels[mmaction2]")'
    try:  # mmaction2 imports torchvision; a torchvision built for another torch fails with RuntimeError
        import torchvision  # noqa: F401
    except Exception as exc:
        return f"torchvision cannot be imported beside this torch ({type(exc).__name__}: {exc}), and mmaction2 needs it"
    return None


def provide_missing_drn() -> bool:
    """Put the stand-in into sys.modules where the installed mmaction2 lacks the subpackage (before
    mmaction.models is imported); True when it did."""
    import mmaction

    localizers = os.path.join(os.path.dirname(mmaction.__file__), "models", "localizers")
    if os.path.isfile(os.path.join(localizers, "drn", "drn.py")) or DRN_PACKAGE in sys.modules:
        return False
    package = types.ModuleType(DRN_PACKAGE)
    package.__path__ = []
    module = types.ModuleType(f"{DRN_PACKAGE}.drn")
    module.DRN = DRN
    package.drn = module
    sys.modules[DRN_PACKAGE], sys.modules[module.__name__] = package, module
    return True


def skip_or_fail(why: str):
    """pytest.skip(why), or pytest.fail where RCL_REQUIRE_MMACTION2=1 asks for the real package."""
    import pytest  # the benchmarks use this module too, without pytest

    if REQUIRED:
        pytest.fail(f"RCL_REQUIRE_MMACTION2=1 but {why}")
    pytest.skip(why)


def import_mmaction_models():
    """mmaction.models, with the stand-in where needed."""
    provide_missing_drn()
    import mmaction.models

    return mmaction.models


class _DataSample:
    """The one attribute of mmaction2's ActionDataSample that BMN.predict reads."""

    def __init__(self, metainfo):
        self.metainfo = metainfo


def stock_predict(BMN, confidence_map, start, end, metainfo, params) -> dict:
    """mmaction2's own BMN.predict for one video's maps ((2, T, T), (T,), (T,)), without building
    the model: predict reads only these attributes of self and what _forward returns. params:
    BMN's soft_nms_alpha, soft_nms_low_threshold, soft_nms_high_threshold, post_process_top_k and
    feature_extraction_interval."""
    host = types.SimpleNamespace(tscale=start.shape[-1], **params,
                                 _forward=lambda _: (confidence_map[None], start[None], end[None]))
    return BMN.predict(host, None, [_DataSample(metainfo)])[0]
