"""Shared test setup.

Without a GPU, Triton kernels are tested on CPU tensors through the Triton interpreter: the
variable must be set before rcl_kernels (and so its @triton.jit kernels) is imported.

Hypothesis profiles for the fuzz tests (tests/test_*_fuzz.py): "ci" (the default) runs a small,
fixed set of examples (derandomize: the same inputs on every run and machine); setting
RCL_FUZZ_EXAMPLES=2000 selects "fuzz", that many fresh random examples per test (tests that are
slow per example, such as interpreted Triton, run a fixed fraction of the profile's budget).
"""

import os
import zlib

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Inputs are drawn per example by design (sizes first, then values of those sizes), and an
# interpreted Triton call takes about a second: neither is a problem to report.
_FUZZ_SETTINGS = dict(deadline=None, database=None, print_blob=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=100, derandomize=True, **_FUZZ_SETTINGS)
if os.environ.get("RCL_FUZZ_EXAMPLES"):
    settings.register_profile("fuzz", max_examples=int(os.environ["RCL_FUZZ_EXAMPLES"]), **_FUZZ_SETTINGS)
    settings.load_profile("fuzz")
else:
    settings.load_profile("ci")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed(request):
    # Each test (each parametrisation too) draws its own random inputs, reproducibly: the seed is
    # a hash of the test's id, so a failure replays with the same inputs.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    yield


def usable_torchvision():
    """torchvision, or None where it is missing or was built for another torch (importing it then
    raises RuntimeError, e.g. on the oldest-torch CI stack)."""
    try:
        import torchvision
    except (ImportError, RuntimeError):
        return None
    return torchvision


def require_torchvision():
    """torchvision for a test that compares against it; skips the test where it is unusable."""
    torchvision = usable_torchvision()
    if torchvision is None:
        pytest.skip("torchvision is not usable with this torch")
    return torchvision


def backend_params(table, *, include_reference=False):
    """pytest params (device_type, backend) for an op's backends (its OpBackends table) that can
    run here: the CPU ones, plus the CPU reference when include_reference; the CUDA ones marked
    gpu, listed even without a GPU so that the skipped tests show in the report."""
    params = [pytest.param("cpu", name, id=f"cpu-{name}") for name in table.available("cpu")
              if name != "reference" or include_reference]
    cuda = table.available("cuda") if torch.cuda.is_available() else [b for b in table.backends if b in ("cuda", "triton")]
    params += [pytest.param("cuda", name, marks=pytest.mark.gpu, id=f"cuda-{name}") for name in cuda if name != "reference"]
    return params
