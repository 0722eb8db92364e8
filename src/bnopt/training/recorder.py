"""What a run records, kept on the device until the end, and how it becomes the run's tables
(:data:`bnopt.plan.tables.TABLES`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bnopt.plan.tables import (
    ACTIVATION_COLUMNS,
    EVAL_COLUMNS,
    HESSIAN_COLUMNS,
    HISTOGRAM_COLUMNS,
    ICS_COLUMNS,
    INIT_DISTANCE_COLUMNS,
    OPTIONAL_TABLES,
    PROBE_SHIFT_COLUMNS,
    QUANTILES,
    SHIFT_COLUMNS,
    TABLES,
    UNIT_COLUMNS,
    UNIT_QUANTILES,
    UPDATE_PROBE_COLUMNS,
)
from bnopt.training.measure import (
    activation_summary,
    channel_moments,
    histogram,
    moment_shift,
    total_norm,
    unit_indices,
    unit_percentiles,
)
from bnopt.training.objective import accuracy


def to_device(obj, device):
    """Move the tensors of nested lists/tuples/dicts to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


class Recorder:
    """Everything a run records, kept on the device until the end: the per-step buffer (loss,
    accuracy, gradient and parameter norms), host wall-clock per step, measured rows as
    (step, device tensor) pairs per kind, the per-unit moments of the last measured step (for
    the moment shift) and the initial weights (for the init distance); with
    ``units_per_layer`` > 0, percentiles of that many single units per layer at measured
    steps. ``state_dict`` / ``load_state_dict`` carry it through a checkpoint; ``tables``
    turns it into the run's tables (``TABLES`` and ``OPTIONAL_TABLES``)."""

    ROW_KINDS = ("eval", "init_distance", "probes", "ics", "activations", "activation_shift",
                 "probe_shift", "histograms", "hessian", "units", "update_probes")
    # as the tables they fill (both shifts join activations)

    def __init__(self, steps: int, device, dtype, w_init: list[torch.Tensor],
                 units_per_layer: int = 0):
        self.buf = torch.full((steps, 4), float("nan"), device=device, dtype=dtype)
        self.host_t = np.zeros(steps)
        self.rows: dict[str, list] = {k: [] for k in self.ROW_KINDS}
        self.pending_moments: list | None = None
        self.w_init = w_init
        self.units_per_layer = units_per_layer
        self.followed: list | None = None  # per layer: (unit indices, id rows), on the device
        # once: a copy in the loop syncs
        self.quantiles = torch.tensor(QUANTILES, device=device)
        self.unit_quantiles = torch.tensor(UNIT_QUANTILES, device=device)

    def add(self, kind: str, step: int, values: torch.Tensor) -> None:
        self.rows[kind].append((step, values))

    def step(self, step: int | torch.Tensor, loss, out, y, params) -> None:
        """The per-step row: the step's loss and accuracy, |gradient|, |parameters| (before the
        update). ``step`` may be a 1-element device tensor (a CUDA-graphed step's index)."""
        row = torch.stack([loss.detach(), accuracy(out, y),
                           total_norm(p.grad for p in params if p.grad is not None),
                           total_norm(params)])
        if isinstance(step, torch.Tensor):
            self.buf.index_copy_(0, step, row.unsqueeze(0).to(self.buf.dtype))
        else:
            self.buf[step] = row

    def activations(self, step: int, preacts: list, measured: bool, histograms: bool) -> None:
        """Moment shift from the previous measured step; at a measured step, statistics (and
        histograms) of its pre-activations, and its moments for the next step's shift."""
        moments = [channel_moments(z) for z in preacts]
        if self.pending_moments is not None:
            self.add("activation_shift", step - 1, torch.stack(
                [moment_shift(a, b) for a, b in zip(self.pending_moments, moments)]))
            self.pending_moments = None
        if measured:
            self.add("activations", step, torch.stack([activation_summary(z, self.quantiles) for z in preacts]))
            if histograms:
                self.add("histograms", step, torch.stack([histogram(z) for z in preacts]))
            if self.units_per_layer:
                self.add("units", step, self.unit_rows(preacts))
            self.pending_moments = moments

    def unit_rows(self, preacts: list) -> torch.Tensor:
        """(layer, unit, *UNIT_QUANTILES) rows of the followed units of every layer, one
        device tensor. Which units: from the layers' widths, put on the device once (a copy
        in the loop syncs)."""
        if self.followed is None:
            self.followed = []
            for layer, z in enumerate(preacts, 1):
                units = unit_indices(z.shape[1], self.units_per_layer)
                self.followed.append((
                    torch.tensor(units, device=z.device),
                    torch.tensor([[layer, u] for u in units], dtype=torch.float32, device=z.device)))
        return torch.cat([torch.cat([ids, unit_percentiles(z, units, self.unit_quantiles)], 1)
                          for z, (units, ids) in zip(preacts, self.followed)])

    def state_dict(self, upto: int) -> dict:
        return {"buf": self.buf[:upto], "host_t": self.host_t[:upto].copy(), "rows": self.rows,
                "pending_moments": self.pending_moments, "w_init": self.w_init}

    def load_state_dict(self, state: dict) -> int:
        """Restore from :meth:`state_dict`; returns the number of steps it holds."""
        device = self.buf.device
        start = len(state["host_t"])
        self.buf[:start] = state["buf"].to(device)
        self.host_t[:start] = state["host_t"]
        self.rows = {k: [] for k in self.ROW_KINDS} | to_device(state["rows"], device)
        self.pending_moments = to_device(state["pending_moments"], device)
        self.w_init = to_device(state["w_init"], device)
        return start

    def tables(self, done: int, lr: float, multipliers) -> dict[str, pd.DataFrame]:
        """The run's tables (``TABLES`` and ``OPTIONAL_TABLES``, which are empty where the
        run did not record them) from its first ``done`` steps."""
        rows, rec = self.buf[:done].float().cpu().numpy(), self.rows  # float32 columns, any dtype
        tables = {
            "steps": pd.DataFrame({
                "step": np.arange(done, dtype=np.int64), "loss": rows[:, 0], "accuracy": rows[:, 1],
                "grad_norm": rows[:, 2], "param_norm": rows[:, 3],
                "lr": np.full(done, lr), "elapsed_s": self.host_t[:done]}),
            "eval": _rows(rec["eval"], done, EVAL_COLUMNS),
            "init_distance": _layer_rows(rec["init_distance"], done, INIT_DISTANCE_COLUMNS),
            "ics": _layer_rows(rec["ics"], done - 1, ICS_COLUMNS),
            "histograms": _histogram_rows(rec["histograms"], done - 1),
            "hessian": _rows(rec["hessian"], done - 1, HESSIAN_COLUMNS).astype({"iterations": "int64"}),
        }
        probes = _layer_rows(rec["probes"], done - 1, ["step", "point", "loss", "grad_change", "beta"])
        k = probes["point"].to_numpy() - 1
        mult = np.asarray(multipliers, dtype=np.float64)
        probes.insert(2, "multiplier", mult[k] if len(k) else np.zeros(0))
        probes.insert(3, "step_size", mult[k] * lr if len(k) else np.zeros(0))
        probes["point"] -= 1
        tables["probes"] = probes
        summary = [c for c in ACTIVATION_COLUMNS if c not in SHIFT_COLUMNS + PROBE_SHIFT_COLUMNS]
        acts = _layer_rows(rec["activations"], done - 1, summary)
        shift = _layer_rows(rec["activation_shift"], done - 1, ["step", "layer", *SHIFT_COLUMNS])
        probe = _layer_rows(rec["probe_shift"], done - 1, ["step", "layer", *PROBE_SHIFT_COLUMNS])
        tables["activations"] = acts.merge(shift, on=["step", "layer"], how="left").merge(
            probe, on=["step", "layer"], how="left")
        tables["units"] = _rows(rec["units"], done - 1, UNIT_COLUMNS).astype(
            {"layer": "int64", "unit": "int64"})
        update = _layer_rows(rec["update_probes"], done - 1,
                             [c for c in UPDATE_PROBE_COLUMNS if c != "multiplier"])
        update.insert(2, "multiplier", mult[update["point"].to_numpy() - 1] if len(update)
                      else np.zeros(0))
        update["point"] -= 1
        tables["update_probes"] = update
        every = TABLES | {k: cols for k, (cols, _) in OPTIONAL_TABLES.items()}
        return {k: tables[k][cols] for k, cols in every.items()}

def _rows(recs, last_step: int, columns) -> pd.DataFrame:
    """(step, vector) records -> one row per step, dropping steps after ``last_step``;
    (step, (R, F) matrix) records -> R rows per step."""
    recs = [(s, v.reshape(-1, len(columns) - 1)) for s, v in recs if s <= last_step]
    if not recs:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "step" else "float64") for c in columns})
    vals = torch.cat([v for _, v in recs]).double().cpu().numpy()
    df = pd.DataFrame(vals, columns=columns[1:])
    df.insert(0, "step", np.repeat(np.array([s for s, _ in recs], dtype=np.int64),
                                   [len(v) for _, v in recs]))
    return df


def _layer_rows(recs, last_step: int, columns) -> pd.DataFrame:
    """(step, (L, F) tensor) records -> long rows (step, layer 1..L, F values). The second
    column is named by ``columns[1]`` ('layer', or 'point' for probe points)."""
    recs = [(s, v) for s, v in recs if s <= last_step]
    if not recs:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("step", "layer", "point") else "float64")
                             for c in columns})
    vals = torch.stack([v for _, v in recs]).double().cpu().numpy()  # (S, L, F)
    s, n, f = vals.shape
    df = pd.DataFrame(vals.reshape(s * n, f), columns=columns[2:])
    df.insert(0, columns[1], np.tile(np.arange(1, n + 1, dtype=np.int64), s))
    df.insert(0, "step", np.repeat(np.array([st for st, _ in recs], dtype=np.int64), n))
    return df


def _histogram_rows(recs, last_step: int) -> pd.DataFrame:
    recs = [(s, v) for s, v in recs if s <= last_step]
    if not recs:
        return _layer_rows([], 0, HISTOGRAM_COLUMNS[:2] + HISTOGRAM_COLUMNS[3:]).assign(
            bin=pd.Series(dtype="int64"))[HISTOGRAM_COLUMNS]
    vals = torch.stack([v for _, v in recs]).double().cpu().numpy()  # (S, L, B, 3)
    s, n, b, _ = vals.shape
    return pd.DataFrame({
        "step": np.repeat(np.array([st for st, _ in recs], dtype=np.int64), n * b),
        "layer": np.tile(np.repeat(np.arange(1, n + 1, dtype=np.int64), b), s),
        "bin": np.tile(np.arange(b, dtype=np.int64), s * n),
        "left": vals[..., 0].ravel(), "right": vals[..., 1].ravel(), "count": vals[..., 2].ravel()})
