"""tools/ptxas_check.py: the parser of ``nvcc -Xptxas -v`` output and its verdicts, on canned logs
(no nvcc needed here; the `ptxas` stage of tests/run.sh compiles the real .cu files)."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("ptxas_check", os.path.join(ROOT, "tools", "ptxas_check.py"))
ptxas_check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ptxas_check  # dataclasses look their module up
_spec.loader.exec_module(ptxas_check)

# Shaped like nvcc 13's output for sm_90: three entry functions, a device function with its own
# properties (not a kernel), and a planted spill in the second kernel.
LOG = """\
ptxas info    : 11 bytes gmem
ptxas info    : Compiling entry function '_ZN8fusedgan4cuda6kernelIfEEvv' for 'sm_90'
ptxas info    : Function properties for _ZN8fusedgan4cuda6kernelIfEEvv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 96 bytes smem, 2448 bytes cmem[0]
ptxas info    : Function properties for _ZN8fusedgan6helperEv
    16 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads
ptxas info    : Compiling entry function '_ZN8fusedgan4cuda6kernelIdEEvv' for 'sm_90'
ptxas info    : Function properties for _ZN8fusedgan4cuda6kernelIdEEvv
    24 bytes stack frame, 20 bytes spill stores, 28 bytes spill loads
ptxas info    : Used 64 registers, used 1 barriers, 128 bytes smem, 2448 bytes cmem[0]
ptxas info    : Compiling entry function '_ZN8fusedgan4cuda4wideEv' for 'sm_90'
ptxas info    : Function properties for _ZN8fusedgan4cuda4wideEv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 80 registers, 2448 bytes cmem[0]
"""


def test_parser_reads_every_entry_function():
    ks = ptxas_check.parse_ptxas(LOG)
    assert [k.name for k in ks] == ["_ZN8fusedgan4cuda6kernelIfEEvv", "_ZN8fusedgan4cuda6kernelIdEEvv",
                                    "_ZN8fusedgan4cuda4wideEv"]
    assert [k.arch for k in ks] == ["sm_90"] * 3
    assert [k.regs for k in ks] == [40, 64, 80]
    assert [k.smem for k in ks] == [96, 128, 0]
    assert [(k.spill_stores, k.spill_loads, k.stack) for k in ks] == [(0, 0, 0), (20, 28, 24), (0, 0, 0)]


def test_planted_spill_and_register_budget_fail():
    ks = ptxas_check.parse_ptxas(LOG)
    bad = ptxas_check.violations(ks, budget=64)
    assert len(bad) == 2
    assert "kernelIdEEvv" in bad[0] and "spills (20 bytes stored, 28 bytes loaded)" in bad[0]
    assert "wideEv" in bad[1] and "80 registers > budget 64" in bad[1]
    # the device function's spill is not a kernel's; a clean log passes
    assert ptxas_check.violations(ks[:1], budget=64) == []
    assert ptxas_check.violations(ks[:1], budget=39) != []


@pytest.mark.parametrize("regs, smem, want", [(32, 0, 1.0), (40, 96, 0.75), (64, 128, 0.5), (65, 0, 0.375),
                                              (80, 0, 0.375), (128, 0, 0.25), (255, 0, 0.125)])
def test_occupancy_bound_for_blocks_of_256(regs, smem, want):
    # 65,536 registers per SM, allocated per warp in units of 256; at most 2,048 threads.
    k = ptxas_check.Kernel("k", regs=regs, smem=smem)
    assert ptxas_check.occupancy_bound(k) == pytest.approx(want)


def test_budget_means_half_occupancy():
    k = ptxas_check.Kernel("k", regs=ptxas_check.REG_BUDGET)
    assert ptxas_check.occupancy_bound(k) >= 0.5
    k.regs += 1
    assert ptxas_check.occupancy_bound(k) < 0.5


def test_main_on_a_saved_log(tmp_path, capsys):
    log = tmp_path / "ptxas.log"
    log.write_text(LOG)
    assert ptxas_check.main(["--log", str(log)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "occupancy" in out
    log.write_text(LOG.split("ptxas info    : Compiling entry function '_ZN8fusedgan4cuda6kernelIdEEvv'")[0])
    assert ptxas_check.main(["--log", str(log)]) == 0
