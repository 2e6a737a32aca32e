"""Shared test setup.

Without a GPU, Triton kernels are tested on CPU tensors through the Triton interpreter: the
variable must be set before rcl_kernels (and so its @triton.jit kernels) is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    # Fresh random inputs per test, but reproducible from the test's name.
    torch.manual_seed(0)
    yield
