"""benchmarks/bench_scorecard.py in a small mode (its own file: the suite spreads files over
workers, and test_benchmark.py is the longest already)."""
import json
import subprocess
import sys

import yaml

from bnopt.plan.figure_specs import FIGURE_REGISTRY
from conftest import ROOT


def test_bench_scorecard_times_both_rules_on_tables_of_the_configs_size(tmp_path):
    """A small sweep (the quick preset, shortened): every run's folder is written with the real
    tables' columns, and the summary and the scorecard both run on them."""
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump({"steps": 60, "eval_every": 20, "log_every": 20,
                                     "measure_every": 10, "hessian_every": 20,
                                     "dln": {"steps": 60, "log_every": 20, "eval_every": 20,
                                             "measure_every": 10, "hessian_every": 20}}))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_scorecard.py"),
                        str(ROOT / "config.yaml"), str(ROOT / "workflow/presets/quick.yaml"),
                        str(short), "--repeats", "1", "--figures", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["runs"] == 51 and res["scorecard_runs"] == 51
    assert res["summary_s"] > 0 and res["scorecard_s"] > 0 and res["load_all_s"] > 0
    # every figure the quick preset draws: all but those of the earlier experiments' settings
    # it leaves off (single units for Ioffe & Szegedy; the update probes, which for its plain
    # SGD would be the gradient probes again)
    assert res["figures"] == len(FIGURE_REGISTRY) - 2
    assert res["figures_s"] > 0
