"""The Triton twins register with the C++ operators' schemas on every supported torch.

torch 2.11 (the GPU machines' release) accepts ``triton_op(..., schema=)`` but ignores it and
infers the schema from the launcher's annotations; newer releases register the schema given.  So
each launcher in fusedgan/triton must be annotated to infer exactly the C++ schema (``SymInt`` for
``int`` and unnamed returns aside), and fusedgan/ops.py checks the registered schema either way.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from fusedgan import _ext, ops

pytestmark = [
    pytest.mark.skipif(_ext._C is None, reason="needs the extension (the C++ schemas)"),
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
]


def test_triton_registered():
    """With triton and the extension present the backend must load (not a silent skip)."""
    assert ops.HAS_TRITON, ops.TRITON_ERROR


def _launchers():
    from fusedgan.triton import launchers

    return launchers()


@pytest.mark.parametrize("name", sorted(["loss_terms", "loss_terms_stats", "loss_grads", "group_sumsq",
                                         "group_scale_mul", "group_penalty"]))
def test_annotations_infer_the_cpp_schema(name):
    fn = _launchers()[name]
    inferred = torch._C.parse_schema(f"fusedgan::x{torch.library.infer_schema(fn, mutates_args=())}")
    cpp = getattr(torch.ops.fusedgan, name).default._schema
    assert ops._signature(inferred) == ops._signature(cpp), (str(inferred), str(cpp))


def test_every_launcher_is_checked():
    assert sorted(_launchers()) == sorted(["loss_terms", "loss_terms_stats", "loss_grads", "group_sumsq",
                                           "group_scale_mul", "group_penalty"])


@pytest.mark.parametrize("name", ["loss_terms", "group_penalty"])
def test_registered_twin_matches(name):
    twin = getattr(torch.ops.fusedgan, f"triton_{name}").default._schema
    cpp = getattr(torch.ops.fusedgan, name).default._schema
    assert ops._signature(twin) == ops._signature(cpp)
    ops._check_twin_schema(name)  # does not raise


def test_signature_catches_a_wrong_annotation():
    """Planted: a float where the C++ schema has an int, a missing Optional, a renamed argument."""
    cpp = torch._C.parse_schema("f(Tensor g, int A, Tensor?[] labels) -> (Tensor value, Tensor scale)")
    same = torch._C.parse_schema("f(Tensor g, SymInt A, Tensor?[] labels) -> (Tensor, Tensor)")
    assert ops._signature(same) == ops._signature(cpp)
    for bad in ("f(Tensor g, float A, Tensor?[] labels) -> (Tensor, Tensor)",
                "f(Tensor g, SymInt A, Tensor[] labels) -> (Tensor, Tensor)",
                "f(Tensor g, SymInt B, Tensor?[] labels) -> (Tensor, Tensor)",
                "f(Tensor g, SymInt A, Tensor?[] labels) -> Tensor"):
        assert ops._signature(torch._C.parse_schema(bad)) != ops._signature(cpp), bad
