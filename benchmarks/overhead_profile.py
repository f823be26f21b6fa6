"""Where the microseconds of a small fused loss call go: each layer of the route timed alone.

    python benchmarks/overhead_profile.py [--size 64] [--rounds 7] [--calls 400]

CPU, one thread, forward+backward of the ns losses, against the autograd floor.  Layers, each a
function timed in interleaved rounds (``fusedgan.bench.timing.interleaved``: a round runs every
layer, the table shows the median over rounds), so their differences are comparable on a loaded
machine.  The D side; the G side is the same with one logit tensor:

- ``floor``:        ``grad(r.sum() + f.sum(), (r, f))``
- ``full``:         ``grad(fg.discriminator_loss(r, f, backend="cpu"), (r, f))``
- ``full auto``:    the same without ``backend=``
- ``fwd``:          ``fg.discriminator_loss(...)`` with grad (the node is built, no backward)
- ``fwd no-grad``:  the same on tensors without grad (no node)
- ``op+bwd``:       ``grad(torch.ops.fusedgan.gan_loss(...)[0], (r, f))``: no Python wrapper
- ``op``:           the ``gan_loss`` op alone through torch.ops, with grad (its node built)
- ``opcall``:       the same through ``fusedgan._C.OpCall`` (what eager calls use)
- ``op no-grad``:   the op below autograd (the kernel through the dispatcher, no node)
- ``kernel``:       ``torch.ops.fusedgan.loss_terms`` (the CPU kernel, no autograd key)
- ``empty``:        ``torch.empty(())``: the cost of one small allocation
"""
from __future__ import annotations

import argparse
import statistics

import torch

import fusedgan as fg
from fusedgan import ops
from fusedgan import plan as P
from fusedgan.bench.timing import interleaved


def _layers(side: str, n: int) -> dict:
    g = torch.Generator().manual_seed(0)
    r = torch.randn(n, generator=g).requires_grad_()
    f = torch.randn(n, generator=g).requires_grad_()
    rd, fd = r.detach(), f.detach()
    grad = torch.autograd.grad
    if side == "D":
        xs, xd = (r, f), (rd, fd)
        plan = P.side_plan("ns", "D", 1, (("real_label", 1.0), ("fake_label", 0.0)), (1.0,))

        def loss(*a, **k):
            return fg.discriminator_loss(*a, "ns", **k)

        def floor():
            return grad(r.sum() + f.sum(), xs)
    else:
        xs, xd = (f,), (fd,)
        plan = P.side_plan("ns", "G", 1, (("target", 1.0),), (1.0,))

        def loss(*a, **k):
            return fg.generator_loss(*a, "ns", **k)

        def floor():
            return grad(f.sum(), xs)
    k = len(xs)
    op = torch.ops.fusedgan.gan_loss.default
    entry = ops.OP_CALLS["gan_loss"]
    kernel = torch.ops.fusedgan.loss_terms.default
    none = [None] * k

    def op_args(ts):
        return (list(ts), none, none, *plan.tail, False)

    def kernel_args(ts):
        return (list(ts), none, none, list(plan.elems), list(plan.label_values), list(plan.coefs),
                plan.reduction, [False] * k)

    return {
        "floor": floor,
        "full": lambda: grad(loss(*xs, backend="cpu"), xs),
        "full auto": lambda: grad(loss(*xs), xs),
        "fwd": lambda: loss(*xs, backend="cpu"),
        "fwd no-grad": lambda: loss(*xd, backend="cpu"),
        "op+bwd": lambda: grad(op(*op_args(xs))[0], xs),
        "op": lambda: op(*op_args(xs)),
        "opcall": lambda: entry(*op_args(xs)),
        "op no-grad": lambda: op(*op_args(xd)),
        "kernel": lambda: kernel(*kernel_args(xd)),
        "empty": lambda: torch.empty(()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--sides", default="D,G")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"size {args.size}, 1 thread, median over {args.rounds} interleaved rounds of {args.calls} calls (us)")
    for side in args.sides.split(","):
        fns = _layers(side, args.size)
        times = interleaved(fns, "cpu", rounds=args.rounds, calls=args.calls, warmup=50)
        us = {name: statistics.median(t) * 1e6 for name, t in times.items()}
        print(f"\n{side}  {'layer':<12} {'us':>7} {'x floor':>8}")
        for name, v in us.items():
            print(f"{side}  {name:<12} {v:7.2f} {v / us['floor']:7.2f}x")


if __name__ == "__main__":
    main()
