"""SLURM: refuse, before anything is submitted, a training job that no node could ever run.

SLURM accepts such a job and leaves it PENDING for ever (reason ``PartitionConfig`` or
``Resources``), and Snakemake waits on it without a word. ``check_requests`` compares what the
training jobs ask for with the largest node of their partition, as ``sinfo`` reports it, and
names the config key to change.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

# What a training job asks for, and the config key (or option) that sets it.
KEYS = {"mem_mb": "train_mem_mb", "cpus": "threads", "gpus": "device"}


@dataclass(frozen=True)
class Node:
    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    default: bool = False  # the cluster's default partition


def parse_sinfo(text: str) -> list[Node]:
    """Nodes from ``sinfo -h -N -o '%P|%c|%m|%G'`` (partition, CPUs, memory in MB, GRES)."""
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        part, cpus, mem, gres = line.split("|")[:4]
        gpus = 0
        for g in gres.split(","):  # gpu:4, gpu:a100:4, gpu:a100:4(S:0-1)
            fields = g.split("(")[0].split(":")
            if fields[0] == "gpu" and fields[-1].isdigit():
                gpus += int(fields[-1])
        nodes.append(Node(part.rstrip("*"), int(cpus.rstrip("+")), int(mem.rstrip("+")), gpus,
                          part.endswith("*")))
    return nodes


def sinfo_nodes(env=None) -> list[Node]:
    """Every node of the cluster as ``sinfo`` sees it (empty where sinfo is not installed)."""
    if shutil.which("sinfo") is None:
        return []
    r = subprocess.run(["sinfo", "-h", "-N", "-o", "%P|%c|%m|%G"], capture_output=True,
                       text=True, timeout=60, env=env)
    return parse_sinfo(r.stdout) if r.returncode == 0 else []


def check_requests(requests: list[dict], nodes: list[Node]) -> str | None:
    """Why some request can never run on ``nodes``, or None. A request: ``mem_mb``, ``cpus``,
    ``gpus`` and ``partition`` (None: the default partition), as a job would be submitted."""
    if not nodes:
        return None
    problems = []
    for req in requests:
        part = req.get("partition") or next((n.partition for n in nodes if n.default), None)
        fit = [n for n in nodes if n.partition == part]
        if not fit:
            names = sorted({n.partition for n in nodes})
            problems.append(f"partition {part!r} does not exist (this cluster has "
                            f"{', '.join(names)}): set slurm_partition")
            continue
        for what, unit in (("mem_mb", " MB"), ("cpus", ""), ("gpus", "")):
            most = max(getattr(n, what) for n in fit)
            if req.get(what, 0) > most:
                problems.append(
                    f"{what}={req[what]}{unit} is more than any node of partition {part!r} has "
                    f"(at most {most}{unit}): lower the config key {KEYS[what]}"
                    + (" (or train on the CPU with --config device=cpu)" if what == "gpus" else
                       f" (--config {KEYS[what]}=...)"))
    if not problems:
        return None
    return ("SLURM would accept these training jobs and leave them PENDING for ever:\n  - "
            + "\n  - ".join(dict.fromkeys(problems)))
