#!/usr/bin/env bash
# Build the folder a lent GPU machine needs for benchmarks/gpu_evidence.sh, here, before the device time starts:
#
#   bash benchmarks/gpu_prepare.sh                         # -> .gpu/ (ignored by git through .git/info/exclude)
#   bash benchmarks/gpu_prepare.sh --authors-repo ../authors --data-dir ../shared/datasets --out .gpu
#
# .gpu/ holds
#   whl/       wheels of the packages our steps import that the lent machine's image lacks (KINDS.md lists what it
#              has), at the versions installed here, for CPython 3.12 on x86-64 (pure-Python wheels)
#   datasets/  MNIST and FashionMNIST (the cells step runs both profiles) in torchvision's layout, gzipped (the tree that travels is
#              capped at 64 MiB; gpu_evidence.sh unpacks them there)
#   authors/   the authors' RLPanning code for prune_speed.py (run from there, never committed: .gpu/ is excluded)
#   commit, dirty   this checkout's commit and whether tracked code differs from it (the records' provenance there)
# and prints the device call. Needs network access to the package registries (pip download) and a clean tree to
# record a clean commit.
set -u -o pipefail

OUT_DIR=.gpu
AUTHORS="${AUTHORS_REPO:-}"
DATA=""
usage="allowed: --out DIR, --authors-repo P, --data-dir P"
while [ $# -gt 0 ]; do
  case "$1" in
    --out|--authors-repo|--data-dir)
      if [ $# -lt 2 ]; then echo "gpu_prepare.sh: $1 needs a value ($usage)" >&2; exit 2; fi
      case "$1" in
        --out) OUT_DIR="$2" ;;
        --authors-repo) AUTHORS="$2" ;;
        --data-dir) DATA="$2" ;;
      esac
      shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu_prepare.sh: unknown argument '$1' ($usage)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python}"
case "$OUT_DIR" in
  /*|../*|*/../*|..) echo "gpu_prepare.sh: --out $OUT_DIR: must be a folder inside the repository (it travels)" >&2
                     exit 2 ;;
esac
if [ -z "$DATA" ]; then
  for d in shared/datasets ../shared/datasets data; do
    if [ -d "$d/MNIST/raw" ]; then DATA="$d"; break; fi
  done
fi
if [ -z "$DATA" ] || [ ! -d "$DATA/MNIST/raw" ]; then
  echo "gpu_prepare.sh: no MNIST under '${DATA:-}' (pass --data-dir: a folder with MNIST/raw)" >&2; exit 2
fi
if [ -z "$AUTHORS" ] && [ -d ../authors ]; then AUTHORS=../authors; fi

# packages our steps import that the lent machine's image does not have (its list: .library/device/KINDS.md)
# (easydict and tensorboardX: the authors' code imports them; the image has protobuf, tensorboardX's one other need)
PACKAGES="stable-baselines3 gymnasium farama-notifications jsonargparse docstring-parser typeshed-client torch-pruning
easydict tensorboardX"

if [ -d .git ] && ! grep -qx "/$OUT_DIR/" .git/info/exclude 2>/dev/null; then
  mkdir -p .git/info && echo "/$OUT_DIR/" >> .git/info/exclude
fi
rm -rf "$OUT_DIR" && mkdir -p "$OUT_DIR/whl" "$OUT_DIR/datasets" || exit 1

pins=()
for p in $PACKAGES; do
  v=$("$PY" -m pip show "$p" 2>/dev/null | awk '/^Version:/{print $2}')
  if [ -z "$v" ]; then echo "gpu_prepare.sh: $p is not installed here; install the project first" >&2; exit 1; fi
  pins+=("$p==$v")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$OUT_DIR/whl" "${pins[@]}" \
  || { echo "gpu_prepare.sh: pip download failed for ${pins[*]}" >&2; exit 1; }

for name in MNIST FashionMNIST; do
  if [ ! -d "$DATA/$name/raw" ]; then echo "gpu_prepare.sh: no $DATA/$name/raw" >&2; exit 1; fi
  mkdir -p "$OUT_DIR/datasets/$name/raw"
  for f in "$DATA/$name/raw"/*; do
    case "$f" in *.gz) continue ;; esac
    gzip -c "$f" > "$OUT_DIR/datasets/$name/raw/$(basename "$f").gz" || exit 1
  done
done

if [ -n "$AUTHORS" ]; then
  if [ ! -d "$AUTHORS" ]; then echo "gpu_prepare.sh: --authors-repo $AUTHORS: no such folder" >&2; exit 2; fi
  mkdir -p "$OUT_DIR/authors" && (cd "$AUTHORS" && tar -cf - --exclude=.git --exclude=__pycache__ .) | (cd "$OUT_DIR/authors" && tar -xf -)
fi

commit=$(git rev-parse HEAD 2>/dev/null || true)
if [ -n "$commit" ]; then
  echo "$commit" > "$OUT_DIR/commit"
  if [ -n "$(git status --porcelain --untracked-files=no -- . ':(exclude)benchmarks/results')" ]; then
    echo 1 > "$OUT_DIR/dirty"; echo "gpu_prepare.sh: warning: tracked code differs from $commit (recorded as dirty)" >&2
  else
    echo 0 > "$OUT_DIR/dirty"
  fi
fi

size=$(du -sm "$OUT_DIR" | cut -f1)
tree=$(git ls-files -z 2>/dev/null | du -cm --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "gpu_prepare.sh: $OUT_DIR is ${size} MiB (the tracked tree ${tree:-?} MiB; the call carries at most 64 MiB):"
ls "$OUT_DIR/whl"
echo
echo "Device call (first check the device tool's status; budget 600 s leaves ~4 min of a 15-min lease spare):"
echo "  run(command=\"PYTHON=python3 PYTHONUNBUFFERED=1 bash benchmarks/gpu_evidence.sh --carried $OUT_DIR --budget 560 --steps pytest,scale,cells,prune\","
echo "      carry=[\"$OUT_DIR\"], timeout_s=600)"
echo "Then: tar -xzf <files_at>/gpu-evidence.tar.gz -C benchmarks/results, and merge the cells of"
echo "benchmarks/results/gpu-evidence/<run>/P/ (P: lenet5-mnist, lenet5-fashionmnist) with:"
echo "  python benchmarks/sweep.py --profile P --merge-from benchmarks/results/gpu-evidence/<run>/P"
