"""Backend choice: which implementation runs a call.

Per call, from the tensors' device and what this process can run:
CUDA tensors -> ``triton``, else ``cuda``, else ``reference``; CPU tensors -> ``cpu`` (native C++),
else ``reference``.  Overrides, strongest first: the ``backend=`` keyword, ``use_backend``
(a context manager), ``set_backend`` and the ``FUSEDGAN_BACKEND`` environment variable.  An
explicit choice that cannot run raises; an automatic choice that has to fall back warns once and
is reported by ``fusedgan.info()``.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from typing import Iterator, Optional

import torch

from . import _ext, ops

NAMES = ("triton", "cuda", "cpu", "reference")

# use_backend is per thread (and per asyncio task): a contextvars value, which torch.compile traces
# and guards on without a graph break.  set_backend is the process default.
_ctx: contextvars.ContextVar = contextvars.ContextVar("fusedgan_use_backend", default=None)  # "auto": automatic
_global: Optional[str] = None
_env: Optional[str] = None  # FUSEDGAN_BACKEND, read once at import


def _ctx_value() -> Optional[str]:
    return _ctx.get()


# Dynamo traces ContextVar.get from torch 2.14 on; before (torch 2.11 on the GPU machines) it
# cannot, so there the value is read once when a function is traced: a compiled function keeps
# the use_backend choice it was compiled under.
if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) < (2, 14):
    _ctx_value = torch.compiler.assume_constant_result(_ctx_value)
_fallbacks_warned: set = set()
_last_used: Optional[str] = None


def _check_name(name: Optional[str], what: str = "backend") -> Optional[str]:
    if name is None or name == "auto":
        return None
    if name not in NAMES:
        raise ValueError(f"{what}: unknown backend {name!r}; expected one of {list(NAMES)} or 'auto'")
    return name


def triton_interpret() -> bool:
    """Whether TRITON_INTERPRET=1 was set when fusedgan was imported (Triton reads it at import)."""
    return _INTERPRET


_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def can_run(name: str, device_type: str) -> bool:
    """Whether backend ``name`` can run on tensors of ``device_type`` in this process."""
    if name == "reference":
        return True
    if name == "cpu":
        return device_type == "cpu" and _ext.HAS_CPU
    if name == "cuda":
        return device_type == "cuda" and _ext.HAS_CUDA
    if name == "triton":  # registered by fusedgan.ops (needs Triton and the C++ autograd ops)
        if device_type == "cuda":
            return ops.HAS_TRITON
        # Triton's interpreter runs kernels on CPU tensors: how the Triton path is tested in CI.
        return device_type == "cpu" and triton_interpret() and ops.HAS_TRITON
    return False


def available_backends(device: Optional[str] = None) -> list:
    """Backends that can run here, for ``device`` ("cpu", "cuda") or for any device."""
    types = [device] if device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [n for n in NAMES if any(can_run(n, t) for t in types)]


def _auto_order(device_type: str) -> tuple:
    if device_type == "cuda":
        return ("triton", "cuda", "reference")
    return ("cpu", "reference")


def auto_backend(device_type: str) -> str:
    order = _auto_order(device_type)
    for name in order:
        if can_run(name, device_type):
            if name != order[0] and (device_type, name) not in _fallbacks_warned:
                _fallbacks_warned.add((device_type, name))
                warnings.warn(
                    f"fusedgan: backend {order[0]!r} is not available for {device_type} tensors; "
                    f"falling back to {name!r} (see fusedgan.info())",
                    RuntimeWarning,
                    stacklevel=4,
                )
            return name
    return "reference"


def requested_backend() -> Optional[str]:
    """The backend forced by use_backend / set_backend / FUSEDGAN_BACKEND, or None (automatic).

    ``FUSEDGAN_BACKEND`` is read once, when fusedgan is imported.
    """
    name = _ctx_value()
    if name is not None:
        return None if name == "auto" else name
    if _global is not None:
        return _global
    return _env


_resolved: dict = {}  # (backend=, requested, device) -> backend: every choice, made once


def resolve(device: torch.device, backend: Optional[str] = None) -> str:
    """The backend that runs a call on ``device``; raises if an explicit choice cannot run."""
    global _last_used
    key = (backend, requested_backend(), device)  # the device itself: its .type costs more
    name = _resolved.get(key)
    if name is None:
        name = _resolved[key] = _resolve(device.type, _check_name(backend) or key[1])
    _last_used = name
    return name


def _resolve(dtype_: str, name: Optional[str]) -> str:
    if name is None:
        name = auto_backend(dtype_)
    elif not can_run(name, dtype_):
        raise RuntimeError(
            f"backend: {name!r} was requested but cannot run on {dtype_} tensors here "
            f"(available for {dtype_}: {available_backends(dtype_)}; see fusedgan.info())"
        )
    return name


def last_used() -> Optional[str]:
    """The backend chosen by the most recent fusedgan call in this process (for tests and info)."""
    return _last_used


def set_backend(name: Optional[str]) -> None:
    """The process default: force a backend for every later call in every thread outside a
    ``use_backend`` block (``None`` or ``"auto"``: automatic choice)."""
    global _global
    _global = _check_name(name)


def get_backend() -> Optional[str]:
    return requested_backend()


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Force a backend inside a ``with`` block (``None``/``"auto"``: automatic choice), in this
    thread (this context) only: other threads keep their own choice or the process default."""
    token = _ctx.set(_check_name(name) or "auto")
    try:
        yield
    finally:
        _ctx.reset(token)


_env = _check_name(os.environ.get("FUSEDGAN_BACKEND") or None, "FUSEDGAN_BACKEND")
