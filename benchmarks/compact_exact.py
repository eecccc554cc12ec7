#!/usr/bin/env python
"""Training the compacted LeNet5 is exact: one sweep cell per sparsity, masked and compacted, over the first steps.

For each sparsity, the same cell (method, seed, Table 1 recipe, data in memory) runs twice through the sweep's own
cell (:func:`benchmarks.sweep.exactness.compare_cell`): trained masked, and trained compacted (dead channels removed
before the first step, as the sweep does by default for its LeNet profiles). It records the training loss of every
step, the largest difference between the two runs, and both test accuracies and losses after the short run.

Results go to ``<out>/compact_exact.json`` and ``.md``. Timing is not measured; any machine will do.

Usage::

    python benchmarks/compact_exact.py --num-threads 1                          # 100 steps per sparsity, MNIST
    python benchmarks/compact_exact.py --steps 8 --sparsities 99.9 --out /tmp/ce   # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, so `benchmarks` imports
from benchmarks.sweep.cell import SweepConfig, quiet_lightning
from benchmarks.sweep.exactness import compare_cell
from benchmarks.sweep.profiles import (
    PAPER_SPARSITIES,
    PROFILES,
    Cell,
    default_data_dir,
    format_sparsity,
    parse_sparsity,
)
from benchmarks.sweep.provenance import git_state, scrub_command

REPO = Path(__file__).resolve().parents[1]


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compact_exact.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    dirty = " (uncommitted changes)" if results.get("git_dirty") else ""
    lines = [
        "# Training the compacted network is exact",
        "",
        f"_Written by `{results['command']}` on {results['date']}; code: commit "
        f"`{results.get('git_commit') or 'not recorded'}`{dirty}._",
        "",
        f"Profile `{results['profile']}` (LeNet5/MNIST, Table 1 recipe, data in memory), method `{results['method']}`, "
        f"seed {results['seed']}, {results.get('epochs', 1)} epoch(s) of {results['steps_per_epoch']} optimizer "
        f"steps on the first {results['train_subset']:,} training images (a cosine schedule over those steps), "
        f"{results['threads']} torch thread(s). Each cell is trained masked and compacted from the same mask, initial "
        "weights and data order.",
        "",
        "| Sparsity | parameters masked | compacted | steps | steps within 1e-5 | max abs loss difference | "
        "max relative | test acc masked | compacted | test loss masked | compacted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["cells"]:
        close = steps_within(r["losses_masked"], r["losses_compacted"], 1e-5)
        lines.append(
            f"| {format_sparsity(r['sparsity'])} | {r['parameters']:,} | {r['compacted_parameters']:,} | {r['steps']} "
            f"| {'all' if close == r['steps'] else close} | {r['max_abs_loss_diff']:.3g} | "
            f"{r['max_rel_loss_diff']:.3g} | {r['test_acc_masked']:.2f} | "
            f"{r['test_acc_compacted']:.2f} | {r['test_loss_masked']:.6f} | {r['test_loss_compacted']:.6f} |"
        )
    lines += [
        "",
        "_Steps within 1e-5_: the optimizer steps from the first on whose two losses differ by at most 1e-5 (the "
        "masked and compacted networks add their sums in different shapes, so they differ by float round-off from "
        "the first step; training amplifies that round-off, most at the low sparsities, where the early steps are "
        "unstable at the Table 1 learning rate). A compaction error would show at the first step; a data-order or "
        "schedule difference at an epoch boundary.",
        "",
    ]
    (out / "compact_exact.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"Wrote {out / 'compact_exact.json'} and {out / 'compact_exact.md'}")


def steps_within(a: list[float], b: list[float], tolerance: float) -> int:
    """How many steps from the first the two loss curves stay within ``tolerance`` of each other."""
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if abs(x - y) > tolerance:
            return i
    return len(a)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", nargs="+", default=[str(100 * s) for s in PAPER_SPARSITIES])
    parser.add_argument("--method", default="panning", help="pruning method of the cells (default: panning)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch (batch 256)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs over those steps' images (default 1)")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--data-dir", help="dataset root (default as in the sweep)")
    parser.add_argument("--out", help="results folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.num_threads)
    quiet_lightning()
    base = PROFILES["lenet5-mnist"]
    if args.steps < 1 or args.epochs < 1:
        parser.error(f"--steps and --epochs must be at least 1, got {args.steps} and {args.epochs}")
    profile = base.override(epochs=args.epochs, train_subset=args.steps * base.batch_size, methods=(args.method,))
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results"
    code = git_state()  # the code that runs, read before the runs (a commit made meanwhile is not it)
    cells = []
    with tempfile.TemporaryDirectory(prefix="compact_exact-") as scratch:
        config = SweepConfig(
            profile=profile,
            out_dir=Path(scratch),
            data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(REPO),
            accelerator="cpu",
            num_threads=args.num_threads,
            report_every_cell=False,
        )
        for sparsity in (parse_sparsity(s) for s in args.sparsities):
            row = compare_cell(Cell(args.method, sparsity, args.seed), config)
            cells.append(row)
            print(
                f"{format_sparsity(sparsity)}: {row['steps']} steps, max |Δloss| {row['max_abs_loss_diff']:.3g}, "
                f"test acc {row['test_acc_masked']:.2f} / {row['test_acc_compacted']:.2f}"
            )
    results = {
        "command": scrub_command(
            "python benchmarks/compact_exact.py " + shlex.join(sys.argv[1:] if argv is None else argv)
        ),
        **code,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": base.name,
        "method": args.method,
        "seed": args.seed,
        "steps": args.steps * args.epochs,
        "steps_per_epoch": args.steps,
        "epochs": args.epochs,
        "train_subset": profile.train_subset,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cells": cells,
    }
    write(results, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
