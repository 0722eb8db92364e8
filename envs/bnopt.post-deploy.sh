#!/usr/bin/env bash
# Snakemake runs this once in the conda env of envs/bnopt.yaml, right after creating it
# (--software-deployment-method conda): install bnopt itself, which every rule script imports,
# editable from this checkout, so the env runs the code the rules track as their inputs. The
# env file already holds its dependencies and build requirements: no downloads from PyPI.
set -euo pipefail
checkout="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install --quiet --no-deps --no-build-isolation --editable "$checkout"
