"""Relativistic kinds, multi-scale lists, feature matching (Elem ABS) and in-pass statistics on the
Triton backend (CUDA, or CPU tensors under Triton's interpreter, in its own process)::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_extra.py -q

Reuses the checks of test_relativistic.py, test_multiscale.py and test_stats.py on small shapes.
"""
from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("Triton backend needs CUDA, or TRITON_INTERPRET=1 set before triton is imported "
                "(run: TRITON_INTERPRET=1 python -m pytest tests/test_triton_extra.py)", allow_module_level=True)

import fusedgan as fg  # noqa: E402
from fusedgan import ops  # noqa: E402
from fusedgan.kinds import Elem  # noqa: E402

if not fg.ops.HAS_TRITON:
    pytest.skip(f"Triton operators not registered: {fg.ops.TRITON_ERROR}", allow_module_level=True)
import fusedgan.triton as ft  # noqa: E402

import test_multiscale as ms  # noqa: E402
import test_relativistic as rel  # noqa: E402
import test_stats as st  # noqa: E402
from helpers import logits  # noqa: E402

T = "triton"
DTYPES = [torch.float64, torch.float32, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("side", ["D", "G"])
@pytest.mark.parametrize("kind", rel.REL)
def test_relativistic(kind, side, dtype):
    for i, (rs, fs, strided) in enumerate(rel.SHAPES):
        rel.check(side, kind, T, dtype, rs, fs, strided, seed=10 * i)
    rel.check(side, kind, T, dtype, (4, 3), (4, 3), False, reduction="none", seed=5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["ns", "hinge", "ragan"])
def test_multiscale(kind, dtype):
    ms.check_d(T, kind, dtype, None, "mean")
    ms.check_d(T, kind, dtype, [1.0, 0.5, 0.25], "sum")


def test_multiscale_one_launch_group():
    """Three scales = six terms in one operator call (the kernel takes terms two at a time)."""
    reals, fakes = ms.tensors(ms.REAL_SHAPES, torch.float32, 1), ms.tensors(ms.FAKE_SHAPES, torch.float32, 11)
    with torch.profiler.profile() as prof:
        fg.discriminator_loss(reals, fakes, "ns", backend=T).backward()
    names = [e.name for e in prof.events() if e.name.startswith("fusedgan::")]
    assert names.count("fusedgan::triton_loss_terms") == 1 and "fusedgan::loss_terms" not in names


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_feature_matching(dtype):
    ms.check_fm(T, dtype, None, True)
    ms.check_fm(T, dtype, [1.0, 0.5, 2.0, 0.25], False)
    ms.test_feature_matching_ties_and_single_tensor(T)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["ns", "ls", "hinge"])
def test_stats(kind, dtype):
    st.check(T, kind, dtype, [(3, 1, 7, 5)], [(2, 1, 7, 5)])
    st.check(T, kind, dtype, [(2, 1, 5, 5), (7,)], [(2, 1, 5, 5), (3,)], multi=True, extreme=True)


@pytest.mark.parametrize("kind", ["rsgan", "ragan"])
def test_stats_relativistic(kind):
    st.check(T, kind, torch.float32, [(4, 9)], [(4, 9)])
    st.test_stats_relativistic_in_one_operator(kind, T)


@pytest.mark.parametrize("kind", rel.REL)
def test_relativistic_one_operator_call(kind):
    rel.test_one_fused_operator_call(kind, T)


@pytest.mark.parametrize("kind", ["rsgan", "ragan"])
def test_relativistic_operator_equals_the_reference_backend(kind):
    rel.test_operator_equals_the_reference_backend(kind, T)


@pytest.mark.parametrize("kind", ["ragan", "rsgan"])
def test_relativistic_reduction_none_in_one_operator(kind):
    rel.test_reduction_none_in_one_operator(kind, T)


@pytest.mark.parametrize("kind", ["ragan", "rsgan"])
def test_relativistic_operator_gradcheck(kind):
    """fusedgan::rel_gan_loss running triton_loss_terms: gradcheck through the saved gradients
    (means included) and gradgradcheck (the exact backward), two scales, weights."""
    rel.test_rel_operator_gradcheck_multiscale_weights(kind, T)


def test_stats_empty_and_non_contiguous():
    st.test_stats_empty_and_non_contiguous(T)


@pytest.mark.parametrize("kind", ["ns", "rsgan"])
def test_stats_exact_zeros(kind):
    st.test_stats_exact_zeros_are_neither_positive_nor_negative(kind, T)


@pytest.mark.parametrize("multi_program", [False, True])
def test_stats_operator_contract(multi_program, monkeypatch):
    """triton_loss_terms_stats against ops.reference_loss_terms_stats, on both launch paths
    (one program per pair, or many programs + the finishing kernel)."""
    if multi_program:
        monkeypatch.setattr(ft, "SINGLE_MAX", 16)
        monkeypatch.setattr(ft, "BLOCK_MEDIUM", 32)
        monkeypatch.setattr(ft, "BLOCK_F64", 32)
    for dt in (torch.float64, torch.float32):
        x0 = logits((37,), torch.float64, seed=1, extreme=True).to(dt)
        x1 = logits((3, 5), torch.float64, seed=2).to(dt)
        x2 = logits((70,), torch.float64, seed=4).to(dt)
        t0 = logits((37,), torch.float64, seed=3).to(dt)
        args = ([x0, x1, x2], [t0, None, None], [None, None, None],
                [int(Elem.ABS), int(Elem.BCE), int(Elem.HINGE)], [0.0, 1.0, -1.0], [1.0, 0.5, 2.0], 1,
                [True, False, True])
        got = torch.ops.fusedgan.triton_loss_terms_stats(*args)
        want = ops.reference_loss_terms_stats(*args)
        mag = 1 + float(x0.double().abs().sum())
        torch.testing.assert_close(got[4].double(), want[4].double(), rtol=1e-6, atol=1e-6 * mag)
        torch.testing.assert_close(got[1].double(), want[1].double(), rtol=1e-6, atol=1e-6 * mag)
        for a, b in zip(got[2], want[2]):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_abs_elem_in_elem_codes():
    assert int(Elem.ABS) in ft.kernels.ELEMS
