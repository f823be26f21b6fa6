"""Tables, plots and files of ``python -m fusedgan bench``."""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import sys
from dataclasses import asdict
from typing import List, Optional, Sequence

import torch

from .core import Row, fmt_ms, fused_of, size_str

ORDER = ("cpu", "cuda", "triton", "torch", "compile", "floor", "reference")
SMOKE_NOTE = ("quick mode: a smoke run (few repetitions, compile cache not warmed): the figures check "
              "that everything runs; they are not measurements")


def _ratio_columns(providers: Sequence[str], fused: Sequence[str]) -> List[tuple]:
    """(header, numerator provider, denominator provider): speedups against the baselines, then
    the fused time over the autograd floor."""
    cols = []
    for p in fused:
        cols += [(f"{b}/{p}", b, p) for b in ("torch", "compile", "reference") if b in providers]
        if "floor" in providers:
            cols.append((f"{p}/floor", p, "floor"))
    if not fused and "compile" in providers and "torch" in providers:
        cols.append(("torch/compile", "torch", "compile"))
    return cols


def _align(head: List[str], lines: List[List[str]], left: int) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i >= left else str(c).ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


def table(rows: Sequence[Row]) -> str:
    """One line per case: median ms of each provider (ERR for a failure), then the ratios."""
    seen = set(r.provider for r in rows)
    providers = [p for p in ORDER if p in seen] + [p for p in dict.fromkeys(r.provider for r in rows)
                                                   if p not in ORDER]
    ratios = _ratio_columns(providers, fused_of(rows))
    head = ["loss", "dtype", "mode", "size"] + [f"{p} ms" for p in providers] + [h for h, _, _ in ratios]
    cases = {}
    for r in rows:
        cases.setdefault((r.kind, r.side, r.dtype, r.mode, r.size), {})[r.provider] = r
    lines = []
    for (kind, side, dtype, mode, size), by in cases.items():
        cells = [side if kind == "penalty" else f"{kind} {side}", dtype, mode, size_str(size)]
        for p in providers:
            r = by.get(p)
            cells.append("" if r is None else "ERR" if r.error else fmt_ms(r.median_ms))
        for _, a, b in ratios:
            ra, rb = by.get(a), by.get(b)
            ok = ra is not None and rb is not None and not ra.error and not rb.error
            cells.append(f"{ra.median_ms / rb.median_ms:.2f}x" if ok else "")
        lines.append(cells)
    return _align(head, lines, 4)


def compile_times(rows: Sequence[Row]) -> List[dict]:
    """The compile provider's first-call times (compile + first run), apart from steady timings."""
    return [
        {"kind": r.kind, "side": r.side, "dtype": r.dtype, "size": r.size, "mode": r.mode,
         "first_call_ms": r.first_call_ms, "steady_median_ms": r.median_ms}
        for r in rows if r.provider == "compile" and r.first_call_ms is not None
    ]


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a note) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("fusedgan bench: matplotlib is not installed; no plot written (pip install matplotlib)",
              file=sys.stderr)
        return None
    return plt


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device) -> str:
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def write_plot(path: str, rows: Sequence[Row], dtype: str, mode: str) -> bool:
    sel = [r for r in rows if r.dtype == dtype and r.mode == mode and r.error is None]
    groups = list(dict.fromkeys((r.kind, r.side) for r in sel))
    plt = pyplot() if groups else None
    if plt is None:
        return False
    cols = min(4, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(4.2 * cols, 7.5), 3.4 * nrows + 0.6), squeeze=False)
    providers = [p for p in ORDER if any(r.provider == p for r in rows)]
    for ax, (kind, side) in zip(axes.flat, groups):
        for i, p in enumerate(providers):
            pts = sorted((r.size, r.median_ms) for r in sel if (r.kind, r.side, r.provider) == (kind, side, p))
            if pts:
                ax.plot([s for s, _ in pts], [m for _, m in pts], marker="o", ms=3, color=f"C{i}", label=p,
                        ls="--" if p == "floor" else "-")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(side if kind == "penalty" else f"{kind} {side}", fontsize=10)
        ax.set_xlabel("elements per logits tensor")
        ax.set_ylabel("median ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_axis_off()
    dev = sel[0].device
    fig.suptitle(f"fusedgan bench: {dtype}, {mode}, {dev} ({device_name(dev)}, {torch.get_num_threads()} threads)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_outputs(out: str, rows: Sequence[Row], meta: dict, text: str) -> dict:
    """bench.json, bench.csv, bench.txt and one PNG per dtype and mode (bench.png: the first)."""
    result = {"meta": meta, "rows": [asdict(r) for r in rows], "compile_times": compile_times(rows),
              "errors": [asdict(r) for r in rows if r.error]}
    with open(os.path.join(out, "bench.json"), "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    with open(os.path.join(out, "bench.csv"), "w", newline="") as fh:
        names = [f for f in Row.__dataclass_fields__ if f != "extra"]
        w = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    with open(os.path.join(out, "bench.txt"), "w") as fh:
        fh.write(text + "\n")
    plots = []
    for d in dict.fromkeys(r.dtype for r in rows):
        for m in dict.fromkeys(r.mode for r in rows):
            path = os.path.join(out, f"bench_{d}_{m.replace('+', '_')}.png")
            if write_plot(path, rows, d, m):
                plots.append(path)
    if plots:
        shutil.copyfile(plots[0], os.path.join(out, "bench.png"))
    result["plots"] = plots
    return result
