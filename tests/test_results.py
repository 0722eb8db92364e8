"""The runs' tables for one's own analysis (bnopt.analysis.results, docs/outputs.md "Loading the
runs"): filters read only what they select, refusals name the choices, and every example of the
docs page runs as written on real (tiny) runs, with bnopt, with pandas alone and with DuckDB."""
import os
import re

import pandas as pd
import pytest

from bnopt.analysis.results import load, runs
from bnopt.plan.runs import RunConfig, run_dir
from bnopt.plan.tables import TABLES
from bnopt.training.loop import train_run, write_run
from conftest import ROOT

PAGE = (ROOT / "docs/outputs.md").read_text()
SECTION = PAGE[PAGE.index("## Loading the runs"):]
SECTION = SECTION[:SECTION.index("\n## ", 5)] if "\n## " in SECTION[5:] else SECTION


@pytest.fixture(scope="module")
def results(tmp_path_factory, synthetic_module):
    """A results/runs folder of 6 finished tiny runs: standard and BN at lr 0.05 (seeds 0, 1)
    and at lr 0.1 (seed 0), as the workflow writes them."""
    root = tmp_path_factory.mktemp("work")
    for variant in ("standard", "batchnorm"):
        for lr, seed in ((0.05, 0), (0.05, 1), (0.1, 0)):
            cfg = RunConfig(dataset="synthetic", model="vgg", variant=variant, lr=lr, seed=seed,
                            steps=12, batch_size=64, width=0.125, eval_every=6, log_every=6,
                            device="cpu", measure_every=3, hist_every=6)
            folder = root / run_dir("synthetic", "vgg", variant, lr, seed)
            folder.mkdir(parents=True)
            write_run(train_run(cfg, synthetic_module, progress=False),
                      {name: folder / f"{name}.parquet" for name in TABLES}, folder / "run.json")
    (root / run_dir("synthetic", "vgg", "l1", 0.05, 0)).mkdir(parents=True)  # unfinished
    return root


@pytest.fixture(scope="module")
def synthetic_module():
    from bnopt.training.data import load_dataset

    return load_dataset("synthetic")


def test_runs_lists_every_finished_run_with_its_identity_first(results):
    table = runs(results / "results/runs")
    assert list(table.columns[:5]) == ["dataset", "model", "variant", "lr", "seed"]
    assert len(table) == 6 and set(table.variant) == {"standard", "batchnorm"}  # l1: no run.json
    assert {"diverged", "code_version", "steps_completed"} <= set(table.columns)
    assert len(runs(results / "results/runs", variant="batchnorm", lr=[0.05])) == 2


def test_load_filters_on_folders_and_reads_only_the_columns_asked(results, monkeypatch):
    root = results / "results/runs"
    read = []
    original = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet",
                        lambda path, **kw: read.append((path, kw.get("columns"))) or
                        original(path, **kw))
    ics = load("ics", root, columns=["step", "layer", "l2"], meta=["diverged"],
               variant="batchnorm", lr="0.05", seed=1)
    assert list(ics.columns) == ["dataset", "model", "variant", "lr", "seed", "diverged", "step",
                                 "layer", "l2"]
    assert set(ics.variant) == {"batchnorm"} and set(ics.seed) == {1} and set(ics.lr) == {0.05}
    assert len(read) == 1 and read[0][1] == ["step", "layer", "l2"]  # one file, three columns
    whole = load("steps", root)
    assert len(whole) == 6 * 12 and list(whole.columns[:5]) == ["dataset", "model", "variant",
                                                                "lr", "seed"]


@pytest.mark.parametrize("call, message", [
    (lambda r: load("icss", r), "unknown table 'icss': choose one of steps"),
    (lambda r: load("ics", r, columns=["l3"]), "ics has no column l3: its columns are step"),
    (lambda r: load("ics", r, variant="bn"), "variant bn: no finished run under .* present: "
                                             "batchnorm, standard"),
    (lambda r: load("ics", r, width=1), "unknown filter width: filter on dataset, model"),
    (lambda r: load("ics", r, meta=["divergd"]), "run.json has no key divergd: its keys are"),
    (lambda r: runs(r / "nowhere"), "no runs folder .*nowhere: run snakemake first")])
def test_bad_requests_are_refused_with_the_choices(results, call, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call(results / "results/runs")


def test_a_run_without_the_table_is_named(results, tmp_path):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(results / "results/runs", root)
    next(root.rglob("units.parquet")).unlink()  # a run written before the table existed
    with pytest.raises(ValueError, match="1 run.s. have no units.parquet .* written only where"):
        load("units", root)


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_every_example_of_the_page_runs_on_the_runs(results, tmp_path):
    """The page's examples, as written, in a folder whose results/runs holds the runs: the
    loader, pandas alone, DuckDB (a test extra) and the plot; each gives the same ICS rows."""
    blocks = code_blocks(SECTION)
    assert len(blocks) == 4, len(blocks)
    assert all(len(b.strip().splitlines()) <= 15 for b in blocks)
    cwd = os.getcwd()
    os.chdir(results)
    try:
        got = []
        for block in blocks:
            if "duckdb" in block:
                pytest.importorskip("duckdb")
            scope = {}
            exec(compile(block, "docs/outputs.md", "exec"), scope)  # noqa: S102
            got.append(scope)
    finally:
        os.chdir(cwd)
    key = ["variant", "lr", "seed", "step", "layer"]
    frames = [s["ics"].sort_values(key).reset_index(drop=True) for s in got[:3]]
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0][key + ["l2"]], other[key + ["l2"]],
                                      check_dtype=False)
    assert (results / "ics_vs_loss.png").stat().st_size > 10_000  # the plot, drawn
