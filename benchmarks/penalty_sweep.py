"""Gradient penalties, forward + backward: fused backends against eager and torch.compile.

A step is ``penalty(g).backward()`` on a leaf ``g`` (``g.grad`` cleared first), as a training loop
runs it every iteration.  Providers: the fused backends available on the device (``cpu``;
``triton`` / ``cuda`` on a GPU), ``eager`` (``fusedgan.reference``) and ``compile``
(``torch.compile`` of the reference).  ``floor`` (fp32/fp64 only) is no penalty at all but the
three memory passes any implementation makes, as bare kernels with no autograd and no allocation:
a sum of squares (``torch.dot``, one read of ``g``) and a scaling into a buffer allocated once
(read ``g``, write a gradient-sized tensor).  ``floor_vs_compile`` = compile / floor is the most any three-pass implementation can
gain over ``torch.compile`` on this machine (docs/design.md: three passes is the least traffic
for forward + backward).

Timings on a shared machine drift by 2x within minutes, so the providers are measured in
interleaved rounds: each round times every provider (``--reps`` steps each, median), in a rotated
order, and the ratios are taken within the round.  The table reports the median over rounds of
each time and of each ratio, and the spread (min-max) of the ratios.

    python benchmarks/penalty_sweep.py --device cpu --out benchmarks/results
    python benchmarks/penalty_sweep.py --device cpu --quick            # a smoke test

No assertion is made on the numbers: this script measures, the tests check correctness.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fusedgan as fg  # noqa: E402
from fusedgan import penalties, reference  # noqa: E402
from sweep import device_name, slug  # noqa: E402  (benchmarks/sweep.py, beside this file)

PENALTIES = {
    "gradient_penalty": (lambda g, b: penalties.gradient_penalty(g, backend=b), reference.gradient_penalty),
    "r1_penalty": (lambda g, b: penalties.r1_penalty(g, backend=b), reference.r1_penalty),
    "gradient_penalty-pixel": (lambda g, b: penalties.gradient_penalty(g, norm="pixel", backend=b),
                               lambda g: reference.gradient_penalty(g, norm="pixel")),
}
BASELINES = ("eager", "compile", "floor")  # providers that are not fusedgan backends
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_steps(name: str, device: str) -> dict:
    fused, ref = PENALTIES[name]
    steps = {}
    for b in ("triton", "cuda", "cpu"):
        if b in fg.available_backends(device):
            steps[b] = lambda g, b=b: fused(g, b).backward()
    steps["eager"] = lambda g: ref(g).backward()
    compiled = torch.compile(ref)
    steps["compile"] = lambda g: compiled(g).backward()
    out = {}

    def floor(g):
        flat = g.detach().view(-1)
        if "buf" not in out:  # written every step, allocated once: no page faults in the floor
            out["buf"] = torch.empty_like(flat)
        flat.dot(flat)  # forward: one read of g
        torch.mul(flat, 2.0, out=out["buf"])  # backward: read g, write a gradient-sized buffer

    steps["floor"] = floor
    return steps


def time_step(step, g, device: str, reps: int) -> float:
    ts = []
    for _ in range(reps):
        g.grad = None
        sync(device)
        t0 = time.perf_counter()
        step(g)
        sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def measure(name: str, shape, dtype, device: str, rounds: int, reps: int) -> dict:
    torch.manual_seed(0)
    g = (torch.randn(shape, device=device) * 0.01).to(dtype).requires_grad_(True)
    steps = make_steps(name, device)
    if dtype not in (torch.float32, torch.float64) or not g.is_contiguous():
        del steps["floor"]  # torch.dot is not a one-pass read for every dtype on every device
    fused = [p for p in steps if p not in BASELINES]
    for step in steps.values():  # warm-up, compilation
        for _ in range(3):
            g.grad = None
            step(g)
    sync(device)
    order = list(steps)
    per_round = {p: [] for p in steps}
    for r in range(rounds):
        k = r % len(order)
        for p in order[k:] + order[:k]:
            per_round[p].append(time_step(steps[p], g, device, reps))
    row = {"penalty": name, "shape": list(shape), "dtype": str(dtype).replace("torch.", ""),
           "ms": {p: statistics.median(v) for p, v in per_round.items()}, "ratios": {}}
    for f in fused:
        for base in ("eager", "compile"):
            rs = [b / t for b, t in zip(per_round[base], per_round[f])]
            row["ratios"][f"{f}_vs_{base}"] = {"median": statistics.median(rs), "min": min(rs), "max": max(rs)}
    if "floor" in steps:
        rs = [b / t for b, t in zip(per_round["compile"], per_round["floor"])]
        row["ratios"]["floor_vs_compile"] = {"median": statistics.median(rs), "min": min(rs), "max": max(rs)}
    return row


def markdown(result: dict) -> str:
    lines = [f"# Gradient penalties, forward + backward ({result['device_name']})", "",
             f"torch {result['torch']}, {result['rounds']} interleaved rounds of {result['reps']} steps; "
             "times are medians over rounds, ratios are per-round ratios (median, min-max).", ""]
    for row in result["rows"]:
        fused = [p for p in row["ms"] if p not in BASELINES]
        lines.append(f"## {row['penalty']} {'x'.join(map(str, row['shape']))} {row['dtype']}")
        lines.append("")
        lines.append("| provider | ms | vs eager | vs compile |")
        lines.append("|---|---|---|---|")
        for p, ms in row["ms"].items():
            cells = [p, f"{ms:.3f}", "", ""]
            if p in fused:
                for i, base in enumerate(("eager", "compile")):
                    r = row["ratios"][f"{p}_vs_{base}"]
                    cells[2 + i] = f"**{r['median']:.2f}x** ({r['min']:.2f}-{r['max']:.2f})"
            elif p == "floor":
                r = row["ratios"]["floor_vs_compile"]
                cells[3] = f"({r['median']:.2f}x: the most a three-pass step can gain)"
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", default="64x3x128x128,64x3x256x256")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--penalties", default="gradient_penalty,r1_penalty")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, 2 rounds: a smoke test")
    ap.add_argument("--out", default=None, help="folder for penalties_<device>.json and .md")
    args = ap.parse_args(argv)
    if args.quick:
        args.shapes, args.rounds, args.reps = "4x3x16x16", 2, 2
    shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")]
    rows = []
    for name in args.penalties.split(","):
        for shape in shapes:
            for dt in args.dtypes.split(","):
                row = measure(name, shape, DTYPES[dt], args.device, args.rounds, args.reps)
                rows.append(row)
                ratios = ", ".join(f"{k} {v['median']:.2f}x" for k, v in row["ratios"].items())
                print(f"{name} {'x'.join(map(str, shape))} {dt}: "
                      + ", ".join(f"{p} {ms:.3f} ms" for p, ms in row["ms"].items()) + f" | {ratios}", flush=True)
    result = {"device": args.device, "device_name": device_name(args.device), "torch": torch.__version__,
              "rounds": args.rounds, "reps": args.reps, "rows": rows}
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        tag = "cpu" if args.device == "cpu" else slug(device_name("cuda"))
        with open(os.path.join(args.out, f"penalties_{tag}.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(args.out, f"penalties_{tag}.md"), "w") as f:
            f.write(markdown(result) + "\n")
    return result


if __name__ == "__main__":
    main()
