import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from bnopt.io import write_parquet
from bnopt.train import EVAL_COLUMNS, STEP_COLUMNS, RunConfig, resolve_device, train_run, write_run

TINY = dict(dataset="synthetic", model="vgg", lr=0.05, seed=0, steps=30, batch_size=64,
            width=0.125, eval_every=10, log_every=7, device="cpu")


@pytest.mark.parametrize("variant", ["standard", "batchnorm", "noisy_batchnorm"])
def test_same_config_and_seed_give_identical_parquet(tmp_path, synthetic, variant):
    cfg = RunConfig(variant=variant, **TINY)
    tables = []
    for k in range(2):
        r = train_run(cfg, synthetic, progress=False)
        write_run(r, tmp_path / f"s{k}.parquet", tmp_path / f"e{k}.parquet", tmp_path / f"m{k}.json")
        tables.append((pq.read_table(tmp_path / f"s{k}.parquet").drop(["elapsed_s"]),
                       pq.read_table(tmp_path / f"e{k}.parquet")))
    assert tables[0][0].equals(tables[1][0]) and tables[0][1].equals(tables[1][1])
    other = train_run(RunConfig(variant=variant, **{**TINY, "seed": 1}), synthetic, progress=False)
    assert not np.array_equal(other.steps["loss"], tables[0][0].column("loss").to_numpy())


def test_tables_follow_the_documented_schema(synthetic):
    r = train_run(RunConfig(variant="batchnorm", **TINY), synthetic, progress=False)
    assert list(r.steps.columns) == STEP_COLUMNS and list(r.evals.columns) == EVAL_COLUMNS
    assert r.steps["step"].tolist() == list(range(30))
    assert r.evals["step"].tolist() == [0, 10, 20, 30]
    assert np.isfinite(r.steps[["loss", "grad_norm", "param_norm"]].to_numpy()).all()
    assert (r.steps["elapsed_s"].diff().dropna() >= 0).all()
    # the eval at step 0 is the untrained network: chance level on 10 balanced-ish classes
    assert r.evals["test_acc"].iloc[0] < 0.3
    assert r.meta["steps_completed"] == 30 and r.meta["diverged"] is False
    assert r.meta["final_test_acc"] == r.evals["test_acc"].iloc[-1]


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
    write_run(r, tmp_path / "steps.parquet", tmp_path / "eval.parquet", tmp_path / "run.json")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["variant"] == "standard" and meta["lr"] == 0.05
    embedded = json.loads(pq.read_schema(tmp_path / "steps.parquet").metadata[b"bnopt"])
    assert embedded["seed"] == 0
    assert (tmp_path / "run.json").stat().st_mtime_ns >= (tmp_path / "steps.parquet").stat().st_mtime_ns
