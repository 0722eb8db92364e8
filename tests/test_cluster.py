"""The SLURM profile: a dry run resolves, and train jobs ask SLURM for one GPU each."""
import ast
import re
import subprocess
from types import SimpleNamespace

import pytest

from conftest import ROOT, run_snakemake, snakemake_command

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
    # what each training job asks for comes from the config: train_mem_mb, train_runtime (and
    # threads: --cpus-per-task), not from numbers fixed in the profile
    assert res["gpu"] == "1" and res["runtime"] == "240" and res["mem_mb"] == "8000"
    r = run_snakemake(["results/figures/fig1_accuracy.png", "-n", "--workflow-profile",
                       str(ROOT / "profiles/slurm"), "--config", "train_mem_mb=2000",
                       "train_runtime=30", "threads=1"], tmp_path)
    train = re.findall(r"rule train:.*?resources: ([^\n]+)", r.stdout, re.S)
    assert len(train) == 12 and all("mem_mb=2000" in t and "runtime=30" in t for t in train)
    # what the SLURM executor adds to sbatch for these resources
    assert slurm.set_gres_string(SimpleNamespace(resources=res)).strip() == "--gpus=1"
    res["gpu_model"] = "a100"
    assert slurm.set_gres_string(SimpleNamespace(resources=res)).strip() == "--gpus=a100:1"


def test_sinfo_is_read_and_requests_no_node_can_run_are_named():
    from bnopt.running.cluster import Node, check_requests, parse_sinfo

    nodes = parse_sinfo("gpu|64|512000|gpu:a100:4(S:0-1)\ncpu*|128+|256000|(null)\n"
                        "gpu|32|128000|gpu:2,gpu:v100:1\n")
    assert nodes == [Node("gpu", 64, 512000, 4), Node("cpu", 128, 256000, 0, default=True),
                     Node("gpu", 32, 128000, 3)]
    ok = {"mem_mb": 8000, "cpus": 2, "gpus": 1, "partition": "gpu"}
    assert check_requests([ok], nodes) is None
    assert check_requests([ok], []) is None  # no sinfo: nothing to check against
    msg = check_requests([{**ok, "mem_mb": 600000, "cpus": 65}], nodes)
    assert "mem_mb=600000 MB is more than any node of partition 'gpu' has (at most 512000 MB)" in msg
    assert "lower the config key train_mem_mb" in msg and "config key threads" in msg
    msg = check_requests([{**ok, "partition": None}], nodes)  # the default partition: cpu
    assert "gpus=1 is more than any node of partition 'cpu' has (at most 0)" in msg
    assert "device=cpu" in msg
    assert "partition 'a100' does not exist" in check_requests([{**ok, "partition": "a100"}], nodes)


def test_light_rules_stay_on_the_submitting_host(tmp_path):
    """Under the SLURM profile only training jobs are submitted: every other rule (data
    preparation, tables, the scorecard, figures, all) is a local rule. Asked of Snakemake: a
    Snakefile that includes this workflow lists the rules it parsed and those it keeps local."""
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(
        f"include: {str(ROOT / 'Snakefile')!r}\n\n"
        "print('RULES', sorted(r.name for r in workflow.rules))\n"
        "print('REMOTE', sorted(r.name for r in workflow.rules\n"
        "                       if r.name not in workflow._localrules))\n")
    argv, env = snakemake_command(["-n", "--cores", "1"], tmp_path)
    argv[argv.index("-s") + 1] = str(wrapper)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    printed = dict(re.findall(r"^(RULES|REMOTE) (\[.*\])$", r.stdout, re.M))
    rules, remote = (ast.literal_eval(printed[k]) for k in ("RULES", "REMOTE"))
    assert {"all", "prepare_data", "train", "summary", "scorecard", "fig0_scorecard",
            "fig1_accuracy"} <= set(rules)
    assert remote == ["train"]
