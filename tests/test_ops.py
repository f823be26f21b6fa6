"""The operator registry's test triple for the native (C++) and Python operators; the Triton
twins get the same checks in tests/test_triton_ops.py.  See tests/op_cases.py."""
from __future__ import annotations

import pytest

from fusedgan import _ext, ops

import op_cases as C

NATIVE = [n for n, o in ops.OPS.items() if o.impl != "triton" and C.available(n)]
pytestmark = pytest.mark.skipif(_ext._C is None, reason="fusedgan._C not built: no native operators")


def test_every_registered_operator_has_samples_and_runs_here():
    missing = [n for n, o in ops.OPS.items() if o.impl != "triton" and not C.available(n)]
    assert missing == [], f"operators in the registry without a kernel here: {missing}"
    for name in ops.OPS:
        assert C.samples(name, C.DTYPES[0])


@pytest.mark.parametrize("dtype", C.DTYPES, ids=str)
@pytest.mark.parametrize("name", NATIVE)
def test_correct_against_fp64_reference(name, dtype):
    C.check_correct(name, dtype)


@pytest.mark.parametrize("name", ops.AUTOGRAD_OPS)
def test_gradcheck_and_gradgradcheck(name):
    C.check_gradients(name, triton=False)


@pytest.mark.parametrize("name", NATIVE)
def test_opcheck(name):
    C.check_opcheck(name)
