#!/usr/bin/env bash
# The whole GPU side of burnscope in one command, on a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu_suite.sh OUT_DIR [WHEEL_DIR]     (from a checkout: it runs the tests too)
#
# 1. installs burnscope (no dependency resolution; WHEEL_DIR may hold wheels of what the
#    machine lacks, installed first without network),
# 2. runs the GPU tests (CuPy-vs-NumPy preprocessing parity, CUDA engine tests) — they are
#    skipped on CPU-only machines, so this is where they really run,
# 3. benchmarks the engines (torch CUDA FP16/BF16 with CUDA graphs, batch 1…256, fidelity vs
#    fp32) and CuPy vs NumPy preprocessing (python -m burnscope.benchmarks.gpu),
# 4. benchmarks the burn-triage Holoscan graph end to end on the GPU (DICOM → report), paced
#    (unloaded latency) and flat out (throughput), when Holoscan imports.
#
# 5. benchmarks `burnscope serve`'s graph on the GPU: open-loop load with STAT images (targets:
#    STAT p99 <= 2x unloaded batch-1 p99 and <= 0.25x routine p99 at 90% of capacity; the STAT lane
#    runs on a high-priority CUDA stream), the batching curve, the reporting pool.
#
# PARTS (environment, default "tests engines pipeline service") picks the steps after the install.
# Everything lands in OUT_DIR: info.json, pytest-gpu.log, engines-gpu.{json,md},
# burn-triage-gpu-*.json, suite.log. Exit status: non-zero if the GPU tests failed.
set -uo pipefail
OUT=${1:?usage: gpu_suite.sh OUT_DIR [WHEEL_DIR]}
WHEELS=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
PARTS=${PARTS:-tests engines pipeline service}
mkdir -p "$OUT"
exec > >(tee "$OUT/suite.log") 2>&1
cd "$ROOT"
export PYTHONUNBUFFERED=1

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "install"
if [ -n "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile "$WHEELS"/*.whl || echo "wheel install failed"
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . || echo "burnscope install failed"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -m burnscope.applications.cli info --json > "$OUT/info.json" || echo "burnscope info failed"
cat "$OUT/info.json" 2>/dev/null | head -40

tests_rc=0
if [[ " $PARTS " == *" tests "* ]]; then
step "GPU tests"
# the GPU tests, plus the unit tests of the parts that take a GPU path when one is usable
"$PY" -m pytest -q -rs -p no:cacheprovider tests/gpu tests/unit/test_preprocess.py tests/unit/test_engines.py \
  tests/unit/test_inference_op.py tests/unit/test_batching.py \
  2>&1 | tee "$OUT/pytest-gpu.log"
tests_rc=${PIPESTATUS[0]}
fi

if [[ " $PARTS " == *" engines "* ]]; then
step "engines + preprocessing benchmark"
"$PY" -m burnscope.benchmarks.gpu --out "$OUT" --images sample_data || echo "GPU benchmark failed"
fi

if [[ " $PARTS " == *" pipeline "* ]]; then
step "burn-triage graph on the GPU"
# Latency: one image per message, paced (unloaded) and flat out, over sample_data. JSON and
# text reports only: DICOM SR and PDF rendering cost ~30 ms each on the CPU (docs/operators/reports.md).
for mode in paced flat; do
  extra=(); [ "$mode" = paced ] && extra=(--period-ms 20 --no-direct)
  timeout 300 "$PY" -m burnscope.applications.cli bench burn-triage -i sample_data --repeat 20 \
    --backend torch --precision fp16 --device gpu --batch-size 1 --formats json,txt "${extra[@]}" \
    --json "$OUT/burn-triage-gpu-$mode.json" || echo "burn-triage bench ($mode) failed"
done
# Throughput: batches of 32 over 40 copies of the sample studies (400 images, decode included).
many=$(mktemp -d)
for i in $(seq -w 1 40); do cp -r sample_data "$many/copy-$i"; done
timeout 300 "$PY" -m burnscope.applications.cli bench burn-triage -i "$many" --repeat 3 \
  --backend torch --precision fp16 --device gpu --batch-size 32 --formats json,txt \
  --json "$OUT/burn-triage-gpu-batch32.json" || echo "burn-triage bench (batch 32) failed"
# The same with decoding in a pool of 8 processes.
printf 'source:\n  executor: process\n  workers: 8\n' > "$many/../decode-processes.yaml"
timeout 300 "$PY" -m burnscope.applications.cli bench burn-triage -i "$many" --repeat 3 -c "$many/../decode-processes.yaml" \
  --backend torch --precision fp16 --device gpu --batch-size 32 --formats json,txt \
  --json "$OUT/burn-triage-gpu-batch32-procdecode.json" || echo "burn-triage bench (batch 32, process decode) failed"
fi

if [[ " $PARTS " == *" service "* ]]; then
step "burn-triage service on the GPU (load with STAT, batching curve, reporting pool)"
printf 'inference:\n  backend: torch\n  precision: fp16\n  device: gpu\npreprocess:\n  device: gpu\nbatching:\n  max_batch: 32\n  max_delay_ms: 2\nreport:\n  formats: [json, txt, sr, fhir]\n' > "$OUT/service-gpu.yaml"
timeout 900 "$PY" -m burnscope.benchmarks.service_load -c "$OUT/service-gpu.yaml" --model-config biomedclip --duration 60 \
  --json "$OUT/service-load-gpu.json" || echo "service load benchmark failed"
timeout 900 "$PY" -m burnscope.benchmarks.batching -c "$OUT/service-gpu.yaml" --model-config biomedclip --max-batch 8,32 \
  --burst 400 --rate 50 --json "$OUT/service-batching-gpu.json" --png "$OUT/service-batching-gpu.png" || echo "batching benchmark failed"
timeout 900 "$PY" -m burnscope.benchmarks.report_pool -c "$OUT/service-gpu.yaml" --model-config biomedclip --workers 0,4,8 \
  --burst 200 --json "$OUT/service-pool-gpu.json" || echo "reporting pool benchmark failed"
fi

step "done"
exit "$tests_rc"
