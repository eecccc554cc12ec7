#!/usr/bin/env bash
# One-shot GPU evidence (issue 26 section 6), sized for <= 8 minutes on one H100/H200. Run it first in any session
# that is lent a GPU, from the repository root:
#
#   bash benchmarks/gpu_evidence.sh                 # everything, 480 s in all
#   bash benchmarks/gpu_evidence.sh --dry-run       # print and check every command (no GPU needed)
#   bash benchmarks/gpu_evidence.sh --budget 420 --authors-repo PATH --data-dir PATH
#
# Steps, each under `timeout`, each writing under benchmarks/results/gpu-evidence/ as it goes (and copying that
# folder to $OUT/gpu-evidence.tar.gz after every step when $OUT is set, so that a run cut short still returns what it
# finished; unpack it with `tar -xzf gpu-evidence.tar.gz -C benchmarks/results`):
#   1. pytest -m gpu                                        -> gpu-evidence/pytest_gpu.txt
#   2. sweep_speed.py --device cuda (masked vs compacted per sparsity, epoch time, sharing)
#   3. prune_speed.py --device cuda (needs the authors' code: --authors-repo or $AUTHORS_REPO; skipped without it)
#   4. transformer_scale.py --device cuda
#   5. scale.py --part memory --device cuda (issue 24: peak memory against the scoring-set size, micro-batched and
#      not, ResNet-18 at 64x64 and the 110M transformer)       -> gpu-evidence/scale_cuda.{md,json}
#   6. model_zoo.py --device cuda (issue 27: seconds per Panning round and peak memory per model)
#                                                              -> gpu-evidence/model_zoo_cuda.{md,json}
#   7. full-budget cells of issue 26 section 2 (profile lenet5-mnist, 80 epochs): 99.9 % then 99.99 %, methods
#      dense panning panning_authors synflow iterative_snip iterative_grasp rlpanning, seeds 0 1 2, as many as the
#      remaining time allows (finished cells are appended to runs.jsonl one by one; a cut leaves them intact).
#      They go to gpu-evidence/lenet5-mnist/; append its runs.jsonl lines to benchmarks/results/lenet5-mnist/
#      runs.jsonl (same profile and budget) and re-run the sweep with --report-only to merge them.
set -u -o pipefail

DRY=0
BUDGET=480
AUTHORS="${AUTHORS_REPO:-}"
DATA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --budget) BUDGET="$2"; shift ;;
    --authors-repo) AUTHORS="$2"; shift ;;
    --data-dir) DATA="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_evidence.sh: unknown argument '$1' (allowed: --dry-run, --budget S, --authors-repo P, --data-dir P)" >&2
       exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
RES=benchmarks/results/gpu-evidence
if [ -z "$DATA" ]; then
  for d in shared/datasets ../shared/datasets data; do
    if [ -d "$d" ]; then DATA="$d"; break; fi
  done
fi
if [ -z "$AUTHORS" ]; then
  for d in shared/authors ../authors authors; do
    if [ -d "$d" ]; then AUTHORS="$d"; break; fi
  done
fi
METHODS="dense panning panning_authors synflow iterative_snip iterative_grasp rlpanning"
# per-step caps (seconds); the cells get whatever is left, minus a reserve for copying the results
CAP_PYTEST=75
CAP_SPEED=120
CAP_PRUNE=45
CAP_TRANSFORMER=60
CAP_SCALE=180
CAP_ZOO=60
RESERVE=10

SPEED=("$PY" benchmarks/sweep_speed.py --device cuda --parts sparsity epochs --sparsities 99 99.9 99.99
       --short-epochs 1 --long-epochs 2 --jobs 1 --num-threads 1 --out "$RES")
PRUNE=("$PY" benchmarks/prune_speed.py --authors-repo "${AUTHORS:-<authors-repo>}" --device cuda --models lenet5
       --repeats 1 --out "$RES")
TRANSFORMER=("$PY" benchmarks/transformer_scale.py --device cuda --rounds 3 --out "$RES")
SCALE=("$PY" benchmarks/scale.py --part memory --device cuda --out "$RES")
ZOO=("$PY" -m benchmarks.model_zoo --device cuda --out "$RES")
PYTEST=("$PY" -m pytest -m gpu -q -p no:cacheprovider)
cells() {  # cells of one sparsity ($1) on the GPU, 8 at once
  echo "$PY" benchmarks/sweep.py --profile lenet5-mnist --methods $METHODS --sparsities "$1" --seeds 0 1 2 \
    --accelerator gpu --jobs 8 --num-threads 1 --no-progress --out "$RES/lenet5-mnist" ${DATA:+--data-dir "$DATA"}
}
if [ -n "$DATA" ]; then SPEED+=(--data-dir "$DATA"); fi

sync_out() {  # one archive: the lent machine returns at most 8 files from $OUT
  if [ -n "${OUT:-}" ] && [ -d "$RES" ]; then
    tar -czf "$OUT/gpu-evidence.tar.gz.part" -C "$(dirname "$RES")" "$(basename "$RES")" \
      && mv "$OUT/gpu-evidence.tar.gz.part" "$OUT/gpu-evidence.tar.gz"
  fi
}

left() { echo $(( BUDGET - SECONDS - RESERVE )); }

step() {  # step NAME CAP LOGFILE CMD...: run CMD under timeout min(CAP, time left), output to LOGFILE
  local name="$1" cap="$2" log="$3"; shift 3
  local limit; limit=$(left)
  if [ "$cap" -lt "$limit" ]; then limit="$cap"; fi
  if [ "$limit" -le 5 ]; then echo "== $name: skipped, no time left" | tee -a "$RES/steps.log"; return 0; fi
  echo "== $name (timeout ${limit}s): $*" | tee -a "$RES/steps.log"
  timeout -k 10 "$limit" "$@" > "$log" 2>&1
  local rc=$?
  echo "== $name: rc $rc after ${SECONDS}s in all$( [ $rc -eq 124 ] && echo ' (timed out)')" | tee -a "$RES/steps.log"
  tail -n 5 "$log"
  sync_out
}

if [ "$DRY" -eq 1 ]; then
  fail=0
  check() {  # check DESCRIPTION CMD...: run CMD quietly, report
    if "${@:2}" > /dev/null 2>&1; then echo "ok: $1"; else echo "FAILED: $1 ($*)"; fail=1; fi
  }
  has_options() {  # has_options SCRIPT OPTION...: every option appears in the script's --help
    local help; help=$("$PY" "$1" --help 2>&1) || { echo "FAILED: $1 --help"; fail=1; return; }
    local opt
    for opt in "${@:2}"; do
      grep -q -- "$opt" <<< "$help" || { echo "FAILED: $1 has no option $opt"; fail=1; }
    done
    echo "ok: $1 --help lists ${*:2}"
  }
  echo "Commands (budget ${BUDGET}s; data ${DATA:-default lookup}; authors' code ${AUTHORS:-none: prune_speed skipped}):"
  echo "  1. ${PYTEST[*]}   (cap ${CAP_PYTEST}s)"
  echo "  2. ${SPEED[*]}   (cap ${CAP_SPEED}s)"
  echo "  3. ${PRUNE[*]}   (cap ${CAP_PRUNE}s)"
  echo "  4. ${TRANSFORMER[*]}   (cap ${CAP_TRANSFORMER}s)"
  echo "  5. ${SCALE[*]}   (cap ${CAP_SCALE}s)"
  echo "  6. ${ZOO[*]}   (cap ${CAP_ZOO}s)"
  echo "  7. $(cells 99.9)   (the time left)"
  echo "  8. $(cells 99.99)   (the time left)"
  for f in benchmarks/sweep_speed.py benchmarks/prune_speed.py benchmarks/transformer_scale.py benchmarks/scale.py \
    benchmarks/sweep.py; do
    check "$f exists" test -f "$f"
  done
  check "timeout exists" command -v timeout
  has_options benchmarks/sweep_speed.py --device --parts --sparsities --short-epochs --long-epochs --jobs \
    --num-threads --out --data-dir
  has_options benchmarks/prune_speed.py --authors-repo --device --models --repeats --out
  has_options benchmarks/transformer_scale.py --device --rounds --out
  has_options benchmarks/scale.py --part --device --out
  has_options benchmarks/model_zoo.py --device --out
  has_options benchmarks/sweep.py --profile --methods --sparsities --seeds --accelerator --jobs --num-threads \
    --no-progress --out --data-dir --report-only
  check "pytest is installed" "$PY" -c "import pytest"
  check "the gpu marker is declared" grep -q '"gpu:' pyproject.toml
  tmp=$(mktemp -d)
  # the profile, methods, sparsities and seeds parse (report-only writes an empty report to a scratch folder)
  check "sweep cells of 99.9 and 99.99 % parse" "$PY" benchmarks/sweep.py --profile lenet5-mnist --methods $METHODS \
    --sparsities 99.9 99.99 --seeds 0 1 2 --out "$tmp/cells" --report-only
  rm -rf "$tmp"
  if [ "$fail" -ne 0 ]; then echo "dry run: some checks FAILED"; exit 1; fi
  echo "dry run: every command checked"
  exit 0
fi

mkdir -p "$RES"
: > "$RES/steps.log"
# a copy without .git (the lent machine gets the working tree only) names its commit in LIGHTNING_PANNING_GIT_COMMIT,
# which the records' provenance reads too (benchmarks/sweep/provenance.py)
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo "${LIGHTNING_PANNING_GIT_COMMIT:-not recorded} (given by the caller)")
echo "gpu_evidence.sh on $(date -u +%FT%TZ), commit $COMMIT, budget ${BUDGET}s" \
  | tee -a "$RES/steps.log"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$RES/steps.log"
step "pytest -m gpu" "$CAP_PYTEST" "$RES/pytest_gpu.txt" "${PYTEST[@]}"
step "sweep_speed" "$CAP_SPEED" "$RES/sweep_speed.log" "${SPEED[@]}"
if [ -n "$AUTHORS" ]; then
  step "prune_speed" "$CAP_PRUNE" "$RES/prune_speed.log" "${PRUNE[@]}"
else
  echo "== prune_speed: skipped (no authors' code: pass --authors-repo or set AUTHORS_REPO)" | tee -a "$RES/steps.log"
fi
step "transformer_scale" "$CAP_TRANSFORMER" "$RES/transformer_scale.log" "${TRANSFORMER[@]}"
step "scale memory" "$CAP_SCALE" "$RES/scale.log" "${SCALE[@]}"
step "model_zoo" "$CAP_ZOO" "$RES/model_zoo.log" "${ZOO[@]}"
for sparsity in 99.9 99.99; do
  # shellcheck disable=SC2046  # the command is built word by word by `cells`
  step "cells at $sparsity %" "$BUDGET" "$RES/cells_$sparsity.log" $(cells "$sparsity")
done
echo "== done after ${SECONDS}s" | tee -a "$RES/steps.log"
sync_out
