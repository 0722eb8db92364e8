"""Which code made the runs: finished runs grouped by run.json's ``code_version``
(:func:`bnopt.running.provenance.code_version` writes it), and the sentence that names the groups
where a sweep mixes code. Training does not rerun when the code changes, so a sweep can hold runs
of several versions; claims.md, summary.csv and the end of a Snakemake run say so."""

from __future__ import annotations

UNRECORDED = "unrecorded"  # the code_version of a run made before runs recorded it


def code_groups(metas) -> dict[str, list[str]]:
    """The runs (run.json mappings, as read) by the code that made them: code_version ->
    run names ('variant lr= seed= (dataset/model)'). One key where all agree; runs made before
    runs recorded it fall under ``UNRECORDED``."""
    out: dict[str, list[str]] = {}
    for m in metas:
        name = f"{m['variant']} lr={m['lr']:g} seed={m['seed']} ({m['dataset']}/{m['model']})"
        out.setdefault(m.get("code_version") or UNRECORDED, []).append(name)
    return out


def mixed_code_note(metas) -> str:
    """A sentence naming the code of each group of runs where ``metas`` come from more than
    one version of the code; empty where they all agree."""
    groups = code_groups(metas)
    if len(groups) < 2:
        return ""
    parts = [f"{version}: {len(names)} run(s) ({', '.join(names[:3])}"
             f"{', ...' if len(names) > 3 else ''})" for version, names in sorted(groups.items())]
    return ("These runs were made by different code (run.json's code_version), so a difference "
            "between them may come from the code, not the network: " + "; ".join(parts)
            + ". Retrain the older ones (snakemake --forcerun train, or delete their folders) "
            "for a comparison by one version.")
