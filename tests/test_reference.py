"""The reference against independent formulations: torch's own losses and the element table."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fusedgan as fg
from fusedgan import reference
from fusedgan.kinds import DEFAULT_LABELS, KINDS, Elem

X = torch.linspace(-30, 30, 601, dtype=torch.float64)


def test_bce_matches_torch():
    for t in (0.0, 0.1, 0.5, 1.0):
        tt = torch.full_like(X, t)
        torch.testing.assert_close(reference.bce(X, t), F.binary_cross_entropy_with_logits(X, tt, reduction="none"))


def test_ns_and_mm_against_textbook_forms():
    r, f = torch.randn(50, dtype=torch.float64) * 4, torch.randn(40, dtype=torch.float64) * 4
    d = -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean()
    torch.testing.assert_close(reference.discriminator_loss(r, f, "ns"), d)
    torch.testing.assert_close(reference.discriminator_loss(r, f, "mm"), d)
    torch.testing.assert_close(reference.generator_loss(f, "ns"), -torch.log(torch.sigmoid(f)).mean())
    torch.testing.assert_close(reference.generator_loss(f, "mm"), torch.log(1 - torch.sigmoid(f)).mean())


def test_ls_wgan_hinge_against_textbook_forms():
    r, f = torch.randn(50, dtype=torch.float64), torch.randn(40, dtype=torch.float64)
    torch.testing.assert_close(
        reference.discriminator_loss(r, f, "ls", real_label=0.9, fake_label=-1.0),
        0.5 * F.mse_loss(r, torch.full_like(r, 0.9)) + 0.5 * F.mse_loss(f, torch.full_like(f, -1.0)),
    )
    torch.testing.assert_close(reference.generator_loss(f, "ls", target=0.5), 0.5 * ((f - 0.5) ** 2).mean())
    torch.testing.assert_close(reference.discriminator_loss(r, f, "wgan"), f.mean() - r.mean())
    torch.testing.assert_close(reference.generator_loss(f, "wgan"), -f.mean())
    torch.testing.assert_close(
        reference.discriminator_loss(r, f, "hinge"), torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean()
    )
    torch.testing.assert_close(reference.generator_loss(f, "hinge"), -f.mean())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_element_table_restates_the_kinds(kind):
    """The kernels' (elem, label, coef) rows give the same numbers as the kind formulas."""
    spec = KINDS[kind]
    r, f = torch.randn(30, dtype=torch.float64) * 5, torch.randn(20, dtype=torch.float64) * 5

    def term(t, x):
        label = DEFAULT_LABELS[t.label] if isinstance(t.label, str) else t.label
        return t.coef * reference.elem_value(t.elem, x, label)

    torch.testing.assert_close(term(spec.d_real, r), reference.d_real_elementwise(kind, r))
    torch.testing.assert_close(term(spec.d_fake, f), reference.d_fake_elementwise(kind, f))
    torch.testing.assert_close(term(spec.g_fake, f), reference.g_elementwise(kind, f))


def test_reduction_none_and_sum():
    r, f = torch.randn(5, 3, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    lr, lf = reference.discriminator_loss(r, f, "ns", reduction="none")
    assert lr.shape == r.shape and lf.shape == f.shape
    torch.testing.assert_close(reference.discriminator_loss(r, f, "ns", reduction="sum"), lr.sum() + lf.sum())
    torch.testing.assert_close(reference.discriminator_loss(r, f, "ns"), lr.mean() + lf.mean())


def test_reference_is_twice_differentiable():
    r = torch.randn(6, dtype=torch.float64, requires_grad=True)
    f = torch.randn(4, dtype=torch.float64, requires_grad=True)
    for kind in KINDS:
        torch.autograd.gradgradcheck(lambda a, b: reference.discriminator_loss(a, b, kind), (r, f))


def test_elem_enum_values():
    assert [e.value for e in Elem] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert set(reference.ELEM_VALUE) == set(Elem)  # a formula for every code


def test_sq_relu_elems_hand_values():
    x = torch.tensor([1.0, 3.0, -2.0], dtype=torch.float64)
    t = torch.tensor(2.0, dtype=torch.float64)
    assert reference.elem_value(Elem.SQ_RELU_ABOVE, x, t).tolist() == [0.0, 1.0, 0.0]
    assert reference.elem_value(Elem.SQ_RELU_BELOW, x, t).tolist() == [1.0, 0.0, 16.0]
    with pytest.raises(ValueError, match="^elem:"):
        reference.elem_value(8, x, t)
    assert fg.kinds.REDUCTIONS == {"none": 0, "mean": 1, "sum": 2}
