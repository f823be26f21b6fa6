"""The ``fusedgan`` command: ``demo`` and ``bench --quick`` write outputs that parse; ``--seed``
makes the demo deterministic; bad arguments fail with status 2 and a message."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from fusedgan import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def _demo(tmp_path, name, *extra):
    out = tmp_path / name
    argv = ["demo", "--steps", "30", "--batch-size", "64", "--hidden", "32", "--no-progress",
            "--out", str(out), *extra]
    assert cli.main(argv) == 0
    with open(out / "demo.json") as fh:
        return out, json.load(fh)


def _check_png(path):
    if not HAS_MPL:
        pytest.skip("matplotlib not installed: no figure")
    with open(path, "rb") as fh:
        assert fh.read(8) == PNG_MAGIC


def test_demo_writes_summary_and_figure(tmp_path):
    out, s = _demo(tmp_path, "a", "--seed", "3", "--loss", "ns")
    for key in ("config", "backend", "metrics", "loss_curves", "steps_per_s", "final", "figure"):
        assert key in s
    m = s["metrics"]
    assert m["modes"] == 8 and 0 <= m["modes_covered"] <= 8
    assert 0.0 <= m["high_quality_fraction"] <= 1.0
    assert len(s["loss_curves"]["d"]) == 30 and len(s["loss_curves"]["g"]) == 30
    _check_png(out / "demo.png")


def test_demo_is_deterministic_with_seed(tmp_path):
    _, a = _demo(tmp_path, "a", "--seed", "7", "--loss", "r1")
    _, b = _demo(tmp_path, "b", "--seed", "7", "--loss", "r1")
    _, c = _demo(tmp_path, "c", "--seed", "8", "--loss", "r1")
    assert a["loss_curves"] == b["loss_curves"]
    assert a["metrics"] == b["metrics"]
    assert a["loss_curves"] != c["loss_curves"]


@pytest.mark.parametrize("loss", ["mm", "ls", "wgan", "hinge", "wgan-gp"])
def test_demo_every_loss_runs(tmp_path, loss):
    _, s = _demo(tmp_path, loss, "--loss", loss, "--data", "grid", "--steps", "5")
    assert s["metrics"]["modes"] == 25
    assert all(v == v for v in s["loss_curves"]["d"])  # no NaN


def test_demo_compare_reports_both(tmp_path):
    _, s = _demo(tmp_path, "cmp", "--compare", "--steps", "10")
    cmp = s["compare"]
    assert cmp["steps_per_s"] > 0 and cmp["reference_steps_per_s"] > 0
    # Same seeded run, fused vs reference losses: the curves agree to float32 rounding.
    assert cmp["max_abs_loss_curve_diff"] < 1e-3


def test_demo_digits(tmp_path):
    pytest.importorskip("sklearn")
    out, s = _demo(tmp_path, "dig", "--data", "digits", "--steps", "5")
    assert s["metrics"]["modes"] == 10
    _check_png(out / "demo.png")


def test_bench_quick(tmp_path):
    out = tmp_path / "bench"
    assert cli.main(["bench", "--quick", "--kinds", "ns,hinge", "--sizes", "64,4096", "--no-compile", "--quiet",
                     "--threads", "1", "--out", str(out)]) == 0
    with open(out / "bench.json") as fh:
        result = json.load(fh)
    meta, rows = result["meta"], result["rows"]
    for key in ("device", "versions", "providers", "fused_backends", "threads"):
        assert key in meta
    assert "reference" in meta["providers"]
    assert rows and all(r["error"] is None for r in rows)
    for r in rows:
        assert r["median_ms"] > 0 and r["gbps"] > 0 and r["reps"] >= 1
    assert {(r["kind"], r["side"]) for r in rows} >= {("ns", "D"), ("ns", "G"), ("hinge", "D"), ("hinge", "G")}
    assert {"torch", "floor"} <= {r["provider"] for r in rows}  # the code users write; the autograd floor
    for fused in meta["fused_backends"]:
        assert any(r["provider"] == fused and r["speedup_vs_reference"] for r in rows)
    with open(out / "bench.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)
    _check_png(out / "bench.png")


def test_bench_compile_provider(tmp_path):
    out = tmp_path / "bench"
    argv = ["bench", "--kinds", "ns", "--sides", "G", "--sizes", "256", "--dtypes", "fp32",
            "--modes", "fwd+bwd", "--providers", "torch,compile", "--reps", "3", "--rounds", "1", "--quiet",
            "--no-profile", "--out", str(out)]
    assert cli.main(argv) == 0
    with open(out / "bench.json") as fh:
        result = json.load(fh)
    (ct,) = result["compile_times"]
    assert ct["first_call_ms"] > ct["steady_median_ms"] > 0


@pytest.mark.parametrize("argv", [
    ["demo", "--steps", "0"],
    ["demo", "--loss", "nope"],
    ["demo", "--data", "mnist"],
    ["bench", "--kinds", "nope"],
    ["bench", "--dtypes", "fp8"],
    ["frobnicate"],
])
def test_bad_arguments_exit_2(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        code = cli.main([*argv, "--out", str(tmp_path)] if argv[0] in ("demo", "bench") else argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error" in err.lower()


def test_unavailable_backend_is_a_clear_error(tmp_path, capsys):
    import fusedgan

    missing = [b for b in ("cuda", "triton") if b not in fusedgan.available_backends("cpu")]
    if not missing:
        pytest.skip("every backend runs here")
    code = cli.main(["demo", "--device", "cpu", "--backend", missing[0], "--steps", "1", "--out", str(tmp_path)])
    assert code == 2
    assert missing[0] in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run([sys.executable, "-m", "fusedgan", "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0
    assert "demo" in res.stdout and "bench" in res.stdout
