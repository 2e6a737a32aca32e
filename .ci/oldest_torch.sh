#!/usr/bin/env bash
# The test suite again on the oldest supported stack, which is what the lent GPU machines run:
# torch 2.11 with triton 3.6 (numpy < 2.4: triton 3.6's interpreter fails with newer numpy, see
# rcl_kernels/_triton_support.py). It builds a clone of the committed tree in a venv layered on
# the main environment: the CUDA 13 runtime libraries that torch 2.14.1 brought serve 2.11 too.
# Where that stack cannot be installed or imported here, the step says so and is skipped; a build
# error or a failing test fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m venv --system-site-packages "$work/venv"
py="$work/venv/bin/python"
if ! "$py" -m pip install -q --no-deps torch==2.11.0 triton==3.6.0 "numpy<2.4" "setuptools>=70.1" wheel \
    || ! "$py" -c "import torch, triton; assert torch.__version__.startswith('2.11')"; then
  echo "oldest-torch check SKIPPED: torch 2.11 / triton 3.6 could not be installed or imported here"
  exit 0
fi
git clone -q . "$work/src"
cd "$work/src"
# CPU kernels only: the CUDA sources were compiled against 2.14.1 above, and this step is about
# the Python and C++ APIs of the older torch.
env -u FORCE_CUDA -u TORCH_CUDA_ARCH_LIST "$py" -m pip install -q --no-build-isolation --no-deps -e .
"$py" -c "import rcl_kernels; rcl_kernels.info()"
"$py" -m pytest tests -q -p no:cacheprovider
