"""Which code made a run: run.json's code_version (bnopt.running.provenance) from a checkout, a
dirty one and an install without one, and where runs of different code meet, summary.csv,
claims.md and the end of a Snakemake run say so (bnopt.analysis.code_versions)."""
import json
import shutil
import subprocess

import pytest

from bnopt.analysis.aggregate import summary_table
from bnopt.analysis.code_versions import UNRECORDED, mixed_code_note
from bnopt.plan.runs import RunConfig
from bnopt.running.provenance import (
    PACKAGE,
    code_version,
    package_version,
    source_digest,
    source_revision,
)
from bnopt.running.rule_glue import code_warning
from bnopt.scorecard.text import code_note
from bnopt.training.data import load_dataset
from bnopt.training.loop import train_run, write_run


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def copy_package(dest):
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_this_checkout_records_its_version_and_git_revision():
    if source_revision() is None:
        pytest.skip(f"bnopt runs from {PACKAGE}, not from a git checkout")
    described = git("describe", "--always", "--dirty", "--abbrev=12", cwd=PACKAGE)
    assert code_version().startswith(f"{package_version()}+git.{described}")
    assert code_version().endswith(f"-dirty.{source_digest()}") == described.endswith("-dirty")


def test_a_commit_an_edit_and_no_checkout(tmp_path):
    repo = tmp_path / "repo"
    pkg = copy_package(repo / "src" / "bnopt")
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x", cwd=repo)
    head = git("rev-parse", "--short=12", "HEAD", cwd=repo)
    assert source_revision(pkg) == head
    before = source_digest(pkg)
    variants = pkg / "plan" / "variants.py"
    variants.write_text(variants.read_text() + "\n# an uncommitted edit\n")
    assert source_revision(pkg) == f"{head}-dirty"
    assert source_digest(pkg) != before  # two different edits of one commit differ
    # installed without a checkout (a wheel), or inside another project's repository: none
    assert source_revision(copy_package(tmp_path / "site" / "bnopt")) is None
    other = tmp_path / "other"
    copy_package(other / "lib" / "bnopt")
    git("init", "-q", cwd=other)
    assert source_revision(other / "lib" / "bnopt") is None


@pytest.fixture(scope="module")
def dln_runs(tmp_path_factory):
    """Two finished 10-step DLN runs (seeds 0 and 1), written as the train rule writes them."""
    root, data = tmp_path_factory.mktemp("runs"), load_dataset("dln")
    metas = []
    for seed in (0, 1):
        cfg = RunConfig(dataset="dln", model="dln", variant="batchnorm", lr=1e-6, seed=seed,
                        steps=10, eval_every=10, log_every=10, measure_every=5, device="cpu")
        result = train_run(cfg, data, progress=False, threads=1)
        folder = root / f"seed{seed}"
        folder.mkdir()
        write_run(result, {n: folder / f"{n}.parquet" for n in result.tables}, folder / "run.json")
        metas.append(folder / "run.json")
    return metas


def test_runs_of_one_code_say_nothing_and_of_two_name_each(dln_runs, tmp_path):
    metas = [json.loads(p.read_text()) for p in dln_runs]
    assert {m["code_version"] for m in metas} == {code_version()}
    assert set(summary_table(dln_runs).code_version) == {code_version()}
    assert mixed_code_note(metas) == code_note(dln_runs) == code_warning(dln_runs) == ""
    # a run of an older bnopt, which did not record its code, beside them
    old = tmp_path / "old"
    shutil.copytree(dln_runs[1].parent, old)
    meta = json.loads((old / "run.json").read_text())
    del meta["code_version"]
    meta["seed"] = 7
    (old / "run.json").write_text(json.dumps(meta))
    mixed = [*dln_runs, old / "run.json"]
    summary = summary_table(mixed).set_index("seed")
    assert summary.loc[7, "code_version"] == UNRECORDED
    assert summary.loc[0, "code_version"] == code_version()
    note = code_note(mixed)
    assert f"{code_version()}: 2 run(s) (batchnorm lr=1e-06 seed=0 (dln/dln)" in note
    assert f"{UNRECORDED}: 1 run(s) (batchnorm lr=1e-06 seed=7 (dln/dln))" in note
    assert "Mixed code" in note and code_warning(mixed) in note
