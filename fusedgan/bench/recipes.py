"""The ``--e2e`` recipes: networks, data, losses as each recipe's code writes them, and one D and
one G training step.

A recipe gives its losses twice: ``torch_losses(wrap)``, the loss code as the recipe's own code
base writes it in torch (``wrap`` is the identity for the ``torch`` provider and ``torch.compile``
for ``compile``; it wraps only loss formulas, never the networks or ``autograd.grad``), and
``fused_losses()``, the same objective written with fusedgan.  ``d_step`` / ``g_step`` are shared by
the providers; they call the losses through ``clock`` (which times the loss and penalty code).
Add a recipe with ``register(Recipe(...))``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

import fusedgan as fg

from .nets import DCDiscriminator, DCGenerator, EncoderDecoder, PatchDiscriminator

Z_DIM = 64
R1_INTERVAL = 16  # StyleGAN2's lazy regularisation
STYLEGAN2_GAMMA = 1.0
R3GAN_GAMMA = 1.0
L1_WEIGHT = 100.0  # pix2pix's lambda_L1


@dataclass
class Models:
    G: torch.nn.Module
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: List[tuple]  # (real, z) or (input, target) pairs, cycled through

    def batch(self, step: int) -> tuple:
        return self.batches[step % len(self.batches)]


@dataclass(frozen=True)
class Recipe:
    name: str
    about: str
    build: Callable[[float, torch.device, torch.Generator], Models]  # size scale -> models and data
    torch_losses: Callable[[Callable], Dict[str, Callable]]
    fused_losses: Callable[[], Dict[str, Callable]]
    d_step: Callable  # (models, losses, clock, step) -> D loss (a tensor)
    g_step: Callable  # (models, losses, clock, step) -> G loss


RECIPES: Dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    RECIPES[recipe.name] = recipe
    return recipe


def update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _scaled(size: float, n: int) -> int:
    return max(1, int(round(n * size)))


def noise_models(size: float, device, gen, *, norm: bool, betas=(0.5, 0.999), lr=2e-4) -> Models:
    """DCGAN-layout G and D at 32x32 (width 16 and batch 32 at size 1), Adam, 4 batches of data."""
    ch, batch = _scaled(size, 16), _scaled(size, 32)
    G, D = DCGenerator(Z_DIM, ch, norm).to(device), DCDiscriminator(ch, norm).to(device)
    batches = [((torch.rand(batch, 3, 32, 32, generator=gen) * 2 - 1).to(device),
                torch.randn(batch, Z_DIM, generator=gen).to(device)) for _ in range(4)]
    return Models(G, D, torch.optim.Adam(G.parameters(), lr, betas=betas),
                  torch.optim.Adam(D.parameters(), lr, betas=betas), batches)


def noise_d_step(m: Models, L, clock, step: int) -> torch.Tensor:
    real, z = m.batch(step)
    with torch.no_grad():
        fake = m.G(z)
    loss = clock(L["d"], m.D(real), m.D(fake))
    update(m.opt_d, loss)
    if "r1" in L and step % R1_INTERVAL == 0:  # lazy R1: its own pass, weighted by the interval
        update(m.opt_d, clock(L["r1"], m.D, real.detach().requires_grad_(True)) * R1_INTERVAL)
    return loss


def noise_g_step(m: Models, L, clock, step: int) -> torch.Tensor:
    _, z = m.batch(step)
    loss = clock(L["g"], m.D(m.G(z)))
    update(m.opt_g, loss)
    return loss


def input_grads(*pairs):
    """``autograd.grad`` of each output's sum at its input, with ``create_graph`` (for a penalty)."""
    outs, ins = zip(*pairs)
    return torch.autograd.grad([o.sum() for o in outs], list(ins), create_graph=True)


# --- dcgan: the PyTorch DCGAN example's BCE losses ---------------------------------------------

def dcgan_d(r, f):
    return F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + \
        F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))


def dcgan_g(f):
    return F.binary_cross_entropy_with_logits(f, torch.ones_like(f))


register(Recipe(
    "dcgan", "DCGAN conv G/D at 32x32 with batch norm, ns loss (BCE with logits), Adam(0.5, 0.999)",
    lambda size, device, gen: noise_models(size, device, gen, norm=True),
    lambda wrap: {"d": wrap(dcgan_d), "g": wrap(dcgan_g)},
    lambda: {"d": lambda r, f: fg.discriminator_loss(r, f, "ns"), "g": lambda f: fg.generator_loss(f, "ns")},
    noise_d_step, noise_g_step))


# --- pix2pix: PatchGAN D, LSGAN (CycleGAN's GANLoss('lsgan') = MSELoss) plus L1 ------------------

def pix2pix_models(size: float, device, gen) -> Models:
    """Encoder-decoder G and 70x70-layout PatchGAN D (width 8 at size 1) on 64x64 pairs, batch 4."""
    ch, batch = _scaled(size, 8), _scaled(size, 4)
    G, D = EncoderDecoder(ch).to(device), PatchDiscriminator(ch).to(device)
    img = lambda: (torch.rand(batch, 3, 64, 64, generator=gen) * 2 - 1).to(device)  # noqa: E731
    return Models(G, D, torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)),
                  torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)), [(img(), img()) for _ in range(4)])


def pix2pix_d_step(m: Models, L, clock, step: int) -> torch.Tensor:
    a, b = m.batch(step)
    with torch.no_grad():
        fake_b = m.G(a)
    loss = clock(L["d"], m.D(torch.cat([a, b], 1)), m.D(torch.cat([a, fake_b], 1)))
    update(m.opt_d, loss)
    return loss


def pix2pix_g_step(m: Models, L, clock, step: int) -> torch.Tensor:
    a, b = m.batch(step)
    fake_b = m.G(a)
    loss = clock(L["g"], m.D(torch.cat([a, fake_b], 1)), fake_b, b)
    update(m.opt_g, loss)
    return loss


def pix2pix_d(r, f):
    return (F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f))) * 0.5


def pix2pix_g(f, fake_b, b):
    return F.mse_loss(f, torch.ones_like(f)) + F.l1_loss(fake_b, b) * L1_WEIGHT


def pix2pix_fused() -> Dict[str, Callable]:
    # fusedgan's ls loss is 0.5 * (x - label)^2 per element: its D loss is pix2pix's
    # 0.5 * (mse(r, 1) + mse(f, 0)); its G loss is half of mse(f, 1).  The L1 term is fusedgan's
    # feature_matching_loss (E|fake - target|, weighted).
    return {"d": lambda r, f: fg.discriminator_loss(r, f, "ls"),
            "g": lambda f, fake_b, b: 2 * fg.generator_loss(f, "ls")
            + fg.feature_matching_loss(fake_b, b, weights=[L1_WEIGHT])}


register(Recipe(
    "pix2pix", "pix2pix: encoder-decoder G, 70x70-layout PatchGAN D at 64x64 (6x6 logit map), LSGAN + 100 * L1",
    pix2pix_models, lambda wrap: {"d": wrap(pix2pix_d), "g": wrap(pix2pix_g)}, pix2pix_fused,
    pix2pix_d_step, pix2pix_g_step))


# --- stylegan2-r1: StyleGAN2-ADA's loss.py: softplus losses, lazy R1 every 16 steps -------------

def stylegan2_d(r, f):
    return F.softplus(f).mean() + F.softplus(-r).mean()


def stylegan2_g(f):
    return F.softplus(-f).mean()


def stylegan2_r1_formula(g):
    return (g.square().sum([1, 2, 3]) * (STYLEGAN2_GAMMA / 2)).mean()


def stylegan2_torch(wrap) -> Dict[str, Callable]:
    formula = wrap(stylegan2_r1_formula)

    def r1(D, x):
        (g,) = input_grads((D(x), x))
        return formula(g)

    return {"d": wrap(stylegan2_d), "g": wrap(stylegan2_g), "r1": r1}


register(Recipe(
    "stylegan2-r1", "StyleGAN2-ADA objective on DCGAN-layout nets (no batch norm) at 32x32: ns (softplus) "
    f"loss, R1 (gamma {STYLEGAN2_GAMMA}) every {R1_INTERVAL} steps (lazy regularisation), Adam(0, 0.99)",
    lambda size, device, gen: noise_models(size, device, gen, norm=False, betas=(0.0, 0.99), lr=2e-3),
    stylegan2_torch,
    lambda: {"d": lambda r, f: fg.discriminator_loss(r, f, "ns"), "g": lambda f: fg.generator_loss(f, "ns"),
             "r1": lambda D, x: fg.r1(D, x, STYLEGAN2_GAMMA)},
    noise_d_step, noise_g_step))


# --- r3gan: R3GAN's relativistic pairing (rsgan) with R1 and R2 every step -----------------------

def r3gan_d_step(m: Models, L, clock, step: int) -> torch.Tensor:
    real, z = m.batch(step)
    with torch.no_grad():
        fake = m.G(z)
    xr, xf = real.detach().requires_grad_(True), fake.detach().requires_grad_(True)
    loss = clock(L["d"], m.D(xr), m.D(xf), xr, xf)
    update(m.opt_d, loss)
    return loss


def r3gan_g_step(m: Models, L, clock, step: int) -> torch.Tensor:
    real, z = m.batch(step)
    loss = clock(L["g"], m.D(m.G(z)), m.D(real))
    update(m.opt_g, loss)
    return loss


def r3gan_d_formula(r, f, gr, gf):
    r1 = gr.square().sum([1, 2, 3])
    r2 = gf.square().sum([1, 2, 3])
    return (F.softplus(-(r - f)) + (R3GAN_GAMMA / 2) * (r1 + r2)).mean()


def r3gan_g(f, r):
    return F.softplus(-(f - r)).mean()


def r3gan_torch(wrap) -> Dict[str, Callable]:
    formula = wrap(r3gan_d_formula)

    def d(r, f, xr, xf):
        return formula(r, f, *input_grads((r, xr), (f, xf)))

    return {"d": d, "g": wrap(r3gan_g)}


def r3gan_fused() -> Dict[str, Callable]:
    def d(r, f, xr, xf):
        gr, gf = input_grads((r, xr), (f, xf))
        return fg.discriminator_loss(r, f, "rsgan") + fg.r1_penalty(gr, R3GAN_GAMMA) + fg.r2_penalty(gf, R3GAN_GAMMA)

    return {"d": d, "g": lambda f, r: fg.generator_loss(f, "rsgan", real=r)}


def r3gan_models(size: float, device, gen) -> Models:
    return noise_models(size, device, gen, norm=False, betas=(0.0, 0.99), lr=2e-4)


register(Recipe(
    "r3gan", f"R3GAN objective on DCGAN-layout nets (no batch norm) at 32x32: rsgan (relativistic pairing) "
    f"+ R1 and R2 (gamma {R3GAN_GAMMA}) every step, Adam(0, 0.99)",
    r3gan_models, r3gan_torch, r3gan_fused, r3gan_d_step, r3gan_g_step))


# --- r3gan-approx: R3GAN with the finite-difference R1 / R2 (no double backward) ------------------

APPROX_SIGMA = 0.01


def r3gan_approx_d_step(m: Models, L, clock, step: int) -> torch.Tensor:
    real, z = m.batch(step)
    with torch.no_grad():
        fake = m.G(z)
    gen = torch.Generator(device=real.device).manual_seed(step)  # the same noise for every provider
    er = torch.randn(real.shape, generator=gen, device=real.device, dtype=real.dtype) * APPROX_SIGMA
    ef = torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype) * APPROX_SIGMA
    loss = clock(L["d"], m.D(real), m.D(fake), m.D(real + er), m.D(fake + ef))
    update(m.opt_d, loss)
    return loss


def r3gan_approx_d_formula(r, f, rp, fp):
    s2 = APPROX_SIGMA * APPROX_SIGMA
    r1 = (rp - r).square().reshape(len(r), -1).sum(1) / s2
    r2 = (fp - f).square().reshape(len(f), -1).sum(1) / s2
    return F.softplus(-(r - f)).mean() + (R3GAN_GAMMA / 2) * (r1.mean() + r2.mean())


def r3gan_approx_torch(wrap) -> Dict[str, Callable]:
    return {"d": wrap(r3gan_approx_d_formula), "g": wrap(r3gan_g)}


def r3gan_approx_fused() -> Dict[str, Callable]:
    def d(r, f, rp, fp):
        return (fg.discriminator_loss(r, f, "rsgan")
                + fg.approx_r1_penalty(r, rp, sigma=APPROX_SIGMA, gamma=R3GAN_GAMMA)
                + fg.approx_r1_penalty(f, fp, sigma=APPROX_SIGMA, gamma=R3GAN_GAMMA))

    return {"d": d, "g": lambda f, r: fg.generator_loss(f, "rsgan", real=r)}


register(Recipe(
    "r3gan-approx", f"the r3gan recipe with R1 and R2 by finite differences (fusedgan.approx_r1_penalty, "
    f"sigma {APPROX_SIGMA}): two extra D forwards instead of two double backwards",
    r3gan_models, r3gan_approx_torch, r3gan_approx_fused, r3gan_approx_d_step, r3gan_g_step))
