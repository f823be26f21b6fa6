"""What each provider runs for a benchmark case.

The baselines are the code users write, not fusedgan's own reference:

- ``torch``: each loss as GAN code bases write it with torch's own functions (the D loss of ``ns``
  is ``F.binary_cross_entropy_with_logits(r, ones) + F.binary_cross_entropy_with_logits(f, zeros)``,
  its G loss ``F.softplus(-f).mean()`` as StyleGAN2-ADA writes it; ``ls`` is ``F.mse_loss`` to 1 and
  0 as LSGAN / pix2pix write it; ``hinge`` ``relu(1 - r).mean() + relu(1 + f).mean()``; ``wgan``
  ``f.mean() - r.mean()``); the penalties as WGAN-GP (``((g.flatten(1).norm(2, dim=1) - 1) ** 2)
  .mean()``) and StyleGAN2-ADA (``g.square().sum(dims) * (gamma / 2)``, then the mean) write them;
- ``compile``: ``torch.compile`` of that same ``torch`` code;
- ``floor``: the autograd floor, ``r.sum() + f.sum()`` (D), ``f.sum()`` (G), ``g.sum()`` (penalty):
  what any loss costs at least (one op, the autograd engine, the gradients' accumulation);
- ``reference``: fusedgan's eager reference (``fusedgan.reference``), a column, never a headline;
- ``cpu``, ``cuda``, ``triton``: fusedgan's fused backends.

The drop-in "kinds" ``bce`` and ``mse`` time torch's functions against fusedgan's torch-compatible
drop-ins (what ``fusedgan.patch_torch()`` puts in their place) on the same code: D is the pair
``loss(r, ones) + loss(f, zeros)`` a discriminator step writes, G one ``loss(f, ones)``.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

import fusedgan
from fusedgan import backends, compat, reference

FUSED = ("cpu", "cuda", "triton")
BASELINES = ("torch", "compile", "floor", "reference")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
MODES = ("fwd+bwd", "fwd")
PENALTIES = ("gp", "r1")
DROPINS = ("bce", "mse")  # the drop-in "kinds": torch's function against fusedgan's
PENALTY_BATCH = 64
R1_GAMMA = 10.0


@dataclass(frozen=True)
class Case:
    kind: str  # a loss kind, or "penalty"
    side: str  # "D", "G", or a penalty name ("gp", "r1")
    dtype: str
    size: int
    mode: str  # "fwd" or "fwd+bwd"

    @property
    def group(self) -> str:
        return self.side if self.kind == "penalty" else f"{self.kind} {self.side}"


def make_inputs(case: Case, device, seed: int = 0) -> List[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[case.dtype]
    grad = case.mode == "fwd+bwd"

    def t(shape):
        x = (2 * torch.randn(shape, generator=gen)).to(device=device, dtype=dtype)
        return x.requires_grad_(grad)

    if case.kind == "penalty":
        b = min(PENALTY_BATCH, case.size)
        return [t((b, max(1, case.size // b)))]
    if case.side == "D":
        return [t((case.size,)), t((case.size,))]
    return [t((case.size,))]


# ---------------------------------------------------------------------------------------------
# The code users write (module-level functions: torch.compile sees plain code).

def _bce(x, target):
    return F.binary_cross_entropy_with_logits(x, target)


def torch_d_ns(r, f):
    return _bce(r, torch.ones_like(r)) + _bce(f, torch.zeros_like(f))


def torch_g_ns(f):
    return F.softplus(-f).mean()


def torch_g_mm(f):
    return -_bce(f, torch.zeros_like(f))


def torch_d_ls(r, f):
    return F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f))


def torch_g_ls(f):
    return F.mse_loss(f, torch.ones_like(f))


def torch_d_wgan(r, f):
    return f.mean() - r.mean()


def torch_g_wgan(f):
    return -f.mean()


def torch_d_hinge(r, f):
    return F.relu(1 - r).mean() + F.relu(1 + f).mean()


def torch_gp(g):
    return ((g.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def torch_r1(g):
    return (g.square().sum(dim=list(range(1, g.dim()))) * (R1_GAMMA / 2)).mean()


def torch_g_bce(f):
    return _bce(f, torch.ones_like(f))


def dropin_d_bce(r, f):
    bce = compat.binary_cross_entropy_with_logits
    return bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))


def dropin_g_bce(f):
    return compat.binary_cross_entropy_with_logits(f, torch.ones_like(f))


def dropin_d_mse(r, f):
    return compat.mse_loss(r, torch.ones_like(r)) + compat.mse_loss(f, torch.zeros_like(f))


def dropin_g_mse(f):
    return compat.mse_loss(f, torch.ones_like(f))


DROPIN_LOSSES = {("bce", "D"): dropin_d_bce, ("bce", "G"): dropin_g_bce,
                 ("mse", "D"): dropin_d_mse, ("mse", "G"): dropin_g_mse}

TORCH_LOSSES: Dict[tuple, Callable] = {
    ("ns", "D"): torch_d_ns, ("ns", "G"): torch_g_ns,
    ("mm", "D"): torch_d_ns, ("mm", "G"): torch_g_mm,
    ("ls", "D"): torch_d_ls, ("ls", "G"): torch_g_ls,
    ("wgan", "D"): torch_d_wgan, ("wgan", "G"): torch_g_wgan,
    ("hinge", "D"): torch_d_hinge, ("hinge", "G"): torch_g_wgan,
    ("penalty", "gp"): torch_gp, ("penalty", "r1"): torch_r1,
    ("bce", "D"): torch_d_ns, ("bce", "G"): torch_g_bce, ("mse", "D"): torch_d_ls, ("mse", "G"): torch_g_ls,
}
# Where the torch code's value is a multiple of fusedgan's (LSGAN's mse against fusedgan's 0.5 * square).
TORCH_SCALE = {("ls", "D"): 2.0, ("ls", "G"): 2.0}


def floor_d(r, f):
    return r.sum() + f.sum()


def floor_g(f):
    return f.sum()


def _dropin(kind: str, side: str, backend: str) -> Callable:
    """The drop-in on ``backend``: called as users call it where that is the automatic choice."""
    loss = DROPIN_LOSSES[(kind, side)]

    def forced(*xs):
        with backends.use_backend(backend):
            return loss(*xs)

    picked: list = []  # chosen at the first call (the device is known then), not timed per call

    def run(*xs):
        if not picked:
            picked.append(loss if backends.resolve(xs[0].device) == backend else forced)
        return picked[0](*xs)
    return run


def _fused(kind: str, side: str, backend: str) -> Callable:
    if kind in DROPINS:
        return _dropin(kind, side, backend)
    if kind == "penalty":
        if side == "gp":
            return lambda g: fusedgan.gradient_penalty(g, backend=backend)
        return lambda g: fusedgan.r1_penalty(g, R1_GAMMA, backend=backend)
    if side == "D":
        return lambda r, f: fusedgan.discriminator_loss(r, f, kind, backend=backend)
    return lambda f: fusedgan.generator_loss(f, kind, backend=backend)


def _reference(kind: str, side: str) -> Optional[Callable]:
    if kind == "penalty":
        if side == "gp":
            return lambda g: reference.gradient_penalty(g)
        return lambda g: reference.r1_penalty(g, R1_GAMMA)
    if kind in DROPINS:
        return None  # the drop-ins' reference is torch's function, the torch column
    if side == "D":
        return lambda r, f: reference.discriminator_loss(r, f, kind)
    return lambda f: reference.generator_loss(f, kind)


def loss_fn(provider: str, kind: str, side: str) -> Optional[Callable]:
    """The loss of one provider as a function of the case's input tensors (None: it has none).

    ``compile`` returns the eager ``torch`` code; the sweep compiles it (``Compiled``)."""
    if provider in ("torch", "compile"):
        return TORCH_LOSSES.get((kind, side))
    if provider == "floor":
        return floor_d if side == "D" else floor_g
    if provider == "reference":
        return _reference(kind, side)
    if provider in FUSED:
        return _fused(kind, side, provider)
    raise ValueError(f"provider: unknown provider {provider!r}")


def make_case_fn(loss: Callable, inputs: Sequence[torch.Tensor], mode: str) -> Callable[[], object]:
    """A no-argument callable running one forward (and backward) of ``loss`` on ``inputs``."""
    if mode == "fwd":
        def step():
            return loss(*inputs)
    else:
        def step():
            return torch.autograd.grad(loss(*inputs), inputs)
    return step


def fused_providers(device, include_interpreted: bool = False) -> List[str]:
    """Fused backends that can run on ``device`` (Triton's CPU interpreter only if asked for)."""
    device = torch.device(device)
    out = []
    for name in FUSED:
        if name == "triton" and device.type == "cpu" and not include_interpreted:
            continue
        if backends.can_run(name, device.type):
            out.append(name)
    return out


class Compiled:
    """torch.compile'd losses, one compiled function per (kind, side, dtype, mode[, size])."""

    def __init__(self, dynamic: bool):
        self.dynamic = dynamic
        self.cache: Dict[tuple, Callable] = {}

    def get(self, case: Case, base: Callable) -> Callable:
        key = (case.kind, case.side, case.dtype, case.mode) + (() if self.dynamic else (case.size,))
        if key not in self.cache:
            self.cache[key] = torch.compile(own_code(base, len(self.cache)), dynamic=self.dynamic)
        return self.cache[key]


def own_code(fn: Callable, tag) -> Callable:
    """``fn`` with a code object of its own: Dynamo keeps compiled graphs (and the guards checked
    on every call) per code object, so each benchmarked function gets only its own entries.
    Defaults, keyword-only defaults included, are kept."""
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_bench{tag}")
    out = types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)
    out.__kwdefaults__ = fn.__kwdefaults__
    return out
