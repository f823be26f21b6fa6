"""Ahead-of-time sm_90 checks of the Triton kernels (tools/gpu_compile.py), and tests of the tool.

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_compile.py -q

* Every annotated parameter of every kernel the library launches is specialised, by Triton's own
  binder for an sm_90 target, as the type written (a float64 label stays float64 on a GPU): the
  launches are recorded by running the launchers under the interpreter.
* The tool itself: it finds a planted spill, a kernel over its register budget and a quoted
  ``"fp64"`` annotation under ``from __future__ import annotations`` (compiled for sm_90 in a
  subprocess without the interpreter; needs Triton's bundled ptxas, no GPU).
* The float32 loss kernel compiled for sm_90 contains no ``ex2.approx`` (fastmath.py), the float64
  one no spill at its block size.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs CUDA, or TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

import fusedgan as fg  # noqa: E402

if not fg.ops.HAS_TRITON:
    pytest.skip(f"Triton operators not registered: {fg.ops.TRITON_ERROR}", allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import gpu_compile as gc  # noqa: E402

import fusedgan.triton.kernels as K  # noqa: E402
import fusedgan.triton.penalty as P  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def kernels():
    """Every Triton kernel (a launched @triton.jit function: name ends in _kernel) of the library."""
    out = []
    for mod in (K, P):
        for name in sorted(vars(mod)):
            if name.endswith("_kernel") and hasattr(getattr(mod, name), "fn"):
                out.append(getattr(mod, name))
    return out


@pytest.fixture(scope="module")
def launches():
    if not INTERPRET:
        pytest.skip("recording needs the interpreter")
    with gc.Recorder() as rec:
        gc.workload(quick=True)
    return rec.launches


def test_kernel_modules_keep_real_annotations():
    """No stringified annotations in kernel modules: Triton reads the annotation objects."""
    for mod in (K, P):
        src = open(mod.__file__).read()
        assert not re.search(r"^from __future__ import annotations", src, re.M), mod.__name__
    fp64 = [(k.fn.__name__, p.name) for k in kernels() for p in gc._jit(k).params if gc.declared_type(p) == "fp64"]
    assert ("_loss_kernel", "lab_a") in fp64 and ("_finish_kernel", "scale_b") in fp64


def test_every_annotated_parameter_specialised_as_written(launches):
    seen = set()
    for rec in launches:
        fn = getattr(sys.modules[rec["module"]], rec["name"])
        sig, _, _, _ = gc.specialise(fn, rec["args"], rec["kwargs"])
        assert gc.annotation_problems(fn, sig) == [], rec["name"]
        for p in gc._jit(fn).params:
            if gc.declared_type(p) == "fp64":
                assert sig[p.name] == "fp64"
                seen.add((rec["name"], p.name))
    assert {n for n, _ in seen} >= {"_loss_kernel", "_finish_kernel"}
    assert all(k.fn.__name__ in {r["name"] for r in launches} for k in kernels()), "a kernel never launched"


def test_quoted_annotation_is_detected():
    """The defect itself: a quoted "fp64" under the future import is specialised as fp32."""
    src = textwrap.dedent('''
        from __future__ import annotations
        import triton
        import triton.language as tl

        @triton.jit
        def k(x, s: "fp64", t: tl.float64, n, B: tl.constexpr):
            i = tl.arange(0, B)
            tl.store(x + i, tl.load(x + i) * s * t, mask=i < n)
    ''')
    ns = {"__name__": "planted_mod"}
    path = os.path.join(ROOT, "build", "planted_quoted.py")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(src)
    exec(compile(src, path, "exec"), ns)
    sig, _, _, _ = gc.specialise(ns["k"], [{"tensor": "float32"}, 0.5, 0.25, 100], {"B": 128})
    probs = gc.annotation_problems(ns["k"], sig)
    assert sig["t"] == "fp64"
    assert len(probs) == 1 and probs[0].startswith("s: annotated fp64, specialised fp32")


PLANTED = textwrap.dedent('''
    import triton
    import triton.language as tl

    @triton.jit
    def _small_kernel(x, s: tl.float64, n, B: tl.constexpr):
        i = tl.program_id(0) * B + tl.arange(0, B)
        tl.store(x + i, tl.load(x + i, mask=i < n) * s, mask=i < n)

    @triton.jit
    def _big_kernel(x, n, B: tl.constexpr):
        # a large block per thread, kept live across a reduction: many registers
        i = tl.arange(0, B)
        v = tl.load(x + i, mask=i < n, other=0.0)
        w = tl.exp(v) * tl.sin(v) + tl.cos(v * 3.0)
        tl.store(x + i, w / tl.sum(w, axis=0), mask=i < n)
''')


def _compile_planted(tmp_path, launches_):
    """Run the tool's compile step on a planted module in a subprocess without the interpreter."""
    (tmp_path / "planted_kernels.py").write_text(PLANTED)
    (tmp_path / "launches.json").write_text(json.dumps(launches_))
    code = textwrap.dedent(f'''
        import json, sys
        sys.path[:0] = [{str(tmp_path)!r}, {os.path.join(ROOT, "tools")!r}, {ROOT!r}]
        import gpu_compile as gc
        rows, failures = gc.run(json.load(open({str(tmp_path / "launches.json")!r})))
        json.dump({{"rows": rows, "failures": failures}}, open({str(tmp_path / "out.json")!r}, "w"), default=str)
    ''')
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads((tmp_path / "out.json").read_text())


def test_tool_finds_spill_budget_and_passes_clean_kernel(tmp_path):
    t = {"tensor": "float32"}
    out = _compile_planted(tmp_path, [
        {"module": "planted_kernels", "name": "_small_kernel", "args": [t, 0.5, 1000], "kwargs": {"B": 256}},
        {"module": "planted_kernels", "name": "_big_kernel", "args": [t, 1000],
         "kwargs": {"B": 4096, "num_warps": 1}},
    ])
    rows = {r["kernel"]: r for r in out["rows"]}
    small, big = rows["_small_kernel"], rows["_big_kernel"]
    assert small["regs"] <= gc.GRID_BUDGET and small["local"] == 0 and small["annotation"] == []
    assert not any(f.startswith("_small_kernel") for f in out["failures"])
    assert big["local"] > 0 or big["stack"] > 0  # 4,096 floats in one warp cannot stay in registers
    msgs = [f for f in out["failures"] if f.startswith("_big_kernel")]
    assert any("spill" in f for f in msgs) and any("budget" in f for f in msgs)
    assert 0 < small["occupancy"] <= 1 and small["blocks_per_sm"] >= 1


def test_occupancy_bound():
    assert gc.occupancy(32, 8, 0) == (8, 1.0)
    assert gc.occupancy(64, 8, 0) == (4, 0.5)
    assert gc.occupancy(128, 8, 0) == (2, 0.25)
    assert gc.occupancy(255, 4, 0)[1] == 0.125
    assert gc.occupancy(32, 4, 100 * 1024)[0] == 2  # shared memory bound


def _loss_launch(dt: str, block: int, warps: int, stats=True):
    """A recorded-style launch of the loss kernel: two BCE terms with gradients, multi-program."""
    T = {"tensor": dt}
    P = {"tensor": "float64" if dt == "float64" else "float32"}
    args = [T, T, T, T, T, T, 100000, 1.0, 1.0, 1e-5, 50, T, T, T, T, T, T, 100000, 0.0, 1.0, 1e-5,
            P, P, P, 0, P, P]
    kw = dict(ELEM_A=0, LAB_A=0, W_A=0, GO_A=0, GRAD_A=True, VAL_A=False, ELEM_B=0, LAB_B=0, W_B=0, GO_B=0,
              GRAD_B=True, VAL_B=False, TWO=True, SUM=True, SINGLE=False, ACCUM=False, IS64=dt == "float64",
              BLOCK=block, STATS=stats, num_warps=warps)
    return {"module": "fusedgan.triton.kernels", "name": "_loss_kernel", "args": args, "kwargs": kw}


def test_loss_kernel_sm90_no_approx_exp_no_spill(tmp_path):
    """The float32 BCE loss kernel (exp, log1p, sigmoid for the stats) at the large block: no
    ex2.approx / lg2.approx in its PTX (fastmath.py), within the budget; float64 at its block: no
    spill (the former 4096-element block spilled at 255 registers)."""
    import fusedgan.triton as ft

    out = _compile_planted(tmp_path, [_loss_launch("float32", ft.BLOCK_LARGE, ft.WARPS_LARGE),
                                      _loss_launch("float64", ft.BLOCK_F64, ft.WARPS_F64)])
    assert out["failures"] == []
    for row in out["rows"]:
        assert row["approx"] == 0 and row["local"] == 0 and row["regs"] <= gc.GRID_BUDGET
