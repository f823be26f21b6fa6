"""Modules over the functional API."""
from __future__ import annotations

import inspect
from typing import Optional

import torch

from . import backends, functional, plan
from .kinds import DEFAULT_LABELS, kind_spec, reduction_code

_D_OPTIONS = set(inspect.signature(functional.discriminator_loss).parameters) - {"real", "fake", "kind"}
_G_OPTIONS = set(inspect.signature(functional.generator_loss).parameters) - {"fake", "kind", "real"}


class GANLoss(torch.nn.Module):
    """A GAN loss of one ``kind`` with fixed options.

    ``loss.discriminator(real, fake)`` and ``loss.generator(fake)``; calling the module with two
    tensors is the discriminator loss, with one the generator loss.  ``options`` are the keyword
    arguments of ``fusedgan.discriminator_loss`` / ``generator_loss`` (``reduction``,
    ``real_label``, ``fake_label``, ``target``, ``backend``); each goes to the side that takes it.
    For the relativistic kinds the generator needs the real logits: ``loss.generator(fake, real)``.
    """

    def __init__(self, kind: str = "ns", **options):
        super().__init__()
        kind_spec(kind)
        unknown = set(options) - _D_OPTIONS - _G_OPTIONS
        if unknown:
            raise TypeError(f"GANLoss: unknown option(s) {sorted(unknown)}")
        # Validate every option now, not at the first call: the plans of both sides (labels the
        # kind does not take, label values, reduction) and the backend's name.
        red = reduction_code(options.get("reduction", "mean"))

        def lab(name):
            return name, plan.label_key(options.get(name, DEFAULT_LABELS[name]), name)

        plan.side_plan(kind, "D", red, (lab("real_label"), lab("fake_label")), (1.0,))
        plan.side_plan(kind, "G", red, (lab("target"),), (1.0,))
        backends._check_name(options.get("backend"))
        self.kind = kind
        self.options = dict(options)
        self._d = {k: v for k, v in options.items() if k in _D_OPTIONS}
        self._g = {k: v for k, v in options.items() if k in _G_OPTIONS}

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor):
        return functional.discriminator_loss(real, fake, self.kind, **self._d)

    def generator(self, fake: torch.Tensor, real: Optional[torch.Tensor] = None):
        """G loss; relativistic kinds need the real logits too (``real=``)."""
        if real is None:
            return functional.generator_loss(fake, self.kind, **self._g)
        return functional.generator_loss(fake, self.kind, real=real, **self._g)

    def forward(self, *logits: torch.Tensor):
        if len(logits) == 2:
            return self.discriminator(*logits)
        if len(logits) == 1:
            return self.generator(*logits)
        raise TypeError("GANLoss: call with (real, fake) for D or (fake,) for G")

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"kind={self.kind!r}{opts}"


from .compat import BCEWithLogitsLoss, MSELoss  # noqa: F401,E402  (torch-compatible drop-ins)
