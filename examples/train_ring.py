"""The smallest useful fusedgan training loop: a GAN on the 8-Gaussian ring with ns + R1.

    python examples/train_ring.py [--steps 1000] [--kind ns]

``python -m fusedgan demo`` is the full version (figure, metrics, --compare); this file shows the
API in a loop you can copy.
"""
import argparse

import torch
from torch import nn

import fusedgan
from fusedgan.demo import mixture_metrics, ring

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--kind", default="ns", choices=sorted(fusedgan.KINDS))
p.add_argument("--gamma", type=float, default=0.1, help="R1 weight (0: off)")
args = p.parse_args()

torch.manual_seed(0)
torch.set_num_threads(1)
data = ring()
G = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
D = nn.Sequential(nn.Linear(2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))
opt_g = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(D.parameters(), 1e-3, betas=(0.5, 0.999))
loss = fusedgan.nn.GANLoss(args.kind)  # fused backend when available, else the reference
gen = torch.Generator().manual_seed(1)

for step in range(args.steps):
    real = data.sample(256, gen).requires_grad_(args.gamma > 0)
    fake = G(torch.randn(256, 8))
    real_logits = D(real)
    d_loss = loss.discriminator(real_logits, D(fake.detach()))
    if args.gamma > 0:  # R1: (gamma/2) E ||grad_x D(x)||^2 on real data
        (g,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        d_loss = d_loss + 0.5 * args.gamma * g.pow(2).sum(1).mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()

    g_loss = loss.generator(D(G(torch.randn(256, 8))))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    if step % 200 == 0 or step == args.steps - 1:
        print(f"step {step:5d}  D {d_loss.item():.3f}  G {g_loss.item():.3f}")

with torch.no_grad():
    m = mixture_metrics(G(torch.randn(2500, 8)), data)
print(f"backend {fusedgan.backends.last_used()}: {m['modes_covered']}/{m['modes']} modes covered, "
      f"{100 * m['high_quality_fraction']:.1f}% high-quality samples")
