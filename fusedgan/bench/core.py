"""The loss sweep: every case, every provider, in interleaved rounds."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .baselines import FUSED, Case, Compiled, loss_fn, make_case_fn, make_inputs
from .timing import count_launches, first_call_s, interleaved, peak_memory, sync


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
    min_ms: float  # fastest round
    max_ms: float  # slowest round
    reps: int  # timed calls in all rounds
    gbps: float
    launches: Optional[int] = None
    peak_mem_bytes: Optional[int] = None
    first_call_ms: Optional[float] = None  # compile provider: compile + first run
    speedup_vs_torch: Optional[float] = None  # torch / this, medians of the same rounds
    speedup_vs_compile: Optional[float] = None
    speedup_vs_reference: Optional[float] = None
    over_floor: Optional[float] = None  # this / floor
    error: Optional[str] = None
    extra: Dict = field(default_factory=dict)


def error_text(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}"


def _bytes_moved(inputs: Sequence[torch.Tensor], mode: str) -> int:
    n = sum(x.numel() * x.element_size() for x in inputs)
    return 2 * n if mode == "fwd+bwd" else n


@dataclass
class Settings:
    rounds: int = 5
    reps: int = 25  # most timed calls per provider and case, over all rounds
    warmup: int = 3
    budget_s: float = 0.5  # per provider and case: sets the calls per round
    profile: bool = True
    compile_dynamic: bool = True
    keep_going: bool = False


def _prepare(case: Case, prov: str, inputs, device, compiled: Compiled, row: Row, s: Settings):
    """The provider's step, warmed up; the number of timed calls per round that fits the budget."""
    loss = loss_fn(prov, case.kind, case.side)
    if prov == "compile":
        loss = compiled.get(case, loss)
    step = make_case_fn(loss, inputs, case.mode)
    if prov == "compile":
        row.first_call_ms = first_call_s(step, device) * 1e3  # compiles (or recompiles) here
    t0 = time.perf_counter()
    for _ in range(max(1, s.warmup)):
        step()
    sync(device)
    est = (time.perf_counter() - t0) / max(1, s.warmup)
    per_round = max(1, min(s.reps // s.rounds, int(s.budget_s / s.rounds / max(est, 1e-9))))
    return step, per_round


def _ratios(rows: Sequence[Row]) -> None:
    by = {r.provider: r for r in rows if r.error is None}
    for r in rows:
        if r.error is not None:
            continue
        for base, attr in (("torch", "speedup_vs_torch"), ("compile", "speedup_vs_compile"),
                           ("reference", "speedup_vs_reference")):
            if base in by and base != r.provider:
                setattr(r, attr, by[base].median_ms / r.median_ms)
        if "floor" in by and r.provider != "floor":
            r.over_floor = r.median_ms / by["floor"].median_ms


def run_case(case: Case, providers: Sequence[str], device, s: Settings, compiled: Compiled) -> List[Row]:
    """One Row per provider that has this case; a provider that raises gets ``error`` set."""
    inputs = make_inputs(case, device)
    rows: Dict[str, Row] = {}
    steps: Dict[str, Callable] = {}
    calls: Dict[str, int] = {}
    for prov in providers:
        if loss_fn(prov, case.kind, case.side) is None:
            continue
        row = rows[prov] = Row(str(device), case.kind, case.side, case.dtype, case.size, case.mode, prov,
                               math.nan, math.nan, math.nan, 0, math.nan)
        try:
            steps[prov], calls[prov] = _prepare(case, prov, inputs, device, compiled, row, s)
        except Exception as exc:  # noqa: BLE001 - shown as ERR, and the exit status says so
            row.error = error_text(exc)

    def failed(name, exc):
        rows[name].error = error_text(exc)

    times = interleaved(steps, device, rounds=s.rounds, calls=calls, warmup=0, on_error=failed)
    for prov, ts in times.items():
        row = rows[prov]
        if row.error is not None or not ts:
            continue
        row.median_ms, row.min_ms, row.max_ms = (statistics.median(ts) * 1e3, min(ts) * 1e3, max(ts) * 1e3)
        row.reps = calls[prov] * len(ts)
        row.gbps = _bytes_moved(inputs, case.mode) / statistics.median(ts) / 1e9
        if s.profile:
            row.launches = count_launches(steps[prov], device)
        row.peak_mem_bytes = peak_memory(steps[prov], device)
    out = list(rows.values())
    _ratios(out)
    return out


def sweep(cases: Sequence[Case], providers: Sequence[str], device, settings: Optional[Settings] = None, *,
          progress: Optional[Callable[[str], None]] = None,
          compile_filter: Optional[Callable[[Case], bool]] = None) -> List[Row]:
    """Run every case with every provider that has it; one Row per (case, provider).

    Stops after the first case with an error unless ``settings.keep_going``."""
    s = settings or Settings()
    device = torch.device(device)
    compiled = Compiled(s.compile_dynamic)
    rows: List[Row] = []
    for case in cases:
        provs = [p for p in providers if p != "compile" or compile_filter is None or compile_filter(case)]
        case_rows = run_case(case, provs, device, s, compiled)
        rows.extend(case_rows)
        if progress is not None:
            progress(row_line(case, case_rows))
        if any(r.error for r in case_rows) and not s.keep_going:
            break
    return rows


def fmt_ms(ms: float) -> str:
    if ms != ms:
        return "-"
    return f"{ms:.4f}" if ms < 0.1 else f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def size_str(n: int) -> str:
    e = int(round(math.log2(n))) if n > 0 else 0
    return f"2^{e}" if n == 2 ** e else str(n)


def row_line(case: Case, rows: Sequence[Row]) -> str:
    parts = [f"{case.group:<9} {case.dtype:<4} {case.mode:<7} {size_str(case.size):>6}"]
    for r in rows:
        parts.append(f"{r.provider}={'ERR' if r.error else fmt_ms(r.median_ms)}")
    return "  ".join(parts)


def fused_of(rows: Sequence[Row]) -> List[str]:
    return [p for p in dict.fromkeys(r.provider for r in rows) if p in FUSED]
