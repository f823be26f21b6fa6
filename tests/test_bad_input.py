"""Bad input gets a clear exception naming the argument, on every backend."""
from __future__ import annotations

import pytest
import torch

import fusedgan as fg
from helpers import DEVICE, fused_backends

BACKENDS = fused_backends() + ["reference"]


def x(n=4, dtype=torch.float32):
    return torch.randn(n, dtype=dtype, device=DEVICE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8, torch.complex64])
def test_non_float_logits(backend, dtype):
    bad = torch.zeros(4, device=DEVICE).to(dtype)
    with pytest.raises(TypeError, match="real"):
        fg.discriminator_loss(bad, x(), backend=backend)
    with pytest.raises(TypeError, match="fake"):
        fg.discriminator_loss(x(), bad, backend=backend)
    with pytest.raises(TypeError, match="fake"):
        fg.generator_loss(bad, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_tensor(backend):
    with pytest.raises(TypeError, match="real"):
        fg.discriminator_loss([1.0, 2.0], x(), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unknown_kind_and_reduction(backend):
    with pytest.raises(ValueError, match="kind"):
        fg.discriminator_loss(x(), x(), "vanilla", backend=backend)
    with pytest.raises(ValueError, match="kind"):
        fg.generator_loss(x(), "nope", backend=backend)
    with pytest.raises(ValueError, match="reduction"):
        fg.discriminator_loss(x(), x(), reduction="avg", backend=backend)
    with pytest.raises(ValueError, match="reduction"):
        fg.generator_loss(x(), reduction=None, backend=backend)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        fg.discriminator_loss(x(), x(), backend="tpu")
    with pytest.raises(ValueError, match="backend"):
        fg.set_backend("fast")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_broadcastable_labels_and_weights(backend):
    r, f = torch.randn(4, 3, device=DEVICE), torch.randn(5, device=DEVICE)
    with pytest.raises(ValueError, match="real_label"):
        fg.discriminator_loss(r, f, real_label=torch.ones(3, 4, device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="fake_label"):
        fg.discriminator_loss(r, f, fake_label=torch.ones(4, device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="real_weight"):
        fg.discriminator_loss(r, f, real_weight=torch.ones(2, device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="fake_weight"):
        fg.discriminator_loss(r, f, fake_weight=torch.ones(5, 5, device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="weight"):
        fg.generator_loss(f, weight=torch.ones(6, device=DEVICE), backend=backend)
    with pytest.raises(ValueError, match="target"):
        fg.generator_loss(f, target=torch.ones(2, device=DEVICE), backend=backend)
    # a label that would broadcast the logits to a bigger shape is not allowed either
    with pytest.raises(ValueError, match="real_label"):
        fg.discriminator_loss(torch.randn(4, 1, device=DEVICE), f, real_label=torch.ones(4, 3, device=DEVICE), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_label_types(backend):
    with pytest.raises(TypeError, match="real_label"):
        fg.discriminator_loss(x(), x(), real_label="1", backend=backend)
    with pytest.raises(TypeError, match="real_weight"):
        fg.discriminator_loss(x(), x(), real_weight=[1.0] * 4, backend=backend)
    with pytest.raises(TypeError, match="fake_label"):
        fg.discriminator_loss(x(), x(), fake_label=torch.zeros(4, dtype=torch.complex64, device=DEVICE), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mm", "wgan", "hinge"])
def test_target_for_kind_without_one(backend, kind):
    with pytest.raises(ValueError, match="target"):
        fg.generator_loss(x(), kind, target=0.9, backend=backend)
    with pytest.raises(ValueError, match="target"):
        fg.generator_loss(x(), kind, target=torch.ones(4, device=DEVICE), backend=backend)
    fg.generator_loss(x(), kind, target=1.0, backend=backend)  # the default value is accepted


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["wgan", "hinge"])
def test_labels_for_kind_without_them(backend, kind):
    with pytest.raises(ValueError, match="real_label"):
        fg.discriminator_loss(x(), x(), kind, real_label=0.9, backend=backend)
    with pytest.raises(ValueError, match="fake_label"):
        fg.discriminator_loss(x(), x(), kind, fake_label=torch.zeros(4, device=DEVICE), backend=backend)


def test_backend_that_cannot_run_raises():
    if DEVICE != "cpu":
        pytest.skip("device-specific: checks that the 'cuda' backend refuses CPU tensors")
    with pytest.raises(RuntimeError, match="cuda"):
        fg.discriminator_loss(x(), x(), backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a device mismatch")
def test_device_mismatch():
    with pytest.raises(ValueError, match="fake"):
        fg.discriminator_loss(torch.randn(4, device="cuda"), torch.randn(4))
    with pytest.raises(ValueError, match="real_weight"):
        fg.discriminator_loss(torch.randn(4, device="cuda"), torch.randn(4, device="cuda"), real_weight=torch.ones(4))


def test_gan_loss_module_rejects_unknown_options():
    with pytest.raises(TypeError, match="bogus"):
        fg.nn.GANLoss("ns", bogus=1)
    with pytest.raises(ValueError, match="kind"):
        fg.nn.GANLoss("nope")
    with pytest.raises(ValueError, match="reduction"):
        fg.nn.GANLoss("ns", reduction="avg")


def test_device_mismatch_meta():
    """Device checks without a GPU: the meta device stands in for a second device."""
    with pytest.raises(ValueError, match="fake"):
        fg.discriminator_loss(torch.randn(4), torch.randn(4, device="meta"))
    with pytest.raises(ValueError, match="real_weight"):
        fg.discriminator_loss(torch.randn(4), torch.randn(4), real_weight=torch.ones(4, device="meta"))
    with pytest.raises(ValueError, match="target"):
        fg.generator_loss(torch.randn(4), "ns", target=torch.ones(4, device="meta"))
