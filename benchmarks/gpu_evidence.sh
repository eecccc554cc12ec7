#!/usr/bin/env bash
# One-shot GPU evidence (issue 26 section 6, issue 24's CUDA memory), sized for <= 10 minutes on one H100/H200.
# Run it first in any session that is lent a GPU. Here, on the CPU machine, first:
#
#   bash benchmarks/gpu_prepare.sh                  # builds .gpu/ (wheels, MNIST, authors' code, commit); prints the call
#
# then, on the lent machine, from the repository root (the device tool's `run`, carry [".gpu"]):
#
#   bash benchmarks/gpu_evidence.sh --carried .gpu --budget 600
#   bash benchmarks/gpu_evidence.sh --dry-run       # print and check every command (no GPU needed)
#   bash benchmarks/gpu_evidence.sh --steps scale,cells --budget 300 --authors-repo PATH --data-dir PATH
#
# Before any step it checks that every module the steps import is there (--preflight does only that): on a lent
# machine a missing wheel otherwise costs the whole call. Steps, each under `timeout`, each writing under
# benchmarks/results/gpu-evidence/<UTC date-HHMM>/ (RES below) as it goes, archived to $OUT/gpu-evidence.tar.gz
# after every step when $OUT is set (the lent machine returns at most 8 files; a run cut short still returns what it
# finished; unpack it with `tar -xzf gpu-evidence.tar.gz -C benchmarks/results`):
#   pytest       pytest -m gpu                                           -> RES/pytest_gpu.txt
#   speed        sweep_speed.py --device cuda (masked vs compacted per sparsity, epoch time, sharing)
#   prune        prune_speed.py --device cuda (needs the authors' code: --authors-repo, $AUTHORS_REPO or --carried)
#   transformer  transformer_scale.py --device cuda
#   scale        scale.py --part memory --device cuda --models transformer-110M --sizes 2048 (issue 24: the one
#                point of peak memory against the set size that the 2026-12-04-1222 run's cap cut)
#   cells        full-budget cells of issue 26 section 2 (80 epochs; methods dense panning panning_authors synflow
#                iterative_snip iterative_grasp rlpanning; seeds 0 1 2), two sweeps side by side, each first
#                `sweep.py --contested` (seeds 3 and 4 where the committed summary says contested, issue 26
#                section 3), then one sweep call per sparsity in the issue's order: lenet5-mnist at 99.9, 99.99,
#                99, 90, 95, 98 % and lenet5-fashionmnist at 99.9, 99, 90, 95, 98 %, as many as the time allows.
#                Each profile's committed
#                runs.jsonl is copied in first, so the cells already finished (on CPU or an earlier GPU) are
#                skipped. Merge back: `python benchmarks/sweep.py --profile P --merge-from RES/P`.
#   zoo          model_zoo.py --device cuda (issue 27, resolved: last, with what time is left)
# --steps takes a comma-separated list, run in the order given (default: all, in the order above). A step gets its
# cap or the time left, whichever is less; the cells get the time left less the caps of the steps after them.
set -u -o pipefail

ALL_STEPS="pytest,speed,prune,transformer,scale,cells,zoo"
DRY=0
PREFLIGHT_ONLY=0
SCRUB_ONLY=""
BUDGET=600
AUTHORS="${AUTHORS_REPO:-}"
DATA=""
CARRIED=""
STEPS="$ALL_STEPS"
usage="allowed: --dry-run, --preflight, --budget S, --authors-repo P, --data-dir P, --carried DIR, --steps LIST, --scrub DIR"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --preflight) PREFLIGHT_ONLY=1 ;;
    --budget|--authors-repo|--data-dir|--carried|--steps|--scrub)
      if [ $# -lt 2 ]; then echo "gpu_evidence.sh: $1 needs a value ($usage)" >&2; exit 2; fi
      case "$1" in
        --budget) BUDGET="$2" ;;
        --authors-repo) AUTHORS="$2" ;;
        --data-dir) DATA="$2" ;;
        --carried) CARRIED="$2" ;;
        --steps) STEPS="$2" ;;
        --scrub) SCRUB_ONLY="$2" ;;
      esac
      shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "gpu_evidence.sh: unknown argument '$1' ($usage)" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ "$BUDGET" =~ ^[0-9]+$ ]] || [ "$BUDGET" -lt 30 ]; then
  echo "gpu_evidence.sh: --budget $BUDGET: expected whole seconds, at least 30" >&2; exit 2
fi
for s in ${STEPS//,/ }; do
  case ",$ALL_STEPS," in
    *",$s,"*) ;;
    *) echo "gpu_evidence.sh: --steps $STEPS: unknown step '$s' (allowed: $ALL_STEPS)" >&2; exit 2 ;;
  esac
done
wants() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python}"
scrub() {  # scrub FILE...: machine paths out of logs (the repository root, site-packages, /tmp, home), in place
  local root; root=$(pwd -P)
  sed -i -E -e "s#${root}/##g" -e "s#/[^ :\"']*/site-packages/#<site-packages>/#g" \
    -e "s#/tmp/[^ :\"']*#<tmp>#g" -e "s#/root/[^ :\"']*#<home>#g" "$@"
}
if [ -n "$SCRUB_ONLY" ]; then  # --scrub DIR: scrub the logs of an earlier run (RES below) and stop
  if [ ! -d "$SCRUB_ONLY" ]; then echo "gpu_evidence.sh: --scrub $SCRUB_ONLY: no such folder" >&2; exit 2; fi
  while IFS= read -r -d '' f; do scrub "$f"; done < <(find "$SCRUB_ONLY" -type f \( -name '*.log' -o -name '*.txt' \) -print0)
  exit 0
fi
if [ -n "$CARRIED" ]; then  # what benchmarks/gpu_prepare.sh packed: wheels, gzipped datasets, authors' code, commit
  if [ ! -d "$CARRIED" ]; then echo "gpu_evidence.sh: --carried $CARRIED: no such folder" >&2; exit 2; fi
  if [ "$DRY" -eq 0 ] && compgen -G "$CARRIED/whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lp-site \
      "$CARRIED"/whl/*.whl || { echo "gpu_evidence.sh: installing $CARRIED/whl failed" >&2; exit 3; }
    export PYTHONPATH="/tmp/lp-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if [ -d "$CARRIED/datasets" ]; then
    if [ "$DRY" -eq 0 ]; then
      while IFS= read -r gz; do gunzip -c "$gz" > "${gz%.gz}" || exit 3; done \
        < <(find "$CARRIED/datasets" -name '*.gz')
    fi
    DATA="${DATA:-$CARRIED/datasets}"
  fi
  if [ -d "$CARRIED/authors" ] && [ -z "$AUTHORS" ]; then AUTHORS="$CARRIED/authors"; fi
  if [ -f "$CARRIED/commit" ]; then
    export LIGHTNING_PANNING_GIT_COMMIT; LIGHTNING_PANNING_GIT_COMMIT=$(cat "$CARRIED/commit")
    if [ -f "$CARRIED/dirty" ]; then
      export LIGHTNING_PANNING_GIT_DIRTY; LIGHTNING_PANNING_GIT_DIRTY=$(cat "$CARRIED/dirty")
    fi
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
RES="benchmarks/results/gpu-evidence/$(date -u +%F-%H%M)"  # one folder per run: earlier runs stay as committed
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
# per-step caps (seconds); the cells get whatever is left, minus a reserve for archiving the results
CAP_PYTEST=60
CAP_SPEED=120
CAP_PRUNE=60
CAP_TRANSFORMER=75
CAP_SCALE=120
CAP_ZOO=90
RESERVE=10

SPEED=("$PY" benchmarks/sweep_speed.py --device cuda --parts sparsity epochs --sparsities 99 99.9 99.99
       --short-epochs 1 --long-epochs 2 --jobs 1 --num-threads 1 --out "$RES")
PRUNE=("$PY" benchmarks/prune_speed.py --authors-repo "${AUTHORS:-<authors-repo>}" --device cuda --models lenet5
       --repeats 1 --out "$RES")
TRANSFORMER=("$PY" benchmarks/transformer_scale.py --device cuda --rounds 3 --out "$RES")
# the one point of issue 24's CUDA memory evidence still missing (the rest: gpu-evidence/2026-12-04-1222/scale_cuda.md)
SCALE=("$PY" benchmarks/scale.py --part memory --device cuda --models transformer-110M --sizes 2048 --out "$RES")
ZOO=("$PY" -m benchmarks.model_zoo --device cuda --out "$RES")
PYTEST=("$PY" -m pytest -m gpu -q -p no:cacheprovider)
CELL_JOBS=7  # per profile: two sweeps side by side, 14 cells at once (one CPU thread each; the machine has 16 cores)
MNIST_SPARSITIES="99.9 99.99 99 90 95 98"
FASHION_SPARSITIES="99.9 99 90 95 98"
cells() {  # cells PROFILE SPARSITY: the sweep call for one profile at one sparsity (dense is skipped once finished);
           # cells PROFILE contested: seeds 3 and 4 of the comparisons its committed summary marks contested
  local pick="--methods $METHODS --sparsities $2 --seeds 0 1 2"
  [ "$2" = contested ] && pick="--contested"
  echo "$PY" benchmarks/sweep.py --profile "$1" $pick \
    --accelerator gpu --jobs "$CELL_JOBS" --num-threads 1 --no-progress --out "$RES/$1" ${DATA:+--data-dir "$DATA"}
}
cells_script() {  # one bash script: per profile, its sweep calls in order; the two profiles side by side
  local profile sparsity line script=""
  for profile in lenet5-mnist lenet5-fashionmnist; do
    local sparsities="$MNIST_SPARSITIES"
    [ "$profile" = lenet5-fashionmnist ] && sparsities="$FASHION_SPARSITIES"
    line="("
    for sparsity in contested $sparsities; do line+=" $(cells "$profile" "$sparsity");"; done
    script+="$line ) > $RES/cells_$profile.log 2>&1 & "
  done
  echo "${script}wait"
}
if [ -n "$DATA" ]; then SPEED+=(--data-dir "$DATA"); fi

# every module a chosen step imports; easydict and tensorboardX only for the authors' code
preflight() {
  local modules="torch lightning torchvision torchmetrics"
  wants pytest && modules+=" pytest jsonargparse stable_baselines3 gymnasium torch_pruning"
  { wants speed || wants cells; } && modules+=" torch_pruning stable_baselines3 gymnasium"
  { wants prune && [ -n "$AUTHORS" ]; } && modules+=" easydict tensorboardX"
  local missing
  missing=$("$PY" - $modules <<'EOF'
import importlib.util, sys
def missing(name):
    try:
        return importlib.util.find_spec(name) is None
    except Exception:  # a broken or hidden package counts as missing
        return True
print(" ".join(sorted({m for m in sys.argv[1:] if missing(m)})))
EOF
) || { echo "preflight: $PY does not run" >&2; return 1; }
  if [ -n "$missing" ]; then
    echo "preflight: missing Python modules: $missing (carry them as wheels: benchmarks/gpu_prepare.sh)" >&2
    return 1
  fi
  if { wants speed || wants cells; } && [ ! -d "${DATA:-/nonexistent}/MNIST/raw" ]; then
    echo "preflight: no MNIST under '${DATA:-}' (pass --data-dir or --carried)" >&2; return 1
  fi
  echo "preflight: ok (modules: $(tr ' ' '\n' <<< "$modules" | sort -u | xargs); data ${DATA:-none};" \
    "authors' code ${AUTHORS:-none})"
}

sync_out() {  # one archive: the lent machine returns at most 8 files from $OUT
  if [ -n "${OUT:-}" ] && [ -d "$RES" ]; then
    tar -czf "$OUT/gpu-evidence.tar.gz.part" -C benchmarks/results "${RES#benchmarks/results/}" \
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
  # timeout signals its whole process group at the limit: a sweep's worker processes do not outlive the step
  timeout -k 10 "$limit" "$@" > "$log" 2>&1
  local rc=$?
  scrub "$log"  # no machine paths in what is committed
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
  echo "Commands (budget ${BUDGET}s; steps $STEPS; data ${DATA:-default lookup};" \
    "authors' code ${AUTHORS:-none: prune_speed skipped}):"
  wants pytest && echo "  pytest: ${PYTEST[*]}   (cap ${CAP_PYTEST}s)"
  wants speed && echo "  speed: ${SPEED[*]}   (cap ${CAP_SPEED}s)"
  wants prune && echo "  prune: ${PRUNE[*]}   (cap ${CAP_PRUNE}s)"
  wants transformer && echo "  transformer: ${TRANSFORMER[*]}   (cap ${CAP_TRANSFORMER}s)"
  wants scale && echo "  scale: ${SCALE[*]}   (cap ${CAP_SCALE}s)"
  wants cells && echo "  cells: bash -c '$(cells_script)'   (the time left less the caps of later steps)"
  wants zoo && echo "  zoo: ${ZOO[*]}   (cap ${CAP_ZOO}s)"
  for f in benchmarks/sweep_speed.py benchmarks/prune_speed.py benchmarks/transformer_scale.py benchmarks/scale.py \
    benchmarks/sweep.py; do
    check "$f exists" test -f "$f"
  done
  check "timeout exists" command -v timeout
  has_options benchmarks/sweep_speed.py --device --parts --sparsities --short-epochs --long-epochs --jobs \
    --num-threads --out --data-dir
  has_options benchmarks/prune_speed.py --authors-repo --device --models --repeats --out
  has_options benchmarks/transformer_scale.py --device --rounds --out
  has_options benchmarks/scale.py --part --device --out --models --sizes
  has_options benchmarks/model_zoo.py --device --out
  has_options benchmarks/sweep.py --profile --methods --sparsities --seeds --accelerator --jobs --num-threads \
    --no-progress --out --data-dir --report-only --contested
  check "pytest is installed" "$PY" -c "import pytest"
  check "the gpu marker is declared" grep -q '"gpu:' pyproject.toml
  tmp=$(mktemp -d)
  # the profile, methods, sparsities and seeds parse (report-only writes an empty report to a scratch folder)
  for profile in lenet5-mnist lenet5-fashionmnist; do
    check "sweep cells of $profile parse" "$PY" benchmarks/sweep.py --profile "$profile" --methods $METHODS \
      --sparsities $MNIST_SPARSITIES --seeds 0 1 2 --out "$tmp/$profile" --report-only
  done
  check "the cells script parses" bash -n -c "$(cells_script)"
  rm -rf "$tmp"
  if [ "$fail" -ne 0 ]; then echo "dry run: some checks FAILED"; exit 1; fi
  echo "dry run: every command checked"
  exit 0
fi

preflight || exit 3
if [ "$PREFLIGHT_ONLY" -eq 1 ]; then exit 0; fi

mkdir -p "$RES"
: > "$RES/steps.log"
COMMIT="${LIGHTNING_PANNING_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo 'not recorded')}"
echo "gpu_evidence.sh on $(date -u +%FT%TZ), commit $COMMIT, budget ${BUDGET}s, steps $STEPS" \
  | tee -a "$RES/steps.log"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee -a "$RES/steps.log"
cap_of() {  # the cap of a step (the cells: none, the time left less the caps of the steps after them)
  case "$1" in
    pytest) echo "$CAP_PYTEST" ;; speed) echo "$CAP_SPEED" ;; prune) echo "$CAP_PRUNE" ;;
    transformer) echo "$CAP_TRANSFORMER" ;; scale) echo "$CAP_SCALE" ;; zoo) echo "$CAP_ZOO" ;; *) echo 0 ;;
  esac
}
caps_after() {  # caps_after STEP: the caps of the chosen steps after STEP
  local s seen=0 sum=0
  for s in ${STEPS//,/ }; do
    if [ "$seen" -eq 1 ]; then sum=$(( sum + $(cap_of "$s") )); fi
    [ "$s" = "$1" ] && seen=1
  done
  echo "$sum"
}
for name in ${STEPS//,/ }; do
  case "$name" in
    pytest) step "pytest -m gpu" "$CAP_PYTEST" "$RES/pytest_gpu.txt" "${PYTEST[@]}" ;;
    speed) step "sweep_speed" "$CAP_SPEED" "$RES/sweep_speed.log" "${SPEED[@]}" ;;
    prune)
      if [ -n "$AUTHORS" ]; then
        step "prune_speed" "$CAP_PRUNE" "$RES/prune_speed.log" "${PRUNE[@]}"
      else
        echo "== prune_speed: skipped (no authors' code: pass --authors-repo or set AUTHORS_REPO)" | tee -a "$RES/steps.log"
      fi ;;
    transformer) step "transformer_scale" "$CAP_TRANSFORMER" "$RES/transformer_scale.log" "${TRANSFORMER[@]}" ;;
    scale) step "scale memory" "$CAP_SCALE" "$RES/scale.log" "${SCALE[@]}" ;;
    cells)
      for profile in lenet5-mnist lenet5-fashionmnist; do
        mkdir -p "$RES/$profile"
        if [ ! -f "$RES/$profile/runs.jsonl" ] && [ -f "benchmarks/results/$profile/runs.jsonl" ]; then
          # the cells already committed (CPU or an earlier GPU) are skipped; only new lines need merging back
          for f in runs.jsonl sweep.json; do  # a folder only ever merged into has no sweep.json (run metadata)
            [ -f "benchmarks/results/$profile/$f" ] && cp "benchmarks/results/$profile/$f" "$RES/$profile/"
          done
        fi
      done
      step "cells" $(( $(left) - $(caps_after cells) )) "$RES/cells.log" bash -c "$(cells_script)"
      scrub "$RES"/cells_*.log
      sync_out ;;
    zoo) step "model_zoo" "$CAP_ZOO" "$RES/model_zoo.log" "${ZOO[@]}" ;;
  esac
done
echo "== done after ${SECONDS}s" | tee -a "$RES/steps.log"
sync_out
