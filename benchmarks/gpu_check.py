"""One-command GPU check: build, test every backend on CUDA, benchmark, write results.

    python benchmarks/gpu_check.py --out benchmarks/results

On a machine with a CUDA GPU it

1. builds the extension (``pip install --no-build-isolation -e .``) unless ``fusedgan._C`` imports;
2. runs the whole test suite on CUDA for every backend (``FUSEDGAN_TEST_DEVICE=cuda pytest tests``);
3. runs the benchmark sweep of ``benchmarks/sweep.py`` (fused triton / fused cuda / eager /
   torch.compile; every kind's D and G loss, forward + backward; 2^6..2^26 elements; fp32 and bf16;
   CUDA-event median timing, profiler launch counts, peak memory, bandwidth vs a measured copy);
4. writes ``<out>/gpu_<gpu-name>.json`` and ``.md`` (plus the test log);
5. in the time left, runs ``benchmarks/penalty_sweep.py`` (gradient_penalty and r1_penalty at
   ``[64,3,128,128]`` and ``[64,3,256,256]``, fp32 and bf16) into ``<out>/penalties_<gpu>.{json,md}``.

The whole run is budgeted to fit a 10-minute command on an H100 (``--budget-s``): the sweep
drops the largest sizes for the extra kinds if time runs short.  ``--skip-build`` /
``--skip-tests`` skip steps.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def sh(cmd, env=None, timeout=None, log=None) -> int:
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout[-6000:], flush=True)
    if log:
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{p.stdout}\nexit {p.returncode}\n")
    return p.returncode


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results"))
    ap.add_argument("--budget-s", type=float, default=540.0)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--skip-tests", action="store_true")
    a = ap.parse_args(argv)
    t0 = time.time()
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    os.makedirs(a.out, exist_ok=True)
    name = torch.cuda.get_device_name()
    import sweep

    log = os.path.join(a.out, f"gpu_{sweep.slug(name)}_tests.log")
    status = {}
    if not a.skip_build:
        ok = subprocess.run([sys.executable, "-c", "import fusedgan._C"], cwd=ROOT).returncode == 0
        status["build"] = 0 if ok else sh([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                                           "-e", "."], timeout=300, log=log)
    if not a.skip_tests:
        left = max(60, int(a.budget_s * 0.4 - (time.time() - t0)))
        status["tests"] = sh([sys.executable, "-m", "pytest", "tests", "-x", "-q"],
                             env={"FUSEDGAN_TEST_DEVICE": "cuda"}, timeout=left, log=log)

    import fusedgan as fg

    deadline = t0 + a.budget_s
    res = None
    plans = [  # (kinds, log2 sizes, dtypes), best first; the first that fits the time left runs
        (sweep.KINDS, list(range(6, 27, 2)), ["fp32", "bf16"]),
        (["ns", "hinge"], list(range(6, 27, 4)), ["fp32", "bf16"]),
        (["ns"], [6, 14, 24], ["fp32"]),
    ]
    results = []
    for kinds, exps, dtypes in plans:
        est = len(kinds) * len(exps) * len(dtypes) * 2 * 4 * 1.2  # ~1.2 s per case (compile included)
        if time.time() + est < deadline or (kinds, exps, dtypes) == plans[-1]:
            res = sweep.run("cuda", [1 << e for e in exps], dtypes, kinds, reps=100, budget_s=0.3)
            results.append(res)
            break
    res["status"] = status
    res["backends"] = fg.available_backends("cuda")
    res["wall_s"] = time.time() - t0
    print("wrote", *sweep.write(res, a.out, "gpu"))

    # The penalties (benchmarks/penalty_sweep.py) in the time that is left, smallest plan first.
    import penalty_sweep

    if time.time() + 60 < deadline:
        shapes = "64x3x128x128,64x3x256x256" if time.time() + 150 < deadline else "64x3x128x128"
        penalty_sweep.main(["--device", "cuda", "--shapes", shapes, "--dtypes", "fp32,bf16",
                            "--rounds", "9", "--out", a.out])


if __name__ == "__main__":
    main()
