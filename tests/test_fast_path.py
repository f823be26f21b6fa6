"""The fast path of discriminator_loss / generator_loss (fusedgan/functional.py).

The common call skips the general argument machinery; these tests check that it is taken exactly
when it may be, that it gives the general path's bits (value and gradients), and that calls it
cannot judge still get the general path's errors.
"""
from __future__ import annotations

import pytest
import torch

import fusedgan as fg
from fusedgan import functional as F
from fusedgan.kinds import KINDS
from helpers import DTYPES, fused_backends

NATIVE = [b for b in fused_backends("cpu") if b in ("cpu", "cuda")]
pytestmark = pytest.mark.skipif(not NATIVE, reason="fusedgan._C is not built: no C++ autograd backend")


def general(fn, *args, **kw):
    """The same call forced through the general path (return_stats / return_per_scale off)."""
    orig_d, orig_g = F._fast_d, F._fast_g
    F._fast_d = F._fast_g = lambda *a, **k: None
    try:
        return fn(*args, **kw)
    finally:
        F._fast_d, F._fast_g = orig_d, orig_g


def run(fn, xs, **kw):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    out = fn(*xs, **kw)
    go = torch.tensor(0.7312, dtype=out.dtype)  # a grad_output other than 1, the same for both paths
    grads = torch.autograd.grad(out, xs, go)
    return out.detach(), grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fast_path_is_taken_and_matches_the_general_path(kind, reduction, dtype):
    gen = torch.Generator().manual_seed(hash((kind, reduction, str(dtype))) % 2**31)
    r = (torch.randn(7, 1, 3, 3, generator=gen) * 4).to(dtype)
    f = (torch.randn(5, 1, 4, 3, generator=gen) * 4).to(dtype)
    labels = dict(real_label=0.9, fake_label=0.1) if kind in ("ns", "mm", "ls") else {}
    target = dict(target=0.8) if kind in ("ns", "ls") else {}
    assert F._fast_d(r, f, kind, reduction, labels.get("real_label", 1.0), labels.get("fake_label", 0.0),
                     "cpu") is not None
    assert F._fast_g(f, kind, reduction, target.get("target", 1.0), "cpu") is not None
    for fn, xs, kw in ((fg.discriminator_loss, (r, f), labels), (fg.generator_loss, (f,), target)):
        kw = dict(kw, kind=kind, reduction=reduction, backend="cpu")
        v1, g1 = run(fn, xs, **kw)
        v2, g2 = run(lambda *a, **k: general(fn, *a, **k), xs, **kw)
        assert torch.equal(v1, v2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_fast_path_declines_what_it_cannot_judge():
    r, f = torch.randn(4), torch.randn(4)
    assert F._fast_d(r, f, "ragan", "mean", 1.0, 0.0, None) is None  # relativistic
    assert F._fast_d(r, f, "ns", "none", 1.0, 0.0, None) is None  # per-element values
    assert F._fast_d(r, f.double(), "ns", "mean", 1.0, 0.0, None) is None  # mixed dtypes
    assert F._fast_d(r, f, "ns", "mean", torch.tensor(0.9), 0.0, None) is None  # tensor label
    assert F._fast_d(r, f, "ns", "mean", True, 0.0, None) is None  # bool label
    assert F._fast_d(r, f, "wgan", "mean", 0.9, 0.0, None) is None  # a label wgan does not take
    assert F._fast_d(r, f, "ns", "mean", 1.0, 0.0, "reference") is None  # not a C++ autograd backend
    assert F._fast_d(r.int(), f.int(), "ns", "mean", 1.0, 0.0, None) is None
    assert F._fast_d([r], [f], "ns", "mean", 1.0, 0.0, None) is None
    assert F._fast_g(f, "ns", "mean", 1.0, None) is not None
    assert F._fast_g(f, "mm", "mean", 0.5, None) is None  # mm has no target


def test_general_path_errors_still_reach_the_user():
    r, f = torch.randn(4), torch.randn(4)
    with pytest.raises(ValueError, match="real_label"):
        fg.discriminator_loss(r, f, "wgan", real_label=0.9)
    with pytest.raises(ValueError, match="target"):
        fg.generator_loss(f, "hinge", target=0.5)
    with pytest.raises(ValueError, match="reduction"):
        fg.discriminator_loss(r, f, "ns", reduction="avg")
    with pytest.raises(ValueError, match="kind"):
        fg.discriminator_loss(r, f, "nope")
    with pytest.raises(TypeError, match="real"):
        fg.discriminator_loss(r.long(), f.long(), "ns")
    with pytest.raises(TypeError, match="real_label"):
        fg.discriminator_loss(r, f, "ns", real_label="1")
