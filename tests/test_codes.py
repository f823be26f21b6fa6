"""One source for every code: fusedgan/codes.py.  The C++ header is generated from it, the
compiled extension must report the same numbers, and the Triton kernels read them from it."""
from __future__ import annotations

import os
import re

import pytest

import fusedgan as fg
from fusedgan import _ext, codes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_header_is_generated_from_codes_py():
    with open(os.path.join(ROOT, codes.HEADER)) as fh:
        text = fh.read()
    assert text == codes.header(), "csrc/include/fusedgan/codes.h is stale: run python -m fusedgan.codes"


def test_header_enums_carry_the_python_values():
    # Read the numbers back out of the header text (not through codes.header()'s own template).
    with open(os.path.join(ROOT, codes.HEADER)) as fh:
        text = fh.read()
    found = {}
    for cname, body in re.findall(r"enum class (\w+) : int \{ ([^}]*) \};", text):
        for name, value in re.findall(r"(\w+) = (-?\d+)", body):
            found[f"{cname}.{name}"] = int(value)
    assert found == codes.all_codes()


def test_compiled_extension_agrees():
    if _ext._C is None:
        pytest.skip("fusedgan._C not built")
    assert dict(_ext._C.codes()) == codes.all_codes(), "the extension was built from other codes: rebuild"


def test_no_other_source_defines_the_codes():
    """The kernels include codes.h; no C++/CUDA file declares these enums or kStatCols itself."""
    pattern = re.compile(r"enum\s+(class\s+)?(Elem|Reduction|RelLogit|PenaltyKind|StatCol)\b|kStatCols\s*=")
    offenders = []
    for base, _, files in os.walk(os.path.join(ROOT, "csrc")):
        for f in files:
            path = os.path.join(base, f)
            if f.endswith((".h", ".cpp", ".cu", ".cuh")) and not path.endswith(codes.HEADER):
                with open(path) as fh:
                    if pattern.search(fh.read()):
                        offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []


def test_triton_kernels_read_the_codes():
    triton = pytest.importorskip("triton")  # noqa: F841
    from fusedgan.triton import kernels

    assert kernels.ELEMS == {int(e) for e in codes.Elem}
    assert int(kernels.BCE.value) == codes.Elem.BCE and int(kernels.ABS.value) == codes.Elem.ABS
    assert int(kernels.STAT_COLS.value) == codes.STAT_COLS
    assert int(kernels.SCALAR.value) == codes.Operand.SCALAR


def test_kinds_table_uses_the_codes():
    for row in fg.kinds.KINDS.values():
        for term in row:
            assert isinstance(term.elem, codes.Elem)
    for row in fg.kinds.RELATIVISTIC.values():
        for term in (*row.d, *row.g):
            assert isinstance(term.logit, codes.RelLogit) and isinstance(term.elem, codes.Elem)


def test_acc_dtype():
    import torch

    assert codes.acc_dtype(torch.float64) is torch.float64
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        assert codes.acc_dtype(dt) is torch.float32
