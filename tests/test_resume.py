"""Checkpoint and resume: a run killed mid-way and rerun equals an uninterrupted run."""
import dataclasses
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bnopt.plan.runs import RunConfig
from bnopt.training.loop import train_run

CFG = dict(dataset="synthetic", model="vgg", variant="noisy_batchnorm", lr=0.05, seed=0,
           steps=240, batch_size=64, width=0.125, momentum=0.9, eval_every=40, log_every=5,
           device="cpu", measure_every=5, hist_every=10, probe_multipliers=(0.5, 2.0),
           checkpoint_every=10)
CHILD = """
import torch
torch.set_num_threads(1)
from bnopt.training.data import load_dataset
from bnopt.plan.runs import RunConfig
from bnopt.training.loop import train_run
train_run(RunConfig(**{cfg!r}), load_dataset("synthetic"), progress=False,
          checkpoint_path={ck!r})
print("FINISHED")
"""


def assert_same_tables(a, b):
    for name in a.tables:
        x, y = a.tables[name], b.tables[name]
        if name == "steps":
            x, y = x.drop(columns="elapsed_s"), y.drop(columns="elapsed_s")
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, synthetic):
    ck = tmp_path / "checkpoint.pt"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(cfg=CFG, ck=str(ck))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not ck.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # let it run on past the checkpoint, then kill it hard
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate()
    assert child.returncode == -signal.SIGKILL and "FINISHED" not in out, err
    assert ck.exists()

    resumed = train_run(RunConfig(**CFG), synthetic, progress=True, checkpoint_path=ck)
    uninterrupted = train_run(RunConfig(**CFG), synthetic, progress=False)
    assert_same_tables(resumed, uninterrupted)
    assert resumed.meta["steps_completed"] == 240


def test_checkpoint_of_another_config_is_ignored(tmp_path, synthetic, capsys):
    ck = tmp_path / "checkpoint.pt"
    short = {**CFG, "steps": 30}
    train_run(RunConfig(**{**short, "lr": 0.01}), synthetic, progress=False, checkpoint_path=ck)
    assert ck.exists()
    r = train_run(RunConfig(**short), synthetic, progress=False, checkpoint_path=ck)
    assert "ignoring" in capsys.readouterr().err
    assert_same_tables(r, train_run(RunConfig(**short), synthetic, progress=False))


def test_checkpoint_of_another_version_starts_over(tmp_path, synthetic, capsys):
    """A checkpoint whose record holds other kinds of rows (an older bnopt named them
    differently) is ignored, not resumed into a crash."""
    import torch

    ck = tmp_path / "checkpoint.pt"
    short = {**CFG, "steps": 30}
    train_run(RunConfig(**short), synthetic, progress=False, checkpoint_path=ck)
    state = torch.load(ck, weights_only=False)
    rows = state["record"]["rows"]
    rows["init"] = rows.pop("init_distance")
    torch.save(state, ck)
    r = train_run(RunConfig(**short), synthetic, progress=False, checkpoint_path=ck)
    assert "another version of bnopt" in capsys.readouterr().err
    assert_same_tables(r, train_run(RunConfig(**short), synthetic, progress=False))


def test_unreadable_checkpoint_starts_over(tmp_path, synthetic, capsys):
    ck = tmp_path / "checkpoint.pt"
    ck.write_bytes(b"not a checkpoint")
    short = {**CFG, "steps": 20}
    r = train_run(RunConfig(**short), synthetic, progress=False, checkpoint_path=ck)
    assert "ignoring unreadable" in capsys.readouterr().err
    assert_same_tables(r, train_run(RunConfig(**short), synthetic, progress=False))


def test_checkpoint_every_must_align_with_host_syncs(synthetic):
    with pytest.raises(ValueError, match="multiple of log_every"):
        train_run(RunConfig(**{**CFG, "checkpoint_every": 7}), synthetic, progress=False,
                  checkpoint_path="unused.pt")


def test_fingerprint_ignores_only_the_checkpoint_policy():
    a = RunConfig(**CFG)
    assert a.fingerprint() == dataclasses.replace(a, checkpoint_every=50, keep_checkpoints=True,
                                                  log_every=10).fingerprint()
    assert a.fingerprint() != dataclasses.replace(a, seed=1).fingerprint()
