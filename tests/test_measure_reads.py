"""A run measures only what something reads of it (``measure: read``, the default): each
figure, check and published finding declares what it reads (bnopt.plan.reads), the plan gives
each run those measurements, training takes only them and trains the same bits, and a finished
run that measured more is not retrained."""
import dataclasses

import pandas as pd
import pytest
import yaml

from bnopt.plan.check import check_config
from bnopt.plan.experiments import FINDING_READS, finding_reads
from bnopt.plan.figure_specs import FIGURE_REGISTRY, figure_specs, figures_off
from bnopt.plan.reads import ALL, tracked_measures
from bnopt.plan.runs import RunConfig, family_runs, plan, tracked_settings
from bnopt.plan.tables import MEASUREMENTS, OPTIONAL_TABLES, TABLES
from bnopt.scorecard.checks import EDGE, QUANTITIES, checks
from bnopt.scorecard.reads import run_measures
from bnopt.scorecard.reported import FINDING_QUANTITIES
from bnopt.training.loop import train_run
from conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())
PRESETS = sorted((ROOT / "workflow/presets").glob("*.yaml"))


def _preset(path):
    from bnopt.training.module_net import module_depth

    return check_config({**BASE, **yaml.safe_load(path.read_text())}, depth_of=module_depth)


def test_what_is_read_is_declared_once_for_every_figure_quantity_and_finding():
    assert set(FINDING_READS) == set(FINDING_QUANTITIES)
    declared = ([f.reads for f in FIGURE_REGISTRY.values()]
                + [(q.reads,) for q in QUANTITIES.values()] + [(k,) for k in FINDING_READS.values()])
    assert {k for kinds in declared for k in kinds if k} == set(MEASUREMENTS)
    every = set(TABLES) | set(OPTIONAL_TABLES)
    assert {t for tables in MEASUREMENTS.values() for t in tables} <= every


def test_the_default_sweep_measures_what_its_figures_and_checks_read():
    """The paper's choices: Figure 1's lr 0.5 compares accuracy only, Figure 3's lr 0.01 reads
    ICS only, noisy BN is read for its activations (Figures 2, 8) at lr 0.1 and not at all at
    0.5 and 0.01, the l_p nets for activations (Figure 6) and the landscape (Figure 12), the
    normalisers for the landscape (Figure 14); the DLN's l_p nets at 1e-7 by nothing."""
    cfg = check_config(BASE)
    got = {(r.model, r.variant, r.lr): r.measures for r in plan(cfg, run_measures(cfg)) if r.seed == 1}
    full = ("activations", "ics", "probes")  # hessian_every: 0, so Figure 16 is off
    want = {("vgg", v, 0.1): full for v in ("standard", "batchnorm")}
    want |= {("vgg", v, 0.5): () for v in ("standard", "batchnorm", "noisy_batchnorm")}
    want |= {("vgg", v, 0.01): ("ics",) for v in ("standard", "batchnorm")}
    want |= {("vgg", "noisy_batchnorm", 0.01): (), ("vgg", "noisy_batchnorm", 0.1): ("activations",)}
    want |= {("vgg", v, 0.1): ("activations", "probes") for v in ("l1", "l2", "linf")}
    want |= {("vgg", v, 0.1): ("probes",) for v in ("layernorm", "groupnorm", "weightnorm")}
    want |= {("dln", v, 1e-6): full for v in ("standard", "batchnorm")}
    want |= {("dln", v, 1e-7): ("ics",) for v in ("standard", "batchnorm")}
    want |= {("dln", v, 1e-6): ("probes",)
             for v in ("l1", "l2", "linf", "layernorm", "groupnorm", "weightnorm")}
    want |= {("dln", v, 1e-7): () for v in ("l1", "l2", "linf")}
    assert got == want
    every = check_config({**BASE, "measure": "all"})
    assert {r.measures for r in plan(every, run_measures(every))} == {ALL}
    assert {r.measures for r in plan(cfg)} == {ALL}  # the plan without the workflow's reads


@pytest.mark.parametrize("path", [None, *PRESETS], ids=lambda p: p.stem if p else "default")
def test_every_figure_check_and_finding_finds_what_it_reads_in_its_runs(path):
    cfg = check_config(BASE) if path is None else _preset(path)
    for config in (cfg, {**cfg, "hessian_every": 50, "dln": {**cfg["dln"], "hessian_every": 50}}):
        measures = run_measures(config)
        blocked = figures_off(config)
        for fig, (groups, _) in figure_specs(config).items():
            if fig in blocked:
                continue
            for fam, variants, lrs in groups:
                for run in family_runs(config, fam, variants, lrs):
                    assert set(FIGURE_REGISTRY[fig].reads) <= set(measures.get(run, ())), (fig, run)
        for c in checks(config):
            reads = QUANTITIES[c.quantity].reads
            if c.figure in blocked or not reads:
                continue
            variants = [v for v in (c.treatment, c.baseline) if v != EDGE]
            for run in family_runs(config, c.family, variants, c.lrs or [c.lr]):
                assert reads in measures.get(run, ()), (c, run)
        if config["experiment"]:
            for v, kinds in finding_reads(config["experiment"]).items():
                for run in family_runs(config, "net", [v], [config["figure_lr"]]):
                    assert kinds <= set(measures.get(run, ())), (v, run)


def test_an_experiment_reads_ics_and_single_units_where_its_findings_compare_them():
    assert finding_reads("vgg_a") == {"batchnorm": {"ics"}, "standard": {"ics"}}
    # Ioffe & Szegedy's drift of a single unit's input (units.parquet, with the activations)
    assert finding_reads("ioffe_mnist") == {"batchnorm": {"activations"},
                                            "standard": {"activations"}}


def test_a_finished_run_that_measured_more_is_tracked_as_it_was():
    """The train rule's params: a run.json of a run that measured everything (or predates
    ``measures``) covers any subset, so its tracked settings stay those it ran with; one that
    measured less than is now needed is tracked with what is needed, and retrains."""
    assert tracked_measures(("ics",), None) == ("ics",)  # not trained yet
    assert tracked_measures(("ics",), {"variant": "standard"}) == ALL  # before measures existed
    assert tracked_measures(("ics",), {"measures": ["probes", "ics"]}) == ("ics", "probes")
    assert tracked_measures(("ics", "probes"), {"measures": ["ics"]}) == ("ics", "probes")
    assert tracked_measures((), {"measures": []}) == ()
    run = RunConfig(dataset="synthetic", model="vgg", variant="standard", lr=0.1, seed=0)
    assert "measures" not in tracked_settings(run)  # all: the neutral value, as before
    assert tracked_settings(dataclasses.replace(run, measures=("ics",)))["measures"] == ["ics"]
    with pytest.raises(ValueError, match="unknown measurement 'curvature'"):
        dataclasses.replace(run, measures=("curvature",))


TINY = dict(dataset="synthetic", model="vgg", lr=0.05, seed=0, steps=13, batch_size=32,
            width=0.125, eval_every=6, log_every=13, measure_every=4, hist_every=4,
            hessian_every=6, hessian_iters=3, units_per_layer=2, probe_update=True,
            probe_multipliers=(0.5, 2.0), device="cpu", checkpoint_every=0)


@pytest.mark.parametrize("variant", ["batchnorm", "noisy_batchnorm"])
def test_a_run_takes_only_its_measurements_and_trains_the_same_bits(synthetic, variant):
    """Every subset of the measurements: the per-step, eval and init_distance tables are
    bitwise those of the run that measures everything, each table it measures is bitwise that
    run's, and each it does not is empty (with its columns)."""
    full = train_run(RunConfig(variant=variant, **TINY), synthetic, progress=False).tables
    subsets = [()] + [(k,) for k in MEASUREMENTS] + [("activations", "probes")]
    for measures in subsets:
        got = train_run(RunConfig(variant=variant, measures=measures, **TINY), synthetic,
                        progress=False).tables
        assert set(got) == set(full)
        taken = {t for k in measures for t in MEASUREMENTS[k]}
        for name, table in got.items():
            if name in taken or not any(name in t for t in MEASUREMENTS.values()):
                cols = [c for c in table.columns if c != "elapsed_s"]
                assert len(table) > 0, (measures, name)
                pd.testing.assert_frame_equal(table[cols], full[name][cols], check_exact=True,
                                              obj=f"{name} with measures {measures}")
            else:
                assert table.empty and list(table.columns) == list(full[name].columns), name
