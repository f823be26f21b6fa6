"""``python -m fusedgan bench``: every loss, every provider, sizes 64 to 2^24 (2^26 on GPU).

A *case* is one loss side (``D`` or ``G`` of a kind, or a penalty when fusedgan has them) at one
size (elements per logits tensor; D gets a real and a fake tensor of that size), dtype and mode
(``fwd``: loss only, inputs without grad; ``fwd+bwd``: loss and ``torch.autograd.grad`` of it).
A *provider* runs the case:

- each fused backend that can run on the device (``cpu``, ``cuda``, ``triton``);
- ``reference``: the eager formulas of ``fusedgan.reference``;
- ``torch``: a plain eager ``F.binary_cross_entropy_with_logits`` formula (``ns`` only);
- ``compile``: ``torch.compile`` of the reference, warmed up; the first call (compile time) is
  reported apart from the steady-state time.

Each measurement is the median of repeated runs after warm-up (CUDA events on GPU, the wall clock
on CPU).  Also recorded: achieved bandwidth (bytes of the inputs read once, plus the gradients
written once for ``fwd+bwd``, per second), the number of kernel launches in one call from
``torch.profiler`` (on CPU: leaf operator calls, a compiled graph counting as one), and peak
memory on CUDA.  The timing helpers (``time_fn``, ``count_launches``, ``peak_memory``,
``make_case_fn``) are importable for other benchmark suites.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
import types
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

import fusedgan
from fusedgan import backends, reference

FUSED = ("cpu", "cuda", "triton")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}
MODES = ("fwd+bwd", "fwd")
PENALTIES = ("gp", "r1")  # sides benchmarked when fusedgan has gradient_penalty / r1_penalty
PENALTY_BATCH = 64


# ---------------------------------------------------------------------------------------------
# Timing helpers (importable)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, *, warmup: int = 3, reps: int = 20,
            budget_s: float = 0.5, min_reps: int = 5) -> List[float]:
    """Seconds per call of ``fn`` for each timed repetition (take the median).

    ``warmup`` untimed calls first; then as many timed calls as fit ``budget_s`` (estimated from
    the warm-up), between ``min_reps`` and ``reps``.  CUDA: one pair of events per call.
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        fn()
    _sync(device)
    est = (time.perf_counter() - t0) / max(1, warmup)
    n = int(min(reps, max(min_reps, budget_s / max(est, 1e-9))))
    times = []
    if device.type == "cuda":
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in pairs:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) / 1e3 for s, e in pairs]
    else:
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return times


def first_call_s(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call, synchronised (used for the compile-time call)."""
    device = torch.device(device)
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_launches(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Kernel launches in one call of ``fn`` (CUDA), or leaf operator calls (CPU)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with _quiet_stderr():  # kineto logs profiler start/stop lines on fd 2
            with profile(activities=acts) as prof:
                fn()
                _sync(device)
    except Exception:  # noqa: BLE001 - the profiler is best effort
        return None
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for e in events if e.device_type == DeviceType.CUDA)

    def is_op(e) -> bool:
        return e.name.startswith(("aten::", "fusedgan::")) or "CompiledFxGraph" in e.name

    def inside_op(e) -> bool:
        p = e.cpu_parent
        while p is not None:
            if is_op(p):
                return True
            p = p.cpu_parent
        return False

    # Count outermost operator calls that are not mere allocations.
    skip = ("aten::empty", "aten::empty_strided", "aten::empty_like", "aten::detach", "aten::as_strided",
            "aten::view", "aten::reshape", "aten::expand", "aten::t", "aten::alias", "aten::resolve_")
    return sum(1 for e in events if is_op(e) and not inside_op(e) and not e.name.startswith(skip))


def peak_memory(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Peak bytes allocated by one call of ``fn`` above what was allocated before (CUDA only)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


# ---------------------------------------------------------------------------------------------
# Cases and providers


@dataclass(frozen=True)
class Case:
    kind: str  # a loss kind, or "penalty"
    side: str  # "D", "G", or a penalty name ("gp", "r1")
    dtype: str
    size: int
    mode: str  # "fwd" or "fwd+bwd"

    @property
    def group(self) -> str:
        return self.side if self.kind == "penalty" else f"{self.kind} {self.side}"


def make_inputs(case: Case, device: torch.device, seed: int = 0) -> List[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[case.dtype]
    grad = case.mode == "fwd+bwd"

    def t(shape):
        x = (2 * torch.randn(shape, generator=gen)).to(device=device, dtype=dtype)
        return x.requires_grad_(grad)

    if case.kind == "penalty":
        b = min(PENALTY_BATCH, case.size)
        return [t((b, max(1, case.size // b)))]
    if case.side == "D":
        return [t((case.size,)), t((case.size,))]
    return [t((case.size,))]


def _ref_penalty(side: str):
    if side == "gp":
        fn = getattr(reference, "gradient_penalty", None)
        return fn or (lambda g: ((g.flatten(1).norm(dim=1) - 1) ** 2).mean())
    fn = getattr(reference, "r1_penalty", None)
    return fn or (lambda g: 5.0 * g.flatten(1).pow(2).sum(1).mean())


def _fused_penalty(side: str, backend: str):
    fn = getattr(fusedgan, "gradient_penalty" if side == "gp" else "r1_penalty")
    if "backend" in inspect.signature(fn).parameters:
        return lambda g: fn(g, backend=backend)
    return fn


def loss_fn(provider: str, kind: str, side: str) -> Optional[Callable]:
    """The loss of one provider as a function of the case's input tensors, or None if it has none."""
    if kind == "penalty":
        if provider in ("reference", "compile"):
            return _ref_penalty(side)
        if provider in FUSED:
            return _fused_penalty(side, provider)
        return None
    if provider in ("reference", "compile"):
        if side == "D":
            return lambda r, f: reference.discriminator_loss(r, f, kind)
        return lambda f: reference.generator_loss(f, kind)
    if provider == "torch":
        if kind != "ns":
            return None
        bce = F.binary_cross_entropy_with_logits
        if side == "D":
            return lambda r, f: bce(r, torch.ones_like(r)) + bce(f, torch.zeros_like(f))
        return lambda f: bce(f, torch.ones_like(f))
    if provider in FUSED:
        if side == "D":
            return lambda r, f: fusedgan.discriminator_loss(r, f, kind, backend=provider)
        return lambda f: fusedgan.generator_loss(f, kind, backend=provider)
    raise ValueError(f"provider: unknown provider {provider!r}")


def make_case_fn(loss: Callable, inputs: Sequence[torch.Tensor], mode: str) -> Callable[[], object]:
    """A no-argument callable running one forward (and backward) of ``loss`` on ``inputs``."""
    if mode == "fwd":
        def step():
            return loss(*inputs)
    else:
        def step():
            return torch.autograd.grad(loss(*inputs), inputs)
    return step


def fused_providers(device: torch.device, include_interpreted: bool = False) -> List[str]:
    """Fused backends that can run on ``device`` (Triton's CPU interpreter only if asked for)."""
    out = []
    for name in FUSED:
        if name == "triton" and device.type == "cpu" and not include_interpreted:
            continue
        if backends.can_run(name, device.type):
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# The sweep


@dataclass
class Row:
    device: str
    kind: str
    side: str
    dtype: str
    size: int
    mode: str
    provider: str
    median_ms: float
    min_ms: float
    reps: int
    gbps: float
    launches: Optional[int] = None
    peak_mem_bytes: Optional[int] = None
    first_call_ms: Optional[float] = None  # compile provider: compile + first run
    speedup_vs_reference: Optional[float] = None
    speedup_vs_compile: Optional[float] = None
    error: Optional[str] = None
    extra: Dict = field(default_factory=dict)


def _bytes_moved(inputs: Sequence[torch.Tensor], mode: str) -> int:
    n = sum(x.numel() * x.element_size() for x in inputs)
    return 2 * n if mode == "fwd+bwd" else n


class Compiled:
    """torch.compile'd losses, one compiled function per (kind, side, dtype, mode[, size])."""

    def __init__(self, dynamic: bool):
        self.dynamic = dynamic
        self.cache: Dict[tuple, Callable] = {}

    def get(self, case: Case, base: Callable) -> Callable:
        key = (case.kind, case.side, case.dtype, case.mode) + (() if self.dynamic else (case.size,))
        if key not in self.cache:
            self.cache[key] = torch.compile(_own_code(base, len(self.cache)), dynamic=self.dynamic)
        return self.cache[key]


def _own_code(fn: Callable, tag: int) -> Callable:
    """``fn`` with a code object of its own: Dynamo keeps compiled graphs (and the guards checked
    on every call) per code object, so each benchmarked function gets only its own entries."""
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_bench{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def sweep(cases: Sequence[Case], providers: Sequence[str], device: torch.device, *, warmup: int,
          reps: int, budget_s: float, compile_dynamic: bool = True, profile: bool = True,
          progress: Optional[Callable[[str], None]] = None,
          compile_filter: Optional[Callable[[Case], bool]] = None) -> List[Row]:
    """Run every case with every provider that has it; one Row per (case, provider)."""
    device = torch.device(device)
    compiled = Compiled(compile_dynamic)
    rows: List[Row] = []
    for case in cases:
        inputs = make_inputs(case, device)
        case_rows = []
        for prov in providers:
            loss = loss_fn(prov, case.kind, case.side)
            if loss is None or (prov == "compile" and compile_filter and not compile_filter(case)):
                continue
            row = Row(str(device), case.kind, case.side, case.dtype, case.size, case.mode, prov,
                      math.nan, math.nan, 0, math.nan)
            try:
                first = None
                if prov == "compile":
                    loss = compiled.get(case, loss)
                    step = make_case_fn(loss, inputs, case.mode)
                    first = first_call_s(step, device)  # compiles (or recompiles) here
                else:
                    step = make_case_fn(loss, inputs, case.mode)
                times = time_fn(step, device, warmup=warmup, reps=reps, budget_s=budget_s)
                med = statistics.median(times)
                row.median_ms, row.min_ms, row.reps = med * 1e3, min(times) * 1e3, len(times)
                row.gbps = _bytes_moved(inputs, case.mode) / med / 1e9
                row.first_call_ms = None if first is None else first * 1e3
                if profile:
                    row.launches = count_launches(step, device)
                row.peak_mem_bytes = peak_memory(step, device)
            except Exception as exc:  # noqa: BLE001 - one failing provider must not end the sweep
                row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            case_rows.append(row)
        by = {r.provider: r for r in case_rows if r.error is None}
        for r in case_rows:
            if r.error is None and "reference" in by:
                r.speedup_vs_reference = by["reference"].median_ms / r.median_ms
            if r.error is None and "compile" in by:
                r.speedup_vs_compile = by["compile"].median_ms / r.median_ms
        rows.extend(case_rows)
        if progress is not None:
            progress(_row_line(case, case_rows))
    return rows


def _fmt_ms(ms: float) -> str:
    if ms != ms:
        return "-"
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def _size_str(n: int) -> str:
    e = int(round(math.log2(n))) if n > 0 else 0
    return f"2^{e}" if n == 2 ** e else str(n)


def _row_line(case: Case, rows: Sequence[Row]) -> str:
    parts = [f"{case.group:<9} {case.dtype:<4} {case.mode:<7} {_size_str(case.size):>6}"]
    for r in rows:
        parts.append(f"{r.provider}={'ERR' if r.error else _fmt_ms(r.median_ms)}")
    return "  ".join(parts)


def table(rows: Sequence[Row]) -> str:
    """One line per case: median ms of each provider, then speedups of each fused provider."""
    providers = list(dict.fromkeys(r.provider for r in rows))
    fused = [p for p in providers if p in FUSED]
    # Speedups: fused vs reference and vs compile; without a fused backend, compile vs reference.
    ratios = [(p, "reference") for p in fused] + [(p, "compile") for p in fused]
    if not fused and "compile" in providers:
        ratios = [("compile", "reference")]
    ratios = [(a, b) for a, b in ratios if b in providers]
    head = ["loss", "dtype", "mode", "size"] + [f"{p} ms" for p in providers] + [f"{a}/{b}" for a, b in ratios]
    lines, cases = [], {}
    for r in rows:
        cases.setdefault((r.kind, r.side, r.dtype, r.mode, r.size), {})[r.provider] = r
    for (kind, side, dtype, mode, size), by in cases.items():
        group = side if kind == "penalty" else f"{kind} {side}"
        cells = [group, dtype, mode, _size_str(size)]
        for p in providers:
            r = by.get(p)
            cells.append("" if r is None else "ERR" if r.error else _fmt_ms(r.median_ms))
        for a, b in ratios:
            ra, rb = by.get(a), by.get(b)
            ok = ra is not None and rb is not None and not ra.error and not rb.error
            cells.append(f"{rb.median_ms / ra.median_ms:.2f}x" if ok else "")
        lines.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines]
    return "\n".join(out)


def compile_times(rows: Sequence[Row]) -> List[dict]:
    """The compile provider's first-call times (compile + first run), apart from steady timings."""
    return [
        {"kind": r.kind, "side": r.side, "dtype": r.dtype, "size": r.size, "mode": r.mode,
         "first_call_ms": r.first_call_ms, "steady_median_ms": r.median_ms}
        for r in rows if r.provider == "compile" and r.first_call_ms is not None
    ]


def write_plot(path: str, rows: Sequence[Row], dtype: str, mode: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("fusedgan bench: matplotlib is not installed; no plot written (pip install matplotlib)",
              file=sys.stderr)
        return False
    sel = [r for r in rows if r.dtype == dtype and r.mode == mode and r.error is None]
    groups = list(dict.fromkeys((r.kind, r.side) for r in sel))
    if not groups:
        return False
    cols = min(4, len(groups))
    nrows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(4.2 * cols, 7.5), 3.4 * nrows + 0.6), squeeze=False)
    providers = list(dict.fromkeys(r.provider for r in rows))
    colors = {p: f"C{i}" for i, p in enumerate(providers)}
    for ax, (kind, side) in zip(axes.flat, groups):
        for p in providers:
            pts = sorted((r.size, r.median_ms) for r in sel if (r.kind, r.side, r.provider) == (kind, side, p))
            if pts:
                ax.plot([s for s, _ in pts], [m for _, m in pts], "o-", ms=3, color=colors[p], label=p)
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
    name = torch.cuda.get_device_name(torch.device(dev)) if dev.startswith("cuda") else _cpu_name()
    fig.suptitle(f"fusedgan bench: {dtype}, {mode}, {dev} ({name}, {torch.get_num_threads()} threads)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="smoke run: sizes 64, 2^12, 2^16, fp32, fwd+bwd, few reps, compile for ns only")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--kinds", default="all", help="comma-separated loss kinds (default all)")
    p.add_argument("--sides", default="D,G", help="D, G and penalties gp, r1 when fusedgan has them "
                                                   "(default D,G plus available penalties)")
    p.add_argument("--dtypes", default=None, help="comma-separated: fp32,bf16,fp16,fp64 "
                                                  "(default fp32,bf16 on CPU; fp32,bf16,fp16 on CUDA)")
    p.add_argument("--modes", default="fwd+bwd,fwd", help="fwd+bwd and/or fwd (default both)")
    p.add_argument("--sizes", default=None, help="comma-separated element counts, e.g. 64,4096,2**20")
    p.add_argument("--min-size", type=int, default=64)
    p.add_argument("--max-size", type=int, default=None, help="default 2^24 on CPU, 2^26 on CUDA")
    p.add_argument("--size-step", type=int, default=4, help="factor between sizes (default 4)")
    p.add_argument("--providers", default=None,
                   help="comma-separated subset of: cpu,cuda,triton,reference,torch,compile (default: all available)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile provider")
    p.add_argument("--compile-static", action="store_true",
                   help="compile once per size (static shapes) instead of once per loss/dtype/mode with dynamic shapes")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 3; quick 1)")
    p.add_argument("--reps", type=int, default=None, help="most timed calls (default 25; quick 10)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per measurement that set the repetitions (default 0.5; quick 0.02)")
    p.add_argument("--no-profile", action="store_true", help="skip the launch count (torch.profiler)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="fusedgan-bench", help="output folder (default ./fusedgan-bench)")
    p.add_argument("--quiet", action="store_true", help="no per-case progress lines")


def _csv(s: Optional[str]) -> List[str]:
    return [x.strip() for x in s.split(",") if x.strip()] if s else []


def _parse_size(s: str) -> int:
    s = s.strip()
    if "**" in s or "^" in s:
        base, exp = s.replace("^", "**").split("**")
        return int(base) ** int(exp)
    return int(s)


def _fail(msg: str):
    raise SystemExit(f"fusedgan bench: {msg}")


def plan(args, device: torch.device) -> tuple:
    """(cases, providers) from the command-line arguments; raises SystemExit on a bad choice."""
    kinds = list(fusedgan.KINDS) if args.kinds == "all" else _csv(args.kinds)
    for k in kinds:
        if k not in fusedgan.KINDS:
            _fail(f"--kinds: unknown loss kind {k!r}; expected some of {list(fusedgan.KINDS)}")
    have_pen = [s for s in PENALTIES if hasattr(fusedgan, "gradient_penalty" if s == "gp" else "r1_penalty")]
    sides = _csv(args.sides)
    for s in sides:
        if s not in ("D", "G") + PENALTIES:
            _fail(f"--sides: unknown side {s!r}; expected D, G, gp or r1")
        if s in PENALTIES and s not in have_pen:
            _fail(f"--sides {s}: this fusedgan has no {'gradient_penalty' if s == 'gp' else 'r1_penalty'}")
    if args.sides == "D,G":
        sides += have_pen
    if args.quick:
        dtypes = ["fp32"]
    elif args.dtypes:
        dtypes = _csv(args.dtypes)
    else:
        dtypes = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    for d in dtypes:
        if d not in DTYPES:
            _fail(f"--dtypes: unknown dtype {d!r}; expected some of {list(DTYPES)}")
    modes = ["fwd+bwd"] if args.quick and args.modes == "fwd+bwd,fwd" else _csv(args.modes)
    for m in modes:
        if m not in MODES:
            _fail(f"--modes: unknown mode {m!r}; expected fwd+bwd or fwd")
    if args.sizes:
        try:
            sizes = [_parse_size(s) for s in _csv(args.sizes)]
        except ValueError:
            _fail(f"--sizes: cannot parse {args.sizes!r}")
    elif args.quick:
        sizes = [64, 2 ** 12, 2 ** 16]
    else:
        top = args.max_size or (2 ** 26 if device.type == "cuda" else 2 ** 24)
        if args.size_step < 2 or args.min_size < 1:
            _fail("--size-step must be >= 2 and --min-size >= 1")
        sizes, n = [], args.min_size
        while n <= top:
            sizes.append(n)
            n *= args.size_step
    if not sizes or min(sizes) < 1:
        _fail("--sizes: need positive sizes")
    available = fused_providers(device, include_interpreted=bool(args.providers and "triton" in args.providers))
    default = available + ["reference", "torch"] + ([] if args.no_compile else ["compile"])
    if args.providers:
        providers = _csv(args.providers)
        for p in providers:
            if p not in FUSED + ("reference", "torch", "compile"):
                _fail(f"--providers: unknown provider {p!r}")
            if p in FUSED and p not in available:
                _fail(f"--providers {p}: backend cannot run on {device.type} here "
                      f"(available: {backends.available_backends(device.type)})")
    else:
        providers = default
    cases = []
    for d in dtypes:
        for m in modes:
            cases += [Case(k, s, d, n, m) for k in kinds for s in sides if s in ("D", "G") for n in sizes]
            cases += [Case("penalty", s, d, n, m) for s in sides if s in PENALTIES for n in sizes]
    return cases, providers


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict:
    from .info import info_dict  # the module (fusedgan.info itself is the function)

    return info_dict()


def run(args) -> dict:
    threads = torch.get_num_threads()
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests) keep their setting


def _run(args) -> dict:
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            _fail("--device cuda requested but torch sees no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    cases, providers = plan(args, device)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    reps = args.reps if args.reps is not None else (10 if args.quick else 25)
    budget = args.budget if args.budget is not None else (0.02 if args.quick else 0.5)
    os.makedirs(args.out, exist_ok=True)
    if "compile" in providers:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
        if hasattr(torch._dynamo.config, "recompile_limit"):
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    fused = [p for p in providers if p in FUSED]
    print(f"fusedgan bench: {len(cases)} cases on {device} ({torch.get_num_threads()} threads), "
          f"providers {providers}" + ("" if fused else "  [no fused backend available: reference only]"))
    # --quick keeps torch.compile to the ns losses and penalties (each compile costs seconds on CPU).
    compile_filter = (lambda c: c.kind in ("ns", "penalty")) if args.quick else None
    t0 = time.perf_counter()
    log = None if args.quiet else (lambda s: print("  " + s, flush=True))
    rows = sweep(cases, providers, device, warmup=warmup, reps=reps, budget_s=budget,
                 compile_dynamic=not args.compile_static, profile=not args.no_profile, progress=log,
                 compile_filter=compile_filter)
    elapsed = time.perf_counter() - t0
    text = table(rows)
    print(text)
    errors = [r for r in rows if r.error]
    for r in errors:
        print(f"error: {r.provider} on {r.kind} {r.side} {r.dtype} {r.mode} {r.size}: {r.error}", file=sys.stderr)
    meta = {
        "command": "bench",
        "argv": sys.argv[1:],
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "providers": providers,
        "fused_backends": fused,
        "versions": _versions(),
        "warmup": warmup, "max_reps": reps, "budget_s": budget,
        "compile_dynamic": not args.compile_static,
        "timer": "cuda events" if device.type == "cuda" else "time.perf_counter",
        "launches_note": "CUDA: kernels in one call; CPU: outermost operator calls (a compiled graph counts once)",
        "bandwidth_note": "bytes of the inputs read once (+ gradients written once for fwd+bwd) / median time",
        "elapsed_s": elapsed,
    }
    result = {"meta": meta, "rows": [asdict(r) for r in rows], "compile_times": compile_times(rows)}
    json_path = os.path.join(args.out, "bench.json")
    with open(json_path, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    csv_path = os.path.join(args.out, "bench.csv")
    with open(csv_path, "w", newline="") as fh:
        names = [f for f in Row.__dataclass_fields__ if f != "extra"]
        w = csv.DictWriter(fh, fieldnames=names, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    with open(os.path.join(args.out, "bench.txt"), "w") as fh:
        fh.write(text + "\n")
    plots = []
    for d in dict.fromkeys(r.dtype for r in rows):
        for m in dict.fromkeys(r.mode for r in rows):
            path = os.path.join(args.out, f"bench_{d}_{m.replace('+', '_')}.png")
            if write_plot(path, rows, d, m):
                plots.append(path)
    if plots:
        import shutil

        shutil.copyfile(plots[0], os.path.join(args.out, "bench.png"))
    result["plots"] = plots
    print(f"{len(rows)} measurements in {elapsed:.1f} s; wrote {json_path}, {csv_path}"
          + (f", {len(plots)} plot(s) (bench.png = {os.path.basename(plots[0])})" if plots else ""))
    return result
