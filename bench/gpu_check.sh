#!/usr/bin/env bash
# The GPU checks, in one run on a machine with a CUDA GPU and memtune importable (installed, or
# on PYTHONPATH with its dependencies):
#   1. the CUDA tests (-m gpu): every implementation against the float64 for-loop on the GPU,
#      and no host sync inside a step; beside them, at the same time,
#   2. a study whose trials ask for half a GPU each (bench/gpu_study.yaml): the device each
#      trial ran on, and the most trial processes that held the GPU at once (NVML, sampled);
#   3. bench/optimizer_step.py on a 113M-parameter MLP, float32 (with compile times) and bf16.
# Every stage has its own time limit, so one that hangs or fails leaves the others' figures.
#
#   OUT=results bash bench/gpu_check.sh [stage ...]      # stages: tests study bench (all)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check}
mkdir -p "$out"
python=${PYTHON:-python3}
stages=${*:-tests study bench}
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
"$python" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

# The tests and the study check what runs, not how fast: they share the machine, at once.
if [[ " $stages " == *" tests "* ]]; then
  timeout 150 "$python" -m pytest -q -m gpu -p no:cacheprovider tests/optimizers \
    >"$out/tests.txt" 2>&1 &
  tests=$!
fi

if [[ " $stages " == *" study "* ]]; then
  echo "== study with gpu: 0.5 per trial"
  # The processes holding the GPU, sampled every 0.2 s through NVML while the study runs. With
  # the tests stage, its pytest process holds the GPU too: two trials at once read as 3.
  "$python" - "$out/gpu_apps.txt" <<'PY' &
import sys, time
import pynvml
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
most, seen = 0, set()
with open(sys.argv[1], "w") as log:
    while True:
        pids = {p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        seen |= pids
        most = max(most, len(pids))
        log.write(f"{time.time():.1f} {sorted(pids)} most {most} distinct {len(seen)}\n")
        log.flush()
        time.sleep(0.2)
PY
  sampler=$!
  timeout 150 "$python" -m memtune run bench/gpu_study.yaml --json "$out/gpu_study.json" \
    2>&1 | tee "$out/study.txt" | tail -25
  kill "$sampler" 2>/dev/null
  tail -1 "$out/gpu_apps.txt"
  "$python" - "$out/gpu_study.json" <<'PY'
import collections, json, sys
trials = json.load(open(sys.argv[1]))["trials"].values()
print("trial states:", dict(collections.Counter(t["state"] for t in trials)))
print("devices the trials' epochs ran on:",
      dict(collections.Counter(e.get("device") for t in trials for e in t["epochs"])))
PY
fi

if [[ " $stages " == *" tests "* ]]; then
  wait "$tests"
  echo "== CUDA tests (-m gpu)"
  tail -15 "$out/tests.txt"
fi

if [[ " $stages " == *" bench "* ]]; then
  # The step tables first (float32, then bf16), the cold and warm compiles last: on a lease that
  # runs out, the ratios are what matters most.
  bench="bench/optimizer_step.py --device cuda --width 10240 --rounds 5"
  echo "== optimizer step, float32"
  timeout 150 "$python" $bench --no-compile-times 2>&1 | tee "$out/bench_float32.txt"
  echo "== optimizer step, bfloat16"
  timeout 120 "$python" $bench --dtype bfloat16 --no-compile-times 2>&1 | tee "$out/bench_bf16.txt"
  echo "== compile times, float32"
  timeout 200 "$python" $bench --compile-times-only 2>&1 | tee "$out/compile_times.txt"
fi
