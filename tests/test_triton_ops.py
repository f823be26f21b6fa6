"""The operator registry's test triple for the Triton twins (run under TRITON_INTERPRET=1 on CPU
tensors; on CUDA tensors with FUSEDGAN_TEST_DEVICE=cuda).  See tests/op_cases.py."""
from __future__ import annotations

import pytest

from fusedgan import backends, ops

import op_cases as C
from helpers import DEVICE

TRITON = [n for n, o in ops.OPS.items() if o.impl == "triton"]
pytestmark = pytest.mark.skipif(not backends.can_run("triton", DEVICE),
                                reason="the Triton backend cannot run here (CPU needs TRITON_INTERPRET=1)")


def test_every_triton_twin_is_registered():
    assert all(C.available(n) for n in TRITON), [n for n in TRITON if not C.available(n)]
    assert {n[len("triton_"):] for n in TRITON} == {n for n, o in ops.OPS.items() if o.impl == "cpp"
                                                    and not o.autograd}


@pytest.mark.parametrize("dtype", C.DTYPES, ids=str)
@pytest.mark.parametrize("name", TRITON)
def test_correct_against_fp64_reference(name, dtype):
    C.check_correct(name, dtype)


@pytest.mark.parametrize("name", ops.AUTOGRAD_OPS)
def test_gradcheck_and_gradgradcheck(name):
    C.check_gradients(name, triton=True)


@pytest.mark.parametrize("name", TRITON)
def test_opcheck(name):
    C.check_opcheck(name)
