#!/usr/bin/env bash
# Install fusedgan with its test tools on a fresh machine, build the extension, run every stage.
# This is the README's test command; .ci/run runs exactly this.
#
#   bash tests/run.sh              # everything
#   STAGES="python" bash tests/run.sh   # only some stages (install python triton gpu-compile bench compat cpp memcheck ptxas asan)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# asan is not in the default list: it does not fit the CI budget (about 5 min).  On 2026-12-03 (load
# 12-15) its two test files took 10.5 min even on the uninstrumented build (1346 passed) and its
# uncached ASan build over an hour.  The default stages catch its class of bug (an out-of-bounds
# read or write in the CPU kernels, issue 17) with the memcheck stage instead: valgrind over a
# focused script, no extra build (about 3.5 min: CI about 33 + 3.5 of its 40).  Run asan by hand
# with STAGES=asan.
STAGES=${STAGES:-"install python triton gpu-compile bench compat cpp memcheck ptxas"}
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
  # The build tools first: `pip install -e .` needs setuptools >= 70.1 (bdist_wheel built in) and
  # wheel; torch 2.11 asks for setuptools < 82.
  "$PY" -m pip install -q "setuptools>=70.1,<82" wheel || exit 1
  "$PY" -m pip install -q "torch==2.14.1" triton pybind11 ninja pytest pytest-benchmark matplotlib tqdm scikit-learn || exit 1
  # FUSEDGAN_BUILD_CUDA=auto builds the CUDA kernels too when torch has CUDA and nvcc is found
  # (no GPU needed); CI sets 1 so that a CUDA build failure fails the run.
  FUSEDGAN_BUILD_CUDA="${FUSEDGAN_BUILD_CUDA:-auto}" FUSEDGAN_BUILD_EXT="${FUSEDGAN_BUILD_EXT:-1}" \
    "$PY" -m pip install -q --no-build-isolation -e ".[test]" || exit 1
  "$PY" -c "import fusedgan; fusedgan.info()" || exit 1
fi

if want python; then
  banner "python tests (every backend that runs here)"
  run_pytest python tests -q --ignore-glob='tests/test_triton*.py' --ignore=tests/test_gpu_check.py
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
  banner "fusedgan bench --quick and bench --e2e --quick (smoke runs: every provider runs, exit status 0)"
  bench_out=$(mktemp -d)
  for extra in "" "--e2e"; do
    "$PY" -m fusedgan bench --quick $extra --threads 1 --quiet --out "$bench_out" > "$bench_out/log.txt" 2>&1
    rc=$?
    tail -n 50 "$bench_out/log.txt"
    [ $rc -eq 0 ] || { echo "stage bench FAILED: fusedgan bench --quick $extra (exit $rc)"; status=1; failed_stages=$((failed_stages + 1)); }
  done
fi

if want bench; then
  # benchmarks/gpu_check.py --dry-run: the GPU check's phases, files and deadline on the CPU
  banner "gpu_check --dry-run (tests/test_gpu_check.py)"
  run_pytest gpu_check tests/test_gpu_check.py -q
fi

if want compat; then
  # The GPU machines run torch 2.11.0 and Triton 3.6.0: build and test against those too, in a
  # second environment cached under ~/.cache/fusedgan-compat (keyed by the versions).  The venv
  # sees this environment's packages (--system-site-packages), so only torch, triton and the build
  # tools are installed into it (--no-deps): the CUDA runtime wheels torch loads and the test
  # tools come from the install stage.  Without them (a fresh machine, this stage alone) the full
  # dependencies are installed instead.  The extension is built CPU-only in a copy of the tree
  # kept beside the venv, so a rerun recompiles only what changed.
  banner "compat: torch ${COMPAT_TORCH:=2.11.0}, triton ${COMPAT_TRITON:=3.6.0}"
  compat_t0=$SECONDS
  key="torch$COMPAT_TORCH-triton$COMPAT_TRITON-$("$PY" -c 'import sys; print("py%d.%d" % sys.version_info[:2])')"
  cdir="${FUSEDGAN_COMPAT_CACHE:-$HOME/.cache/fusedgan-compat}/$key"
  vpy="$cdir/venv/bin/python"
  # numpy < 2.4: Triton 3.6's interpreter turns one-element arrays into Python ints, which NumPy 2.4
  # refuses (only the interpreter: compiled Triton on a GPU does not go through numpy).
  check_versions="import numpy, torch, triton; assert torch.__version__.split('+')[0] == '$COMPAT_TORCH', torch.__version__; \
assert triton.__version__ == '$COMPAT_TRITON', triton.__version__; \
assert tuple(map(int, numpy.__version__.split('.')[:2])) < (2, 4), numpy.__version__; \
print('torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__)"
  compat_ok=1
  if ! "$vpy" -c "$check_versions" 2>/dev/null; then
    rm -rf "$cdir/venv" && mkdir -p "$cdir" && "$PY" -m venv --system-site-packages "$cdir/venv" \
      && "$vpy" -m pip install -q --no-deps "torch==$COMPAT_TORCH" "triton==$COMPAT_TRITON" "setuptools>=70.1,<82" wheel \
           "numpy<2.4" \
      || compat_ok=0
    if [ $compat_ok = 1 ] && ! "$vpy" -c "$check_versions"; then
      "$vpy" -m pip install -q "torch==$COMPAT_TORCH" "triton==$COMPAT_TRITON" "numpy<2.4" || compat_ok=0
      [ $compat_ok = 1 ] && { "$vpy" -c "$check_versions" || compat_ok=0; }
    fi
  fi
  tree="$cdir/tree"
  if [ $compat_ok = 1 ]; then
    mkdir -p "$tree"
    find "$tree" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
    if git rev-parse --git-dir > /dev/null 2>&1; then
      git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$tree"
    else
      tar --exclude=./build --exclude=./.git -cf - . | tar -xf - -C "$tree"
    fi
    echo "compat: environment ready (t=$((SECONDS - compat_t0))s); building in $tree"
    # The README's install route (pip's editable install: bdist_wheel) with the extension left
    # out, then the extension itself, in place, CPU-only.
    if ! (cd "$tree" && FUSEDGAN_BUILD_EXT=0 "$vpy" -m pip install -q --no-build-isolation --no-deps -e . \
          && FUSEDGAN_BUILD_CUDA=0 FUSEDGAN_BUILD_EXT=1 "$vpy" setup.py -q build_ext --inplace > "$cdir/build.log" 2>&1 \
          && "$vpy" -c "import fusedgan, fusedgan.ops as o; fusedgan.info(); assert o.HAS_TRITON, o.TRITON_ERROR"); then
      tail -n 30 "$cdir/build.log" 2>/dev/null; compat_ok=0
    fi
  else
    compat_ok=0
  fi
  if [ $compat_ok = 1 ]; then
    echo "compat: built (t=$((SECONDS - compat_t0))s)"
    pushd "$tree" > /dev/null
    # The Triton registration and schemas, the loss kernels and the operator triple (the penalty,
    # hardening and compile-tool files run in the triton and gpu-compile stages: CI time).
    FUSEDGAN_EXPECT_CUDA_BUILD=0 TRITON_INTERPRET=1 PY="$vpy" run_pytest compat_triton tests/test_triton.py \
      tests/test_triton_ops.py tests/test_triton_schema.py tests/test_triton_extra.py -q -p no:cacheprovider
    FUSEDGAN_EXPECT_CUDA_BUILD=0 PY="$vpy" run_pytest compat tests/test_losses.py tests/test_ops.py tests/test_compile.py tests/test_penalties.py \
      -q -p no:cacheprovider
    popd > /dev/null
  else
    echo "stage compat FAILED (environment or build)"; status=1; failed_stages=$((failed_stages + 1))
  fi
  echo "compat: stage time $((SECONDS - compat_t0))s"
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

if want memcheck; then
  # tests/memcheck.py under valgrind --tool=memcheck (the built extension, no extra build): the CPU
  # kernels on empty, odd and chunk-edge inputs (every Elem, dtype, reduction, operand, stats,
  # backward, relativistic, penalties, LeCam), two threads.  Fails on an invalid read or write or
  # an uninitialised jump with a frame in fusedgan/_C*.so; errors outside our frames are listed only.
  banner "memcheck: valgrind over tests/memcheck.py (CPU kernels, edge inputs)"
  memcheck_t0=$SECONDS
  if command -v valgrind > /dev/null; then
    "$PY" tests/memcheck.py --valgrind || { echo "stage memcheck FAILED"; status=1; failed_stages=$((failed_stages + 1)); }
  else
    echo "stage memcheck FAILED: valgrind not found (apt-get install valgrind)"; status=1; failed_stages=$((failed_stages + 1))
  fi
  echo "memcheck: stage time $((SECONDS - memcheck_t0))s"
fi

if want ptxas; then
  # Every csrc/cuda/*.cu compiled for sm_90 with -Xptxas -v (no GPU needed): fails on a register
  # spill or a kernel above 64 registers (below 50% occupancy at 256 threads a block).
  banner "ptxas: CUDA kernel resources for sm_90"
  if [ -x "$CUDA_HOME/bin/nvcc" ]; then
    "$PY" tools/ptxas_check.py --arch sm_90 || { echo "stage ptxas FAILED"; status=1; failed_stages=$((failed_stages + 1)); }
  else
    echo "stage ptxas FAILED: no nvcc at $CUDA_HOME/bin/nvcc"; status=1; failed_stages=$((failed_stages + 1))
  fi
fi

if want asan; then
  # The CPU kernels built with AddressSanitizer (FUSEDGAN_SANITIZE=address, -O1) in a copy of the
  # tree kept under ~/.cache/fusedgan-asan (its build/ too: a rerun recompiles only what changed),
  # running the kernel tests that reach the edge cases (empty terms, all-empty scales, NaN/inf,
  # penalties): an out-of-bounds read or write fails the stage.
  # libasan must be loaded first (LD_PRELOAD), and libstdc++ with it: python does not link
  # libstdc++, so with libasan alone ASan's __cxa_throw interceptor finds no real __cxa_throw and
  # the first C++ exception (torch's or libtriton's) dies in an ASan CHECK, written to the stderr
  # that pytest captures: the process vanished without a report or a junit file.  The reports go to
  # files (log_path) and are printed here.
  banner "AddressSanitizer build of the CPU kernels + focused kernel tests"
  asan_t0=$SECONDS
  asan_dir="${FUSEDGAN_ASAN_CACHE:-$HOME/.cache/fusedgan-asan}/tree"
  asan_logs=$(mktemp -d)
  libasan=$("${CXX:-c++}" -print-file-name=libasan.so)
  libstdcxx=$(readlink -f "$("${CXX:-c++}" -print-file-name=libstdc++.so)")
  mkdir -p "$asan_dir"
  find "$asan_dir" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
  git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T - | tar -xf - -C "$asan_dir"
  pushd "$asan_dir" >/dev/null
  if FUSEDGAN_SANITIZE=address FUSEDGAN_BUILD_CUDA=0 FUSEDGAN_BUILD_EXT=1 "$PY" setup.py build_ext --inplace \
      >"$asan_dir/build.log" 2>&1; then
    echo "asan: built (t=$((SECONDS - asan_t0))s)"
    LD_PRELOAD="$libasan $libstdcxx" ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$asan_logs/asan" \
      FUSEDGAN_BACKEND= FUSEDGAN_NO_TRITON=1 \
      run_pytest asan tests/test_hardening.py tests/test_penalties.py -q -x -p no:cacheprovider -k "not compile"
    if compgen -G "$asan_logs/asan*" > /dev/null; then
      cat "$asan_logs"/asan*; echo "stage asan FAILED (AddressSanitizer report above)"; status=1; failed_stages=$((failed_stages + 1))
    fi
  else
    tail -30 "$asan_dir/build.log"; echo "stage asan FAILED (build)"; status=1; failed_stages=$((failed_stages + 1))
  fi
  popd >/dev/null
  rm -rf "$asan_logs"
  echo "asan: stage time $((SECONDS - asan_t0))s"
fi

banner "summary (total time $((SECONDS - t0))s)"
"$PY" - "$REPORTS" "$failed_stages" <<'PYEOF'
import glob, sys, xml.etree.ElementTree as ET
tot = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
fused_passed = 0  # passed tests that ran a fused kernel (tests/conftest.py: property fused_kernels)
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for k in tot:
            tot[k] += int(suite.get(k, 0))
        fused = 0
        for case in suite.iter("testcase"):
            if any(c.tag in ("failure", "error", "skipped") for c in case):
                continue
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            fused += int(props.get("fused_kernels", "0") or 0) > 0
        fused_passed += fused
        print(f"  {path.rsplit('/', 1)[-1][:-4]:8s} {suite.get('tests')} tests, {suite.get('failures')} failed, "
              f"{suite.get('errors')} errors, {suite.get('skipped')} skipped; {fused} passed ran a fused kernel")
failed = tot["failures"] + tot["errors"]
passed = tot["tests"] - failed - tot["skipped"]
failed += int(sys.argv[2])  # a failed build or ctest stage counts as a failure too
print(f"{passed} passed ({fused_passed} of them ran a fused kernel), {failed} failed, {tot['skipped']} skipped")
PYEOF
exit $status
