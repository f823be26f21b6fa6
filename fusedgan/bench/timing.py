"""Timing helpers: repeated calls, interleaved rounds, launch counts, peak memory.

On a shared machine timings drift by 2x within minutes, so the benchmarks time their providers in
*interleaved rounds*: each round times every provider once, and the medians (and the ratios) are
taken over rounds, never over one provider's block of calls run at a different moment.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Union

import torch


def sync(device) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device, *, warmup: int = 3, reps: int = 20,
            budget_s: float = 0.5, min_reps: int = 5) -> List[float]:
    """Seconds per call of ``fn`` for each timed repetition (take the median).

    ``warmup`` untimed calls first; then as many timed calls as fit ``budget_s`` (estimated from
    the warm-up), between ``min_reps`` and ``reps``.  CUDA: one pair of events per call.
    """
    device = torch.device(device)
    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        fn()
    sync(device)
    est = (time.perf_counter() - t0) / max(1, warmup)
    n = int(min(reps, max(min_reps, budget_s / max(est, 1e-9))))
    return _timed_calls(fn, device, n)


def _timed_calls(fn: Callable[[], object], device: torch.device, n: int) -> List[float]:
    if device.type == "cuda":
        pairs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in pairs:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return [s.elapsed_time(e) / 1e3 for s, e in pairs]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def interleaved(fns: Mapping[str, Callable[[], object]], device, *, rounds: int = 5,
                calls: Union[int, Mapping[str, int]] = 5,
                warmup: int = 2, on_error: Optional[Callable[[str, Exception], None]] = None
                ) -> Dict[str, List[float]]:
    """Per-call seconds of each function, one median per round; every round runs every function.

    Each function gets ``warmup`` untimed calls, then ``rounds`` rounds of ``calls`` timed calls
    each (the round's median is kept; ``calls`` may be a number per function).  A function that raises is reported to ``on_error`` (or
    re-raised when there is none) and left out of the later rounds.
    """
    device = torch.device(device)
    live = dict(fns)
    out: Dict[str, List[float]] = {name: [] for name in fns}

    def guarded(name, action):
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - reported, then the provider is dropped
            live.pop(name, None)
            if on_error is None:
                raise
            on_error(name, exc)

    def warm(fn):
        for _ in range(max(0, warmup)):
            fn()
        sync(device)

    for name, fn in list(live.items()):
        guarded(name, lambda: warm(fn))
    for _ in range(rounds):
        for name, fn in list(live.items()):
            n = calls if isinstance(calls, int) else calls[name]
            guarded(name, lambda: out[name].append(statistics.median(_timed_calls(fn, device, n))))
    return out


def first_call_s(fn: Callable[[], object], device) -> float:
    """Wall time of one call, synchronised (used for the compile-time call)."""
    device = torch.device(device)
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
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


_SKIP = ("aten::empty", "aten::empty_strided", "aten::empty_like", "aten::detach", "aten::as_strided",
         "aten::view", "aten::reshape", "aten::expand", "aten::t", "aten::alias", "aten::resolve_")


def _is_op(e) -> bool:
    return e.name.startswith(("aten::", "fusedgan::")) or "CompiledFxGraph" in e.name


def _inside_op(e) -> bool:
    p = e.cpu_parent
    while p is not None:
        if _is_op(p):
            return True
        p = p.cpu_parent
    return False


def count_launches(fn: Callable[[], object], device) -> Optional[int]:
    """Launches in one call of ``fn``: CUDA kernels (memcpy/memset excluded) on CUDA; on CPU the
    outermost operator calls that are not views or allocations (a compiled graph counts once).
    None when the profiler fails.  The one launch counter of every fusedgan benchmark."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    try:
        with _quiet_stderr():  # kineto logs profiler start/stop lines on fd 2
            with profile(activities=acts) as prof:
                fn()
                sync(device)
    except Exception:  # noqa: BLE001 - the profiler is best effort
        return None
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for e in events if e.device_type == DeviceType.CUDA and e.name
                   and "Memcpy" not in e.name and "Memset" not in e.name)
    return sum(1 for e in events if _is_op(e) and not _inside_op(e) and not e.name.startswith(_SKIP))


def peak_memory(fn: Callable[[], object], device) -> Optional[int]:
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
