#!/usr/bin/env bash
# The v2 benchmark table on a GPU machine, plus hytnas-tiny host latency on its idle CPU cores.
#
#   bash benchmarks/device_v2.sh     # on the GPU machine, repo root, with .whl (pydantic wheels) and
#                                    # .fmnist (Fashion-MNIST's four IDX .gz files) copied along
#
# 1. benchmarks/build_table_gpu.py train: 12 worker processes (pinned to CPUs 0-11) train the 340
#    trials of the list on the GPU, schedule calibrated to TRAIN_BUDGET_S (default 470 s);
#    /tmp/hytnas-v2 keeps the trials, so a second run on the same machine continues;
# 2. at the same time, on CPU 14 alone: benchmarks/latency_predictor.py on hytnas-tiny
#    (5 interleaved rounds, 300 archs, train 100 / test 200);
# Dry run without a GPU: DEVICE=cpu SKIP_LATENCY=1 WORKERS=2 EXTRA_ARGS="--limit 2 --epochs 1 --train-size 1024
#    --val-size 256 --test-size 256 --batch-size 256" OUT=/tmp/devout PYTHON=.venv/bin/python bash benchmarks/device_v2.sh
# 3. copies to $OUT: schedule.json, rows.jsonl, failed.jsonl, train.log, smi.csv (GPU utilisation
#    every 5 s), latency_tiny_xeon.json, latency.log, lat.tgz (its CSV and profile folder).
set +e
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-$PWD/device_out}
PY=${PYTHON:-python3}
RAW=/tmp/hytnas-v2
mkdir -p "$OUT" "$RAW"
# RESUME_FROM: a folder (tracked, or copied along) with an earlier run's schedule.json, rows.jsonl, train.log
[ -n "${RESUME_FROM:-}" ] && [ ! -f "$RAW/rows.jsonl" ] && cp "$RESUME_FROM"/* "$RAW"/ && echo "resuming from $RESUME_FROM"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if ! "$PY" -c 'import pydantic' 2>/dev/null; then
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || echo "device_v2: wheel install failed"
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -l 5 > "$OUT/smi.csv" 2>/dev/null &
SMI=$!
LAT_PID=
if [ "${SKIP_LATENCY:-0}" != 1 ]; then
  timeout -k 5 "${LATENCY_BUDGET_S:-420}" taskset -c 14 "$PY" benchmarks/latency_predictor.py --torch-device cpu --threads 1 \
    --spaces hytnas-tiny --rounds 5 --runs 4 --validate-runs 10 --n-archs 300 --n-train 100 --repeat 30 \
    --data-dir /tmp/lat --out "$OUT/latency_tiny_xeon.json" > "$OUT/latency.log" 2>&1 &
  LAT_PID=$!
fi
timeout -k 10 "$((${TRAIN_BUDGET_S:-470} + 60))" "$PY" benchmarks/build_table_gpu.py train --root .fmnist --out "$RAW" \
  --workers "${WORKERS:-12}" --pin --time-budget "${TRAIN_BUDGET_S:-470}" --device "${DEVICE:-cuda}" $EXTRA_ARGS
echo "train: rc $?"
cp "$RAW"/schedule.json "$RAW"/rows.jsonl "$RAW"/train.log "$OUT/" 2>/dev/null
cp "$RAW"/failed.jsonl "$OUT/" 2>/dev/null
[ -n "$LAT_PID" ] && { wait "$LAT_PID"; echo "latency: rc $?"; tail -25 "$OUT/latency.log"; tar -czf "$OUT/lat.tgz" -C /tmp lat 2>/dev/null; }
kill "$SMI" 2>/dev/null
echo "rows: $(wc -l < "$RAW/rows.jsonl" 2>/dev/null)"
