"""Differences between the torch releases fusedgan's Triton backend runs on.

``wrap_triton``: torch 2.11 (the GPU machines' release) accepts only ``JITFunction`` and
``Autotuner`` kernels, and under ``TRITON_INTERPRET=1`` ``triton.jit`` makes an
``InterpretedFunction``; newer torch accepts it.  Under the interpreter on such a torch the kernel
is launched directly (the interpreter runs eagerly on CPU tensors; nothing traces it).
"""
from __future__ import annotations

import os

from torch.library import wrap_triton as _wrap_triton


def wrap_triton(kernel):
    try:
        return _wrap_triton(kernel)
    except RuntimeError:
        if os.environ.get("TRITON_INTERPRET") == "1":
            return kernel
        raise
