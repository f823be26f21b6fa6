"""Accuracy of a fused backend against the float64 reference, for every kind and side.

    python benchmarks/accuracy.py [--backend cpu] [--size 1048576] [--out benchmarks/results/accuracy_cpu.md]

For fp32 inputs (logits ~ N(0, 3^2) with a few +-1e4 / +-88 entries): the relative error of the
loss, and of the gradient (max |g - g64| / max |g64|), against the reference evaluated in float64
on the same (fp32-representable) inputs; and, for comparison, the same errors of PyTorch's own
fp32 evaluation of the reference formulas.
"""
from __future__ import annotations

import argparse

import torch

import fusedgan as fg


def rel(a, b) -> float:
    return float((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-300))


def run(kind, side, backend, n, extreme=True):
    g = torch.Generator().manual_seed(0)
    r = (torch.randn(n, generator=g, dtype=torch.float64) * 3).float()
    f = (torch.randn(n // 2 + 1, generator=g, dtype=torch.float64) * 3).float()
    if extreme:
        r[:4] = torch.tensor([1e4, -1e4, 88.0, -88.0])
        f[:4] = torch.tensor([-1e4, 1e4, -88.0, 88.0])
    out = {}
    for name, dt, be in (("fused", torch.float32, backend), ("ref64", torch.float64, "reference"), ("torch32", torch.float32, None)):
        rr = r.to(dt).clone().requires_grad_(True)
        ff = f.to(dt).clone().requires_grad_(True)
        if be is None:  # torch's own fp32 evaluation of the reference formulas
            loss = fg.reference.discriminator_loss(rr, ff, kind) if side == "D" else fg.reference.generator_loss(ff, kind)
        elif side == "D":
            loss = fg.discriminator_loss(rr, ff, kind, backend=be)
        else:
            loss = fg.generator_loss(ff, kind, backend=be)
        loss.backward()
        grads = [rr.grad, ff.grad] if side == "D" else [ff.grad]
        out[name] = (loss.detach(), [x.detach() for x in grads])
    row = {}
    for name in ("fused", "torch32"):
        l, gs = out[name]
        l64, gs64 = out["ref64"]
        row[name] = (rel(l, l64), max(rel(a, b) for a, b in zip(gs, gs64)))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="cpu")
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    lines = [
        f"Accuracy vs float64 reference: backend `{a.backend}`, fp32 logits, {a.size} real + {a.size // 2 + 1} fake "
        "elements (N(0, 3^2) with +-1e4 and +-88 entries), fusedgan " + fg.__version__ + ", torch " + torch.__version__,
        "",
        "| kind | side | loss rel. error (fused) | grad rel. error (fused) | loss rel. error (torch fp32) | grad rel. error (torch fp32) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for kind in fg.kinds.KINDS:
        for side in ("D", "G"):
            row = run(kind, side, a.backend, a.size)
            lines.append(f"| {kind} | {side} | {row['fused'][0]:.1e} | {row['fused'][1]:.1e} | {row['torch32'][0]:.1e} | {row['torch32'][1]:.1e} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
