"""Every number that Python and the kernels must agree on, defined once.

The C++ and CUDA kernels read these codes from ``csrc/include/fusedgan/codes.h``, which is
generated from this file (``python -m fusedgan.codes`` rewrites it); the Triton kernels import
them from here.  ``tests/test_codes.py`` fails if the header is stale or if the compiled extension
reports different values.

Codes travel as plain ``int`` arguments of the operators (``fusedgan::loss_terms(..., elems,
reduction, ...)``), so changing a number here is an ABI change: regenerate the header and rebuild.
"""
from __future__ import annotations

import enum
import os
import sys

import torch


class Elem(enum.IntEnum):
    """Element functions of a loss term: value(x, t) and d value / dx (docs/operators.md)."""

    BCE = 0  # t*sp(-x) + (1-t)*sp(x)
    HALF_SQUARE = 1  # (x - t)^2 / 2
    LINEAR = 2  # -t*x
    HINGE = 3  # relu(1 - t*x)
    ABS = 4  # |x - t|
    SOFTPLUS_NEG = 5  # sp(-x), label not read (BCE(x, 1) without its 0 * x: 0 at x = +inf)
    SQ_RELU_ABOVE = 6  # relu(x - t)^2: how far x lies above the threshold t, squared (LeCam)
    SQ_RELU_BELOW = 7  # relu(t - x)^2: how far x lies below t, squared


class Reduction(enum.IntEnum):
    NONE = 0
    MEAN = 1
    SUM = 2


class RelLogit(enum.IntEnum):
    """The logit a relativistic term reads (``fusedgan::rel_gan_loss``'s ``logits`` argument)."""

    R_MINUS_MF = 0  # r - mean(f)
    F_MINUS_MR = 1  # f - mean(r)
    R_MINUS_F = 2  # r - f, elementwise (equal shapes)
    F_MINUS_R = 3  # f - r


class PenaltyKind(enum.IntEnum):
    """``fusedgan::group_penalty``'s ``kind``."""

    GP = 0  # (||g|| - center)^2 per group
    R1 = 1  # (gamma / 2) * sum(g^2) / batch, one group


class Operand(enum.IntEnum):
    """Where a kernel reads a label, weight or grad_output from."""

    ARG = 0  # the scalar argument (or absent)
    SCALAR = 1  # one element in device memory, broadcast
    FULL = 2  # one element per logit


class StatCol(enum.IntEnum):
    """Columns of ``loss_terms_stats``' per-term statistics (unweighted sums over the logits)."""

    SUM_X = 0
    SUM_SIGMOID = 1
    COUNT_POS = 2  # x > 0
    COUNT_NEG = 3  # x < 0 (a NaN or an exact 0 is in neither count)


STAT_COLS = len(StatCol)

# The enums the header declares, with their C++ names.
_HEADER_ENUMS = (("Elem", Elem), ("Reduction", Reduction), ("RelLogit", RelLogit),
                 ("PenaltyKind", PenaltyKind), ("Operand", Operand), ("StatCol", StatCol))
HEADER = os.path.join("csrc", "include", "fusedgan", "codes.h")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the maths runs in: float64 for float64 inputs, float32 for every other float."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def all_codes() -> dict:
    """``{"Elem.BCE": 0, ...}``: every code by its C++ name (what ``fusedgan._C.codes()`` returns)."""
    return {f"{cname}.{m.name}": int(m) for cname, enum_cls in _HEADER_ENUMS for m in enum_cls}


def header() -> str:
    """The text of csrc/include/fusedgan/codes.h."""
    lines = [
        "// Generated from fusedgan/codes.py by `python -m fusedgan.codes`: do not edit.",
        "// Plain C++ (no torch include): compiled by the CPU kernels, nvcc and the C++ tests.",
        "#pragma once",
        "",
        "namespace fusedgan {",
        "",
    ]
    for cname, enum_cls in _HEADER_ENUMS:
        body = ", ".join(f"{m.name} = {int(m)}" for m in enum_cls)
        lines.append(f"enum class {cname} : int {{ {body} }};")
        lines.append(f"constexpr int kNum{cname}s = {len(enum_cls)};")
    lines += ["constexpr int kStatCols = kNumStatCols;", "",
              "// Every code by name, so the compiled extension can report what it was built with.",
              "struct CodeEntry {", "  const char* name;", "  int value;", "};",
              "inline constexpr CodeEntry kAllCodes[] = {"]
    lines += [f'    {{"{name}", static_cast<int>({name.replace(".", "::")})}},' for name in all_codes()]
    lines += ["};", "", "}  // namespace fusedgan", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    """Rewrite the header (run from the repository root), or ``--check`` that it is current."""
    argv = sys.argv[1:] if argv is None else argv
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, HEADER)
    if "--check" in argv:
        with open(path) as fh:
            current = fh.read() == header()
        print(f"{HEADER}: {'current' if current else 'STALE: run python -m fusedgan.codes'}")
        return 0 if current else 1
    with open(path, "w") as fh:
        fh.write(header())
    print(f"wrote {HEADER}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
