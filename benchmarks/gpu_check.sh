#!/usr/bin/env bash
# Everything this project checks on a GPU, in one call on a bare, offline GPU box:
#   1. the CUDA tests (tests/test_cuda_graph.py, test_speed_options.py, test_tf32.py and the
#      graphed packed step of test_pack.py);
#   2. benchmarks/bench_pack.py (packed against solo steps) and bench_step.py's graphed step, and
#      the deep linear network's float64 step graphed on the GPU;
#   3. a real partial default sweep through snakemake: every variant of config.yaml (the VGG's
#      on the GPU, the DLN's on the CPU beside them) at a reduced step count, one lr and seed, on
#      generated data of CIFAR-10's shape (nothing can be downloaded there), its wall time
#      beside benchmarks/project_sweep.py's projection of the same config (both schedules), and
#      every job's start-up by stage, the projection's and the real jobs'.
# Each stage has its own time limit and appends to OUT/summary.md as it ends, so a stage that
# runs out of time leaves the others' results. Raw outputs sit beside it (7 files in all).
#
#   benchmarks/gpu_check.sh OUT          # on the GPU box (about 8 minutes on an H200)
#   benchmarks/gpu_check.sh --cpu OUT    # the same stages, tiny, on the CPU (tests/test_gpu_check.py);
#                                        # its sweep trains three of the runs, not all
#
# Run from the repository root. bnopt is imported from src/ when it is not installed; snakemake
# and jsonschema must be (on the lent box: the wheels of ../shared/wheels-py312.sh).
set -uo pipefail
mode=gpu
if [ "${1:-}" = "--cpu" ]; then mode=cpu; shift; fi
out=$(mkdir -p "${1:?usage: benchmarks/gpu_check.sh [--cpu] OUT}" && cd "$1" && pwd)
root=$(pwd)
python -c "import bnopt" 2>/dev/null || export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
summary=$out/summary.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

stage() {  # stage NAME LIMIT_S LOG COMMAND...: run, time, and record the outcome
  local name=$1 limit=$2 log=$3; shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local note=""
  [ $rc -eq 124 ] && note=" (stopped at its ${limit} s limit)"
  echo "- **$name**: exit $rc$note, $((SECONDS - t0)) s; \`$*\`" >>"$summary"
  return $rc
}

{
  echo "# gpu_check ($mode), $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  python -c "import torch, platform, os; print('- python', platform.python_version(), '| torch', torch.__version__, '| cores', os.cpu_count(), '| device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
  echo
} >"$summary"

if [ $mode = gpu ]; then
  tests=(-n 4 -k "gpu or graph"); pack=(--device cuda --json); limits=(100 120 240 130)
  step=(python benchmarks/bench_step.py --device cuda --cudnn-benchmark --precision tf32
        --cuda-graph --channels-last --steps 10 --warmup 3 --no-naive --json)
  dln_step=(python benchmarks/bench_step.py --device cuda --model dln --batch-size 1000
            --dtype float64 --vmap-probes --cuda-graph --steps 50 --warmup 5 --no-naive --json)
  data="fake_dataset('cifar10')"
  cat >"$work/over.yaml" <<'EOF'
steps: 300
lrs: [0.1]
seeds: [0]
fig1_lrs: [0.1]
fig3_lrs: [0.1]
dln: {steps: 300, lrs: [1.0e-6], seeds: [0], figure_lr: 1.0e-6, fig3_lrs: [1.0e-6]}
EOF
  project=(--device cuda --repeats 1 --seconds 0.2)
  targets=(results/tables/summary.csv)
else  # the same stages at toy sizes: collection only for the CUDA tests (they skip here)
  tests=(-n 0 --collect-only); pack=(--smoke --json); limits=(120 120 600 120)
  step=(python benchmarks/bench_step.py --smoke --no-naive --json)
  dln_step=(python benchmarks/bench_step.py --model dln --batch-size 1000 --dtype float64
            --vmap-probes --steps 2 --warmup 1 --no-naive --json)
  data=""  # the synthetic set: small enough for the projection's evaluations on 2 cores
  cat >"$work/over.yaml" <<'EOF'
dataset: synthetic
steps: 20
lrs: [0.1]
seeds: [0]
fig1_lrs: [0.1]
fig3_lrs: [0.1]
width: 0.125
batch_size: 16
eval_every: 20
log_every: 10
measure_every: 10
hist_every: 10
device: cpu
threads: 1
dln: {steps: 20, lrs: [1.0e-6], seeds: [0], figure_lr: 1.0e-6, fig3_lrs: [1.0e-6],
      eval_every: 20, log_every: 10, measure_every: 10, hist_every: 10}
EOF
  project=(--device cpu --repeats 1 --seconds 0)
  # three of its runs (two VGG variants, one DLN): the CPU has minutes, not the whole sweep
  mapfile -t targets < <(python -c "from bnopt.plan.runs import run_dir
for run in [('synthetic', 'vgg', 'batchnorm', 0.1), ('synthetic', 'vgg', 'standard', 0.1),
            ('dln', 'dln', 'l1', 1e-6)]:
    print(run_dir(*run, 0) + '/run.json')")
fi

echo "## CUDA tests" >>"$summary"
stage "pytest" "${limits[0]}" "$out/pytest.log" python -m pytest -q -p no:cacheprovider \
  "${tests[@]}" tests/test_cuda_graph.py tests/test_speed_options.py tests/test_tf32.py \
  tests/test_pack.py
tail -n 3 "$out/pytest.log" | sed 's/^/    /' >>"$summary"

echo "## Benchmarks" >>"$summary"
stage "bench_pack" "${limits[1]}" "$out/bench_pack.log" python benchmarks/bench_pack.py "${pack[@]}"
grep '^{' "$out/bench_pack.log" >"$out/bench_pack.jsonl"
python - "$out/bench_pack.jsonl" >>"$summary" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("\n| variant | mode | N | solo train | packed train | train speed-up | solo measured | packed measured | measured speed-up |")
print("|---|---|---|---|---|---|---|---|---|")
ms = lambda v: "-" if v is None else f"{v * 1e3:.2f} ms"
x = lambda v: "-" if v is None else f"{v:.2f}x"
for r in rows:
    print(f"| {r['variant']} | {r['mode']} | {r['runs']} | {ms(r['solo_train_s'])} | {ms(r['packed_train_s'])} "
          f"| {x(r['train_speedup'])} | {ms(r['solo_measured_s'])} | {ms(r['packed_measured_s'])} | {x(r['measured_speedup'])} |")
print()
EOF
stage "bench_step" 30 "$work/bench_step.log" "${step[@]}"
grep '^{' "$work/bench_step.log" | sed 's/^/    /' >>"$summary"
# the deep linear network's step where it runs: float64, full batch (on the GPU: graphed, the
# lever for --cores 1, where the DLN's CPU minutes add to the GPU's; BENCHMARKS.md)
stage "bench_step_dln" 60 "$work/bench_dln.log" "${dln_step[@]}"
grep '^{' "$work/bench_dln.log" | sed 's/^/    /' >>"$summary"

echo "## Partial default sweep" >>"$summary"
{ echo; echo "config.yaml with:"; echo '```yaml'; cat "$work/over.yaml"; echo '```'; } >>"$summary"
# the whole config (config.yaml and these changes, nested keys merged): what the projection reads
python - "$work/over.yaml" "$work/check.yaml" <<'EOF'
import sys, yaml
cfg, over = yaml.safe_load(open("config.yaml")), yaml.safe_load(open(sys.argv[1]))
for k, v in over.items():
    cfg[k] = {**cfg[k], **v} if isinstance(v, dict) else v
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
EOF
mkdir -p "$work/results/data"
cp config.yaml "$work/config.yaml"
[ -n "$data" ] && python -c "from bnopt.training.data import fake_dataset; $data.save('$work/results/data/cifar10.pt')"
t0=$SECONDS
stage "sweep" "${limits[2]}" "$out/sweep.log" python -m snakemake "${targets[@]}" \
  -s "$root/Snakefile" -d "$work" --configfile "$work/check.yaml" --cores "$(nproc)" --resources gpu=1
sweep_s=$((SECONDS - t0))
tail -n 2 "$out/sweep.log" | sed 's/^/    /' >>"$summary"
stage "projection" "${limits[3]}" "$out/projection.log" python benchmarks/project_sweep.py "$work/check.yaml" \
  "${project[@]}" --compare "$work/results/runs" --json
grep '^{' "$out/projection.log" >"$out/projection.json"
python - "$out/projection.json" "$sweep_s" >>"$summary" <<'EOF'
import json, sys
try:
    res = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(print("\nno projection (see projection.log)"))
print(f"\nsweep wall {sys.argv[2]} s (snakemake, every job, start-up included); projected "
      f"{res['profile_minutes'] * 60:.0f} s with the profile, {res['serial_minutes'] * 60:.0f} s "
      f"with --cores 1 ({res['runs']} runs, {res['gpu_minutes']:.2f} GPU-minutes, "
      f"{res['cpu_job_minutes']:.2f} CPU job-minutes)\n")
print("start-up by stage, seconds (the projection's job probe):\n")
for k, st in res.get("startup_stages_s", {}).items():
    print(f"- {k}: " + ", ".join(f"{n} {v:.2f}" for n, v in st.items()))
print("| row | projected job s | observed job s | job / projected |")
print("|---|---|---|---|")
for k, r in res.get("compare", {}).items():
    print(f"| {k} | {r['projected_job_s']:.1f} | {r['job_s']:.1f} | {r['job_over_projected']:.2f} |")
EOF
python - "$work/results/runs" >>"$summary" <<'EOF'
import glob, json, sys
print("\nthe sweep's real jobs, start-up by stage (run.json's job_stages_s; write_seconds; loop):\n")
for f in sorted(glob.glob(f"{sys.argv[1]}/*/*/*/*/*/run.json")):
    m = json.load(open(f))
    st = ", ".join(f"{k} {v:.2f}" for k, v in m.get("job_stages_s", {}).items())
    print(f"- {m['dataset']}/{m['model']}/{m['variant']}: {st}, write {m.get('write_seconds', 0):.2f}, "
          f"loop {m['wall_seconds']:.1f} s")
EOF
echo "summary: $summary"
