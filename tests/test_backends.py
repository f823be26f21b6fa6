"""Backend selection, and proof that the fused kernels (not the reference) really run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import fusedgan as fg
from fusedgan import _ext, backends
from helpers import DEVICE, fused_backends, ran_ops

BACKENDS = fused_backends()


def test_native_extension_is_built():
    """CI builds the extension: a missing native backend is a failure here, not a skip."""
    if os.environ.get("FUSEDGAN_ALLOW_NO_EXTENSION") == "1":
        pytest.skip("FUSEDGAN_ALLOW_NO_EXTENSION=1: testing the pure-Python install")
    info = _ext.build_info()
    assert info["loaded"], f"fusedgan._C did not load: {info.get('error')}"
    assert "cpu" in fg.available_backends("cpu")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fusedgan::loss_terms", "CPU")


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_operator_really_runs(backend):
    r = torch.randn(64, device=DEVICE, requires_grad=True)
    f = torch.randn(64, device=DEVICE, requires_grad=True)
    op = "fusedgan::triton_loss_terms" if backend == "triton" else "fusedgan::loss_terms"

    def step():
        (fg.discriminator_loss(r, f, backend=backend) + fg.generator_loss(f, backend=backend)).backward()

    assert op in ran_ops(step)
    assert backends.last_used() == backend


def test_reference_runs_no_operator():
    r = torch.randn(8, requires_grad=True)
    assert ran_ops(lambda: fg.discriminator_loss(r, r, backend="reference").backward()) == set()
    assert backends.last_used() == "reference"


def test_automatic_choice_on_cpu():
    expected = "cpu" if _ext.HAS_CPU else "reference"
    fg.discriminator_loss(torch.randn(4), torch.randn(4))
    assert backends.last_used() == expected


def test_overrides_in_order():
    r = torch.randn(4)
    with fg.use_backend("reference"):
        fg.generator_loss(r)
        assert backends.last_used() == "reference"
        with fg.use_backend("auto"):
            fg.generator_loss(r)
            assert backends.last_used() == backends.auto_backend("cpu")
        fg.generator_loss(r)
        assert backends.last_used() == "reference"
    try:
        fg.set_backend("reference")
        assert fg.get_backend() == "reference"
        fg.generator_loss(r)
        assert backends.last_used() == "reference"
        if BACKENDS:  # the keyword beats everything
            fg.generator_loss(r, backend=BACKENDS[0])
            assert backends.last_used() == BACKENDS[0]
    finally:
        fg.set_backend(None)
    assert fg.get_backend() is None


def test_env_variable_and_explicit_failure():
    code = (
        "import torch, fusedgan as fg\n"
        "fg.generator_loss(torch.randn(3))\n"
        "print(fg.backends.last_used())\n"
    )
    env = dict(os.environ, FUSEDGAN_BACKEND="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "reference"
    env["FUSEDGAN_BACKEND"] = "warp-drive"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "FUSEDGAN_BACKEND" in bad.stderr


def test_available_backends_and_info(capsys):
    names = fg.available_backends()
    assert "reference" in names and set(names) <= set(backends.NAMES)
    d = fg.info()
    printed = capsys.readouterr().out
    assert "fusedgan" in printed and "chosen" in printed
    assert d["backend"]["cpu"].split()[0] in names
    assert "extension" in d and "cuda" in d["extension"]


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(_ext, "HAS_CPU", False)
    monkeypatch.setattr(backends, "_fallbacks_warned", set())
    monkeypatch.setattr(backends, "_resolved", {})  # the choices made so far assumed the extension
    with pytest.warns(RuntimeWarning, match="falling back"):
        fg.generator_loss(torch.randn(3))
    assert backends.last_used() == "reference"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fg.generator_loss(torch.randn(3))  # second time: silent
    assert "cpu->reference" in fg.info()["fallbacks_warned"]
