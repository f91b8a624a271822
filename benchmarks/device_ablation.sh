#!/usr/bin/env bash
# The mobo ablation (benchmarks/mobo_ablation.py, DTLZ2 grid problem, Ray-free) on a machine with
# many idle cores: one process per (variant, seed), PAR at a time, each under RUN_LIMIT seconds.
#
#   bash benchmarks/device_ablation.sh            # repo root; on a GPU machine, with .whl copied along
#
# The ablation drives MOBOSearcher directly (suggest / on_trial_complete, no Tune), so the only
# Ray name it needs is the base class ``ray.tune.search.Searcher``. The H200 GPU machine it ran on
# (2026-11-26) had torch and BoTorch but no Ray (its wheel was too large to copy along): there, and
# only when ``import ray`` fails, a stand-in for that one class (the attributes ArchSearcher uses)
# is written to /tmp/rayshim and put on PYTHONPATH. Nothing of it is part of the package.
#
# Environment: OUT (default ./device_out), PYTHON (python3), VARIANTS (comma-separated, see
# mobo_ablation.py), SEEDS (5), BUDGET (100), PAR (cores - 1), RUN_LIMIT (seconds per run, 420),
# TOTAL (seconds for all the runs, 480: a run never goes past it; one that would start with under
# 30 s left is skipped).
# Writes the runs to /tmp/hytnas-abl/runs/<variant>-seed<k>.json (a log per run next to them) and
# puts two files in $OUT: mobo_ablation.json (the summary) and abl-runs.tar.gz (runs and logs).
set +e
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/device_out}
VARIANTS=${VARIANTS:-categorical-front,nehvi,parego,qlogehvi,n-init-5,center}
SEEDS=${SEEDS:-5}
BUDGET=${BUDGET:-100}
PAR=${PAR:-$(($(nproc) > 1 ? $(nproc) - 1 : 1))}
RUN_LIMIT=${RUN_LIMIT:-420}
TOTAL=${TOTAL:-480}
ABL=/tmp/hytnas-abl
mkdir -p "$OUT" "$ABL/runs"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

if ! "$PY" -c "import pydantic" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$PY" -c "import ray.tune.search" 2>/dev/null; then
  mkdir -p /tmp/rayshim/ray/tune/search
  : >/tmp/rayshim/ray/__init__.py
  : >/tmp/rayshim/ray/tune/__init__.py
  cat >/tmp/rayshim/ray/tune/search/__init__.py <<'EOF'
"""Stand-in for ray.tune.search.Searcher (benchmarks/device_ablation.sh; no Ray on this machine)."""


class Searcher:
    FINISHED = "FINISHED"

    def __init__(self, metric=None, mode=None):
        self._metric, self._mode = metric, mode

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode
EOF
  export PYTHONPATH=/tmp/rayshim${PYTHONPATH:+:$PYTHONPATH}
  echo "no Ray here: ray.tune.search.Searcher stand-in on PYTHONPATH"
fi
"$PY" -c "import torch, botorch; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'botorch', botorch.__version__)"
echo "variants $VARIANTS, seeds $SEEDS, budget $BUDGET, $PAR at a time, $(nproc) cores"

T0=$SECONDS
DEADLINE=$(($(date +%s) + TOTAL))
export PY ABL BUDGET RUN_LIMIT DEADLINE
for v in ${VARIANTS//,/ }; do
  for ((s = 0; s < SEEDS; s++)); do echo "$v $s"; done
done | xargs -P "$PAR" -n 2 sh -c 'left=$((DEADLINE - $(date +%s))); [ "$left" -lt "$RUN_LIMIT" ] && RUN_LIMIT=$left
  [ "$RUN_LIMIT" -lt 30 ] && { echo "$1 seed $2: skipped (time)"; exit 0; }
  timeout "$RUN_LIMIT" "$PY" benchmarks/mobo_ablation.py --variants "$1" --seeds 1 \
    --first-seed "$2" --budget "$BUDGET" --out "$ABL" >"$ABL/log-$1-$2.txt" 2>&1; echo "$1 seed $2: rc $? at $(date +%T)"' _
echo "all runs ended after $((SECONDS - T0)) s"
"$PY" benchmarks/mobo_ablation.py --report --out "$ABL" 2>&1 | grep -v -i warn
cp "$ABL/mobo_ablation.json" "$OUT/" 2>/dev/null
tar czf "$OUT/abl-runs.tar.gz" -C "$ABL" .
