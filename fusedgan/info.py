"""``fusedgan.info()``: versions, the extension's build and the backend each device gets."""
from __future__ import annotations

import importlib.metadata
import platform
import sys

import torch

from . import _ext, backends, compat, ops


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _choice(device_type: str) -> str:
    requested = backends.requested_backend()
    if requested is not None:
        ok = backends.can_run(requested, device_type)
        return f"{requested} (requested{'' if ok else ', CANNOT RUN: calls will raise'})"
    order = backends._auto_order(device_type)
    for name in order:
        if backends.can_run(name, device_type):
            return name if name == order[0] else f"{name} (fallback: {order[0]} unavailable)"
    return "reference"


def info_dict() -> dict:
    from . import __version__

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return {
        "fusedgan": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "triton_interpret": backends.triton_interpret(),
        "triton_ops": "registered" if ops.HAS_TRITON else f"not registered ({ops.TRITON_ERROR or 'no extension'})",
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "extension": _ext.build_info(),
        "available_backends": {d: backends.available_backends(d) for d in devices},
        "backend": {d: _choice(d) for d in devices},
        "torch_patched": compat.is_patched(),
        "fallbacks_warned": sorted(f"{d}->{n}" for d, n in backends._fallbacks_warned),
    }


def info(file=None) -> dict:
    """Print (and return) what fusedgan runs with here."""
    d = info_dict()
    ext = d["extension"]
    lines = [
        f"fusedgan {d['fusedgan']}  python {d['python']}  torch {d['torch']}  triton {d['triton']}",
        f"platform: {d['platform']}",
        f"CUDA device: {d['cuda_device'] or 'none'}   TRITON_INTERPRET: {d['triton_interpret']}",
        f"Triton operators: {d['triton_ops']}",
    ]
    if ext.get("loaded"):
        lines.append(
            "extension fusedgan._C: CPU kernels {cpu} ({cap}), CUDA kernels {cuda}{archs}".format(
                cpu="yes" if ext.get("cpu") else "no",
                cap=ext.get("cpu_capability", "?"),
                cuda="yes" if ext.get("cuda") else "no",
                archs=f" (archs {ext['cuda_archs']})" if ext.get("cuda_archs") else "",
            )
        )
    else:
        lines.append(f"extension fusedgan._C: not loaded ({ext.get('error')})")
    for dev, names in d["available_backends"].items():
        lines.append(f"{dev}: available {names}; chosen: {d['backend'][dev]}")
    lines.append(f"torch patched (fusedgan.patch_torch): {'yes' if d['torch_patched'] else 'no'}")
    if d["fallbacks_warned"]:
        lines.append(f"fallbacks taken: {', '.join(d['fallbacks_warned'])}")
    print("\n".join(lines), file=file)
    return d
