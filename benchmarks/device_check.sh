#!/usr/bin/env bash
# The GPU device check: one script, about 4 min (at most ~6 min, see BUDGET) on an H100/H200.
#
#   bash benchmarks/device_check.sh        # on the GPU machine, repo root, with .whl and .gpudata copied along
#
# Steps, each under `timeout` and each run even when the previous one failed:
#   0. install the wheels of .whl/ (pydantic and its deps, cp312) into /tmp/site, unless pydantic
#      already imports; print the GPU, Python, torch and Lightning versions;
#   1. pytest tests/gpu (training at 3 precisions x channels_last, resume, latency, profiling)
#      -> $OUT/gpu_tests.log
#   2. benchmarks/gpu_train.py (Lightning/plain training throughput)   -> $OUT/gpu_train.json
#   3. benchmarks/latency_predictor.py --torch-device cuda on both built-in spaces (full LUT, 150
#      archs end to end)  -> $OUT/latency_predictor_cuda.json, $OUT/gpu-latency-<space>.csv,
#      $OUT/gpu-profiles.tar.gz (lut.json + validation.csv of each space; the folders are in /tmp)
#   and a one-line summary. Everything printed also goes to $OUT/device_check.log (7 files in all).
#
# Data: .gpudata/ from `benchmarks/make_gpudata.py` (Fashion-MNIST, 12000 train / 2000 test images,
# at 28 px and pre-resized to 32 px: the 32 px copy needs no torchvision on the device).
# Environment: OUT (default ./device_out), PYTHON (default python3), DEVICE_CHECK_BUDGET_S (default
# 345: the steps' time limits shrink so that the whole script ends within it), DEVICE_CHECK_DRY_RUN=1
# (no GPU: gpu_train runs a tiny CPU version instead of refusing). Dry run on a CPU machine:
#   PYTHON=.venv/bin/python OUT=/tmp/devout DEVICE_CHECK_DRY_RUN=1 bash benchmarks/device_check.sh
set +e
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/device_out}
BUDGET=${DEVICE_CHECK_BUDGET_S:-345}
DRY=${DEVICE_CHECK_DRY_RUN:-0}
LATDIR=/tmp/hytnas-device-latency  # profile folders (outside $OUT; a rerun on the same machine continues them)
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HYTNAS_FMNIST_DIR=$PWD/.gpudata/fashion-mnist MPLBACKEND=Agg
T0=$SECONDS

# seconds a step may take: min(want, what is left of BUDGET minus reserve), at least 10
cap() {
  local want=$1 reserve=${2:-10} left
  left=$((BUDGET - (SECONDS - T0) - reserve))
  ((left < want)) && want=$left
  ((want < 10)) && want=10
  echo "$want"
}

main() {
  echo "== device_check $(date -u +%FT%TZ) in $PWD, out $OUT, budget ${BUDGET}s, python $PY"
  # ---- 0. wheels and versions
  if "$PY" -c 'import pydantic' 2>/dev/null; then
    echo "pydantic already importable: wheels not installed"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
  elif compgen -G ".whl/*.whl" >/dev/null; then
    PIP_ROOT_USER_ACTION=ignore timeout -k 5 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || echo "device_check: the wheel install failed (rc $?; the wheels are for CPython 3.12 x86_64)"
    export PYTHONPATH=/tmp/site:$PWD
  else
    echo "device_check: pydantic does not import and .whl/ holds no wheels (copy .whl along)"
    export PYTHONPATH=$PWD
  fi
  command -v nvidia-smi >/dev/null && timeout 30 nvidia-smi -L
  timeout -k 5 90 "$PY" - <<'EOF'
import importlib.util, platform
import torch, pytorch_lightning as pl
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()} | torch {torch.__version__} (cuda {torch.version.cuda}) | lightning {pl.__version__}"
      f" | torchvision {'yes' if importlib.util.find_spec('torchvision') else 'no'}"
      f" | device {torch.cuda.get_device_name() if cuda else 'none (no CUDA)'}"
      f"{' | bf16 ' + str(torch.cuda.is_bf16_supported()) if cuda else ''}")
import pydantic, hytnas.training, hytnas.costs, hytnas.hardware, hytnas.predictors, hytnas.data
print(f"pydantic {pydantic.VERSION}; hytnas imports ok from {hytnas.__path__[0]}")
EOF
  echo "setup: rc $? ($((SECONDS - T0)) s)"

  # ---- 1. GPU tests
  local t=$SECONDS to
  to=$(cap 150 150)  # leave room for steps 2 and 3
  local targs=(-q -p no:cacheprovider)
  "$PY" -c 'import pytest_timeout' 2>/dev/null && targs+=(--timeout=90)
  echo "== 1. pytest tests/gpu (limit ${to}s)"
  timeout -s INT -k 15 "$to" "$PY" -m pytest tests/gpu "${targs[@]}" 2>&1 | tee "$OUT/gpu_tests.log"
  R1=${PIPESTATUS[0]} S1=$((SECONDS - t))
  P1=$(grep -E "(passed|failed|skipped|error)" "$OUT/gpu_tests.log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')

  # ---- 2. training throughput
  t=$SECONDS
  to=$(cap 120 110)
  local gargs=(--root .gpudata/fashion-mnist-32px --out "$OUT/gpu_train.json")
  [ "$DRY" = 1 ] && gargs+=(--allow-cpu --steps 2 --warmup 1 --batch-size 32 --threads 1)
  echo "== 2. gpu_train ${gargs[*]} (limit ${to}s)"
  timeout -k 10 "$to" "$PY" benchmarks/gpu_train.py "${gargs[@]}"
  R2=$? S2=$((SECONDS - t))

  # ---- 3. latency predictors on the GPU
  t=$SECONDS
  to=$(cap 240 12)
  local largs=(--torch-device cuda --spaces hytnas-tiny,hytnas --lut full --runs 5 --warmup 2 --n-archs 150
               --n-train 75 --validate-runs 20 --repeat 20 --data-dir "$LATDIR" --out "$OUT/latency_predictor_cuda.json")
  echo "== 3. latency_predictor ${largs[*]} (limit ${to}s)"
  timeout -k 10 "$to" "$PY" benchmarks/latency_predictor.py "${largs[@]}"
  R3=$? S3=$((SECONDS - t))
  cp "$LATDIR"/gpu-latency-*.csv "$OUT/" 2>/dev/null
  local profiles
  profiles=$(cd "$LATDIR" 2>/dev/null && ls -d gpu-profile-* 2>/dev/null)
  [ -n "$profiles" ] && tar -czf "$OUT/gpu-profiles.tar.gz" -C "$LATDIR" $profiles

  echo "device_check: total $((SECONDS - T0)) s | 1. tests rc $R1 (${S1} s: ${P1:-no summary}) | 2. gpu_train rc $R2" \
       "(${S2} s) | 3. latency rc $R3 (${S3} s) | out: $(cd "$OUT" && ls | tr '\n' ' ')"
  [ "$R1" = 0 ] && [ "$R2" = 0 ] && [ "$R3" = 0 ]
}

main 2>&1 | tee "$OUT/device_check.log"
exit "${PIPESTATUS[0]}"
