#!/usr/bin/env bash
# Install fusedgan with its test tools on a fresh machine, build the extension, run every stage.
# This is the README's test command; .ci/run runs exactly this.
#
#   bash tests/run.sh              # everything
#   STAGES="python" bash tests/run.sh   # only some stages (install python triton gpu-compile bench cpp)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAGES=${STAGES:-"install python triton gpu-compile bench cpp"}
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"  # torch's own guess goes wrong with /usr/local/bin/nvcc
export MAX_JOBS="${MAX_JOBS:-2}"
REPORTS=$(mktemp -d)
status=0
failed_stages=0  # stages that failed outside pytest's own counts (a build, ctest)
t0=$SECONDS

want() { [[ " $STAGES " == *" $1 "* ]]; }
banner() { echo; echo "=== $1  (t=$((SECONDS - t0))s)"; }

# pytest exits 5 when it collects nothing: for us that means a broken stage, never a pass.
run_pytest() {
  local name=$1; shift
  "$PY" -m pytest "$@" --junitxml="$REPORTS/$name.xml"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "stage $name: pytest collected no tests"; rc=1; fi
  [ $rc -eq 0 ] || { echo "stage $name FAILED (exit $rc)"; status=1; }
}

if want install; then
  banner "install"
  "$PY" -m pip install -q "torch==2.14.1" triton pybind11 ninja pytest pytest-benchmark matplotlib tqdm scikit-learn || exit 1
  # FUSEDGAN_BUILD_CUDA=auto builds the CUDA kernels too when torch has CUDA and nvcc is found
  # (no GPU needed); CI sets 1 so that a CUDA build failure fails the run.
  FUSEDGAN_BUILD_CUDA="${FUSEDGAN_BUILD_CUDA:-auto}" FUSEDGAN_BUILD_EXT="${FUSEDGAN_BUILD_EXT:-1}" \
    "$PY" -m pip install -q --no-build-isolation -e ".[test]" || exit 1
  "$PY" -c "import fusedgan; fusedgan.info()" || exit 1
fi

if want python; then
  banner "python tests (every backend that runs here)"
  run_pytest python tests -q --ignore-glob='tests/test_triton*.py'
fi

if want triton; then
  # The variable must be set before triton is imported: its own process.
  banner "triton backend under TRITON_INTERPRET=1"
  TRITON_INTERPRET=1 run_pytest triton tests/test_triton*.py -q
fi

if want gpu-compile; then
  # Every Triton kernel variant the library launches, compiled ahead of time for sm_90 (no GPU
  # needed): fails on a register spill, on registers above the kernel's budget, or on an fp64
  # parameter specialised otherwise (tools/gpu_compile.py; prints the resource table).
  banner "gpu-compile: Triton kernels for sm_90"
  "$PY" tools/gpu_compile.py --jobs "$MAX_JOBS" \
    || { echo "stage gpu-compile FAILED"; status=1; failed_stages=$((failed_stages + 1)); }
fi

if want bench; then
  banner "benchmark smoke (pytest-benchmark, timing disabled)"
  FUSEDGAN_BENCH_SIZES=64,4096 FUSEDGAN_BENCH_PENALTY_SHAPES=2x3x8x8 \
    run_pytest bench benchmarks -q --benchmark-disable
fi

if want cpp; then
  banner "CMake build + ctest"
  build=$(mktemp -d)
  prefix=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  cuda_flag=""
  [ "${FUSEDGAN_BUILD_CUDA:-auto}" = 1 ] && cuda_flag="-DFUSEDGAN_CUDA=ON"
  if cmake -S . -B "$build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" -DPython3_EXECUTABLE="$(command -v "$PY")" $cuda_flag \
      && cmake --build "$build" -j "$MAX_JOBS"; then
    (cd "$build" && ctest --output-on-failure) || { echo "stage cpp FAILED (ctest)"; status=1; failed_stages=$((failed_stages + 1)); }
  else
    echo "stage cpp FAILED (build)"; status=1; failed_stages=$((failed_stages + 1))
  fi
fi

banner "summary (total time $((SECONDS - t0))s)"
"$PY" - "$REPORTS" "$failed_stages" <<'PYEOF'
import glob, sys, xml.etree.ElementTree as ET
tot = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for k in tot:
            tot[k] += int(suite.get(k, 0))
        print(f"  {path.rsplit('/', 1)[-1][:-4]:8s} {suite.get('tests')} tests, {suite.get('failures')} failed, "
              f"{suite.get('errors')} errors, {suite.get('skipped')} skipped")
failed = tot["failures"] + tot["errors"]
passed = tot["tests"] - failed - tot["skipped"]
failed += int(sys.argv[2])  # a failed build or ctest stage counts as a failure too
print(f"{passed} passed, {failed} failed, {tot['skipped']} skipped")
PYEOF
exit $status
