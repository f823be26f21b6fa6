"""The GPU check's fixed sweep (benchmarks/gpu_check.py runs it): forward + backward steps timed
with CUDA events, one JSON line per row, appended as each row is measured.

Cases, most important first: ``ns`` and ``hinge`` D and G losses at 2^24, 2^6, 2^26, 2^20, 2^14
and 2^10 elements per tensor, each in fp32 and bf16; ``gradient_penalty`` (``gp``) and
``r1_penalty`` (``r1``) at [64, 3, 256, 256] after the first size.  Providers: ``fusedgan-triton``, ``fusedgan-cuda`` (the fused
backends that run on the device), ``eager`` (torch's own loss functions, as a training script
writes them) and ``compile`` (``torch.compile`` of the same functions).  Before each row the
time is checked against ``--stop-at`` (a Unix time): the sweep stops there and says so in a last
``{"stopped": ...}`` line.

Each row: median milliseconds per step (CUDA events, after warm-up), host microseconds per step
(launch cost, small sizes only: the steps queued without synchronising), kernel launches per step
(profiler), peak memory, and bytes moved over a measured device-to-device copy bandwidth (the
fewest bytes any implementation moves: read the input twice, write the gradient once).

``--ncu-step PROVIDER`` runs one ns D step (2^24 fp32) between ``cudaProfilerStart``/``Stop``,
after warm-up, for ``ncu --profile-from-start off``.  ``--dry-run``: the CPU, tiny sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fusedgan as fg  # noqa: E402
from fusedgan.bench.timing import sync, time_fn  # noqa: E402  (the one timer)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LOSS_EXPS = (24, 6, 26, 20, 14, 10)  # most important first
DRY_EXPS = (10, 6)
PENALTY_SHAPE, DRY_PENALTY_SHAPE = (64, 3, 256, 256), (4, 3, 8, 8)
GAMMA = 10.0


# torch's own loss functions, as a training script writes them
def eager_loss(kind: str, side: str):
    if kind == "ns" and side == "D":
        return lambda r, f: (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                             + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))
    if kind == "ns":
        return lambda f: F.binary_cross_entropy_with_logits(f, torch.ones_like(f))
    if kind == "hinge" and side == "D":
        return lambda r, f: F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
    if kind == "hinge":
        return lambda f: -f.mean()
    if kind == "gp":
        return lambda g: ((g.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()
    if kind == "r1":
        return lambda g: (GAMMA / 2) * g.square().flatten(1).sum(1).mean()
    raise ValueError(kind)


def fused_loss(kind: str, side: str, backend: str):
    if kind == "gp":
        return lambda g: fg.gradient_penalty(g, backend=backend)
    if kind == "r1":
        return lambda g: fg.r1_penalty(g, GAMMA, backend=backend)
    if side == "D":
        return lambda r, f: fg.discriminator_loss(r, f, kind, backend=backend)
    return lambda f: fg.generator_loss(f, kind, backend=backend)


def make_step(provider: str, kind: str, side: str):
    if provider.startswith("fusedgan-"):
        loss = fused_loss(kind, side, provider[len("fusedgan-"):])
    else:
        loss = eager_loss(kind, side)
        if provider == "compile":
            torch._dynamo.reset()  # a fresh cache per case: every case compiles once
            loss = torch.compile(loss, dynamic=False)

    def step(*xs):
        for x in xs:
            x.grad = None
        loss(*xs).backward()

    return step


def providers(device: str) -> list:
    fused = [b for b in ("triton", "cuda", "cpu") if b in fg.available_backends(device)]
    if device == "cpu":
        fused = [b for b in fused if b != "triton"]  # the interpreter is no benchmark
    return [f"fusedgan-{b}" for b in fused] + ["eager", "compile"]


def median_ms(fn, device: str, warmup: int, reps: int, budget_s: float) -> float:
    """Median milliseconds per call, by fusedgan.bench's timer (CUDA events on GPUs)."""
    return statistics.median(time_fn(fn, device, warmup=warmup, reps=reps, budget_s=budget_s, min_reps=3)) * 1e3


def host_us(fn, device: str, n: int = 50) -> float:
    """Host time per step with the steps queued back to back (no synchronisation inside)."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    sync(device)
    return (t1 - t0) / n * 1e6


def count_launches(fn, device: str):
    if device != "cuda":
        return None
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA and e.name
               and "Memcpy" not in e.name and "Memset" not in e.name)


def copy_gbps(device: str, n: int) -> float:
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), device, 3, 20, 2.0)
    return 2 * n * 4 / (ms * 1e-3) / 1e9


def cases(dry: bool) -> list:
    """(case, kind, side, dtype, shape), most important first: each size in fp32 and bf16, the
    largest first, the penalties after it."""
    out = []
    exps = DRY_EXPS if dry else LOSS_EXPS
    pshape = DRY_PENALTY_SHAPE if dry else PENALTY_SHAPE
    for i, e in enumerate(exps):
        for dt in DTYPES:
            for kind in ("ns", "hinge"):
                for side in ("D", "G"):
                    out.append((f"{kind}-{side}", kind, side, dt, (1 << e,)))
        if i == 0:
            out += [(p, p, "-", dt, pshape) for dt in DTYPES for p in ("gp", "r1")]
    return out


def inputs(kind: str, side: str, dtype, shape, device: str) -> list:
    gen = torch.Generator(device=device).manual_seed(0)
    count = 2 if side == "D" else 1
    return [(torch.randn(shape, generator=gen, device=device, dtype=torch.float32) * 3).to(dtype)
            .requires_grad_(True) for _ in range(count)]


def run(out_path: str, stop_at: float, dry: bool, device: str) -> int:
    warmup, reps, budget = (1, 3, 0.05) if dry else (5, 50, 0.2)
    fh = open(out_path, "a")

    def emit(row: dict) -> None:
        fh.write(json.dumps(row) + "\n")
        fh.flush()

    bw = copy_gbps(device, 1 << (16 if dry else 28))
    emit({"copy_gbps": bw, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
          "torch": torch.__version__, "providers": providers(device)})
    print(f"copy bandwidth {bw:.0f} GB/s", flush=True)
    stopped = "done"
    for i, (case, kind, side, dname, shape) in enumerate(cases(dry)):
        xs = inputs(kind, side, DTYPES[dname], shape, device)
        moved = sum(3 * x.numel() * x.element_size() for x in xs)
        n = xs[0].numel()
        for provider in providers(device):
            if dry and provider == "compile" and i > 0:
                continue  # compiling on the CPU takes seconds a case: once is enough for the plumbing
            if time.time() >= stop_at:
                stopped = f"deadline before {case} {dname} n={n} {provider}"
                break
            row = dict(case=case, dtype=dname, n=n, shape=list(shape), provider=provider)
            t0 = time.time()
            try:
                step = make_step(provider, kind, side)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                row["ms"] = median_ms(lambda: step(*xs), device, warmup, reps, budget)
                row["peak_bytes"] = torch.cuda.max_memory_allocated() if device == "cuda" else None
                if n <= 1 << 14:
                    row["host_us"] = host_us(lambda: step(*xs), device, 5 if dry else 30)
                row["launches"] = count_launches(lambda: step(*xs), device)
                row["gbps"] = moved / (row["ms"] * 1e-3) / 1e9
                row["frac_copy_bw"] = row["gbps"] / bw
            except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            row["wall_s"] = round(time.time() - t0, 2)
            emit(row)
            print(f"{case:8s} {dname} n={n:>9} {provider:16s} "
                  + (f"{row['ms']:.4f} ms launches={row.get('launches')}" if "ms" in row else row["error"]),
                  flush=True)
        else:
            continue
        break
    emit({"stopped": stopped})
    print("stopped:", stopped, flush=True)
    fh.close()
    return 0


def ncu_step(provider: str, dry: bool, device: str) -> int:
    """One ns D step between cudaProfilerStart/Stop, after warm-up (compilation, autotuning)."""
    n = 1 << (10 if dry else 24)
    if provider.startswith("fusedgan-") and provider[len("fusedgan-"):] not in fg.available_backends(device):
        print(f"{provider}: not available on {device}")
        return 0
    xs = inputs("ns", "D", torch.float32, (n,), device)
    step = make_step(provider, "ns", "D")
    for _ in range(3):
        step(*xs)
    sync(device)
    if device == "cuda":
        torch.cuda.cudart().cudaProfilerStart()
    step(*xs)
    sync(device)
    if device == "cuda":
        torch.cuda.cudart().cudaProfilerStop()
    print(f"NCU_STEP {provider} n={n} fp32 done", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="the JSON-lines file rows are appended to")
    ap.add_argument("--stop-at", type=float, default=float("inf"), help="Unix time: no row starts after it")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--ncu-step", metavar="PROVIDER")
    ap.add_argument("--device", default=None)
    a = ap.parse_args(argv)
    device = a.device or ("cpu" if a.dry_run else "cuda")
    if a.ncu_step:
        return ncu_step(a.ncu_step, a.dry_run, device)
    if not a.out:
        ap.error("--out is required")
    return run(a.out, a.stop_at, a.dry_run, device)


if __name__ == "__main__":
    sys.exit(main())
