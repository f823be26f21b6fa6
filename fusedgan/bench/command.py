"""The ``bench`` command's arguments, its plan of cases and providers, and its run."""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional

import torch

import fusedgan
from fusedgan import backends

from .baselines import BASELINES, DROPINS, DTYPES, FUSED, MODES, PENALTIES, Case, fused_providers
from .core import Settings, sweep
from .report import SMOKE_NOTE, device_name, table, write_outputs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smoke run: sizes 64, 2^12, 2^16, fp32, fwd+bwd, few reps, no launch counts, compile for ns and gp only; "
                        "--e2e: 1 round of 2 steps at size 0.25")
    p.add_argument("--e2e", action="store_true",
                   help="whole training steps of GAN recipes (dcgan, pix2pix, stylegan2-r1, r3gan) instead of losses")
    p.add_argument("--recipes", default="all", help="--e2e: comma-separated recipes (default all)")
    p.add_argument("--size", type=float, default=1.0,
                   help="--e2e: scale of batch size and network width (default 1: CPU-sized)")
    p.add_argument("--steps", type=int, default=None, help="--e2e: training steps per round (default 16; quick 2)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--kinds", default="all",
                   help="comma-separated loss kinds, and bce, mse: the torch drop-ins (default all)")
    p.add_argument("--sides", default=None, help="D, G and the penalties gp, r1 (default D,G,gp,r1)")
    p.add_argument("--dtypes", default=None, help="comma-separated: fp32,bf16,fp16,fp64 "
                                                  "(default fp32,bf16 on CPU; fp32,bf16,fp16 on CUDA)")
    p.add_argument("--modes", default="fwd+bwd,fwd", help="fwd+bwd and/or fwd (default both)")
    p.add_argument("--sizes", default=None, help="comma-separated element counts, e.g. 64,4096,2**20")
    p.add_argument("--min-size", type=int, default=64)
    p.add_argument("--max-size", type=int, default=None, help="default 2^24 on CPU, 2^26 on CUDA")
    p.add_argument("--size-step", type=int, default=4, help="factor between sizes (default 4)")
    p.add_argument("--providers", default=None,
                   help="comma-separated subset of: cpu,cuda,triton,torch,compile,floor,reference "
                        "(default: all available; --e2e: torch,fusedgan,compile)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile provider")
    p.add_argument("--compile-static", action="store_true",
                   help="compile once per size (static shapes) instead of once per loss/dtype/mode with dynamic shapes")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; quick 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 3; quick 1)")
    p.add_argument("--reps", type=int, default=None, help="most timed calls over all rounds (default 25; quick 4)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per provider and case that set the repetitions (default 0.5; quick 0.02)")
    p.add_argument("--keep-going", action="store_true",
                   help="run every case even after a provider fails (the exit status is 1 either way)")
    p.add_argument("--no-profile", action="store_true", help="skip the launch count (torch.profiler)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="fusedgan-bench", help="output folder (default ./fusedgan-bench)")
    p.add_argument("--quiet", action="store_true", help="no per-case progress lines")


def csv_list(s: Optional[str]) -> List[str]:
    return [x.strip() for x in s.split(",") if x.strip()] if s else []


def parse_size(s: str) -> int:
    s = s.strip()
    if "**" in s or "^" in s:
        base, exp = s.replace("^", "**").split("**")
        return int(base) ** int(exp)
    return int(s)


def fail(msg: str):
    raise SystemExit(f"fusedgan bench: {msg}")


def _kinds_sides(args) -> tuple:
    known = list(fusedgan.KINDS) + list(DROPINS)
    kinds = known if args.kinds == "all" else csv_list(args.kinds)
    for k in kinds:
        if k not in known:
            fail(f"--kinds: unknown loss kind {k!r}; expected some of {known} (bce, mse: the drop-ins)")
    sides = csv_list(args.sides) if args.sides is not None else ["D", "G", *PENALTIES]
    for s in sides:
        if s not in ("D", "G") + PENALTIES:
            fail(f"--sides: unknown side {s!r}; expected D, G, gp or r1")
    return kinds, sides


def _dtypes_modes(args, device) -> tuple:
    if args.quick:
        dtypes = ["fp32"]
    elif args.dtypes:
        dtypes = csv_list(args.dtypes)
    else:
        dtypes = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    for d in dtypes:
        if d not in DTYPES:
            fail(f"--dtypes: unknown dtype {d!r}; expected some of {list(DTYPES)}")
    modes = ["fwd+bwd"] if args.quick and args.modes == "fwd+bwd,fwd" else csv_list(args.modes)
    for m in modes:
        if m not in MODES:
            fail(f"--modes: unknown mode {m!r}; expected fwd+bwd or fwd")
    return dtypes, modes


def _sizes(args, device) -> List[int]:
    if args.sizes:
        try:
            sizes = [parse_size(s) for s in csv_list(args.sizes)]
        except ValueError:
            fail(f"--sizes: cannot parse {args.sizes!r}")
    elif args.quick:
        sizes = [64, 2 ** 12, 2 ** 16]
    else:
        top = args.max_size or (2 ** 26 if device.type == "cuda" else 2 ** 24)
        if args.size_step < 2 or args.min_size < 1:
            fail("--size-step must be >= 2 and --min-size >= 1")
        sizes, n = [], args.min_size
        while n <= top:
            sizes.append(n)
            n *= args.size_step
    if not sizes or min(sizes) < 1:
        fail("--sizes: need positive sizes")
    return sizes


def _providers(args, device) -> List[str]:
    available = fused_providers(device, include_interpreted=bool(args.providers and "triton" in args.providers))
    if not args.providers:
        return available + [b for b in BASELINES if not (b == "compile" and args.no_compile)]
    providers = csv_list(args.providers)
    for p in providers:
        if p not in FUSED + BASELINES:
            fail(f"--providers: unknown provider {p!r}; expected some of {list(FUSED + BASELINES)}")
        if p in FUSED and p not in available:
            fail(f"--providers {p}: backend cannot run on {device.type} here "
                 f"(available: {backends.available_backends(device.type)})")
    return providers


def plan(args, device: torch.device) -> tuple:
    """(cases, providers) from the command-line arguments; raises SystemExit on a bad choice."""
    kinds, sides = _kinds_sides(args)
    dtypes, modes = _dtypes_modes(args, device)
    sizes = _sizes(args, device)
    cases = []
    for d in dtypes:
        for m in modes:
            cases += [Case(k, s, d, n, m) for k in kinds for s in sides if s in ("D", "G") for n in sizes]
            cases += [Case("penalty", s, d, n, m) for s in sides if s in PENALTIES for n in sizes]
    return cases, _providers(args, device)


def pick_device(args) -> torch.device:
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda requested but torch sees no CUDA device")
    return device


def settings(args) -> Settings:
    q = args.quick
    pick = lambda v, full, quick: v if v is not None else (quick if q else full)  # noqa: E731
    return Settings(rounds=max(1, pick(args.rounds, 5, 2)), reps=max(1, pick(args.reps, 25, 4)),
                    warmup=pick(args.warmup, 3, 1), budget_s=pick(args.budget, 0.5, 0.02),
                    profile=not (args.no_profile or q), compile_dynamic=not args.compile_static,
                    keep_going=args.keep_going)


def raise_compile_limits() -> None:
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)


def meta(args, device, providers, s: Settings, elapsed: float) -> dict:
    from ..info import info_dict

    return {
        "command": "bench", "argv": sys.argv[1:], "quick": bool(args.quick),
        "note": SMOKE_NOTE if args.quick else "",
        "device": str(device), "device_name": device_name(device),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "providers": providers, "fused_backends": [p for p in providers if p in FUSED],
        "versions": info_dict(),
        "rounds": s.rounds, "max_reps": s.reps, "warmup": s.warmup, "budget_s": s.budget_s,
        "compile_dynamic": s.compile_dynamic,
        "timer": "cuda events" if device.type == "cuda" else "time.perf_counter",
        "method": "interleaved rounds: each round times every provider of a case; medians over rounds",
        "launches_note": "CUDA: kernels in one call; CPU: outermost operator calls (a compiled graph counts once)",
        "bandwidth_note": "bytes of the inputs read once (+ gradients written once for fwd+bwd) / median time",
        "elapsed_s": elapsed,
    }


def run_losses(args) -> dict:
    device = pick_device(args)
    cases, providers = plan(args, device)
    s = settings(args)
    os.makedirs(args.out, exist_ok=True)
    if "compile" in providers:
        raise_compile_limits()
    print(f"fusedgan bench: {len(cases)} cases on {device} ({torch.get_num_threads()} threads), "
          f"providers {providers}")
    if args.quick:
        print(f"note: {SMOKE_NOTE}")
    # --quick keeps torch.compile to the ns losses and the gp penalty (each compile costs seconds on CPU).
    compile_filter = (lambda c: c.kind == "ns" or c.side == "gp") if args.quick else None
    t0 = time.perf_counter()
    log = None if args.quiet else (lambda line: print("  " + line, flush=True))
    rows = sweep(cases, providers, device, s, progress=log, compile_filter=compile_filter)
    text = table(rows)
    print(text)
    result = write_outputs(args.out, rows, meta(args, device, providers, s, time.perf_counter() - t0), text)
    report_errors(result["errors"], args.keep_going, len(rows))
    print(f"{len(rows)} measurements in {result['meta']['elapsed_s']:.1f} s; wrote {args.out}/bench.json, "
          f"bench.csv, bench.txt" + (f", {len(result['plots'])} plot(s)" if result["plots"] else ""))
    if args.quick:
        print(f"note: {SMOKE_NOTE}")
    return result


def report_errors(errors: List[dict], keep_going: bool, n: int) -> None:
    for r in errors:
        what = r.get("config") or f"{r['kind']} {r['side']} {r['dtype']} {r['mode']} {r['size']}"
        print(f"error: {r['provider']} on {what}: {r['error']}", file=sys.stderr)
    if errors and not keep_going:
        print(f"error: stopped after the first failing case ({n} rows kept); --keep-going runs every case",
              file=sys.stderr)


def run(args) -> dict:
    """Run ``bench`` (or ``bench --e2e``); returns the result dict (``errors`` lists failures)."""
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.e2e:
            from .e2e import run_e2e

            return run_e2e(args)
        return run_losses(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests) keep their setting


def main(args) -> int:
    """The command: 0, or 1 when any provider failed (its rows show ERR)."""
    return 1 if run(args)["errors"] else 0
