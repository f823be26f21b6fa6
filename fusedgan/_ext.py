"""Loading the native extension ``fusedgan._C`` (optional: the package works without it)."""
from __future__ import annotations

import warnings

try:  # importing _C registers the fusedgan::* operators with the dispatcher
    from . import _C  # type: ignore[attr-defined]

    LOAD_ERROR: str | None = None
except Exception as exc:  # noqa: BLE001 - any failure means "no native backend"
    _C = None
    LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def build_info() -> dict:
    """What the extension was built with, or ``{"loaded": False, ...}``."""
    if _C is None:
        return {"loaded": False, "error": LOAD_ERROR, "cpu": False, "cuda": False, "cuda_archs": ""}
    info = dict(_C.build_info())
    info["loaded"] = True
    return info


def has_kernel(dispatch_key: str) -> bool:  # noqa: D401
    """True if ``fusedgan::loss_terms`` has a kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    if _C is None:
        return False
    import torch

    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("fusedgan::loss_terms", dispatch_key)
    except RuntimeError:
        warnings.warn("fusedgan._C loaded but fusedgan::loss_terms is not registered")
        return False


# Fixed once the extension is loaded; read on the hot path (a plain bool keeps torch.compile happy).
HAS_CPU = has_kernel("CPU")
HAS_CUDA = has_kernel("CUDA")
