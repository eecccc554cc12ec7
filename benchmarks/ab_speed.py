"""Seconds per pruning round of this checkout against another checkout of lightning_panning, side by side.

A refactor must not make a round slower. ``prune_speed.py`` compares us with the authors' code; this compares two
versions of ours on the same machine, in alternating fresh processes (so load hits both alike), on the same
model and batch: LeNet5 (100-sample batch) and VGG19-BN (CIFAR-size, 100 samples), default ``panning``,
``synflow``, ``snip`` and ``panning_authors``. Medians over ``--repeats`` alternations of the median later-round
time. Writes ``benchmarks/results/ab_speed.{md,json}``.

    git worktree add ../baseline 76fbe69
    python benchmarks/ab_speed.py --baseline-src ../baseline/src --baseline-name 76fbe69
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root, so `benchmarks` imports

from benchmarks.sweep.provenance import git_state, scrub_command  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CASES = [("lenet5", "panning", 6), ("lenet5", "synflow", 6), ("lenet5", "snip", 1), ("lenet5", "panning_authors", 6),
         ("vgg19", "panning", 3), ("vgg19", "synflow", 3)]


def worker(model_name: str, method: str, rounds: int, threads: int) -> float:
    """Median seconds of the rounds after the first (the only round of a one-shot method), in this process."""
    import torch

    from lightning_panning.models import VGG19, LeNet5

    try:
        from lightning_panning.core import get_pruner as build
    except ImportError:  # versions before get_pruner
        from lightning_panning.core import make_pruner as build  # type: ignore[attr-defined,no-redef]
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    shape = (1, 28, 28) if model_name == "lenet5" else (3, 32, 32)
    batch = (torch.randn(100, *shape, generator=g), torch.arange(10).repeat(10))
    torch.manual_seed(0)
    model = LeNet5() if model_name == "lenet5" else VGG19(num_classes=10)
    session = build(method, rounds=rounds, progress=False).start(model, batch, 0.98)
    times = []
    while not session.done:
        start = time.perf_counter()
        session.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:] if len(times) > 1 else times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", type=Path, help="the other checkout's src/ folder")
    parser.add_argument("--baseline-name", default="baseline")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", help="only these MODEL:METHOD cases, e.g. vgg19:synflow")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "METHOD", "ROUNDS"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS / "ab_speed")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]), args.threads)))
        return
    if args.baseline_src is None:
        parser.error("--baseline-src is required")
    trees = {"this checkout": ROOT / "src", args.baseline_name: args.baseline_src.resolve()}
    cases = [c for c in CASES if not args.cases or f"{c[0]}:{c[1]}" in args.cases]
    loads = [os.getloadavg()[0]]
    times: dict[tuple[str, str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for model_name, method, rounds in cases:
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for tree in order:
                env = {**os.environ, "PYTHONPATH": str(trees[tree])}
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--worker", model_name, method, str(rounds),
                     "--threads", str(args.threads)], env=env, capture_output=True, text=True, check=True)
                times.setdefault((model_name, method, tree), []).append(float(done.stdout.strip().splitlines()[-1]))
        loads.append(os.getloadavg()[0])
    rows: list[dict[str, Any]] = []
    for model_name, method, rounds in cases:
        ours = statistics.median(times[(model_name, method, "this checkout")])
        base = statistics.median(times[(model_name, method, args.baseline_name)])
        rows.append({"model": model_name, "method": method, "rounds": rounds, "this_s": ours, "baseline_s": base,
                     "ratio": ours / base, "this_all": times[(model_name, method, "this checkout")],
                     "baseline_all": times[(model_name, method, args.baseline_name)]})
    command = scrub_command(" ".join([sys.executable, *sys.argv]) if argv is None else
                            " ".join(["python", "benchmarks/ab_speed.py", *argv]))
    meta = {"command": command, **git_state(), "baseline": args.baseline_name, "threads": args.threads,
            "repeats": args.repeats, "load_min": min(loads), "load_max": max(loads)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        f"# Seconds per pruning round: this checkout against `{args.baseline_name}`",
        "",
        f"Command: `{meta['command']}`; code: `{meta['git_commit']}`{' (dirty)' if meta['git_dirty'] else ''};",
        f"{args.threads} thread(s), {args.repeats} alternations in fresh processes (medians); load average "
        f"{meta['load_min']:.2f}–{meta['load_max']:.2f} on 2 CPUs. Written by `benchmarks/ab_speed.py`.",
        "",
        "| model | method | rounds | this checkout s/round | baseline s/round | this / baseline "
        "| each run (this; baseline) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{t:.4f}" for t in r["this_all"]) + "; " + ", ".join(f"{t:.4f}" for t in r["baseline_all"])
        lines.append(f"| {r['model']} | `{r['method']}` | {r['rounds']} | {r['this_s']:.4f} | {r['baseline_s']:.4f} | "
                     f"{r['ratio']:.2f} | {runs} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
