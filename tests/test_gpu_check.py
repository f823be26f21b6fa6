"""benchmarks/gpu_check.py's plumbing, on the CPU (``--dry-run``): the phases run in their own
processes under one deadline, at most 8 files come back, summary.json is complete after every
phase, and a phase that times out or that the deadline leaves no time for is recorded, not fatal."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_check  # noqa: E402

PHASES = ["env", "build_cpu", "build_cuda", "triton_tests", "gpu_tests", "probe", "sweep", "ncu"]


def run(tmp_path, *args, timeout=300):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(out), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    files = sorted(os.listdir(out))
    assert len(files) <= 8 and set(files) <= set(gpu_check.FILES), files
    with open(out / "summary.json") as fh:
        return p, json.load(fh), out


def test_dry_run(tmp_path):
    p, s, out = run(tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert list(s["phases"]) == PHASES
    for name in PHASES:
        assert s["phases"][name]["status"] == "ok", (name, s["phases"][name])
    assert s["phases"]["triton_tests"]["tests"].get("passed", 0) > 0
    assert s["phases"]["gpu_tests"]["tests"].get("passed", 0) > 0
    assert s["probe"]["ok"] and s["probe"]["checks"], s.get("probe")
    assert s["sweep"]["rows"] > 0 and s["sweep"]["stopped"], s["sweep"]
    rows = gpu_check.read_jsonl(str(out / "sweep.jsonl"))
    assert {"case", "provider", "ms", "dtype", "n"} <= set(rows[1]), rows[1]
    assert s["result"] == "ok"
    assert s["wall_s"] <= s["deadline_s"] + 15


def test_timeouts_are_recorded(tmp_path):
    """Phases killed at their timeouts: recorded with no exit code, the run goes on, exit 1."""
    caps = [a for n in ("triton_tests", "gpu_tests", "probe", "sweep", "ncu") for a in ("--phase-timeout", f"{n}=0.5")]
    p, s, _ = run(tmp_path, *caps)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    ph = s["phases"]
    assert list(ph) == PHASES
    for name in ("triton_tests", "gpu_tests", "probe", "sweep", "ncu"):
        assert ph[name]["status"] == "timeout" and ph[name]["rc"] is None, (name, ph[name])
    assert ph["env"]["status"] == "ok"
    assert "triton_tests" in s["result"]


def test_deadline_is_recorded(tmp_path):
    """A deadline too short for the phases: the ones it leaves no time for are skipped, saying so."""
    p, s, _ = run(tmp_path, "--deadline", "3")
    ph = s["phases"]
    assert list(ph) == PHASES
    assert all(ph[n]["status"] in ("ok", "timeout", "skipped") for n in PHASES), ph
    skipped = [n for n in PHASES if ph[n]["status"] == "skipped"]
    assert "ncu" in skipped and all("deadline" in ph[n]["reason"] for n in skipped), ph
    assert s["wall_s"] <= 3 + 15


def test_pytest_counts():
    text = "....\n=== 2 failed, 120 passed, 4 skipped, 1 error in 12.30s ===\n"
    assert gpu_check.pytest_counts(text) == {"failed": 2, "passed": 120, "skipped": 4, "errors": 1}
    assert gpu_check.pytest_counts("12 passed in 3.1s") == {"passed": 12}
    assert gpu_check.pytest_counts("no summary") == {}


def test_parse_ncu():
    csv = ('==PROF== Disconnected\n"ID","Process ID","Process Name","Host Name","Kernel Name","Context",'
           '"Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
           '"Metric Value"\n'
           '"0","1","python","h","k1","1","7","(256,1,1)","(8,1,1)","0","9.0","","dram__bytes_read.sum","Mbyte","2.5"\n'
           '"0","1","python","h","k1","1","7","(256,1,1)","(8,1,1)","0","9.0","","dram__bytes_write.sum","Kbyte","1,024"\n'
           '"1","1","python","h","k2","1","7","(256,1,1)","(8,1,1)","0","9.0","","dram__bytes_read.sum","byte","10"\n'
           '"1","1","python","h","k2","1","7","(256,1,1)","(8,1,1)","0","9.0","",'
           '"sm__warps_active.avg.pct_of_peak_sustained_active","%","55.5"\n')
    r = gpu_check.parse_ncu(csv)
    assert r["kernels"] == 2 and r["names"] == ["k1", "k2"]
    assert r["dram_read_bytes"] == 2.5e6 + 10 and r["dram_write_bytes"] == 1024e3
    assert r["occupancy_pct"] == [None, 55.5]
