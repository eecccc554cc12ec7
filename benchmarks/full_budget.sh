#!/usr/bin/env bash
# The paper's full budget on CPU (issue 26 section 2), in the order, resumable across sessions.
#
#   bash benchmarks/full_budget.sh                         # --jobs 2 --num-threads 1, data from the default root
#   bash benchmarks/full_budget.sh --jobs 1 --data-dir PATH --out-root PATH
#   bash benchmarks/full_budget.sh --dry-run               # print the commands only
#
# Each step is one `benchmarks/sweep.py` call; the sweep skips every cell already in the profile's runs.jsonl, so a
# run cut short (the session ends, the machine restarts) resumes where it stopped when started again. Finished cells
# are appended one by one. Order (issue 26 section 2):
#   1. LeNet5/MNIST (profile lenet5-mnist, Table 1: 80 epochs) at 99.9 % then 99.99 %: Panning, panning_authors,
#      SynFlow (iterative), iterative SNIP (FORCE), iterative GraSP, RLPanning (shipped policy); seeds 0 1 2; dense.
#   2. LeNet5/FashionMNIST (lenet5-fashionmnist) at 99.9 %: the same methods and seeds; dense.
#   3. MNIST and FashionMNIST at 99 %; then 90, 95, 98 %.
# Run it from a clean checkout of a committed commit (each record names the commit and whether the tree was dirty),
# e.g. a `git worktree`, and copy its results folders back (then `python benchmarks/sweep.py --profile P
# --report-only`). Do not time anything on the machine while it runs.
set -u -o pipefail

JOBS=2
THREADS=1
DATA=""
OUT_ROOT=""
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS="$2"; shift 2 ;;
    --num-threads) THREADS="$2"; shift 2 ;;
    --data-dir) DATA="$2"; shift 2 ;;
    --out-root) OUT_ROOT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "full_budget.sh: unknown argument '$1' (allowed: --jobs N, --num-threads N, --data-dir PATH, --out-root PATH, --dry-run)" >&2; exit 2 ;;
  esac
done
case "$JOBS$THREADS" in
  *[!0-9]*|""|0*) echo "full_budget.sh: --jobs and --num-threads must be positive integers, got '$JOBS' and '$THREADS'" >&2; exit 2 ;;
esac

METHODS="panning panning_authors synflow iterative_snip iterative_grasp rlpanning"
SEEDS="0 1 2"

step() {  # step PROFILE ARGS...
  local profile="$1"; shift
  local cmd=(python benchmarks/sweep.py --profile "$profile" --accelerator cpu --jobs "$JOBS" --num-threads "$THREADS"
             --no-progress --seeds $SEEDS "$@")
  [ -n "$DATA" ] && cmd+=(--data-dir "$DATA")
  [ -n "$OUT_ROOT" ] && cmd+=(--out "$OUT_ROOT/$profile")
  echo "+ ${cmd[*]}"
  if [ "$DRY" -eq 0 ]; then
    "${cmd[@]}" || { echo "full_budget.sh: step failed (exit $?); re-run to resume" >&2; exit 1; }
  fi
}

step lenet5-mnist --methods $METHODS --sparsities 99.9
step lenet5-mnist --methods $METHODS --sparsities 99.99
step lenet5-mnist --methods dense
step lenet5-fashionmnist --methods $METHODS --sparsities 99.9
step lenet5-fashionmnist --methods dense
step lenet5-mnist --methods $METHODS --sparsities 99
step lenet5-fashionmnist --methods $METHODS --sparsities 99
for sparsity in 90 95 98; do
  step lenet5-mnist --methods $METHODS --sparsities "$sparsity"
  step lenet5-fashionmnist --methods $METHODS --sparsities "$sparsity"
done
