"""``python -m fusedgan bench --e2e``: whole GAN training steps, losses in torch, fusedgan, compile.

Each recipe (``recipes.RECIPES``) runs with three providers: ``torch`` (its losses as the recipe's
code writes them), ``fusedgan`` (the same objective through fusedgan) and ``compile`` (the torch
loss code under ``torch.compile``).  Every (recipe, provider) pair trains its own copy of the same
seeded networks on the same data.  After a warm-up, the pairs run in interleaved rounds (each round
runs ``--steps`` D+G steps of every pair, the order rotating between rounds); per pair, step_ms is
the median over rounds of the mean step time, loss_ms the same for the time spent inside the loss
and penalty code (forward only: the loss formulas and, for penalties, the ``autograd.grad`` with
``create_graph`` they need; their backward runs inside the step's ``backward`` and counts in
step_ms only).  speedup = the median over rounds of torch's round time / the provider's in the same
round (paired, so load drifting between rounds cancels); loss_speedup the same for loss_ms.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Dict, List, Optional

import torch

from .baselines import own_code
from .command import csv_list, fail, pick_device, raise_compile_limits, report_errors
from .core import error_text
from .recipes import RECIPES, Recipe
from .report import SMOKE_NOTE, device_name, pyplot

PROVIDERS = ("torch", "fusedgan", "compile")


class Clock:
    """Calls a loss function and adds its wall time (synchronised on CUDA) to ``seconds``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.seconds = 0.0

    def __call__(self, fn, *args):
        if self.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn(*args)
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t
        return out


def losses_for(recipe: Recipe, provider: str) -> Dict:
    if provider == "torch":
        return recipe.torch_losses(lambda fn: fn)
    if provider == "compile":
        tags = iter(range(1000))
        return recipe.torch_losses(lambda fn: torch.compile(own_code(fn, f"{recipe.name}_{next(tags)}"),
                                                            dynamic=False))
    if provider == "fusedgan":
        return recipe.fused_losses()
    raise ValueError(f"provider: unknown e2e provider {provider!r}")


class Trainer:
    """One (recipe, provider) pair: its networks, optimisers, data and step counter."""

    def __init__(self, recipe: Recipe, provider: str, size: float, device: torch.device, seed: int = 0):
        self.recipe, self.provider, self.device = recipe, provider, device
        torch.manual_seed(seed)
        self.models = recipe.build(size, device, torch.Generator().manual_seed(seed))
        self.losses = losses_for(recipe, provider)
        self.clock = Clock(device)
        self.step = 0
        self.first_losses: Optional[tuple] = None  # (D loss, G loss) of step 0

    def run(self, n: int) -> tuple:
        """``n`` D+G steps; (seconds per step, seconds per step in loss code)."""
        self.clock.seconds = 0.0
        t = time.perf_counter()
        for _ in range(n):
            d = self.recipe.d_step(self.models, self.losses, self.clock, self.step)
            g = self.recipe.g_step(self.models, self.losses, self.clock, self.step)
            if self.first_losses is None:
                self.first_losses = (float(d.detach()), float(g.detach()))
            self.step += 1
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / n, self.clock.seconds / n


def _new_row(recipe: str, provider: str, size: float, steps: int) -> dict:
    return {"config": recipe, "provider": provider, "size": size, "steps_per_round": steps, "rounds": 0,
            "step_ms": None, "loss_ms": None, "loss_share": None, "speedup": None, "loss_speedup": None,
            "step_ms_min": None, "step_ms_max": None, "d_loss_step0": None, "g_loss_step0": None,
            "error": None, "_steps": [], "_loss": []}


def _rounds(trainers: Dict[tuple, Trainer], rows: Dict[tuple, dict], rounds: int, steps: int,
            warmup: int, keep_going: bool, log) -> None:
    """Warm-up, then ``rounds`` interleaved rounds; a failing pair gets ``error`` and stops (and,
    without ``keep_going``, the run stops after that round)."""
    def attempt(key, n, keep):
        try:
            s, ls = trainers[key].run(n)
        except Exception as exc:  # noqa: BLE001 - shown as ERR, exit status 1
            rows[key]["error"] = error_text(exc)
            trainers.pop(key)
            log(f"{key[0]} {key[1]}: ERR {rows[key]['error']}")
            return
        if keep:
            rows[key]["_steps"].append(s)
            rows[key]["_loss"].append(ls)

    for key in list(trainers):
        attempt(key, max(1, warmup), False)
    for i in range(rounds):
        keys = list(trainers)
        for key in keys[i % max(1, len(keys)):] + keys[:i % max(1, len(keys))]:
            if key in trainers:
                attempt(key, steps, True)
        log(f"round {i + 1}/{rounds} done")
        if not keep_going and any(r["error"] for r in rows.values()):
            return


def _paired(base: list, other: list) -> Optional[float]:
    """The median over rounds of base/other: the two figures of a round ran next to each other
    (interleaved), so a load change between rounds cancels; None without data."""
    ratios = [b / o for b, o in zip(base, other) if o > 0]
    return statistics.median(ratios) if ratios else None


def _finish(rows: Dict[tuple, dict], trainers: Dict[tuple, Trainer]) -> List[dict]:
    out, series = [], {}
    for key, row in rows.items():
        st, ls = row.pop("_steps"), row.pop("_loss")
        series[key] = (st, ls)
        tr = trainers.get(key)
        if tr is not None and tr.first_losses is not None:
            row["d_loss_step0"], row["g_loss_step0"] = tr.first_losses
        if row["error"] is None and st:
            row.update(rounds=len(st), step_ms=statistics.median(st) * 1e3, loss_ms=statistics.median(ls) * 1e3,
                       step_ms_min=min(st) * 1e3, step_ms_max=max(st) * 1e3)
            row["loss_share"] = row["loss_ms"] / row["step_ms"]
        out.append(row)
    for row in out:
        base = series.get((row["config"], "torch"))
        if base and row["step_ms"] and rows[(row["config"], "torch")]["step_ms"]:
            st, ls = series[(row["config"], row["provider"])]
            row["speedup"] = _paired(base[0], st)
            row["loss_speedup"] = _paired(base[1], ls)
    return out


def measure(recipes: List[str], providers: List[str], size: float, device, *, rounds: int, steps: int,
            warmup: int, keep_going: bool = True, log=print) -> List[dict]:
    """The e2e rows: one per (recipe, provider), ``error`` set where the provider failed."""
    device = torch.device(device)
    rows, trainers = {}, {}
    for name in recipes:
        for prov in providers:
            key = (name, prov)
            rows[key] = _new_row(name, prov, size, steps)
            try:
                trainers[key] = Trainer(RECIPES[name], prov, size, device)
            except Exception as exc:  # noqa: BLE001
                rows[key]["error"] = error_text(exc)
    if keep_going or not any(r["error"] for r in rows.values()):
        alive = dict(trainers)
        _rounds(alive, rows, rounds, steps, warmup, keep_going, log)
    return _finish(rows, trainers)


def _ms(v) -> str:
    return "ERR" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def table(rows: List[dict], providers: List[str]) -> str:
    """One line per recipe: step ms and loss ms of each provider, then each speedup over torch."""
    head = ["recipe"] + [f"{p} step ms" for p in providers] + [f"{p} loss ms" for p in providers] + \
        [f"{p} speedup" for p in providers if p != "torch"] + [f"{p} loss speedup" for p in providers if p != "torch"]
    lines = []
    for name in dict.fromkeys(r["config"] for r in rows):
        by = {r["provider"]: r for r in rows if r["config"] == name}
        cells = [name] + [_ms(by[p]["step_ms"]) if p in by else "" for p in providers]
        cells += [_ms(by[p]["loss_ms"]) if p in by else "" for p in providers]
        for col in ("speedup", "loss_speedup"):
            cells += [f"{by[p][col]:.2f}x" if p in by and by[p][col] else "" for p in providers if p != "torch"]
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def write_chart(path: str, rows: List[dict], providers: List[str], title: str) -> bool:
    """Grouped bars: step ms per recipe and provider, the loss-code share drawn darker inside."""
    plt = pyplot()
    names = list(dict.fromkeys(r["config"] for r in rows))
    if plt is None or not names:
        return False
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(names) + 2), 4.2))
    width = 0.8 / max(1, len(providers))
    for j, p in enumerate(providers):
        by = {r["config"]: r for r in rows if r["provider"] == p}
        xs = [i + (j - (len(providers) - 1) / 2) * width for i in range(len(names))]
        step = [by[n]["step_ms"] or 0 if n in by else 0 for n in names]
        loss = [by[n]["loss_ms"] or 0 if n in by else 0 for n in names]
        ax.bar(xs, step, width, color=f"C{j}", alpha=0.45, label=f"{p}: step")
        ax.bar(xs, loss, width, color=f"C{j}", label=f"{p}: loss code")
        for x, n in zip(xs, names):
            r = by.get(n)
            label = "ERR" if r is None or r["error"] else (f"{r['speedup']:.2f}x" if r["speedup"] else "")
            ax.annotate(label, (x, (r or {}).get("step_ms") or 0), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms per training step (D step + G step)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=len(providers))
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plan(args) -> tuple:
    names = list(RECIPES) if args.recipes == "all" else csv_list(args.recipes)
    for n in names:
        if n not in RECIPES:
            fail(f"--recipes: unknown recipe {n!r}; expected some of {list(RECIPES)}")
    providers = csv_list(args.providers) or [p for p in PROVIDERS if not (p == "compile" and args.no_compile)]
    for p in providers:
        if p not in PROVIDERS:
            fail(f"--providers: unknown e2e provider {p!r}; expected some of {list(PROVIDERS)}")
    if not args.size > 0:
        fail("--size: must be positive")
    return names, providers


def run_e2e(args) -> dict:
    """The ``--e2e`` command: measure, print the table, write e2e.json, e2e.txt and e2e.png."""
    device = pick_device(args)
    names, providers = _plan(args)
    q = args.quick
    size = args.size * (0.25 if q else 1.0)
    rounds = args.rounds if args.rounds is not None else (1 if q else 5)
    steps = args.steps if args.steps is not None else (2 if q else 16)
    warmup = args.warmup if args.warmup is not None else (1 if q else 4)
    if "compile" in providers:
        raise_compile_limits()
    os.makedirs(args.out, exist_ok=True)
    print(f"fusedgan bench --e2e: {names} x {providers} on {device} ({torch.get_num_threads()} threads), "
          f"size {size:g}, {rounds} rounds of {steps} steps after {warmup} warm-up steps")
    if q:
        print(f"note: {SMOKE_NOTE}")
    log = (lambda s: None) if args.quiet else (lambda s: print("  " + s, flush=True))
    t0 = time.perf_counter()
    rows = measure(names, providers, size, device, rounds=rounds, steps=steps, warmup=warmup,
                   keep_going=args.keep_going, log=log)
    text = table(rows, providers)
    print(text)
    meta = {"command": "bench --e2e", "quick": bool(q), "note": SMOKE_NOTE if q else "", "device": str(device),
            "device_name": device_name(device), "threads": torch.get_num_threads(), "size": size,
            "rounds": rounds, "steps_per_round": steps, "warmup_steps": warmup, "providers": providers,
            "recipes": {n: RECIPES[n].about for n in names}, "method": __doc__.split("\n\n", 1)[1],
            "elapsed_s": time.perf_counter() - t0}
    errors = [r for r in rows if r["error"]]
    result = {"meta": meta, "rows": rows, "errors": errors}
    with open(os.path.join(args.out, "e2e.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(args.out, "e2e.txt"), "w") as fh:
        fh.write(text + "\n")
    title = f"fusedgan bench --e2e: {device_name(device)}, {torch.get_num_threads()} threads, size {size:g}"
    result["plots"] = [os.path.join(args.out, "e2e.png")] if write_chart(
        os.path.join(args.out, "e2e.png"), rows, providers, title) else []
    report_errors(errors, args.keep_going, len(rows))
    print(f"wrote {args.out}/e2e.json, e2e.txt" + (", e2e.png" if result["plots"] else "")
          + (f"\nnote: {SMOKE_NOTE}" if q else ""))
    return result
