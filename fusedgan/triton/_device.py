"""The device guard of the Triton launchers.

A Triton launch runs on the *current* CUDA device, whatever device its tensors are on; a caller
with tensors on ``cuda:1`` and the current device ``cuda:0`` would launch on the wrong GPU (an
illegal address, or silent garbage).  Every launcher enters ``on_device(tensor)`` around its
launches: ``torch.cuda.device(tensor.device)`` when that is not already the current device, and a
no-op otherwise (CPU tensors under the interpreter; the common one-GPU case costs one comparison).
"""
import contextlib

import torch

_NULL = contextlib.nullcontext()


def on_device(t: torch.Tensor):
    """A context manager making ``t``'s CUDA device current for the launches inside it."""
    d = t.device
    if d.type != "cuda" or d.index is None or d.index == torch.cuda.current_device():
        return _NULL
    return torch.cuda.device(d)
