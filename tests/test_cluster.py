"""The SLURM profile: a dry run resolves, and train jobs ask SLURM for one GPU each."""
import re
from types import SimpleNamespace

import pytest

from conftest import ROOT, run_snakemake

slurm = pytest.importorskip("snakemake_executor_plugin_slurm.utils")


class Resources(dict):
    """Stand-in for a job's resources as the executor reads them (.get and attributes)."""
    __getattr__ = dict.__getitem__


def test_slurm_profile_dry_run_maps_gpu_resource(tmp_path):
    r = run_snakemake(["results/figures/fig1_accuracy.png", "-n", "--workflow-profile",
                       str(ROOT / "profiles/slurm")], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    train = [m for m in re.findall(r"rule train:.*?resources: ([^\n]+)", out, re.S)]
    assert len(train) == 12
    res = Resources(kv.split("=", 1) for kv in train[0].split(", "))
    assert res["gpu"] == "1" and res["runtime"] == "240" and res["cpus_per_task"] == "4"
    # what the SLURM executor adds to sbatch for these resources
    assert slurm.set_gres_string(SimpleNamespace(resources=res)).strip() == "--gpus=1"
    res["gpu_model"] = "a100"
    assert slurm.set_gres_string(SimpleNamespace(resources=res)).strip() == "--gpus=a100:1"


def rule_blocks() -> dict[str, str]:
    """Each rule of the workflow's source (Snakefile and workflow/rules/*.smk) by name, with
    the text of its block (the figures' loop defines its rules as `rule:` + `name:`)."""
    text = (ROOT / "Snakefile").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "workflow/rules").glob("*.smk")))
    blocks = re.split(r"^\s*rule\b", text, flags=re.M)[1:]
    out = {}
    for b in blocks:
        name = re.match(r"\s*(\w*):", b)[1] or re.search(r"name:\s*(\S+)", b)[1]
        out[name] = b
    return out


def test_light_rules_stay_on_the_submitting_host():
    """Under the SLURM profile only training jobs are submitted: every other rule (data
    preparation, tables, the scorecard, figures, all) is a local rule."""
    blocks = rule_blocks()
    assert {"all", "prepare_data", "train", "summary", "scorecard", "fig0_scorecard",
            "_fig"} == set(blocks)
    remote = [name for name, b in blocks.items() if "localrule: True" not in b]
    assert remote == ["train"]
