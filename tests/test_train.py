import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from bnopt.plan.runs import RunConfig
from bnopt.plan.tables import TABLES
from bnopt.running.io import write_parquet
from bnopt.training.loop import resolve_device, train_run, write_run

TINY = dict(dataset="synthetic", model="vgg", lr=0.05, seed=0, steps=30, batch_size=64,
            width=0.125, eval_every=10, log_every=7, device="cpu", measure_every=5, hist_every=10,
            probe_multipliers=(0.5, 1.0, 4.0))


@pytest.mark.parametrize("variant", ["standard", "batchnorm", "noisy_batchnorm"])
def test_same_config_and_seed_give_identical_parquet(tmp_path, synthetic, variant):
    cfg = RunConfig(variant=variant, **TINY)
    tables = []
    for k in range(2):
        r = train_run(cfg, synthetic, progress=False)
        write_run(r, {n: tmp_path / f"{n}{k}.parquet" for n in TABLES}, tmp_path / f"m{k}.json")
        tables.append({n: pq.read_table(tmp_path / f"{n}{k}.parquet") for n in TABLES})
    tables[0]["steps"] = tables[0]["steps"].drop(["elapsed_s"])  # wall-clock time differs
    tables[1]["steps"] = tables[1]["steps"].drop(["elapsed_s"])
    for name in TABLES:
        assert tables[0][name].equals(tables[1][name]), name
    other = train_run(RunConfig(variant=variant, **{**TINY, "seed": 1}), synthetic, progress=False)
    assert not np.array_equal(other.steps["loss"], tables[0]["steps"].column("loss").to_numpy())


def test_tables_follow_the_documented_schema(synthetic, tmp_path):
    """What a user reads back from the Parquet files: the documented columns (docs/outputs.md)
    with integer steps and layers and float values, one row per step."""
    r = train_run(RunConfig(variant="batchnorm", **TINY), synthetic, progress=False)
    write_run(r, {n: tmp_path / f"{n}.parquet" for n in TABLES}, tmp_path / "run.json")
    for name, cols in TABLES.items():
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert list(back.columns) == cols, name
        for c in cols:
            want = "int64" if c in ("step", "layer", "point", "bin", "iterations") else "float"
            assert str(back[c].dtype).startswith(want), (name, c, back[c].dtype)
    assert json.loads((tmp_path / "run.json").read_text())["steps_completed"] == 30
    assert r.steps["step"].tolist() == list(range(30))
    assert r.evals["step"].tolist() == [0, 10, 20, 30]
    assert np.isfinite(r.steps[["loss", "grad_norm", "param_norm"]].to_numpy()).all()
    assert (r.steps["elapsed_s"].diff().dropna() >= 0).all()
    # the eval at step 0 is the untrained network: chance level on 10 balanced-ish classes
    assert r.evals["test_acc"].iloc[0] < 0.3
    assert r.meta["steps_completed"] == 30 and r.meta["diverged"] is False
    assert r.meta["final_test_acc"] == r.evals["test_acc"].iloc[-1]
    # where it trained, resolved ('device' may say auto), and the layout channels_last gave
    assert r.meta["device_type"] == "cpu" and r.meta["channels_last_used"] is False


def test_bn_network_learns_the_synthetic_task(synthetic):
    r = train_run(RunConfig(variant="batchnorm", **{**TINY, "steps": 60}), synthetic, progress=False)
    assert r.meta["final_test_acc"] > 0.8


def test_divergence_is_recorded_not_raised(synthetic):
    cfg = RunConfig(variant="standard", **{**TINY, "lr": 1e4, "steps": 40, "log_every": 5})
    r = train_run(cfg, synthetic, progress=False)
    assert r.meta["diverged"] is True and r.meta["steps_completed"] < 40
    assert len(r.steps) == r.meta["steps_completed"]
    assert np.isfinite(r.steps["loss"]).all()
    assert np.isnan(r.meta["final_test_acc"])
    assert (r.evals["step"] <= r.meta["steps_completed"]).all()


def test_progress_bar_reports_loss_and_rate(synthetic, capsys):
    train_run(RunConfig(variant="standard", **TINY), synthetic, progress=True)
    err = capsys.readouterr().err
    assert "30/30" in err and "loss=" in err and "steps_s=" in err


def test_cuda_requested_but_absent_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="device: auto"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "steps.parquet"
    df = pd.DataFrame({"a": [1, 2]})
    write_parquet(df, target)

    def broken(table, where, **kw):
        open(where, "wb").write(b"PAR1 half")  # a crash half-way through the write
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError):
        write_parquet(pd.DataFrame({"a": [9]}), target)
    assert pd.read_parquet(target).equals(df)  # the complete old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["steps.parquet"]  # no temp file left
    with pytest.raises(OSError):
        write_parquet(df, tmp_path / "new.parquet")
    assert not (tmp_path / "new.parquet").exists()


def test_run_metadata_is_embedded_and_written_last(tmp_path, synthetic):
    r = train_run(RunConfig(variant="standard", **TINY), synthetic, progress=False)
    write_run(r, {n: tmp_path / f"{n}.parquet" for n in TABLES}, tmp_path / "run.json")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["variant"] == "standard" and meta["lr"] == 0.05
    embedded = json.loads(pq.read_schema(tmp_path / "steps.parquet").metadata[b"bnopt"])
    assert embedded["seed"] == 0
    assert (tmp_path / "run.json").stat().st_mtime_ns >= (tmp_path / "steps.parquet").stat().st_mtime_ns


@pytest.mark.parametrize("variant,momentum", [("standard", 0.9), ("batchnorm", 0.0),
                                              ("batchnorm", 0.9), ("noisy_batchnorm", 0.9)])
def test_measuring_changes_nothing_the_training_sees(synthetic, variant, momentum):
    """With measurements on or off, every per-step and eval number is bitwise identical: probes
    leave parameters, BN running statistics, optimizer state and RNG streams as they were."""
    base = {**TINY, "momentum": momentum, "steps": 24}
    off = train_run(RunConfig(variant=variant, **{**base, "measure_every": 0}), synthetic, progress=False)
    on = train_run(RunConfig(variant=variant, **{**base, "measure_every": 3, "hist_every": 6,
                                                 "hessian_every": 4, "hessian_iters": 3}),
                   synthetic, progress=False)
    cols = [c for c in TABLES["steps"] if c != "elapsed_s"]
    pd.testing.assert_frame_equal(on.steps[cols], off.steps[cols], check_exact=True)
    pd.testing.assert_frame_equal(on.evals, off.evals, check_exact=True)
    assert len(on.tables["probes"]) == 8 * 3 and len(off.tables["probes"]) == 0
    assert list(on.tables["hessian"].step) == [0, 4, 8, 12, 16, 20]  # also unmeasured steps
    assert len(off.tables["hessian"]) == 0


def test_measurement_tables(synthetic):
    cfg = RunConfig(variant="batchnorm", **TINY)
    r = train_run(cfg, synthetic, progress=False)
    t = r.tables
    measured = list(range(0, 30, 5))
    L = r.meta["num_layers"]
    assert L == 14
    probes = t["probes"]
    assert sorted(probes.step.unique()) == measured and len(probes) == len(measured) * 3
    np.testing.assert_allclose(probes.step_size, probes.multiplier * cfg.lr)
    assert (probes.grad_change > 0).all() and np.isfinite(probes.beta).all()
    ics = t["ics"]
    assert len(ics) == len(measured) * L and (ics[ics.layer == 1].l2 == 0).all()
    assert (ics[ics.layer > 1].l2 > 0).all() and ics.cos.between(-1, 1 + 1e-6).all()
    acts = t["activations"]
    assert len(acts) == len(measured) * L
    assert (acts.q01 <= acts.q50).all() and (acts.q50 <= acts.q99).all()
    bn_layers = acts[(acts.layer <= 13) & (acts.step == 0)]
    np.testing.assert_allclose(bn_layers["mean"], 0, atol=1e-4)  # BN output at init: mean 0 ...
    np.testing.assert_allclose(bn_layers["std"], 1, atol=1e-2)   # ... std 1 (gamma 1, beta 0)
    assert acts.mean_shift.notna().all()  # every measured step has a next step here
    hist = t["histograms"]
    assert sorted(hist.step.unique()) == [0, 10, 20]
    per = hist.groupby(["step", "layer"])["count"].sum()
    assert (per[per.index.get_level_values("layer") == 14] == 64 * 10).all()  # N x classes
    assert len(t["hessian"]) == 0  # hessian_every = 0: off by default
    init = t["init_distance"]
    assert sorted(init.step.unique()) == [0, 10, 20, 30] and (init[init.step == 0].distance == 0).all()
    assert (init[init.step == 30].distance > 0).all()


def test_curvature_table(synthetic):
    """hessian.parquet: one row per curvature step; a Rayleigh quotient never exceeds the top
    eigenvalue, so lambda_max >= batch_sharpness on every row; iterations within the budget."""
    cfg = RunConfig(variant="batchnorm", **{**TINY, "steps": 12, "measure_every": 0,
                                            "hessian_every": 4, "hessian_iters": 6})
    h = train_run(cfg, synthetic, progress=False).tables["hessian"]
    assert list(h.columns) == TABLES["hessian"] and list(h.step) == [0, 4, 8]
    assert h.iterations.dtype == np.int64 and h.iterations.between(1, 6).all()
    assert (h.lambda_max >= h.batch_sharpness * (1 - 1e-6)).all() and (h.lambda_max > 0).all()
    assert (h.residual >= 0).all()
