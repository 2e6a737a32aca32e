#!/usr/bin/env bash
# The one call a session with a lent GPU makes (the device tool runs it in the repository root):
# build the extension for the card, run the GPU tests (CUDA and Triton, every dtype), run the
# CUDA tests once under compute-sanitizer memcheck, then the benchmarks. Everything lands under
# $OUT (at most 8 files come back, so the benchmark folder travels as one tarball).
# Sized to finish within about 8 minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
stamp() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log"; }

stamp "device"; nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
stamp "build"
pip install -e . --no-build-isolation --no-deps >"$OUT/build.log" 2>&1 || { stamp "BUILD FAILED"; tail -50 "$OUT/build.log"; exit 1; }
python -c "import rcl_kernels; rcl_kernels.info()" 2>&1 | tee -a "$OUT/steps.log"

stamp "tests (GPU and CPU)"
timeout 240 python -m pytest tests -q -x -p no:cacheprovider -k "not slow" >"$OUT/tests.log" 2>&1
stamp "tests exit $?: $(tail -1 "$OUT/tests.log")"

stamp "compute-sanitizer memcheck on the CUDA kernels"
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 python -m pytest -q -x -p no:cacheprovider \
  tests/test_segment_interp.py tests/test_soft_nms.py -k "cuda and not compile" >"$OUT/memcheck.log" 2>&1
stamp "memcheck exit $?: $(grep -E 'ERROR SUMMARY|passed|failed' "$OUT/memcheck.log" | tail -2 | tr '\n' ' ')"

stamp "benchmarks"
timeout 300 python benchmarks/run.py --out "$OUT/bench" >"$OUT/bench.log" 2>&1
stamp "benchmarks exit $?"
cp "$OUT/bench/summary.md" "$OUT/summary.md" 2>/dev/null
tar -czf "$OUT/bench.tar.gz" -C "$OUT" bench && rm -rf "$OUT/bench"
stamp "done"
