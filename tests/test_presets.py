"""The earlier experiments' presets (docs/earlier-experiments.md): every preset is a valid config,
alone and shrunk by workflow/presets/cpu.yaml; a preset's plain `snakemake` is its experiment
(its figures, reported.csv and only their runs); and each one's most characteristic figure is
built end to end from the preset so shrunk and shorter still. (The page's commands themselves
are dry-run by test_docs.py.)"""
import os
import re
import shlex
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.experiments import experiment_figures, published, reported_variants
from bnopt.plan.runs import family_runs, plan
from conftest import ROOT, run_snakemake

PAGE = (ROOT / "docs/earlier-experiments.md").read_text()
# each preset, and the figures of its page command built here (of the same runs): ICS and the
# landscape along Adam's update, the gradient magnitude, the distance from init, and the
# sigmoid MLP's accuracy and single units
PRESETS = {"vgg_a": ("fig3_ics", "fig4u_update_landscape"),
           "small_cnn": ("fig17_gradient_norm",),
           "vgg10_momentum": ("fig18_init_distance",),
           "ioffe_mnist": ("fig1_accuracy", "fig19_unit_percentiles")}
SHORT = ["steps=20", "seeds=[0]", "eval_every=10", "log_every=10", "measure_every=5",
         "hist_every=10", "checkpoint_every=0"]


def figures_command(name: str) -> list[str]:
    """The page's command for preset ``name`` at full scale (its first one)."""
    line = next(line for line in PAGE.splitlines()
                if line.startswith("snakemake ") and f"presets/{name}.yaml" in line
                and "cpu.yaml" not in line)
    return shlex.split(line)


def preset_config(name: str) -> dict:
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    return check_config({**base, **yaml.safe_load((ROOT / f"workflow/presets/{name}.yaml").read_text())})


def job_counts(stdout: str) -> dict:
    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.mark.parametrize("name", PRESETS)
def test_a_presets_plain_snakemake_is_its_experiment(name, tmp_path):
    """`snakemake --configfile <preset>` trains the preset's sweep and the runs its figures and
    reported.csv compare, builds those, and nothing of the default sweep: no DLN, no other
    figure, no scorecard. The page says how many runs."""
    cfg = preset_config(name)
    r = run_snakemake(["-n", "--configfile", str(ROOT / f"workflow/presets/{name}.yaml")],
                      tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = job_counts(r.stdout)
    figures = set(experiment_figures(name))
    assert {j for j in jobs if j.startswith("fig")} == figures, jobs
    assert "scorecard" not in jobs and jobs["reported"] == jobs["summary"] == 1
    runs = plan(cfg)
    assert jobs["train"] == len(runs) and all(run.model != "dln" for run in runs)
    expected = set(family_runs(cfg, "net", cfg["variants"], cfg["lrs"]))
    expected |= set(family_runs(cfg, "net", reported_variants(name), [cfg["figure_lr"]]))
    assert expected <= {(r.dataset, r.model, r.variant, r.lr, r.seed) for r in runs}
    assert f"It trains {len(runs)} runs and builds" in PAGE
    assert set(PRESETS[name]) <= figures  # the figures built end to end below are among them


@pytest.mark.parametrize("name", PRESETS)
def test_a_preset_is_a_valid_config_with_its_experiments_settings(name):
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    preset = yaml.safe_load((ROOT / f"workflow/presets/{name}.yaml").read_text())
    cfg = check_config({**base, **preset})
    cpu = check_config({**base, **preset,
                        **yaml.safe_load((ROOT / "workflow/presets/cpu.yaml").read_text())})
    assert cfg["model"] == cpu["model"] != "vgg"  # the experiment's network, also shrunk
    assert (cpu["dataset"], cpu["device"]) == ("digits", "cpu")
    assert figures_command(name) == ["snakemake", "--configfile", f"workflow/presets/{name}.yaml"]


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_a_presets_figures_build_end_to_end_on_the_cpu(name, tmp_path):
    for item in ("Snakefile", "config.yaml", "workflow", "profiles", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / item)
    targets = [f"results/figures/{fig}.png" for fig in PRESETS[name]]
    targets.append("results/tables/reported.csv")  # their findings beside ours
    argv = [sys.executable, "-m", "snakemake", "--cores", "2", *targets, "--configfile",
            f"workflow/presets/{name}.yaml", "workflow/presets/cpu.yaml", "--config", *SHORT]
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for target in (a for a in argv if a.startswith("results/figures/")):
        assert (tmp_path / target).stat().st_size > 20_000, target  # drawn, not empty
    reported = pd.read_csv(tmp_path / "results/tables/reported.csv")
    assert len(reported) == len(published()[name]["findings"])
    assert set(reported.verdict) <= {"reproduced", "not reproduced", "inconclusive", "not measured"}
    assert (reported.differs.str.contains("dataset: ours digits")).all()
    trained = [p.parent.parts[-4:-1] for p in (tmp_path / "results/runs").rglob("run.json")]
    assert trained and all(re.fullmatch(r"(vgg11|simple_cnn|vgg10|mlp)", m) for m, _, _ in trained)
