"""``python -m fusedgan bench`` and ``bench --e2e``: the baselines are the code users write (same
values as fusedgan's reference), every provider runs, a failing provider shows as ERR with exit
status 1, and the JSON carries the fields the docs name.  No timed assertions."""
from __future__ import annotations

import json

import pytest
import torch

import fusedgan
from fusedgan import bench, cli, reference
from fusedgan.bench import baselines, e2e, recipes
from helpers import fused_ops, loss_kernel


def _rand(*shape, dtype=torch.float64):
    return (3 * torch.randn(*shape, dtype=dtype)).requires_grad_(True)


@pytest.mark.parametrize("kind", list(fusedgan.KINDS))
def test_torch_baselines_are_the_reference_objective(kind):
    r, f = _rand(37), _rand(37)
    for side, args, ref in (("D", (r, f), lambda: reference.discriminator_loss(r, f, kind)),
                            ("G", (f,), lambda: reference.generator_loss(f, kind))):
        fn = baselines.TORCH_LOSSES[(kind, side)]
        scale = baselines.TORCH_SCALE.get((kind, side), 1.0)
        got, want = fn(*args), scale * ref()
        torch.testing.assert_close(got, want)
        gg = torch.autograd.grad(got, args)
        gw = torch.autograd.grad(want, args)
        for a, b in zip(gg, gw):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("side", ["gp", "r1"])
def test_torch_penalties_are_the_reference_penalties(side):
    g = _rand(5, 3, 4, 4)
    want = reference.gradient_penalty(g) if side == "gp" else reference.r1_penalty(g, baselines.R1_GAMMA)
    torch.testing.assert_close(baselines.TORCH_LOSSES[("penalty", side)](g), want)
    fused = baselines.loss_fn("cpu", "penalty", side) if fusedgan.backends.can_run("cpu", "cpu") else None
    if fused is not None:
        torch.testing.assert_close(fused(g.detach().float()), want.detach().float())


@pytest.mark.parametrize("kind", baselines.DROPINS)
def test_dropin_cases_time_torch_against_the_fused_dropin(kind):
    r, f = _rand(37), _rand(37)
    for side, args in (("D", (r, f)), ("G", (f,))):
        want = baselines.loss_fn("torch", kind, side)(*args)
        if kind == "bce":  # by hand: the D pair is BCE(r, 1) + BCE(f, 0), G is BCE(f, 1)
            sp = torch.nn.functional.softplus
            hand = sp(-r).mean() + sp(f).mean() if side == "D" else sp(-f).mean()
        else:
            hand = (r - 1).square().mean() + f.square().mean() if side == "D" else (f - 1).square().mean()
        torch.testing.assert_close(want, hand)
        assert baselines.loss_fn("reference", kind, side) is None
        for prov in baselines.fused_providers("cpu"):
            got, ran = fused_ops(lambda: baselines.loss_fn(prov, kind, side)(*args))
            assert loss_kernel(prov) in ran, ran
            torch.testing.assert_close(got, want)


def test_floor_and_provider_table():
    assert baselines.loss_fn("floor", "ns", "D") is baselines.floor_d
    assert baselines.loss_fn("compile", "hinge", "D") is baselines.torch_d_hinge  # the sweep compiles it
    with pytest.raises(ValueError, match="provider"):
        baselines.loss_fn("nope", "ns", "D")


def test_count_launches_counts_outermost_ops():
    x = torch.randn(100)
    assert bench.count_launches(lambda: (x * 2).sum(), "cpu") == 2
    assert bench.count_launches(lambda: None, "cpu") == 0


def test_interleaved_rounds_and_errors():
    seen = []

    def boom():
        raise RuntimeError("planted")

    out = bench.interleaved({"ok": lambda: None, "bad": boom}, "cpu", rounds=3, calls=2, warmup=1,
                            on_error=lambda name, exc: seen.append((name, str(exc))))
    assert len(out["ok"]) == 3 and out["bad"] == []
    assert seen == [("bad", "planted")]
    with pytest.raises(RuntimeError):
        bench.interleaved({"bad": boom}, "cpu", rounds=1)


def _bench(tmp_path, *argv):
    out = tmp_path / "out"
    code = cli.main(["bench", *argv, "--threads", "1", "--quiet", "--no-profile", "--out", str(out)])
    name = "e2e.json" if "--e2e" in argv else "bench.json"
    with open(out / name) as fh:
        return code, json.load(fh), out


def test_bench_rows_have_every_baseline(tmp_path):
    code, res, out = _bench(tmp_path, "--quick", "--kinds", "ns,ls", "--sizes", "64,1024", "--no-compile")
    assert code == 0 and res["errors"] == []
    assert res["meta"]["quick"] and "smoke" in res["meta"]["note"]
    provs = {r["provider"] for r in res["rows"]}
    assert {"torch", "floor", "reference"} <= provs
    for r in res["rows"]:
        assert r["error"] is None and r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        if r["provider"] in res["meta"]["fused_backends"]:
            assert r["speedup_vs_torch"] > 0 and r["over_floor"] > 0 and r["speedup_vs_reference"] > 0
    text = (out / "bench.txt").read_text()
    for fused in res["meta"]["fused_backends"]:
        assert f"torch/{fused}" in text and f"{fused}/floor" in text


def test_bench_dropin_rows(tmp_path):
    code, res, _ = _bench(tmp_path, "--quick", "--kinds", "bce,mse", "--sides", "D,G", "--sizes", "64",
                          "--no-compile")
    assert code == 0 and res["errors"] == []
    got = {(r["kind"], r["side"], r["provider"]) for r in res["rows"]}
    for kind in ("bce", "mse"):
        for side in ("D", "G"):
            assert {(kind, side, "torch"), (kind, side, "floor")} <= got
            assert (kind, side, "reference") not in got
            for fused in res["meta"]["fused_backends"]:
                assert (kind, side, fused) in got


def test_bench_compile_gp(tmp_path):
    # used to fail: gradient_penalty's keyword-only defaults were lost in the compiled copy
    code, res, _ = _bench(tmp_path, "--sides", "gp", "--sizes", "256", "--dtypes", "fp32", "--modes", "fwd+bwd",
                          "--providers", "torch,compile", "--rounds", "1", "--reps", "2")
    assert code == 0 and res["errors"] == []
    (ct,) = res["compile_times"]
    assert ct["first_call_ms"] > 0 and ct["steady_median_ms"] > 0


def _planted(*a, **k):
    raise RuntimeError("planted failure")


@pytest.mark.parametrize("keep_going", [False, True])
def test_bench_provider_error_exits_1(tmp_path, monkeypatch, capsys, keep_going):
    fused = bench.fused_providers("cpu")
    if not fused:
        pytest.skip("no fused backend: nothing calls fusedgan.discriminator_loss")
    monkeypatch.setattr(fusedgan, "discriminator_loss", _planted)
    argv = ["--kinds", "ns", "--sides", "D,G", "--sizes", "64,128", "--dtypes", "fp32", "--modes", "fwd+bwd",
            "--providers", ",".join(["torch", "reference"] + fused), "--rounds", "1", "--reps", "1"]
    argv += ["--keep-going"] if keep_going else []
    code, res, out = _bench(tmp_path, *argv)
    assert code == 1
    assert res["errors"] and all("planted failure" in r["error"] for r in res["errors"])
    assert "ERR" in (out / "bench.txt").read_text()
    assert "planted failure" in capsys.readouterr().err
    cases = {(r["side"], r["size"]) for r in res["rows"]}
    assert cases == ({("D", 64), ("D", 128), ("G", 64), ("G", 128)} if keep_going else {("D", 64)})


def test_e2e_quick(tmp_path):
    code, res, out = _bench(tmp_path, "--e2e", "--quick", "--providers", "torch,fusedgan")
    assert code == 0 and res["errors"] == []
    assert {r["config"] for r in res["rows"]} == {"dcgan", "pix2pix", "stylegan2-r1", "r3gan", "r3gan-approx"}
    for r in res["rows"]:
        for key in ("config", "provider", "step_ms", "loss_ms", "speedup", "loss_share"):
            assert r[key] is not None, key
        assert 0 < r["loss_ms"] < r["step_ms"]
    by = {(r["config"], r["provider"]): r for r in res["rows"]}
    for name in recipes.RECIPES:  # same seeded nets and data: the same objective at step 0
        for key in ("d_loss_step0", "g_loss_step0"):
            assert by[(name, "fusedgan")][key] == pytest.approx(by[(name, "torch")][key], rel=1e-5, abs=1e-6)
    assert "smoke" in res["meta"]["note"] and "fusedgan speedup" in (out / "e2e.txt").read_text()
    if (out / "e2e.png").exists():
        assert (out / "e2e.png").read_bytes()[:4] == b"\x89PNG"


def test_e2e_error_exits_1(tmp_path, monkeypatch):
    monkeypatch.setattr(fusedgan, "generator_loss", _planted)
    code, res, out = _bench(tmp_path, "--e2e", "--quick", "--recipes", "dcgan", "--providers", "torch,fusedgan")
    assert code == 1
    (err,) = res["errors"]
    assert err["provider"] == "fusedgan" and "planted failure" in err["error"] and err["step_ms"] is None
    assert "ERR" in (out / "e2e.txt").read_text()


def test_e2e_recipe_table_is_extensible(monkeypatch):
    base = recipes.RECIPES["dcgan"]
    monkeypatch.setitem(recipes.RECIPES, "dcgan-copy", recipes.Recipe(
        "dcgan-copy", "a copy", base.build, base.torch_losses, base.fused_losses, base.d_step, base.g_step))
    rows = e2e.measure(["dcgan-copy"], ["torch"], 0.125, "cpu", rounds=1, steps=1, warmup=1, log=lambda s: None)
    assert rows[0]["config"] == "dcgan-copy" and rows[0]["step_ms"] > 0 and rows[0]["speedup"] == 1.0


def test_e2e_bad_recipe_is_exit_2(tmp_path, capsys):
    assert cli.main(["bench", "--e2e", "--recipes", "nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def test_e2e_speedup_is_the_median_of_paired_rounds():
    # Rounds 2 and 3 ran under load: the paired ratios (2, 2, 0.5) have median 2, where the ratio
    # of the two medians (3 / 4) would say fusedgan is slower.
    rows = {("r", p): e2e._new_row("r", p, 1.0, 1) for p in ("torch", "fusedgan")}
    rows[("r", "torch")].update(_steps=[2.0, 8.0, 3.0], _loss=[1.0, 4.0, 1.0])
    rows[("r", "fusedgan")].update(_steps=[1.0, 4.0, 6.0], _loss=[0.5, 1.0, 0.25])
    by = {(r["config"], r["provider"]): r for r in e2e._finish(rows, {})}
    assert by[("r", "fusedgan")]["speedup"] == pytest.approx(2.0)
    assert by[("r", "fusedgan")]["loss_speedup"] == pytest.approx(4.0)  # median of 2, 4, 4
    assert by[("r", "torch")]["speedup"] == pytest.approx(1.0)
    assert by[("r", "fusedgan")]["step_ms"] == pytest.approx(4000.0)  # the median round, in ms
