"""``python -m fusedgan bench``: every loss against the code users write, and whole GAN steps.

A *case* is one loss side (``D`` or ``G`` of a kind, or a penalty ``gp`` / ``r1``) at one size
(elements per logits tensor; D gets a real and a fake tensor of that size), dtype and mode
(``fwd``: loss only, inputs without grad; ``fwd+bwd``: loss and ``torch.autograd.grad`` of it).
A *provider* runs the case (``baselines``): fusedgan's fused backends (``cpu``, ``cuda``,
``triton``); ``torch``, the loss as GAN code writes it with torch's own functions (the headline
baseline); ``compile``, ``torch.compile`` of that same code; ``floor``, the autograd floor
(``r.sum() + f.sum()``); ``reference``, fusedgan's eager reference (a column, never a headline).

Providers are timed in interleaved rounds (``timing.interleaved``): every round times every
provider of a case, medians are over rounds.  A provider that raises shows as ``ERR`` in the table
and the JSON, and the command exits with status 1 (``--keep-going`` runs the remaining cases).
``--e2e`` times whole training steps of GAN recipes instead (``e2e``).

Modules: ``timing`` (time_fn, interleaved, count_launches, peak_memory), ``baselines`` (cases and
what each provider runs), ``core`` (the sweep), ``report`` (table, plots, files), ``command``
(arguments and run), ``e2e`` (recipes).
"""
from __future__ import annotations

from .baselines import (BASELINES, DTYPES, FUSED, MODES, PENALTIES, TORCH_LOSSES, Case, Compiled,
                        fused_providers, loss_fn, make_case_fn, make_inputs)
from .command import add_arguments, main, plan, run
from .core import Row, Settings, run_case, sweep
from .report import compile_times, table, write_plot
from .timing import count_launches, first_call_s, interleaved, peak_memory, time_fn

__all__ = [
    "BASELINES", "Case", "Compiled", "DTYPES", "FUSED", "MODES", "PENALTIES", "Row", "Settings",
    "TORCH_LOSSES", "add_arguments", "compile_times", "count_launches", "first_call_s",
    "fused_providers", "interleaved", "loss_fn", "main", "make_case_fn", "make_inputs", "peak_memory",
    "plan", "run", "run_case", "sweep", "table", "time_fn", "write_plot",
]
