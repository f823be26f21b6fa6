"""The GPU check's probe (benchmarks/gpu_check.py runs it): behaviour the test suite's sizes cannot
show, for each fused backend on the device.

* ``fp64_scalars``: float64 losses with labels and a ``1/N`` that float32 cannot hold (0.9, 1/3,
  N = 3 and 1000003) match the float64 reference to 1e-12: a scalar passed to a kernel as float32
  would be off by about 1e-8.
* ``bf16_2p31``: a bf16 G loss over 2^31 + 2^20 elements (above the int32 index range), forward and
  backward: the loss against a float64 sum in chunks, the gradient checked at both ends.
* ``determinism``: the same call twice gives the same bits (loss and gradients; ns D at 2^24 fp32
  and bf16, gradient_penalty at [64, 3, 256, 256]).
* ``fused_vs_reference``: ns and hinge D loss and gradients at 2^26 elements per tensor (fp32 and
  bf16) against the float64 reference.

Prints one line per check and a last line ``PROBE_RESULT {json}``; exits 1 if a check failed.
``--dry-run``: the CPU (and Triton's interpreter when ``TRITON_INTERPRET=1``), tiny sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fusedgan as fg  # noqa: E402
from fusedgan import reference  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    den = b.abs().max().item() if b.numel() else 0.0
    return (a - b).abs().max().item() / den if den else (a - b).abs().max().item()


def fp64_scalars(backend: str, device: str, dry: bool) -> dict:
    worst = 0.0
    for n in (3, 1000003 if not dry else 1003):
        r = torch.randn(n, dtype=torch.float64, device=device, requires_grad=True)
        f = torch.randn(n, dtype=torch.float64, device=device, requires_grad=True)
        for kind, kw in (("ls", dict(real_label=0.9, fake_label=1 / 3)), ("ns", dict(real_label=0.9))):
            out = fg.discriminator_loss(r, f, kind, backend=backend, **kw)
            gr, gf = torch.autograd.grad(out, (r, f))
            ref = reference.discriminator_loss(r, f, kind, **kw)
            rr, rf = torch.autograd.grad(ref, (r, f))
            worst = max(worst, rel(out, ref), rel(gr, rr), rel(gf, rf))
    return {"ok": worst <= 1e-12, "max_rel_err": worst, "tol": 1e-12}


def bf16_2p31(backend: str, device: str, dry: bool) -> dict:
    n = (1 << 12) + 3 if dry else (1 << 31) + (1 << 20)
    x = torch.empty(n, dtype=torch.bfloat16, device=device)
    chunk = 1 << 26
    gen = torch.Generator(device=device).manual_seed(1)
    for s in range(0, n, chunk):
        x[s:s + chunk] = torch.randn(min(chunk, n - s), generator=gen, device=device) * 3
    x.requires_grad_(True)
    out = fg.generator_loss(x, "ns", backend=backend)
    out.backward()
    ref = 0.0
    for s in range(0, n, chunk):
        ref += torch.nn.functional.softplus(-x.detach()[s:s + chunk].double()).sum().item()
    ref /= n
    loss_err = abs(out.item() - ref) / abs(ref)
    grad_err = 0.0
    for sl in (slice(0, 4096), slice(n - 4096, n)):  # both ends: the far end is past 2^31
        want = -torch.sigmoid(-x.detach()[sl].double()) / n
        grad_err = max(grad_err, rel(x.grad[sl], want))
    finite = bool(torch.isfinite(x.grad[-(1 << 20):]).all())
    ok = loss_err <= 1e-4 and grad_err <= 2 ** -7 and finite
    del x, out
    return {"ok": ok, "n": n, "loss_rel_err": loss_err, "grad_rel_err": grad_err, "finite_tail": finite}


def determinism(backend: str, device: str, dry: bool) -> dict:
    details = {}
    n = 1 << (12 if dry else 24)
    for dtype in (torch.float32, torch.bfloat16):
        gen = torch.Generator(device=device).manual_seed(2)
        r = (torch.randn(n, generator=gen, device=device) * 3).to(dtype).requires_grad_(True)
        f = (torch.randn(n, generator=gen, device=device) * 3).to(dtype).requires_grad_(True)
        runs = []
        for _ in range(2):
            r.grad = f.grad = None
            out = fg.discriminator_loss(r, f, "ns", backend=backend)
            out.backward()
            runs.append((out.detach().clone(), r.grad.clone(), f.grad.clone()))
        details[f"ns_D_{dtype}"] = all(torch.equal(a, b) for a, b in zip(*runs))
    shape = (4, 3, 8, 8) if dry else (64, 3, 256, 256)
    g = torch.randn(shape, device=device).requires_grad_(True)
    runs = []
    for _ in range(2):
        g.grad = None
        out = fg.gradient_penalty(g, backend=backend)
        out.backward()
        runs.append((out.detach().clone(), g.grad.clone()))
    details["gp"] = all(torch.equal(a, b) for a, b in zip(*runs))
    return {"ok": all(details.values()), **details}


def fused_vs_reference(backend: str, device: str, dry: bool) -> dict:
    n = 1 << (12 if dry else 26)
    worst = {}
    for dtype, tol_loss, tol_grad in ((torch.float32, 1e-5, 1e-5), (torch.bfloat16, 1e-5, 2 ** -7)):
        gen = torch.Generator(device=device).manual_seed(3)
        r = (torch.randn(n, generator=gen, device=device) * 3).to(dtype).requires_grad_(True)
        f = (torch.randn(n, generator=gen, device=device) * 3).to(dtype).requires_grad_(True)
        for kind in ("ns", "hinge"):
            out = fg.discriminator_loss(r, f, kind, backend=backend)
            gr, gf = torch.autograd.grad(out, (r, f))
            r64 = r.detach().double().requires_grad_(True)
            f64 = f.detach().double().requires_grad_(True)
            ref = reference.discriminator_loss(r64, f64, kind)
            rr, rf = torch.autograd.grad(ref, (r64, f64))
            e_loss, e_grad = rel(out, ref), max(rel(gr, rr), rel(gf, rf))
            worst[f"{kind}_{dtype}"] = {"loss": e_loss, "grad": e_grad,
                                        "ok": e_loss <= tol_loss and e_grad <= tol_grad}
            del gr, gf, r64, f64, rr, rf
    return {"ok": all(v["ok"] for v in worst.values()), "n": n, **worst}


CHECKS = {"fp64_scalars": fp64_scalars, "bf16_2p31": bf16_2p31, "determinism": determinism,
          "fused_vs_reference": fused_vs_reference}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--checks", default=",".join(CHECKS))
    a = ap.parse_args(argv)
    device = a.device or ("cpu" if a.dry_run else "cuda")
    backends = [b for b in fg.available_backends(device) if b != "reference"]
    result = {"device": device, "backends": backends, "checks": {}}
    for backend in backends:
        for name in a.checks.split(","):
            t0 = time.time()
            try:
                res = CHECKS[name](backend, device, a.dry_run)
            except Exception as exc:  # noqa: BLE001 - recorded, the probe goes on
                res = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            res["wall_s"] = round(time.time() - t0, 2)
            result["checks"][f"{backend}/{name}"] = res
            print(f"{backend:7s} {name:20s} {'ok' if res['ok'] else 'FAILED'} {json.dumps(res)}", flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
    result["ok"] = bool(backends) and all(v["ok"] for v in result["checks"].values())
    print("PROBE_RESULT " + json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
