"""Every finished run's tables in one call, for one's own analysis (docs/outputs.md, "Loading
the runs"):

    from bnopt.analysis.results import load, runs
    runs()                                          # one row per finished run: its run.json
    ics = load("ics", variant=["standard", "batchnorm"], lr=0.1, columns=["step", "layer", "l2"])

A run is finished when its folder, ``results/runs/{dataset}/{model}/{variant}/lr{lr}/seed{seed}``,
holds its run.json (written last, atomically). Filters on ``dataset, model, variant, lr, seed``
(a value or a list of them) select runs by their folder names before any file is read, and a
table is read with the columns asked for only. A table, filter, value, column or run.json key
that does not exist is refused with the choices. The figures and the scorecard read runs through
:func:`bnopt.analysis.aggregate.load_table`, as :func:`load` does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bnopt.analysis.aggregate import IDENTITY, load_table, read_meta
from bnopt.plan.tables import OPTIONAL_TABLES, TABLES

ROOT = "results/runs"
# dataset/model/variant/lr{lr}/seed{seed}/run.json under the root
RUN_PATTERN = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<variant>[^/]+)/"
                         r"lr(?P<lr>[^/]+)/seed(?P<seed>\d+)/run\.json$")
TABLE_COLUMNS = TABLES | {name: columns for name, (columns, _) in OPTIONAL_TABLES.items()}
_TYPES = {"dataset": str, "model": str, "variant": str, "lr": float, "seed": int}


def _identities(root) -> list[tuple[dict, Path]]:
    """(identity, run.json path) of every finished run under ``root``, read from the folder
    names only."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no runs folder {root}: run snakemake first (README.md), or "
                                "pass root= the folder that holds dataset/model/variant/...")
    out = []
    for meta in sorted(root.glob("*/*/*/lr*/seed*/run.json")):
        m = RUN_PATTERN.search(meta.relative_to(root).as_posix())
        if m:
            out.append(({k: _TYPES[k](v) for k, v in m.groupdict().items()}, meta))
    return out


def _selected(root, filters: dict) -> list[tuple[dict, Path]]:
    """The finished runs under ``root`` that match ``filters`` (identity key -> a value or a
    list of values); an unknown key, or a value no finished run has, is refused."""
    unknown = sorted(set(filters) - set(IDENTITY))
    if unknown:
        raise ValueError(f"unknown filter {', '.join(unknown)}: filter on "
                         f"{', '.join(IDENTITY)}")
    found = _identities(root)
    if not found:
        raise ValueError(f"no finished runs under {root} (no run.json): run snakemake first")
    for key, want in filters.items():
        values = want if isinstance(want, (list, tuple, set)) else [want]
        values = [_TYPES[key](v) for v in values]
        present = sorted({ident[key] for ident, _ in found})
        missing = [v for v in values if v not in present]
        if missing:
            raise ValueError(f"{key} {', '.join(map(str, missing))}: no finished run under "
                             f"{root} has it; present: {', '.join(map(str, present))}")
        found = [(ident, meta) for ident, meta in found if ident[key] in values]
    return found


def runs(root=ROOT, **filters) -> pd.DataFrame:
    """One row per finished run under ``root`` matching ``filters``: ``dataset, model, variant,
    lr, seed``, then every key of its run.json (settings, outcome, timing, ``code_version``)."""
    rows = []
    for ident, meta in _selected(root, filters):
        m = read_meta(meta)
        rows.append({**ident, **{k: v for k, v in m.items() if k not in ident}})
    df = pd.DataFrame(rows)
    return df[IDENTITY + [c for c in df.columns if c not in IDENTITY]]


def load(table: str, root=ROOT, columns=None, meta=(), **filters) -> pd.DataFrame:
    """``table`` (e.g. "ics": ics.parquet) of every finished run under ``root`` matching
    ``filters``, as one DataFrame: ``dataset, model, variant, lr, seed``, then the run.json keys
    in ``meta`` (e.g. ``meta=["diverged"]``), then the table's ``columns`` (all by default; only
    those are read)."""
    if table not in TABLE_COLUMNS:
        raise ValueError(f"unknown table {table!r}: choose one of {', '.join(TABLE_COLUMNS)}")
    if columns is not None:
        columns = [columns] if isinstance(columns, str) else list(columns)
        bad = [c for c in columns if c not in TABLE_COLUMNS[table]]
        if bad:
            raise ValueError(f"{table} has no column {', '.join(bad)}: its columns are "
                             f"{', '.join(TABLE_COLUMNS[table])}")
    selected = _selected(root, filters)
    paths = [p for _, p in selected]
    if meta:
        meta = [meta] if isinstance(meta, str) else list(meta)
        keys = set(read_meta(paths[0]))
        bad = [k for k in meta if k not in keys]
        if bad:
            raise ValueError(f"run.json has no key {', '.join(bad)}: its keys are "
                             f"{', '.join(sorted(keys))}")
    missing = [p.parent for p in paths if not p.with_name(f"{table}.parquet").exists()]
    if missing:
        raise ValueError(f"{len(missing)} run(s) have no {table}.parquet (e.g. {missing[0]}): "
                         f"{table} is written only where its setting is on")
    return load_table(paths, table, columns=columns, meta=meta)

