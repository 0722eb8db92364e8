"""The real Snakemake CLI on this workflow: dry runs, config errors, lint, and a tiny real run."""
import math
import os
import re
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import yaml

from bnopt.figures.paper import FIGURES
from bnopt.plan.check import check_config
from bnopt.plan.reads import ALL
from bnopt.plan.runs import plan
from bnopt.scorecard.checks import QUANTITIES, checks
from bnopt.scorecard.reads import run_measures
from bnopt.scorecard.verdicts import LEVEL_COLUMNS
from bnopt.studies.cost import sweep_plan
from conftest import ROOT, run_snakemake, snakemake_command

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def job_counts(stdout: str) -> dict:
    table = stdout.split("Job stats:")[1].split("\n\n")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_a_dry_run_parses_without_torch_or_seaborn(tmp_path):
    """Every snakemake command parses the workflow; it imports only bnopt's light modules
    (names, settings, the scorecard's runs), so a dry run does not pay for torch and seaborn
    (about 6 s of the 10 s a dry run took when it did); the jobs import them."""
    argv, env = snakemake_command(["-n", "--cores", "1", "results/figures/fig1_accuracy.png"],
                                  tmp_path)
    r = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"bnopt.plan.check", "bnopt.plan.runs", "bnopt.scorecard.checks"} <= imported
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "seaborn", "matplotlib"))
    assert not heavy, heavy[:10]


def test_every_figure_function_has_a_spec_and_every_spec_a_function():
    """The rules derive from the specs (bnopt.plan.check.figure_specs), the drawing from FIGURES."""
    from bnopt.plan.figure_specs import figure_specs

    assert list(figure_specs(check_config(BASE))) == list(FIGURES)


def test_default_config_resolves_the_whole_dag(tmp_path):
    r = run_snakemake(["-n", "--cores", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = job_counts(r.stdout)
    # network sweep (3 variants x 3 lrs x 3 seeds) + l1/l2/linf at figure_lr for Figures 5, 6,
    # 12 + DLN sweep (5 variants x 2 lrs x 3 seeds) + LayerNorm, GroupNorm, weight norm at
    # figure_lr (network) and dln.figure_lr (DLN) for Figures 14 and 15
    assert jobs["train"] == 3 * 3 * 3 + 3 * 3 + 5 * 2 * 3 + 3 * 3 + 3 * 3
    # the cost projection counts exactly the runs snakemake schedules
    assert sweep_plan(check_config(BASE))["runs"].sum() == jobs["train"]
    assert jobs["prepare_data"] == 2 and jobs["summary"] == 1
    assert jobs["scorecard"] == 1 and jobs["fig0_scorecard"] == 1  # the verdict first
    # off by default: curvature (hessian_every: 0), single units (units_per_layer: 0) and the
    # probes along the update (probe_update: false)
    off = {"fig16_curvature", "fig19_unit_percentiles", "fig4u_update_landscape"}
    for fig in FIGURES:
        assert jobs.get(fig, 0) == (0 if fig in off else 1), fig


def test_a_figure_whose_measurement_is_off_is_refused_before_any_job(tmp_path):
    r = run_snakemake(["results/figures/fig16_curvature.png", "-n", "--cores", "1"], tmp_path)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "hessian_every and dln.hessian_every > 0" in out
    fix = "hessian_every=100 dln='{hessian_every: 100}'"
    assert fix in out
    ok = run_snakemake(["results/figures/fig16_curvature.png", "-n", "--cores", "1", "--config",
                        "hessian_every=100", "dln={hessian_every: 100}"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert job_counts(ok.stdout)["train"] == 2 * 3 + 2 * 3  # standard + BN, net and DLN
    r = run_snakemake(["results/figures/fig4_landscape.png", "-n", "--cores", "1", "--config",
                       "measure_every=0"], tmp_path)
    assert r.returncode != 0 and "fig4_landscape.png needs measure_every > 0" in r.stdout + r.stderr


def test_a_figure_trains_only_the_runs_it_needs(tmp_path):
    r = run_snakemake(["results/figures/fig1_accuracy.png", "-n", "--cores", "1",
                       "--resources", "gpu=1"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert job_counts(r.stdout)["train"] == 2 * 2 * 3  # standard + BN, lr 0.1 and 0.5, 3 seeds
    assert "noisy_batchnorm" not in r.stdout


def test_the_scorecard_trains_only_the_runs_its_checks_compare(tmp_path):
    r = run_snakemake(["results/figures/fig0_scorecard.png", "-n", "--cores", "1"], tmp_path)
    assert r.returncode == 0, r.stderr
    # standard + BN at fig1's and fig3's lrs (0.1, 0.5, 0.01), noisy BN, l1/l2/linf and
    # LN/GN/WN at 0.1; the DLN's standard + BN at 1e-6 and 1e-7, the others at 1e-6; 3 seeds
    assert job_counts(r.stdout)["train"] == 3 * (2 * 3 + 1 + 3 + 3) + 3 * (2 * 2 + 3 + 3)
    # a model other than the VGG gets figure layers of its own: no layer key to set
    r = run_snakemake(["results/tables/claims.csv", "-n", "--cores", "1", "--config",
                       "model=simple_cnn"], tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_gpu_jobs_are_the_conv_nets_and_dln_jobs_run_beside_them(tmp_path):
    """dln.device: cpu (the default): DLN jobs hold no GPU, so `--resources gpu=1` serialises
    only the conv nets; with dln.device auto they follow the top-level device again."""
    def gpus_by_model(extra=()):
        r = run_snakemake(["results/figures/fig5_lp.png", "-n", "--cores", "1", "--resources",
                           "gpu=1", *extra], tmp_path)
        assert r.returncode == 0, r.stderr
        jobs = re.findall(r"rule train:.*?model=(\w+),.*?resources: [^\n]*gpu=(\d)", r.stdout, re.S)
        assert len(jobs) == 2 * 5 * 3  # standard, BN, l1, l2, linf x 3 seeds; network and DLN
        return {model: {g for m, g in jobs if m == model} for model, _ in jobs}

    assert gpus_by_model() == {"vgg": {"1"}, "dln": {"0"}}
    assert gpus_by_model(["--config", "dln={device: auto}"]) == {"vgg": {"1"}, "dln": {"1"}}


def test_command_line_overrides_coerce_and_errors_name_the_key(tmp_path):
    ok = run_snakemake(["-n", "--cores", "1", "--config", "seeds=[0,1]", "lrs=[0.1]",
                        "dataset=digits"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    # the sweep (3 variants x lr 0.1 x 2 seeds) + standard/BN runs at fig1's 0.5 and fig3's 0.01
    # + l1/l2/linf and LN/GN/WN at lr 0.1 (2 seeds) + the DLN (5 variants x 2 lrs x 3 seeds,
    # LN/GN/WN at dln.figure_lr)
    assert job_counts(ok.stdout)["train"] == 3 * 1 * 2 + 2 * 2 * 2 + 6 * 2 + 5 * 2 * 3 + 3 * 3
    bad = run_snakemake(["-n", "--cores", "1", "--config", "dataset=fashion_mnist",
                         "data_root=/data/fm", "seeds=[0,1]"], tmp_path)
    assert bad.returncode != 0
    out = bad.stdout + bad.stderr  # snakemake logs errors to stdout
    assert "data_root" in out and "/data/fm" in out and "FashionMNIST" in out
    bad = run_snakemake(["-n", "--cores", "1", "--config", "lrs=[0.1,-0.5]", "variant=standard"],
                        tmp_path)
    assert bad.returncode != 0
    out = bad.stdout + bad.stderr
    assert "lrs[1] = -0.5" in out and "unknown config key 'variant'" in out


def test_unknown_figure_path_is_reported(tmp_path):
    r = run_snakemake(["results/figures/fig7_nonexistent.png", "-n", "--cores", "1"], tmp_path)
    assert r.returncode != 0
    assert "fig7_nonexistent.png" in r.stdout + r.stderr
    assert "No rule to produce" in r.stdout + r.stderr


def test_lint_is_clean(tmp_path):
    """snakemake --lint parses the workflow and finds nothing (a crash fails it too)."""
    r = run_snakemake(["--lint"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Lints for" not in out, out[-3000:]
    assert "your workflow is in a good condition" in out, out[-3000:]


def _as_config(args: list[str]) -> dict:
    """--config key=value words as the mapping Snakemake makes of them (values parsed as YAML)."""
    return {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args)}


TINY = ["dataset=synthetic", "width=0.125", "steps=16", "batch_size=64", "eval_every=8",
        "log_every=4", "device=cpu", "threads=1", "seeds=[0]", "lrs=[0.05,10000.0]",
        "fig1_lrs=[0.05,10000.0]", "fig3_lrs=[0.05,10000.0]", "figure_lr=0.05",
        "measure_every=4", "hist_every=8", "probe_multipliers=[0.5,2.0]", "checkpoint_every=12",
        "hessian_every=8", "hessian_iters=3", "units_per_layer=2", "probe_update=true",
        "dln={seeds: [0], lrs: [1e-5], steps: 12, eval_every: 6, log_every: 6, measure_every: 4,"
        " hist_every: 8, hessian_every: 6, figure_lr: 1e-5, fig3_lrs: [1e-5]}"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The whole workflow (`snakemake --cores 2`, every figure and the scorecard) once, on tiny
    settings: lr 1e4 blows the standard network up; the tests below read what it left."""
    path = tmp_path_factory.mktemp("tiny")
    r = run_snakemake(["--cores", "2", "--config", *TINY], path)
    assert r.returncode == 0, r.stderr[-3000:]
    return path, r


@pytest.mark.slow
def test_a_tiny_sweep_trains_every_run_it_needs(tiny):
    path, _ = tiny
    summary = pd.read_csv(path / "results/tables/summary.csv")
    # 3 variants x 2 lrs, l1/l2/linf and LN/GN/WN at 0.05 for Figures 5, 6, 12, 14, 8 DLN variants
    assert len(summary) == 3 * 2 + 6 + 8
    assert (summary[summary.model == "dln"].steps_completed == 12).all()
    assert (summary[(summary.lr == 0.05)].steps_completed == 16).all()


@pytest.mark.slow
def test_a_diverged_run_is_recorded_and_named_and_the_sweep_finishes(tiny):
    path, r = tiny
    summary = pd.read_csv(path / "results/tables/summary.csv")
    row = summary[(summary.variant == "standard") & (summary.lr == 10000.0)].iloc[0]
    assert bool(row.diverged) and row.steps_completed < 16
    # the end of the run names every run that diverged or never learned (16 steps: most)
    assert "standard lr=10000 seed=0 (synthetic/vgg) diverged at step" in r.stderr
    assert r.stderr.count(" never learned: ") == summary.never_learned.sum() > 0


@pytest.mark.slow
def test_a_tiny_sweep_draws_every_figure(tiny):
    path, _ = tiny
    for fig in [*FIGURES, "fig0_scorecard"]:
        assert (path / f"results/figures/{fig}.png").stat().st_size > 10_000, fig


@pytest.mark.slow
def test_the_scorecard_judges_every_check_and_names_failed_runs(tiny):
    """With one seed only "BN trains where the standard net does not" is decided (at lr 1e4
    the BN net fails too), and the checks against the diverged standard net say so."""
    path, _ = tiny
    claims = pd.read_csv(path / "results/tables/claims.csv")
    assert len(claims) == len(checks(check_config({**BASE, **_as_config(TINY)})))
    decided = claims[claims.verdict.isin(["holds", "does not hold"])]
    assert list(decided.quantity) == ["trained"] and decided.lr.iloc[0] == 10000.0
    assert set(claims.verdict) <= {"inconclusive", "not measured", "does not hold"}
    diverged = claims[(claims.lr == 10000.0) & (claims.quantity == "final_test_acc")]
    assert diverged.why.str.contains("standard diverged").all() and len(diverged) == 1
    assert "| claim | check |" in (path / "results/tables/claims.md").read_text()
    by_loss = pd.read_csv(path / "results/tables/claims_by_loss.csv")
    assert list(by_loss.columns) == LEVEL_COLUMNS
    assert set(by_loss.quantity) <= {q for q, x in QUANTITIES.items() if x.matched}


@pytest.mark.slow
def test_a_training_job_log_shows_its_progress(tiny):
    path, _ = tiny
    log = (path / "results/logs/train/synthetic/vgg/batchnorm/lr0.05_seed0.log").read_text()
    assert "16/16" in log and "loss=" in log


def dry_run_after_editing(path, code):
    """Jobs of a dry run of the tiny sweep in ``path`` after ``code`` (a code file) is
    touched without a change (must be none) and then changed; the file is restored after."""
    original, stat = code.read_bytes(), code.stat()
    try:
        os.utime(code, None)
        touched = run_snakemake(["-n", "--cores", "2", "--config", *TINY], path)
        assert "Nothing to be done" in touched.stdout + touched.stderr, touched.stdout[-2000:]
        code.write_bytes(original + b"\n# a change\n")
        changed = run_snakemake(["-n", "--cores", "2", "--config", *TINY], path)
    finally:
        code.write_bytes(original)
        os.utime(code, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return job_counts(changed.stdout)


@pytest.mark.slow
def test_a_finished_sweep_reruns_nothing_and_changed_code_reruns_what_runs_it(tiny):
    """A rule's code inputs follow its script's imports (bnopt.running.code_inputs): a change
    to the figure code redraws the figures only; to the variants' labels and colours, which
    the figures draw with, every figure; to a scorecard module, the scorecard and Figure 0.
    None retrains a run."""
    path, _ = tiny
    again = run_snakemake(["-n", "--cores", "2", "--config", *TINY], path)
    assert "Nothing to be done" in again.stdout + again.stderr
    pkg = ROOT / "src/bnopt"
    jobs = dry_run_after_editing(path, pkg / "figures/paper.py")
    assert set(jobs) == {*FIGURES, "all", "total"}, jobs
    jobs = dry_run_after_editing(path, pkg / "plan/variants.py")
    assert "train" not in jobs and "prepare_data" not in jobs
    assert all(jobs.get(fig) == 1 for fig in [*FIGURES, "fig0_scorecard"]), jobs
    jobs = dry_run_after_editing(path, pkg / "scorecard/verdicts.py")
    assert set(jobs) == {"scorecard", "fig0_scorecard", "all", "total"}, jobs


@pytest.mark.slow
def test_scheduling_settings_retrain_nothing(tiny):
    """How many jobs share a GPU, where their leases live, how often a run checkpoints (and
    whether it keeps them), and whether CPU jobs share warm worker processes (which makes the
    train rule a plain script rule) change no number a run computes: a finished sweep plans
    nothing when one changes."""
    path, _ = tiny
    for setting in ("jobs_per_gpu=2", f"gpu_lock_dir={path / 'locks'}", "checkpoint_every=24",
                    "keep_checkpoints=true", "warm_workers=false"):
        r = run_snakemake(["-n", "--cores", "2", "--config", *TINY, setting], path)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "Nothing to be done" in r.stdout + r.stderr, (setting, r.stdout[-2000:])


@pytest.mark.slow
def test_measuring_everything_changes_no_figure_or_claim_and_retrains_nothing_after(tiny, tmp_path):
    """The tiny sweep measures only what is read of each run (measure: read, the default).
    With measure: all, exactly the runs that measured less retrain, and every figure and the
    scorecard's tables come out bitwise the same; back at read, the runs that measured more
    than is read are up to date."""
    path, _ = tiny
    cfg = check_config({**BASE, **_as_config(TINY)})
    fewer = [r for r in plan(cfg, run_measures(cfg)) if r.measures != ALL]
    assert 0 < len(fewer) < 20
    every = tmp_path / "all"
    shutil.copytree(path, every, symlinks=True)
    r = run_snakemake(["--cores", "2", "--config", *TINY, "measure=all"], every)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("rule train:") == len(fewer), r.stderr[-3000:]
    for fig in [*FIGURES, "fig0_scorecard"]:
        png = f"results/figures/{fig}.png"
        assert (every / png).read_bytes() == (path / png).read_bytes(), fig
    for table in ("claims.csv", "claims_by_loss.csv", "claims.md"):
        t = f"results/tables/{table}"
        assert (every / t).read_bytes() == (path / t).read_bytes(), table
    # summary.csv says what each run measured; a median is NaN where it did not
    before = pd.read_csv(path / "results/tables/summary.csv").set_index(["model", "variant", "lr"])
    after = pd.read_csv(every / "results/tables/summary.csv").set_index(["model", "variant", "lr"])
    assert before.loc[("vgg", "noisy_batchnorm", 10000.0), "measures"] == "none"
    assert before.loc[("vgg", "noisy_batchnorm", 0.05), "measures"] == "activations"
    assert math.isnan(before.loc[("vgg", "noisy_batchnorm", 0.05), "ics_l2"])
    assert before.loc[("vgg", "layernorm", 0.05), "measures"] == "probes"
    assert (after.measures == "activations+ics+probes+hessian").all()
    assert not math.isnan(after.loc[("vgg", "noisy_batchnorm", 0.05), "ics_l2"])
    again = run_snakemake(["-n", "--cores", "2", "--config", *TINY], every)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]


@pytest.mark.slow
def test_figures_and_tables_drawn_in_warm_workers_are_those_of_fresh_processes(tiny, tmp_path):
    """The tiny sweep ran every job in warm workers (bnopt.running.workers), one figure after
    another in a process; drawn again each in a fresh Python (warm_workers: false), figures of
    every kind, the summary and the scorecard's tables come out byte for byte the same."""
    path, _ = tiny
    fresh = tmp_path / "fresh"
    shutil.copytree(path, fresh, symlinks=True)
    outputs = [f"results/figures/{fig}.png" for fig in
               ("fig0_scorecard", "fig1_accuracy", "fig4_landscape", "fig6_lp_activations",
                "fig9_dln_activations", "fig16_curvature")]
    outputs += [f"results/tables/{t}" for t in ("summary.csv", "claims.csv", "claims_by_loss.csv",
                                                "claims.md")]
    for out in outputs:
        (fresh / out).unlink()
    r = run_snakemake(["--cores", "2", *outputs, "--config", *TINY, "warm_workers=false"], fresh)
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(job_counts(r.stdout + r.stderr)) == {
        "fig0_scorecard", "fig1_accuracy", "fig4_landscape", "fig6_lp_activations",
        "fig9_dln_activations", "fig16_curvature", "summary", "scorecard", "total"}
    for out in outputs:
        assert (fresh / out).read_bytes() == (path / out).read_bytes(), out


@pytest.mark.slow
def test_a_newer_train_script_retrains_nothing_and_a_changed_plot_script_redraws(tiny):
    """Snakemake's `code` trigger would retrain every run older than workflow/scripts/train.py
    (a `git pull` that touches it); the profile drops it. Rule scripts that draw are inputs of
    their rules, compared by content."""
    path, _ = tiny
    train = ROOT / "workflow/scripts/train.py"
    stat = train.stat()
    try:
        os.utime(train, None)  # newer than every run, for the dry runs below
        jobs = dry_run_after_editing(path, ROOT / "workflow/scripts/plot_figure.py")
    finally:
        os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert set(jobs) == {*FIGURES, "all", "total"}, jobs


@pytest.mark.slow
def test_the_report_holds_every_figure_its_caption_and_the_tables(tiny):
    path, _ = tiny
    report = run_snakemake(["--report", "report.html", "--config", *TINY], path)
    assert report.returncode == 0, report.stdout[-2000:] + report.stderr[-2000:]
    html = (path / "report.html").read_text(errors="replace")
    assert "fig4_landscape.png" in html and "summary.csv" in html
    assert "fig0_scorecard.png" in html and "claims.csv" in html
    assert "effective" in html  # from the Figure 4 caption


def test_every_figure_has_a_report_caption():
    missing = [f for f in FIGURES if not (ROOT / f"workflow/report/{f}.rst").exists()]
    assert not missing


@pytest.mark.slow
def test_recovery_after_snakemake_itself_is_killed(tmp_path):
    """The recovery docs/running.md gives when Snakemake itself dies (power loss, OOM kill of
    its process group): its lock stays and a rerun is refused; `snakemake --unlock`, then the rerun with
    --rerun-incomplete finishes, the killed training job resuming from its checkpoint."""
    cfg = ["dataset=synthetic", "width=0.125", "steps=400", "batch_size=64", "eval_every=100",
           "log_every=10", "checkpoint_every=20", "device=cpu", "threads=1", "seeds=[0]",
           "lrs=[0.05]", "figure_lr=0.05", "measure_every=100", "hist_every=0", "dln={log_every: 10}"]
    target = "results/figures/fig4_landscape.png"
    argv, env = snakemake_command([target, "--cores", "1", "--config", *cfg], tmp_path)
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, env=env)
    runs = tmp_path / "results/runs"
    deadline = time.time() + 300
    while not list(runs.rglob("checkpoint.pt")) and time.time() < deadline and child.poll() is None:
        time.sleep(0.2)
    assert list(runs.rglob("checkpoint.pt")), "no training job reached its first checkpoint"
    os.killpg(child.pid, signal.SIGKILL)  # Snakemake and its job, at once
    child.wait()
    rerun = [target, "--rerun-incomplete", "--cores", "1", "--config", *cfg]
    locked = run_snakemake(rerun, tmp_path)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    assert run_snakemake(["--unlock"], tmp_path).returncode == 0
    done = run_snakemake(rerun, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / target).exists()
    logs = "".join(p.read_text() for p in (tmp_path / "results/logs/train").rglob("*.log"))
    assert "resumed from" in logs
