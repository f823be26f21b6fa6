"""``python -m fusedgan demo``: train a small GAN end to end with fusedgan losses.

Data needs no download: the 2-D ring of 8 Gaussians (default), the 5x5 grid of 25 Gaussians, or
scikit-learn's bundled 8x8 digits.  Generator and discriminator are small MLPs; the losses are
``fusedgan.discriminator_loss`` / ``fusedgan.generator_loss`` on whichever backend is chosen, plus
a WGAN-GP or R1 penalty for ``--loss wgan-gp`` / ``--loss r1``, the R3GAN recipe for ``--loss r3gan``
(``rsgan`` plus R1 and R2 every step, gamma on a cosine schedule) and the same recipe with the
finite-difference R1 and R2 of ``fusedgan.approx_r1`` / ``approx_r2`` for ``--loss approx-r1``.

Quality follows the 2-D mixture literature (VEEGAN, PacGAN): a generated sample is
*high-quality* when it lies within 3 standard deviations of its nearest mode, and a mode is
*covered* when it receives at least ``COVER_FRACTION`` of the high-quality samples a perfect
generator would put there (PacGAN's 20 of 100).  For digits, "modes" are the ten classes of a
logistic-regression classifier fitted on the real digits and a sample is high-quality when the
classifier is at least 90% confident.

Everything is seeded (``--seed``): two runs with the same arguments on the same machine and
thread count give the same loss curves bit for bit.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

import fusedgan
from fusedgan import backends

LOSSES = ("ns", "mm", "ls", "wgan", "hinge", "wgan-gp", "r1", "r3gan", "approx-r1")
PENALIZED = ("wgan-gp", "r1", "r3gan", "approx-r1")
DATASETS = ("ring", "grid", "digits")
COVER_FRACTION = 0.2  # a mode is covered with >= 20% of its expected high-quality samples
EVAL_SAMPLES = 2500
DEFAULT_STEPS = {"ring": 2000, "grid": 5000, "digits": 2000}
DIGIT_CONFIDENCE = 0.9


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class Dataset:
    name: str
    dim: int
    sample: Callable[[int, torch.Generator], torch.Tensor]  # n -> [n, dim] on CPU
    centers: Optional[torch.Tensor] = None  # [modes, 2] for the mixtures
    std: float = 0.0
    images: Optional[torch.Tensor] = None  # [N, 64] for digits, in [-1, 1]
    labels: Optional[torch.Tensor] = None


def _mixture(name: str, centers: torch.Tensor, std: float) -> Dataset:
    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(centers), (n,), generator=gen)
        return centers[idx] + std * torch.randn(n, 2, generator=gen)

    return Dataset(name, 2, sample, centers, std)


def ring(modes: int = 8, radius: float = 2.0, std: float = 0.05) -> Dataset:
    angles = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    centers = torch.stack([radius * angles.cos(), radius * angles.sin()], 1).float()
    return _mixture("ring", centers, std)


def grid(side: int = 5, spacing: float = 2.0, std: float = 0.05) -> Dataset:
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    centers = torch.cartesian_prod(coords, coords)
    return _mixture("grid", centers, std)


def digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit(
            "fusedgan demo: --data digits needs scikit-learn (its 8x8 digits ship with it): "
            "pip install scikit-learn"
        ) from None
    d = load_digits()
    images = torch.tensor(d.data, dtype=torch.float32) / 8.0 - 1.0  # pixel values 0..16 -> [-1, 1]
    labels = torch.tensor(d.target)

    def sample(n: int, gen: torch.Generator) -> torch.Tensor:
        return images[torch.randint(len(images), (n,), generator=gen)]

    return Dataset("digits", 64, sample, images=images, labels=labels)


def make_dataset(name: str) -> Dataset:
    if name == "ring":
        return ring()
    if name == "grid":
        return grid()
    if name == "digits":
        return digits()
    raise ValueError(f"data: unknown dataset {name!r}; expected one of {list(DATASETS)}")


# ---------------------------------------------------------------------------------------------
# Models


def mlp(sizes, act: Callable[[], nn.Module], out_act: Optional[nn.Module] = None) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def make_models(data: Dataset, z_dim: int, hidden: int):
    out_act = nn.Tanh() if data.name == "digits" else None
    g = mlp([z_dim, hidden, hidden, hidden, data.dim], nn.ReLU, out_act)
    d = mlp([data.dim, hidden, hidden, hidden, 1], lambda: nn.LeakyReLU(0.2))
    return g, d


# ---------------------------------------------------------------------------------------------
# Losses and penalties


def base_kind(loss: str) -> str:
    """The fusedgan loss kind under a --loss name (penalised variants add a penalty to it)."""
    return {"wgan-gp": "wgan", "r1": "ns", "r3gan": "rsgan", "approx-r1": "rsgan"}.get(loss, loss)


def _input_grad(d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    return g


def penalty(loss: str, d: nn.Module, real, fake, weight: float, gen: torch.Generator, *, step: int = 0,
            steps: int = 1, real_logits=None, fake_logits=None, sigma: float = 0.01):
    if loss == "wgan-gp":
        eps = torch.rand(real.shape[0], 1, generator=gen).to(real.device)
        x_hat = eps * real + (1 - eps) * fake.detach()
        return weight * fusedgan.gradient_penalty(_input_grad(d, x_hat))
    if loss == "r1":
        return fusedgan.r1_penalty(_input_grad(d, real), gamma=weight)
    if loss in ("r3gan", "approx-r1"):  # R1 and R2 every step, gamma from 10x weight down to weight
        gamma = fusedgan.cosine_decay(step, total_steps=steps, start=R3GAN_GAMMA_DECAY * weight, end=weight)
        if loss == "r3gan":
            return (fusedgan.r1_penalty(_input_grad(d, real), gamma=gamma)
                    + fusedgan.r2_penalty(_input_grad(d, fake.detach()), gamma=gamma))
        # finite differences: one extra D forward each; D(real) and D(fake) are the D step's own
        return (fusedgan.approx_r1(d, real, sigma=sigma, gamma=gamma, logits=real_logits, generator=gen)
                + fusedgan.approx_r2(d, fake, sigma=sigma, gamma=gamma, logits=fake_logits, generator=gen))
    return None


# Per-loss training defaults that make the toy problems train in a few thousand steps.
DEFAULT_PENALTY_WEIGHT = {"wgan-gp": 0.1, "r1": 0.1, "r3gan": 0.1, "approx-r1": 0.1}
R3GAN_GAMMA_DECAY = 10.0  # R3GAN decays gamma tenfold (150 -> 15 on FFHQ); here 1.0 -> 0.1
WGAN_CLIP = 0.1  # plain WGAN needs a Lipschitz constraint: weight clipping, as in Arjovsky et al.


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class _Trainer:
    """The state of one training run: data, models, optimizers and the random draws."""

    args: argparse.Namespace
    backend: str
    device: torch.device
    data: object
    g_net: nn.Module
    d_net: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    gen: torch.Generator  # data, noise and interpolation draws
    kind: str
    pw: float  # penalty weight (0: none)

    @classmethod
    def build(cls, args, backend: str) -> "_Trainer":
        device = torch.device(args.device)
        torch.manual_seed(args.seed)
        data = make_dataset(args.data)
        g_net, d_net = make_models(data, args.z_dim, args.hidden)
        g_net.to(device)
        d_net.to(device)
        betas = (0.5, 0.9) if args.loss in ("wgan", "wgan-gp") else (0.5, 0.999)
        pw = args.penalty_weight if args.penalty_weight is not None else DEFAULT_PENALTY_WEIGHT.get(args.loss, 0.0)
        return cls(args, backend, device, data, g_net, d_net,
                   torch.optim.Adam(g_net.parameters(), lr=args.lr, betas=betas),
                   torch.optim.Adam(d_net.parameters(), lr=args.lr, betas=betas),
                   torch.Generator().manual_seed(args.seed + 1), base_kind(args.loss), pw)

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.args.z_dim, generator=self.gen).to(self.device)

    def real(self) -> torch.Tensor:
        return self.data.sample(self.args.batch_size, self.gen).to(self.device)

    def d_step(self, step: int):
        """One discriminator update; returns (loss, penalty or None)."""
        a = self.args
        real, fake = self.real(), self.g_net(self.noise(a.batch_size))
        real_logits, fake_logits = self.d_net(real), self.d_net(fake.detach())
        d_loss = fusedgan.discriminator_loss(real_logits, fake_logits, self.kind, backend=self.backend)
        pen = None if not self.pw else penalty(a.loss, self.d_net, real, fake, self.pw, self.gen, step=step,
                                               steps=a.steps, real_logits=real_logits, fake_logits=fake_logits,
                                               sigma=getattr(a, "sigma", 0.01))
        total = d_loss if pen is None else d_loss + pen
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()
        if a.loss == "wgan":
            with torch.no_grad():
                for p in self.d_net.parameters():
                    p.clamp_(-WGAN_CLIP, WGAN_CLIP)
        return d_loss, pen

    def g_step(self) -> torch.Tensor:
        fake_logits = self.d_net(self.g_net(self.noise(self.args.batch_size)))
        real_for_g = None
        if self.kind in fusedgan.kinds.RELATIVISTIC:  # the pairing reads D(real); no gradient to D here
            with torch.no_grad():
                real_for_g = self.d_net(self.real())
        g_loss = fusedgan.generator_loss(fake_logits, self.kind, real=real_for_g, backend=self.backend)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        return g_loss

    def samples(self) -> torch.Tensor:
        self.g_net.eval()
        with torch.no_grad():
            eval_gen = torch.Generator().manual_seed(self.args.seed + 2)
            z = torch.randn(EVAL_SAMPLES, self.args.z_dim, generator=eval_gen).to(self.device)
            return self.g_net(z).cpu()


def train(args, backend: str, *, progress: bool = True, label: str = "") -> dict:
    """One seeded training run; returns curves, timings, the models and final samples."""
    tr = _Trainer.build(args, backend)
    curves = torch.zeros(3, args.steps, device=tr.device)  # D, G, penalty: no host sync per step
    bar = _progress(args.steps, progress, label)
    t0 = time.perf_counter()
    for step in range(args.steps):
        d_loss, pen = tr.d_step(step)
        g_loss = tr.g_step()
        curves[0, step] = d_loss.detach()
        curves[1, step] = g_loss.detach()
        if pen is not None:
            curves[2, step] = pen.detach()
        if bar is not None:
            bar.update(1)
            if step % 50 == 0 or step == args.steps - 1:
                bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}", refresh=False)
    if tr.device.type == "cuda":
        torch.cuda.synchronize(tr.device)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    curves = curves.cpu()
    return {
        "backend": backend,
        "seconds": seconds,
        "steps_per_s": args.steps / seconds if seconds > 0 else float("inf"),
        "d_curve": curves[0],
        "g_curve": curves[1],
        "penalty_curve": curves[2] if tr.pw and args.loss in PENALIZED else None,
        "penalty_weight": tr.pw,
        "samples": tr.samples(),
        "data": tr.data,
    }


class _PlainProgress:
    """A minimal stand-in for tqdm: one line every 10% of the run."""

    def __init__(self, total: int, label: str):
        self.total, self.n, self.label, self.post = total, 0, label, ""
        self.t0 = time.perf_counter()

    def update(self, k: int) -> None:
        self.n += k
        if self.n == self.total or self.n % max(1, self.total // 10) == 0:
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            print(f"{self.label}step {self.n}/{self.total} ({rate:.0f} it/s) {self.post}", file=sys.stderr)

    def set_postfix(self, refresh: bool = False, **kw) -> None:
        self.post = " ".join(f"{k}={v}" for k, v in kw.items())

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, label: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainProgress(total, label)
    return tqdm(total=total, desc=label.strip() or "train", unit="step", dynamic_ncols=True, mininterval=0.25)


# ---------------------------------------------------------------------------------------------
# Quality metrics


def mixture_metrics(samples: torch.Tensor, data: Dataset) -> dict:
    """Modes covered and fraction of high-quality samples (within 3 std of the nearest mode)."""
    dist = torch.cdist(samples.double(), data.centers.double())  # [n, modes]
    nearest_d, nearest = dist.min(1)
    good = nearest_d <= 3 * data.std
    n_modes = len(data.centers)
    counts = torch.bincount(nearest[good], minlength=n_modes)
    needed = max(1, math.ceil(COVER_FRACTION * len(samples) / n_modes))
    return {
        "modes": n_modes,
        "modes_covered": int((counts >= needed).sum()),
        "high_quality_fraction": float(good.double().mean()),
        "samples": len(samples),
        "hq_samples_per_mode": counts.tolist(),
        "cover_threshold": needed,
        "mode_std": data.std,
    }


def digit_metrics(samples: torch.Tensor, data: Dataset) -> dict:
    """The same two numbers for digits, with a classifier's classes as the modes."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=500)
    clf.fit(data.images.numpy(), data.labels.numpy())
    prob = torch.from_numpy(clf.predict_proba(samples.clamp(-1, 1).numpy()))
    conf, cls = prob.max(1)
    good = conf >= DIGIT_CONFIDENCE
    counts = torch.bincount(cls[good], minlength=10)
    needed = max(1, math.ceil(COVER_FRACTION * len(samples) / 10))
    return {
        "modes": 10,
        "modes_covered": int((counts >= needed).sum()),
        "high_quality_fraction": float(good.double().mean()),
        "samples": len(samples),
        "hq_samples_per_mode": counts.tolist(),
        "cover_threshold": needed,
        "classifier_confidence": DIGIT_CONFIDENCE,
    }


def metrics(samples: torch.Tensor, data: Dataset) -> dict:
    return digit_metrics(samples, data) if data.name == "digits" else mixture_metrics(samples, data)


# ---------------------------------------------------------------------------------------------
# Figure


def _smooth(y: torch.Tensor, k: int) -> torch.Tensor:
    if len(y) < k or k <= 1:
        return y
    return torch.nn.functional.avg_pool1d(y.view(1, 1, -1), k, 1).view(-1)


def write_figure(path: str, run: dict, m: dict, args, compare: Optional[dict] = None) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("fusedgan demo: matplotlib is not installed; no figure written (pip install matplotlib)",
              file=sys.stderr)
        return False
    data, samples = run["data"], run["samples"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 5.2))
    if data.name == "digits":
        n = 10
        cells = torch.nn.functional.pad(samples[: n * n].clamp(-1, 1).view(n * n, 8, 8), (0, 1, 0, 1), value=-1.0)
        imgs = cells.view(n, n, 9, 9).permute(0, 2, 1, 3).reshape(n * 9, n * 9)  # 1-pixel gaps
        ax0.imshow(((imgs + 1) / 2).numpy(), cmap="gray_r", interpolation="nearest")
        ax0.set_axis_off()
        ax0.set_title(f"generated digits (100 of {len(samples)})")
    else:
        gen = torch.Generator().manual_seed(args.seed + 3)
        real = data.sample(len(samples), gen)
        ax0.scatter(real[:, 0], real[:, 1], s=4, c="0.6", alpha=0.5, label="real", linewidths=0)
        ax0.scatter(samples[:, 0], samples[:, 1], s=4, c="tab:red", alpha=0.5, label="generated", linewidths=0)
        ax0.scatter(data.centers[:, 0], data.centers[:, 1], marker="+", c="k", s=60, label="modes")
        lim = float(data.centers.abs().max()) + 1.0
        ax0.set_xlim(-lim, lim)
        ax0.set_ylim(-lim, lim)
        ax0.set_aspect("equal")
        ax0.legend(loc="upper right", fontsize=8, markerscale=3)
        ax0.set_title(f"{data.name}: {len(samples)} generated samples over real data")
    k = max(1, args.steps // 100)
    steps = torch.arange(args.steps)
    for name, curve, color in (("D loss", run["d_curve"], "tab:blue"), ("G loss", run["g_curve"], "tab:orange")):
        ax1.plot(steps, curve, color=color, alpha=0.2, linewidth=0.6)
        sm = _smooth(curve, k)
        ax1.plot(steps[k - 1 :] if k > 1 and len(curve) >= k else steps, sm, color=color, label=name)
    if run["penalty_curve"] is not None:
        ax1.plot(steps, run["penalty_curve"], color="tab:green", alpha=0.6, linewidth=0.8, label="penalty")
    if compare is not None:
        ax1.plot(steps, compare["d_curve"], color="k", linestyle=":", linewidth=0.8,
                 label=f"D loss ({compare['backend']})")
    ax1.set_xlabel("step")
    ax1.set_title(f"loss {args.loss}, backend {run['backend']}")
    ax1.legend(fontsize=8)
    fig.suptitle(
        f"fusedgan demo: {m['modes_covered']}/{m['modes']} modes covered, "
        f"{100 * m['high_quality_fraction']:.1f}% high-quality samples "
        f"({args.steps} steps, batch {args.batch_size}, seed {args.seed})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", choices=DATASETS, default="ring",
                   help="ring: 8 Gaussians on a circle (default); grid: 5x5 Gaussians; "
                        "digits: scikit-learn's 8x8 digits (needs scikit-learn)")
    p.add_argument("--loss", choices=LOSSES, default="r1",
                   help="loss kind: ns, mm, ls, wgan, hinge, or wgan-gp (wgan + gradient penalty), "
                        "r1 (ns + R1 penalty; the default: plain GANs often drop modes of the ring), "
                        "r3gan (rsgan + R1 + R2 every step, cosine gamma), approx-r1 (the r3gan recipe "
                        "with the finite-difference R1/R2 of fusedgan.approx_r1/approx_r2)")
    p.add_argument("--steps", type=_positive_int, default=None,
                   help="training steps (default 2000; 5000 for --data grid)")
    p.add_argument("--batch-size", type=_positive_int, default=256, help="batch size (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--z-dim", type=_positive_int, default=8, help="latent size (default 8)")
    p.add_argument("--hidden", type=_positive_int, default=128, help="MLP width (default 128)")
    p.add_argument("--penalty-weight", type=float, default=None,
                   help="WGAN-GP lambda / R1 gamma (default 0.1 for these toy problems; r3gan: the final "
                        "gamma, decayed on a cosine from 10x it)")
    p.add_argument("--sigma", type=float, default=0.01,
                   help="approx-r1: the noise scale of the finite differences (default 0.01)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--backend", default="auto", choices=("auto",) + backends.NAMES,
                   help="fusedgan backend (default: automatic choice)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="fusedgan-demo", help="output folder (default ./fusedgan-demo)")
    p.add_argument("--compare", action="store_true",
                   help="also train with backend 'reference' and compare speed and loss curves")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=_positive_int, default=1,
                   help="torch CPU threads (default 1: these small MLPs run fastest on one thread, "
                        "and a busy machine slows multi-threaded runs down badly)")


def _positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s}")
    return v


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("fusedgan demo: --device cuda requested but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"fusedgan demo: --device {name}: only cpu and cuda are supported")
    return str(dev)


def resolve_backend(name: str, device: str) -> str:
    dtype = torch.device(device).type
    if name == "auto":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            chosen = backends.resolve(torch.device(device))
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
        return chosen
    if not backends.can_run(name, dtype):
        raise SystemExit(
            f"fusedgan demo: --backend {name} cannot run on {dtype} here "
            f"(available: {backends.available_backends(dtype)})"
        )
    return name


def _curves_json(run: dict, every: int) -> dict:
    out = {"d": run["d_curve"][::every].tolist(), "g": run["g_curve"][::every].tolist()}
    if run["penalty_curve"] is not None:
        out["penalty"] = run["penalty_curve"][::every].tolist()
    return out


def run(args) -> dict:
    threads = torch.get_num_threads()
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests) keep their setting


def _compare(args, backend: str, main_run: dict, progress: bool) -> dict:
    """--compare: the same run on the reference backend (and, for the R3GAN recipes, exact R1)."""
    ref = train(args, "reference", progress=progress, label="reference ")
    # Per-step difference of the two runs' D and G losses.  Step 0 sees identical inputs, so it
    # measures the loss kernels alone; later steps add the training's own amplification of
    # rounding differences (GAN training is chaotic), so we also say where the curves part.
    diff = torch.maximum((main_run["d_curve"] - ref["d_curve"]).abs(),
                         (main_run["g_curve"] - ref["g_curve"]).abs())
    apart = (diff > 1e-3).nonzero()
    compare = {
        "backend": backend,
        "steps_per_s": main_run["steps_per_s"],
        "reference_steps_per_s": ref["steps_per_s"],
        "speedup": main_run["steps_per_s"] / ref["steps_per_s"],
        "max_abs_loss_curve_diff": float(diff.max()),
        "step0_abs_diff": float(diff[0]),
        "max_abs_diff_first_100_steps": float(diff[:100].max()),
        "first_step_diff_above_1e-3": int(apart[0]) if len(apart) else None,
        "reference_metrics": metrics(ref["samples"], ref["data"]),
        "d_curve": ref["d_curve"],
    }
    if args.loss in ("r3gan", "approx-r1"):  # step times against exact R1 (and R3GAN), same backend
        compare["ms_per_step"] = 1e3 * main_run["seconds"] / args.steps
        for other in ("r1", "r3gan") if args.loss == "approx-r1" else ("r1",):
            o_args = argparse.Namespace(**{**vars(args), "loss": other, "penalty_weight": args.penalty_weight})
            o_run = train(o_args, backend, progress=progress, label=f"{backend} {other} ")
            key = "exact_r1" if other == "r1" else "exact_r3gan"
            compare[f"{key}_ms_per_step"] = 1e3 * o_run["seconds"] / args.steps
            compare[f"{key}_metrics"] = metrics(o_run["samples"], o_run["data"])
    return compare


def _summary(args, backend: str, main_run: dict, m: dict, compare: Optional[dict]) -> dict:
    every = max(1, args.steps // 1000)
    summary = {
        "command": "demo",
        "config": {k: v for k, v in vars(args).items() if k not in ("func", "command")},
        "backend": backend,
        "fusedgan": fusedgan.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "penalty_weight": main_run["penalty_weight"],
        "seconds": main_run["seconds"],
        "steps_per_s": main_run["steps_per_s"],
        "final": {"d_loss": float(main_run["d_curve"][-1]), "g_loss": float(main_run["g_curve"][-1])},
        "metrics": m,
        "loss_curve_every": every,
        "loss_curves": _curves_json(main_run, every),
    }
    if compare is not None:
        summary["compare"] = {k: v for k, v in compare.items() if k != "d_curve"}
    return summary


def _print_compare(args, backend: str, compare: dict) -> None:
    note = " (both runs used the reference: no fused backend here)" if backend == "reference" else ""
    print(f"compare: {backend} {compare['steps_per_s']:.0f} steps/s vs reference "
          f"{compare['reference_steps_per_s']:.0f} steps/s ({compare['speedup']:.2f}x); "
          f"loss-curve difference: {compare['step0_abs_diff']:.2g} at step 0, "
          f"{compare['max_abs_diff_first_100_steps']:.2g} over the first 100 steps, "
          f"{compare['max_abs_loss_curve_diff']:.2g} at most"
          + (f" (curves part by >1e-3 from step {compare['first_step_diff_above_1e-3']})"
             if compare["first_step_diff_above_1e-3"] is not None else "") + note)
    for key, name in (("exact_r1", "exact R1 (--loss r1)"), ("exact_r3gan", "exact R1 + R2 (--loss r3gan)")):
        if f"{key}_ms_per_step" in compare:
            om = compare[f"{key}_metrics"]
            print(f"compare: {args.loss} {compare['ms_per_step']:.2f} ms/step vs {name} "
                  f"{compare[f'{key}_ms_per_step']:.2f} ms/step on {backend} "
                  f"({compare[f'{key}_ms_per_step'] / compare['ms_per_step']:.2f}x); it covers "
                  f"{om['modes_covered']}/{om['modes']} modes")


def _run(args) -> dict:
    args.device = resolve_device(args.device)
    if args.steps is None:
        args.steps = DEFAULT_STEPS.get(args.data, 2000)
    if args.data == "digits":
        make_dataset("digits")  # fail early and clearly without scikit-learn
    backend = resolve_backend(args.backend, args.device)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    print(f"fusedgan demo: {args.data}, loss {args.loss}, {args.steps} steps, batch {args.batch_size}, "
          f"device {args.device}, backend {backend}, seed {args.seed}")
    main_run = train(args, backend, progress=progress, label=f"{backend} ")
    m = metrics(main_run["samples"], main_run["data"])
    compare = _compare(args, backend, main_run, progress) if args.compare else None
    summary = _summary(args, backend, main_run, m, compare)
    fig_path = os.path.join(args.out, "demo.png")
    summary["figure"] = fig_path if write_figure(fig_path, main_run, m, args, compare) else None
    json_path = os.path.join(args.out, "demo.json")
    with open(json_path, "w") as fh:
        json.dump(summary, fh, indent=1)
    print(f"modes covered: {m['modes_covered']}/{m['modes']}   "
          f"high-quality samples: {100 * m['high_quality_fraction']:.1f}%   "
          f"({main_run['steps_per_s']:.0f} steps/s, {main_run['seconds']:.1f} s)")
    if compare is not None:
        _print_compare(args, backend, compare)
    print(f"wrote {json_path}" + (f" and {fig_path}" if summary["figure"] else ""))
    return summary
