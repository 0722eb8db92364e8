"""Which code made a run: bnopt's version, and where the package runs from a git checkout, its
revision (``git describe --always --dirty``). A run records it in run.json as
``code_version``; summary.csv has it as a column, and claims.md and the end of a Snakemake run
say when runs come from different code (:mod:`bnopt.analysis.code_versions`). Training does not rerun when the code changes
(an upgrade retrains nothing), so this is how a sweep that mixes code says so."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
from functools import cache
from pathlib import Path

import bnopt

PACKAGE = Path(bnopt.__file__).parent


def package_version() -> str:
    """bnopt's version as installed (pyproject.toml's, for an editable install too)."""
    try:
        return importlib.metadata.version("bnopt")
    except importlib.metadata.PackageNotFoundError:  # on sys.path without being installed
        return "0+unknown"


def source_revision(folder: Path = PACKAGE) -> str | None:
    """``git describe --always --dirty --abbrev=12`` of the checkout that holds ``folder``, or
    None where it is not in a git checkout (a wheel) or git cannot say."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder,
                             capture_output=True, text=True, timeout=10)
        if top.returncode or not (Path(top.stdout.strip()) / "src" / "bnopt").is_dir():
            return None  # not bnopt's own checkout (say, a wheel inside another repository)
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs on a network disk
        return None
    if out.returncode or not out.stdout.strip():
        return None
    return out.stdout.strip()


def source_digest(folder: Path = PACKAGE) -> str:
    """12 hex digits of SHA-256 over the package's Python files and package data, by relative
    path: what tells two uncommitted edits of a dirty checkout apart."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts:
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@cache
def code_version() -> str:
    """The code this process runs, for run.json: the version alone from an install without a
    checkout (``0.1.0``), with the revision from a checkout (``0.1.0+git.2b2942f1d3c4``), and
    for uncommitted changes the digest of the sources too
    (``0.1.0+git.2b2942f1d3c4-dirty.5e0c8a1b9f2d``)."""
    version, revision = package_version(), source_revision()
    if revision is None:
        return version
    if revision.endswith("-dirty"):
        revision += f".{source_digest()}"
    return f"{version}+git.{revision}"
