"""The GPU check: everything a lent GPU machine can tell about fusedgan, in one call of at most
10 minutes.

    python benchmarks/gpu_check.py --out "$OUT"             # on the GPU machine (deadline 540 s)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gc  # the same plumbing on the CPU (CI)

Each phase runs in its own subprocess with its own timeout, cut to what the internal deadline
(``--deadline``, seconds from the start) leaves; its output goes straight into a file under
``--out`` as it is written, and ``summary.json`` is rewritten after every phase, so a run that is
killed still leaves what it measured.  A phase that times out or fails is recorded and the run
goes on; a phase that the deadline leaves no time for is recorded as skipped.  At most 8 files:

    summary.json  phases (status, exit code, seconds, test counts), probe results, sweep targets
    env.log       versions, nvidia-smi
    build.log     the builds
    tests.log     the Triton tests, then the other GPU-relevant tests
    probe.log     benchmarks/gpu_probe.py
    sweep.jsonl   one JSON line per timed row (benchmarks/gpu_sweep.py)
    sweep.log     the sweep's progress
    ncu.log       Nsight Compute on one step per backend

Phases, in order:

1. ``env``: Python, torch, Triton, CUDA versions; ``nvidia-smi``.
2. ``build_cpu``: the extension without CUDA kernels, in place (the Triton backend runs under the
   extension's C++ autograd operators, so the Triton tests need it).
3. ``build_cuda`` in the background (``TORCH_CUDA_ARCH_LIST=9.0``, ``MAX_JOBS`` = cores, into
   build/gpu-check) while ``triton_tests`` runs ``tests/test_triton*.py`` on the GPU; the CUDA
   build then replaces the in-place extension.
4. ``gpu_tests``: the GPU-relevant test files with ``FUSEDGAN_TEST_DEVICE=cuda``: every fused
   backend on CUDA tensors (the ``cpu`` backend excluded), no ``-x``.
5. ``probe``: fp64 scalars stay fp64, a bf16 tensor above 2^31 elements, determinism, fused
   against the float64 reference at 2^26 elements (benchmarks/gpu_probe.py).
6. ``sweep``: the fixed sweep of benchmarks/gpu_sweep.py, timed with CUDA events, one JSON line
   per row, the deadline checked before each row.
7. ``ncu``: if 60 s remain, Nsight Compute on one ns D step per backend (DRAM bytes, achieved
   occupancy).

``--dry-run`` runs the same phases on the CPU with tiny sizes, a short deadline, a test subset,
the Triton interpreter and no compilation (the build phases only check that the extension built by
``tests/run.sh`` imports).  Exit status: 0 if no phase failed or timed out.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = ("summary.json", "env.log", "build.log", "tests.log", "probe.log", "sweep.jsonl", "sweep.log",
         "ncu.log")
# The test files that exercise GPU code (besides tests/test_triton*.py, which run first).
GPU_TEST_FILES = ("test_losses.py", "test_penalties.py", "test_stats.py", "test_relativistic.py",
                  "test_multiscale.py", "test_autograd.py", "test_ops.py", "test_autocast.py",
                  "test_compat.py", "test_backends.py", "test_cuda_build.py", "test_compile.py")
# Caps on each phase's seconds at the default deadline (scaled with --deadline).
CAPS = {"env": 30, "build_cpu": 150, "build_cuda": 240, "triton_tests": 150, "gpu_tests": 150,
        "probe": 90, "sweep": 400, "ncu": 60}
NCU_NEEDS_S = 60.0  # ncu runs only if this much of the deadline is left
DEFAULT_DEADLINE, DRY_DEADLINE = 540.0, 300.0


class Check:
    """The run's state: the out folder, the deadline, the summary written after every phase."""

    def __init__(self, out: str, deadline: float, dry: bool, caps: dict):
        self.out, self.dry, self.caps = out, dry, caps
        self.scale = deadline / DEFAULT_DEADLINE  # reserves shrink with the deadline
        self.ncu_needs = 30.0 if dry else NCU_NEEDS_S  # dry: one Python start-up on a loaded CPU
        self.t0 = time.time()
        self.deadline_at = self.t0 + deadline
        self.procs: list = []  # running children (killed on SIGTERM)
        self.summary = {"dry_run": dry, "deadline_s": deadline, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                        time.gmtime(self.t0)), "root": ROOT, "files": list(FILES), "phases": {}}
        os.makedirs(out, exist_ok=True)
        self.write()

    def path(self, name: str) -> str:
        assert name in FILES, name
        return os.path.join(self.out, name)

    def left(self) -> float:
        return self.deadline_at - time.time()

    def write(self) -> None:
        self.summary["wall_s"] = round(time.time() - self.t0, 1)
        tmp = self.path("summary.json") + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.summary, fh, indent=1)
        os.replace(tmp, self.path("summary.json"))

    def avail(self, reserve: float = 0.0) -> float:
        """Seconds the deadline leaves a phase, keeping ``reserve`` (at the default deadline;
        scaled with it) for later phases."""
        return self.left() - reserve * self.scale

    def record(self, name: str, **info) -> dict:
        entry = self.summary["phases"].setdefault(name, {})
        entry.update(info)
        self.write()
        return entry

    def skip(self, name: str, reason: str) -> dict:
        print(f"[gpu_check] {name}: skipped ({reason})", flush=True)
        return self.record(name, status="skipped", reason=reason)

    def start(self, name: str, cmd: list, log: str, env: dict | None = None):
        """Start a phase's subprocess, its output appended to ``log`` as it is written."""
        with open(self.path(log), "a") as fh:
            fh.write(f"\n===== {name}: {' '.join(cmd)}  (t={time.time() - self.t0:.0f}s)\n")
        fh = open(self.path(log), "a")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = ROOT + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        fh.close()
        self.procs.append(proc)
        print(f"[gpu_check] {name}: started (pid {proc.pid}, log {log})", flush=True)
        self.record(name, status="running", log=log, cmd=cmd, started_s=round(time.time() - self.t0, 1))
        return proc

    def finish(self, name: str, proc, timeout: float, log: str, offset: int = 0) -> dict:
        """Wait for ``proc`` at most ``timeout`` seconds (killing its process group then); record."""
        t_start = self.t0 + self.summary["phases"][name]["started_s"]
        try:
            rc = proc.wait(timeout=max(0.0, timeout - (time.time() - t_start)))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc, status = None, "timeout"
            with open(self.path(log), "a") as fh:
                fh.write(f"\n===== {name}: killed after its timeout of {timeout:.0f} s\n")
        if proc in self.procs:
            self.procs.remove(proc)
        info = dict(status=status, rc=rc, wall_s=round(time.time() - t_start, 1), timeout_s=round(timeout, 1))
        with open(self.path(log), errors="replace") as fh:
            fh.seek(offset)
            text = fh.read()
        counts = pytest_counts(text)
        if counts:
            info["tests"] = counts
        print(f"[gpu_check] {name}: {status} (rc {rc}, {info['wall_s']} s)"
              + (f" {counts}" if counts else ""), flush=True)
        return self.record(name, **info)

    def run(self, name: str, cmd: list, log: str, reserve: float = 0.0, env: dict | None = None,
            cap: float | None = None) -> dict:
        """Run a phase: timeout = its cap, cut to what the deadline leaves (skipped under 1 s)."""
        avail = self.avail(reserve)
        if avail < 1.0:
            return self.skip(name, f"deadline: {max(0.0, self.left()):.0f} s left")
        timeout = min(self.caps[name] if cap is None else cap, avail)
        offset = _size(self.path(log))
        return self.finish(name, self.start(name, cmd, log, env), timeout, log, offset)


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def pytest_counts(text: str) -> dict:
    """The counts of pytest's closing line (``3 failed, 120 passed, 4 skipped in 12.3s``)."""
    lines = [ln for ln in text.splitlines() if re.search(r"\b\d+ (passed|failed|skipped|errors?)\b", ln)
             and re.search(r" in [\d.]+s", ln)]
    if not lines:
        return {}
    return {k if k != "error" else "errors": int(n) for n, k in
            re.findall(r"(\d+) (passed|failed|skipped|errors|error|xfailed|xpassed|deselected)", lines[-1])}


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def pytest_cmd(files: list, dry: bool) -> list:
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-rfE", "-p", "no:cacheprovider", "--tb=short"]
    if not dry and has_module("xdist"):
        cmd += ["-n", str(min(8, os.cpu_count() or 1))]
    if has_module("pytest_timeout"):
        cmd += ["--timeout", "120"]
    return cmd


ENV_SCRIPT = r"""
import os, platform, sys, subprocess
print("python", sys.version.replace("\n", " "))
print("platform", platform.platform(), "cores", os.cpu_count())
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, "cc", f"{p.major}.{p.minor}", "sms", p.multi_processor_count,
          "memory_gib", round(p.total_memory / 2**30, 1))
try:
    import triton
    print("triton", triton.__version__)
except Exception as e:
    print("triton missing:", e)
for m in ("xdist", "pytest_timeout", "setuptools", "wheel", "ninja"):
    try:
        mod = __import__(m)
        print(m, getattr(mod, "__version__", "present"))
    except Exception as e:
        print(m, "missing")
import json
v = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
     "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
try:
    import triton
    v["triton"] = triton.__version__
except Exception:
    pass
print("VERSIONS " + json.dumps(v), flush=True)
for cmd in (["nvcc", "--version"], ["nvidia-smi"]):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        print("$", " ".join(cmd)); print(out.stdout + out.stderr)
    except Exception as e:
        print("$", " ".join(cmd), "->", type(e).__name__, e)
"""


def phase_env(c: Check) -> None:
    c.run("env", [sys.executable, "-c", ENV_SCRIPT], "env.log")
    c.summary["versions"] = _last_json(c.path("env.log"), "VERSIONS ")
    c.write()


def build_env(cuda: bool) -> dict:
    cores = str(os.cpu_count() or 1)
    env = {"MAX_JOBS": cores, "FUSEDGAN_BUILD_EXT": "1", "FUSEDGAN_BUILD_CUDA": "1" if cuda else "0"}
    if cuda:
        env["TORCH_CUDA_ARCH_LIST"] = "9.0"
        nvcc = shutil.which("nvcc")
        home = os.environ.get("CUDA_HOME") or (os.path.dirname(os.path.dirname(nvcc)) if nvcc else None)
        if not home or not os.path.exists(os.path.join(home, "bin", "nvcc")):
            home = "/usr/local/cuda"
        env["CUDA_HOME"] = home
    return env


def install_cuda_build(c: Check, lib: str) -> None:
    """Copy the CUDA build's extension over the in-place CPU one."""
    built = glob.glob(os.path.join(lib, "fusedgan", "_C*.so"))
    if not built:
        c.record("build_cuda", installed=False)
        return
    for old in glob.glob(os.path.join(ROOT, "fusedgan", "_C*.so")):
        os.remove(old)
    shutil.copy2(built[0], os.path.join(ROOT, "fusedgan", os.path.basename(built[0])))
    c.record("build_cuda", installed=True)


def phase_build_and_triton(c: Check, skip_build: bool) -> None:
    check_import = [sys.executable, "-c", "import fusedgan, fusedgan._C; fusedgan.info()"]
    if c.dry or skip_build:
        # The extension was built before (tests/run.sh's install stage): check that it imports,
        # and exercise the background phase with a cheap command.
        c.run("build_cpu", check_import, "build.log")
        bg_cmd, lib = [sys.executable, os.path.join(ROOT, "setup.py"), "--version"], None
    else:
        c.run("build_cpu", [sys.executable, "setup.py", "build_ext", "--inplace"], "build.log",
              env=build_env(False))
        out = os.path.join(ROOT, "build", "gpu-check")
        lib = os.path.join(out, "lib")
        bg_cmd = [sys.executable, "setup.py", "build_ext", "--build-lib", lib, "--build-temp",
                  os.path.join(out, "temp")]
    reserve = 30.0  # keep time for the GPU tests, the probe and the sweep
    bg = None
    if c.avail(reserve) >= 1.0:
        bg_timeout = min(c.caps["build_cuda"], c.avail(reserve))
        bg = c.start("build_cuda", bg_cmd, "build.log", env=build_env(not c.dry))
    else:
        c.skip("build_cuda", f"deadline: {max(0.0, c.left()):.0f} s left")

    files = sorted(glob.glob(os.path.join(ROOT, "tests", "test_triton*.py")))
    env = {"FUSEDGAN_TEST_DEVICE": "cuda"}
    if c.dry:
        files = [os.path.join(ROOT, "tests", "test_triton.py") + "::test_opcheck"]
        env = {"FUSEDGAN_TEST_DEVICE": "cpu", "TRITON_INTERPRET": "1"}
    c.run("triton_tests", pytest_cmd(files, c.dry), "tests.log", reserve, env=env)

    if bg is not None:
        c.finish("build_cuda", bg, bg_timeout, "build.log")
        if lib and c.summary["phases"]["build_cuda"]["status"] == "ok":
            install_cuda_build(c, lib)


def phase_gpu_tests(c: Check) -> None:
    if c.dry:
        files = [os.path.join(ROOT, "tests", "test_losses.py") + "::test_confident_predictions"]
        env = {"FUSEDGAN_TEST_DEVICE": "cpu"}
    else:
        files = [os.path.join(ROOT, "tests", f) for f in GPU_TEST_FILES
                 if os.path.exists(os.path.join(ROOT, "tests", f))]
        env = {"FUSEDGAN_TEST_DEVICE": "cuda"}
    c.run("gpu_tests", pytest_cmd(files, c.dry), "tests.log", 20.0, env=env)


def _last_json(path: str, prefix: str, offset: int = 0):
    if not os.path.exists(path):
        return None
    with open(path, errors="replace") as fh:
        fh.seek(offset)
        lines = [ln[len(prefix):] for ln in fh.read().splitlines() if ln.startswith(prefix)]
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


def phase_probe(c: Check) -> None:
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_probe.py")] + (["--dry-run"] if c.dry else [])
    env = {"TRITON_INTERPRET": "1"} if c.dry else {}
    c.run("probe", cmd, "probe.log", 20.0, env=env)
    result = _last_json(c.path("probe.log"), "PROBE_RESULT ")
    if result is not None:
        c.summary["probe"] = result
        c.write()


def phase_sweep(c: Check) -> None:
    stop_at = c.deadline_at - c.ncu_needs - 2.0  # no row starts later: ncu keeps its minute
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_sweep.py"), "--out", c.path("sweep.jsonl"),
           "--stop-at", f"{stop_at:.1f}"] + (["--dry-run"] if c.dry else [])
    # the hard limit, should a row overrun: ncu keeps most of its minute
    c.run("sweep", cmd, "sweep.log", (c.ncu_needs - 10.0 if not c.dry else c.ncu_needs - 3.0) / c.scale)
    rows = read_jsonl(c.path("sweep.jsonl"))
    c.summary["sweep"] = {"rows": sum(1 for r in rows if "provider" in r),
                          "errors": sum(1 for r in rows if r.get("error")),
                          "stopped": next((r["stopped"] for r in rows if "stopped" in r), None)}
    c.summary["targets"] = targets(rows)
    c.write()


def find_ncu():
    found = shutil.which("ncu")
    if found:
        return found
    for pattern in ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu", "/usr/local/cuda*/bin/ncu"):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    return None


NCU_METRICS = ("dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,"
               "sm__warps_active.avg.pct_of_peak_sustained_active")


NCU_BACKENDS = ("fusedgan-triton", "fusedgan-cuda", "compile", "eager")


def phase_ncu(c: Check) -> None:
    """One ncu run per provider, each profiling one ns D forward+backward step (2^24 fp32)."""
    if c.left() < c.ncu_needs:
        c.skip("ncu", f"deadline: {max(0.0, c.left()):.0f} s left, needs {c.ncu_needs:.0f}")
        return
    ncu = find_ncu()
    c.summary["ncu"] = {"path": ncu}
    step = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_sweep.py")]
    if c.dry:
        step.append("--dry-run")
    statuses = []
    # dry run: one step (the plumbing); on the GPU a step under ncu takes 10-20 s
    for provider in (NCU_BACKENDS if not c.dry else ("eager",)):
        if c.left() < (15.0 if not c.dry else 2.0):
            c.summary["ncu"][provider] = {"status": "skipped", "reason": "deadline"}
            break
        cmd = step + ["--ncu-step", provider]
        if ncu is not None and not c.dry:
            cmd = [ncu, "--clock-control", "none", "--profile-from-start", "off", "--csv",
                   "--metrics", NCU_METRICS, *cmd]
        offset = _size(c.path("ncu.log"))
        info = c.run("ncu", cmd, "ncu.log", cap=min(c.caps["ncu"], 30.0))
        entry = {"status": info["status"]}
        with open(c.path("ncu.log"), errors="replace") as fh:
            fh.seek(offset)
            entry.update(parse_ncu(fh.read()))
        c.summary["ncu"][provider] = entry
        statuses.append(info["status"])
    if ncu is None:
        c.summary["ncu"]["note"] = "ncu not found: the steps ran without it"
    worst = next((s for s in ("timeout", "failed") if s in statuses), "ok" if statuses else "skipped")
    c.record("ncu", status=worst)


def parse_ncu(text: str) -> dict:
    """Totals over the kernels of ncu's CSV in ``text``: DRAM bytes, GPU time, occupancy."""
    import csv
    import io

    header = text.find('"ID","Process ID"')
    if header < 0:
        return {}
    kernels: dict = {}
    for r in csv.DictReader(io.StringIO(text[header:])):
        try:
            kid = int(r["ID"])
        except (KeyError, TypeError, ValueError):
            continue
        k = kernels.setdefault(kid, {"name": (r.get("Kernel Name") or "")[:80]})
        k[r.get("Metric Name", "")] = _to_base(r.get("Metric Value", ""), r.get("Metric Unit", ""))
    ks = [kernels[i] for i in sorted(kernels)]
    return {"kernels": len(ks), "names": [k["name"] for k in ks],
            "dram_read_bytes": sum(k.get("dram__bytes_read.sum", 0.0) for k in ks),
            "dram_write_bytes": sum(k.get("dram__bytes_write.sum", 0.0) for k in ks),
            "gpu_time_s": sum(k.get("gpu__time_duration.sum", 0.0) for k in ks),
            "occupancy_pct": [k.get("sm__warps_active.avg.pct_of_peak_sustained_active") for k in ks]}


def _to_base(val, unit) -> float:
    try:
        v = float(str(val).replace(",", ""))
    except ValueError:
        return float("nan")
    scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "nsecond": 1e-9, "usecond": 1e-6,
             "msecond": 1e-3, "second": 1.0}
    return v * scale.get(unit, 1.0)


def read_jsonl(path: str) -> list:
    rows = []
    if os.path.exists(path):
        for ln in open(path, errors="replace"):
            try:
                rows.append(json.loads(ln))
            except json.JSONDecodeError:
                pass  # a line cut by a kill
    return rows


def targets(rows: list) -> dict:
    """issue 15's targets, from the sweep's rows (None where the row was not measured)."""
    def find(case, n=None, dtype="fp32", provider=None):
        return [r for r in rows if r.get("case") == case and (n is None or r.get("n") == n)
                and r.get("dtype") == dtype and r.get("ms") and (provider is None or r["provider"] == provider)]

    out = {}
    sizes = {r["n"] for r in rows if r.get("case") == "ns-D" and r.get("n")}
    big = 1 << 24 if 1 << 24 in sizes else max(sizes, default=None)  # the targets' sizes (dry run: others)
    small = 64 if 64 in sizes else min(sizes, default=None)
    compile_big = find("ns-D", big, provider="compile")
    for p in sorted({r["provider"] for r in rows if str(r.get("provider", "")).startswith("fusedgan-")}):
        t = {}
        for r in find("ns-D", big, provider=p):
            t["ns_D_big"] = {"n": r["n"], "frac_copy_bw": r.get("frac_copy_bw"), "target_frac": 0.85,
                             "x_compile": (compile_big[0]["ms"] / r["ms"]) if compile_big else None,
                             "target_x_compile": 1.3}
        for r in find("ns-D", small, provider=p):
            t["ns_D_small"] = {"n": r["n"], "launches": r.get("launches"), "target_launches": 3,
                               "host_us": r.get("host_us"), "target_host_us": 20}
        for r in find("gp", provider=p):
            t["gp"] = {"shape": r.get("shape"), "launches": r.get("launches"), "target_launches": 3,
                       "frac_copy_bw": r.get("frac_copy_bw"), "target_frac": 0.85}
        if t:
            out[p] = t
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "benchmarks", "results", "gpu_check"))
    ap.add_argument("--deadline", type=float, default=None,
                    help=f"seconds for the whole run (default {DEFAULT_DEADLINE:.0f}; {DRY_DEADLINE:.0f} with --dry-run)")
    ap.add_argument("--dry-run", action="store_true", help="the same plumbing on the CPU, tiny sizes")
    ap.add_argument("--skip-build", action="store_true", help="use the extension already built in place")
    ap.add_argument("--phase-timeout", action="append", default=[], metavar="PHASE=SECONDS",
                    help="override one phase's cap (repeatable), e.g. gpu_tests=60")
    a = ap.parse_args(argv)
    deadline = a.deadline if a.deadline is not None else (DRY_DEADLINE if a.dry_run else DEFAULT_DEADLINE)
    scale = deadline / DEFAULT_DEADLINE
    caps = {k: v * scale for k, v in CAPS.items()}
    if a.dry_run:  # nothing is compiled: the phases are short, give the sweep most of the time
        caps.update(env=30.0, build_cpu=30.0, build_cuda=30.0, triton_tests=60.0, gpu_tests=60.0, probe=60.0,
                    sweep=deadline, ncu=30.0)
    for item in a.phase_timeout:
        name, _, secs = item.partition("=")
        if name not in caps:
            ap.error(f"--phase-timeout: unknown phase {name!r}; phases: {', '.join(caps)}")
        caps[name] = float(secs)
    c = Check(a.out, deadline, a.dry_run, caps)

    def on_term(signum, frame):  # the device tool's limit: leave the summary, end the children
        c.summary["killed"] = f"signal {signum} at {time.time() - c.t0:.0f} s"
        for p in list(c.procs):
            _kill(p)
        c.write()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    if not a.dry_run:
        import torch

        if not torch.cuda.is_available():
            c.summary["error"] = "no CUDA device (use --dry-run on a machine without a GPU)"
            c.write()
            print("gpu_check: no CUDA device; --dry-run runs the plumbing on the CPU", file=sys.stderr)
            return 2
    phase_env(c)
    phase_build_and_triton(c, a.skip_build)
    phase_gpu_tests(c)
    phase_probe(c)
    phase_sweep(c)
    phase_ncu(c)
    bad = [n for n, p in c.summary["phases"].items() if p.get("status") in ("failed", "timeout")]
    c.summary["result"] = "ok" if not bad else "problems: " + ", ".join(bad)
    c.write()
    print(f"[gpu_check] done in {time.time() - c.t0:.0f} s: {c.summary['result']}; {c.path('summary.json')}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
