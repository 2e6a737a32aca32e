#!/usr/bin/env bash
# The one call a session with a lent GPU makes (the device tool runs it in the repository root):
# build the extension for the card, run the launch-boundary and multi-device cases, the test suite
# (CUDA and Triton on the GPU, every dtype), our CUDA kernels' tests under compute-sanitizer
# memcheck, racecheck and initcheck, then the benchmarks.
# Everything lands under $OUT in at most 12 files (the benchmark folder travels as one tarball).
#
# A lent machine gives 15 minutes in all, starts included, and one command at most 10, so every
# step has a time limit and all of them end within GPU_CHECK_BUDGET_S of the start (default 480 s:
# the 8 minutes the main-job issue allows). A step that runs out leaves its log, and the
# benchmarks write their results after each op, most wanted first, so a cut run still brings back
# what finished.
#
#   run: bash benchmarks/gpu_check.sh        (timeout_s 600)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
export PYTHONUNBUFFERED=1 MAX_JOBS="${MAX_JOBS:-16}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  # The visible card's own arch, so that the timings are of real SASS for it.
  TORCH_CUDA_ARCH_LIST="$(python -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo 9.0)"
  export TORCH_CUDA_ARCH_LIST
fi
stamp() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$OUT/steps.log"; }
left() { local s=$((BUDGET_S - SECONDS - $1)); echo $((s > 10 ? s : 10)); }  # seconds left, keeping $1 back
limit() { local s; s=$(left "$1"); echo $((s < $2 ? s : $2)); }  # left, keeping $1 back, at most $2
plugins=""  # parallel workers and a per-test limit, where the plugins are installed
python -c "import xdist" 2>/dev/null && plugins="-n 8"
python -c "import pytest_timeout" 2>/dev/null && plugins="$plugins --timeout 180"

stamp "device"; nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
stamp "build for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
if ! timeout "$(left 300)" pip install -e . --no-build-isolation --no-deps >"$OUT/build.log" 2>&1; then
  stamp "BUILD FAILED"; tail -50 "$OUT/build.log"; exit 1
fi
python -c "import rcl_kernels; rcl_kernels.info()" 2>&1 | tee -a "$OUT/steps.log"

# First, what a run on a card is most wanted for and what is quick: Soft-NMS launched at every
# shared-memory boundary (issue 16), and the kernels on a second device (skipped with one GPU).
stamp "launch boundaries and second device"
timeout "$(limit 330 40)" python -m pytest -q -p no:cacheprovider -rfEs -m gpu \
  -k "boundary or second_device" tests/test_soft_nms_cuda_emulated.py tests/test_segment_interp_kernels.py \
  >"$OUT/boundaries.log" 2>&1
stamp "boundaries exit $?: $(tail -1 "$OUT/boundaries.log")"

# The size matrix (tests/size_matrix.py): every kernel's launch at the sizes users run and the
# ptxas resources of every CUDA kernel, as CI checks them, here with this machine's toolkit (the
# Triton compiles of the matrix run in the suite below, tests/test_size_matrix.py).
stamp "size matrix"
timeout "$(limit 300 90)" python tests/size_matrix.py --plans-only >"$OUT/size_matrix.md" 2>&1
stamp "size matrix exit $?: $(grep -c '^| ' "$OUT/size_matrix.md") table rows"

# The whole suite: the CPU tests are quick on 16 cores and the GPU ones are the point. No -x: a
# first run on a card should list every failure.
stamp "tests"
timeout "$(left 240)" python -m pytest tests -q -p no:cacheprovider $plugins -rfE >"$OUT/tests.log" 2>&1
stamp "tests exit $?: $(tail -1 "$OUT/tests.log")"

# Our own CUDA kernels only (tests marked gpu, not the Triton or torch.compile ones), one failure
# at most: the sanitizers slow every kernel launch, PyTorch's included. memcheck: out-of-bounds
# and misaligned accesses; racecheck: shared-memory hazards (Soft-NMS's block argmax, the SoI
# backward's slab); initcheck: reads of global memory never written (outputs from at::empty).
sanitize() {  # tool, seconds kept back, at most seconds, pytest -k expression, test files...
  local tool=$1 keep=$2 most=$3 expr=$4; shift 4
  stamp "compute-sanitizer $tool"
  timeout "$(limit "$keep" "$most")" compute-sanitizer --tool "$tool" --error-exitcode 9 \
    python -m pytest -q -x -p no:cacheprovider -m gpu -k "$expr" "$@" >"$OUT/$tool.log" 2>&1
  stamp "$tool exit $?: $(grep -E 'ERROR SUMMARY|passed|failed' "$OUT/$tool.log" | tail -2 | tr '\n' ' ')"
}
ours="cuda and not triton and not compile and not large_k"
sanitize memcheck 200 60 "$ours" tests/test_segment_interp.py tests/test_soft_nms.py tests/test_soft_nms_cuda_emulated.py
sanitize racecheck 160 40 "$ours and (code_paths or one_gradient or large_p or random or boundary)" \
  tests/test_segment_interp_kernels.py tests/test_soft_nms.py tests/test_soft_nms_cuda_emulated.py
sanitize initcheck 120 40 "$ours" tests/test_segment_interp.py tests/test_soft_nms.py

stamp "benchmarks"
timeout "$(left 15)" python benchmarks/run.py --out "$OUT/bench" --no-plots --no-triton-compile \
  --only soft_nms --only segment_interp --only model --only score_anchors --only evaluation \
  --only roi_align_1d --only boundary_matching >"$OUT/bench.log" 2>&1
stamp "benchmarks exit $?"
if [[ -f "$OUT/bench/results.json" ]]; then
  timeout 30 python benchmarks/plots.py "$OUT/bench/results.json" >>"$OUT/bench.log" 2>&1
  cp "$OUT/bench/summary.md" "$OUT/summary.md"
fi
tar -czf "$OUT/bench.tar.gz" -C "$OUT" bench 2>/dev/null && rm -rf "$OUT/bench"
stamp "done"
