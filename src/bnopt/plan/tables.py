"""The tables every training run writes (results/runs/.../<name>.parquet) and their columns,
without torch: the Snakemake rules name a run's outputs from ``TABLES`` at parse time, and
:mod:`bnopt.training.loop` fills them."""

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # of each layer's pre-activations

STEP_COLUMNS = ["step", "loss", "accuracy", "grad_norm", "param_norm", "lr", "elapsed_s"]
EVAL_COLUMNS = ["step", "train_loss", "train_acc", "test_loss", "test_acc"]
PROBE_COLUMNS = ["step", "point", "multiplier", "step_size", "loss", "grad_change", "beta"]
ICS_COLUMNS = ["step", "layer", "l2", "cos", "grad_norm"]
QUANTILE_COLUMNS = [f"q{round(q * 100):02d}" for q in QUANTILES]
# the moment shift: between consecutive steps' batches (mean_shift, var_shift: absolute, over
# units), and on the fixed probe batch before and after the step's update, each unit on its own
# scale, with the sampling floor of two batches beside it (bnopt.training.measure.probe_shift)
SHIFT_COLUMNS = ["mean_shift", "var_shift"]
PROBE_SHIFT_COLUMNS = ["probe_mean_shift", "probe_var_shift", "floor_mean_shift",
                       "floor_var_shift"]
ACTIVATION_COLUMNS = ["step", "layer", "mean", "std", *QUANTILE_COLUMNS, *SHIFT_COLUMNS,
                      *PROBE_SHIFT_COLUMNS]
HISTOGRAM_COLUMNS = ["step", "layer", "bin", "left", "right", "count"]
INIT_DISTANCE_COLUMNS = ["step", "layer", "distance", "init_norm"]
HESSIAN_COLUMNS = ["step", "lambda_max", "batch_sharpness", "iterations", "residual"]
UNIT_QUANTILES = (0.15, 0.5, 0.85)  # of single units' inputs (Ioffe & Szegedy's Figure 1)
UNIT_COLUMNS = ["step", "layer", "unit", *(f"q{round(q * 100):02d}" for q in UNIT_QUANTILES)]
# probes along the update the optimizer made (x' = x + m * update): ``distance`` = ||x' - x||
UPDATE_PROBE_COLUMNS = ["step", "point", "multiplier", "distance", "loss", "grad_change", "beta"]
# Every per-run table, by file stem: steps.parquet, eval.parquet, ...
TABLES = {"steps": STEP_COLUMNS, "eval": EVAL_COLUMNS, "probes": PROBE_COLUMNS,
          "ics": ICS_COLUMNS, "activations": ACTIVATION_COLUMNS, "histograms": HISTOGRAM_COLUMNS,
          "init_distance": INIT_DISTANCE_COLUMNS, "hessian": HESSIAN_COLUMNS}
# Tables a run writes only where a config turns on the setting that records them (by file
# stem: its columns and that setting): a config that leaves them off asks no finished run for a
# file it never wrote, so adding them retrains nothing.
OPTIONAL_TABLES = {"units": (UNIT_COLUMNS, "units_per_layer"),
                   "update_probes": (UPDATE_PROBE_COLUMNS, "probe_update")}


# What a measured step can measure (a run's ``measures``), each with the tables it fills: the
# step's own activation statistics (and histograms, single units, the moment shifts), gradient
# ICS for every layer, the probes along the gradient (and along the update), and curvature (at
# the hessian_every steps). A run measures all of them, or with ``measure: read`` only those a
# figure or check reads of it (bnopt.plan.reads); the others' tables are written empty.
MEASUREMENTS = {"activations": ("activations", "histograms", "units"), "ics": ("ics",),
                "probes": ("probes", "update_probes"), "hessian": ("hessian",)}


def written_tables(cfg: dict) -> dict[str, list[str]]:
    """The tables (stem: columns) every training job writes under the checked config ``cfg``:
    ``TABLES``, and each of ``OPTIONAL_TABLES`` whose setting the config turns on (a run with
    it off, such as the DLN's, writes it empty). The train rule's outputs."""
    return TABLES | {name: cols for name, (cols, key) in OPTIONAL_TABLES.items() if cfg.get(key)}

