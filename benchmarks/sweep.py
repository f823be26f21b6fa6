"""Benchmark sweep: fused GAN losses (forward + backward) against eager and torch.compile.

Providers: ``triton`` and ``cuda`` (fused operators, CUDA only), ``cpu`` (fused C++ kernel, CPU
only), ``eager`` (``fusedgan.reference`` in plain PyTorch) and ``compile`` (``torch.compile`` of the
reference).  For each kind, side (D loss over two tensors of ``size`` elements each, G loss over
one), size and dtype it records the median time of forward+backward, the kernel-launch count (from
the profiler), peak memory (CUDA) and, on CUDA, the achieved bandwidth for the bytes a fused
forward+backward must move (read x twice, write the gradient once) as a fraction of a measured
device-to-device copy bandwidth.

    python benchmarks/sweep.py --device cpu --quick          # small CPU run (a smoke test)
    python benchmarks/sweep.py --device cuda --out benchmarks/results

``benchmarks/gpu_check.py`` runs it on a GPU within a time budget and writes the JSON + Markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fusedgan as fg  # noqa: E402
from fusedgan.bench import count_launches, time_fn  # noqa: E402  (the one timer and launch counter)

KINDS = ["ns", "mm", "ls", "wgan", "hinge"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def providers(device: str) -> list:
    names = [b for b in ("triton", "cuda", "cpu") if b in fg.available_backends(device)]
    return names + ["eager", "compile"]


def make_step(provider: str, kind: str, side: str):
    """A function (tensors...) -> None running forward + backward once."""
    if provider == "eager" or provider == "compile":
        if side == "D":
            def loss(r, f):
                return fg.reference.discriminator_loss(r, f, kind)
        else:
            def loss(f):
                return fg.reference.generator_loss(f, kind)
        if provider == "compile":
            # a fresh Dynamo cache per case: the same code object is compiled for every kind/size
            torch._dynamo.reset()
            loss = torch.compile(loss, dynamic=False)
    else:
        if side == "D":
            def loss(r, f):
                return fg.discriminator_loss(r, f, kind, backend=provider)
        else:
            def loss(f):
                return fg.generator_loss(f, kind, backend=provider)

    def step(*xs):
        for x in xs:
            x.grad = None
        loss(*xs).backward()

    return step


def median_ms(fn, device: str, warmup: int, reps: int, budget_s: float) -> float:
    """Median milliseconds per call, by fusedgan.bench's timer (CUDA events on GPUs)."""
    return statistics.median(time_fn(fn, device, warmup=warmup, reps=reps, budget_s=budget_s, min_reps=3)) * 1e3


def copy_bandwidth(device: str, n: int = 1 << 26) -> float:
    """Measured device-to-device copy bandwidth in GB/s (read + write)."""
    x = torch.empty(n, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), device, 3, 20, 2.0)
    return 2 * n * 4 / (ms * 1e-3) / 1e9


def regime(n: int) -> str:
    return "launch-bound" if n <= 1 << 14 else ("mid" if n < 1 << 22 else "memory-bound")


def run(device: str, sizes, dtypes, kinds, sides=("D", "G"), provs=None, warmup=5, reps=50,
        budget_s=0.5, log=print) -> dict:
    provs = provs or providers(device)
    bw_copy = copy_bandwidth(device, min(max(sizes), 1 << 26) if device == "cuda" else 1 << 20) \
        if device == "cuda" else None
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        for n in sizes:
            for kind in kinds:
                for side in sides:
                    gen = torch.Generator().manual_seed(0)
                    xs = [(torch.randn(n, generator=gen) * 3).to(dtype).to(device).requires_grad_(True)
                          for _ in range(2 if side == "D" else 1)]
                    moved = sum(3 * x.numel() * x.element_size() for x in xs)
                    for p in provs:
                        step = make_step(p, kind, side)
                        try:
                            if device == "cuda":
                                torch.cuda.reset_peak_memory_stats()
                            ms = median_ms(lambda: step(*xs), device, warmup, reps, budget_s)
                            peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
                            launches = count_launches(lambda: step(*xs), device) if device == "cuda" else None
                            err = None
                        except Exception as exc:  # noqa: BLE001 - record and go on
                            ms = peak = launches = None
                            err = f"{type(exc).__name__}: {str(exc)[:200]}"
                        row = dict(provider=p, kind=kind, side=side, n=n, dtype=dname, ms=ms,
                                   launches=launches, peak_bytes=peak, regime=regime(n), error=err)
                        if ms and bw_copy:
                            row["gbps"] = moved / (ms * 1e-3) / 1e9
                            row["frac_copy_bw"] = row["gbps"] / bw_copy
                        rows.append(row)
                        log(f"{dname} n={n:>9} {kind:>5} {side} {p:>8}: "
                            + (f"{ms:.4f} ms launches={launches}" if ms else f"ERROR {err}"))
    return dict(device=device_name(device), torch=torch.__version__, copy_gbps=bw_copy, rows=rows)


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    import platform

    model = platform.machine()
    try:  # the CPU model: timings differ by machine, so the results say which one ran
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu {model}, {torch.get_num_threads()} threads"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def markdown(result: dict) -> str:
    """Table: each fused provider's time with speedups vs eager and vs torch.compile."""
    rows = result["rows"]
    key = {(r["provider"], r["kind"], r["side"], r["n"], r["dtype"]): r for r in rows}
    fused = sorted({r["provider"] for r in rows} - {"eager", "compile"})
    out = [f"# fusedgan sweep on {result['device']} (torch {result['torch']})", ""]
    if result.get("copy_gbps"):
        out.append(f"Device-to-device copy bandwidth: {result['copy_gbps']:.0f} GB/s. "
                   "Bytes counted for fwd+bwd: read x twice, write grad once.")
        out.append("")
    out.append("| dtype | n | kind | side | regime | provider | ms | launches | peak MiB | x eager | x compile | % copy BW |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    seen = sorted({(r["dtype"], r["n"], r["kind"], r["side"]) for r in rows},
                  key=lambda t: (t[0], t[1], KINDS.index(t[2]) if t[2] in KINDS else 0, t[3]))
    for dt, n, kind, side in seen:
        e = key.get(("eager", kind, side, n, dt), {}).get("ms")
        c = key.get(("compile", kind, side, n, dt), {}).get("ms")
        for p in fused + ["eager", "compile"]:
            r = key.get((p, kind, side, n, dt))
            if not r:
                continue
            ms = r["ms"]
            fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
            out.append("| " + " | ".join([
                dt, str(n), kind, side, r["regime"], p, fmt(ms, ".4f"), fmt(r["launches"], "d"),
                fmt(r["peak_bytes"] / 2**20 if r["peak_bytes"] is not None else None, ".1f"),
                fmt(e / ms if (e and ms) else None, ".2f"), fmt(c / ms if (c and ms) else None, ".2f"),
                fmt(100 * r["frac_copy_bw"] if r.get("frac_copy_bw") else None, ".0f"),
            ]) + " |")
    return "\n".join(out) + "\n"


def write(result: dict, out_dir: str, prefix: str) -> tuple:
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, f"{prefix}_{slug(result['device'])}")
    with open(base + ".json", "w") as fh:
        json.dump(result, fh, indent=1)
    with open(base + ".md", "w") as fh:
        fh.write(markdown(result))
    return base + ".json", base + ".md"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="few small sizes, two kinds, fp32 only")
    ap.add_argument("--sizes", default=None, help="comma-separated log2 sizes (default 6,8,...,26)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--providers", default=None)
    ap.add_argument("--out", default=None, help="write <out>/sweep_<device>.json and .md")
    a = ap.parse_args(argv)
    if a.quick:
        sizes, dtypes, kinds, reps = [1 << 6, 1 << 10, 1 << 14], ["fp32"], ["ns", "hinge"], 5
    else:
        exps = [int(s) for s in a.sizes.split(",")] if a.sizes else list(range(6, 27, 2))
        sizes, dtypes, kinds, reps = [1 << e for e in exps], a.dtypes.split(","), a.kinds.split(","), 50
    provs = a.providers.split(",") if a.providers else None
    res = run(a.device, sizes, dtypes, kinds, provs=provs, reps=reps,
              warmup=2 if a.quick else 5, budget_s=0.2 if a.quick else 0.5)
    if a.out:
        print("wrote", *write(res, a.out, "sweep"))
    else:
        print(markdown(res))


if __name__ == "__main__":
    main()
