#!/usr/bin/env python
"""Benchmark sweep: pruning-before-training methods x sparsities x seeds, each a real Lightning training run.

Examples::

    python benchmarks/sweep.py                                  # default `quick` profile, ~10 min on 2 CPU cores
    python benchmarks/sweep.py --profile smoke                  # CI smoke test on offline sklearn digits (< 1 min)
    python benchmarks/sweep.py --profile lenet5-mnist --epochs 1 --train-subset 12000 --seeds 0 --num-threads 2
    python benchmarks/sweep.py --profile lenet5-mnist --methods rlpanning    # add cells to a finished sweep
    python benchmarks/sweep.py --profile lenet5-mnist --report-only          # rebuild table and plot
    python benchmarks/sweep.py --list-profiles

Results go to ``benchmarks/results/<profile>/`` (``runs.jsonl``, ``runs.csv``, ``summary.md``,
``accuracy_vs_remaining.png``). The sweep is resumable: a cell already finished in ``runs.jsonl`` is skipped.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_panning.sweep import (
    DEFAULT_PROFILE,
    METHOD_LABELS,
    PROFILES,
    Cell,
    SweepConfig,
    default_data_dir,
    format_sparsity,
    parse_sparsity,
    run_sweep,
    save_budget_note,
    write_report,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_ROOT = REPO_ROOT / "benchmarks" / "results"


def _split(values: Sequence[str] | None) -> list[str] | None:
    """Accept both ``--methods a b`` and ``--methods a,b``."""
    if values is None:
        return None
    return [v for value in values for v in value.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/sweep.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Profiles: "
        + ", ".join(PROFILES)
        + f" (default: {DEFAULT_PROFILE}). Methods: "
        + ", ".join(METHOD_LABELS),
    )
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES), help="benchmark setting")
    parser.add_argument("--methods", nargs="+", help="methods to run (space or comma separated; 'all' for every one)")
    parser.add_argument("--sparsities", nargs="+", help="target sparsities, as fractions (0.99) or percentages (99)")
    parser.add_argument("--seeds", nargs="+", help="seeds, e.g. 0 1 2")
    parser.add_argument("--epochs", type=int, help="training epochs (profile default: Table 1)")
    parser.add_argument("--rounds", type=int, help="rounds T of iterative methods (paper: 100)")
    parser.add_argument("--train-subset", type=int, help="train on this many training images (0: all of them)")
    parser.add_argument("--batch-size", type=int, help="training batch size (profile default: Table 1)")
    parser.add_argument("--lr", type=float, help="initial learning rate of SGD + cosine (Table 1: 0.1)")
    parser.add_argument(
        "--accelerator", "--device", dest="accelerator", default="auto", help="Lightning accelerator: cpu, gpu, auto"
    )
    parser.add_argument(
        "--data-dir", help="dataset root (default: $LIGHTNING_PANNING_DATA, ../shared/datasets, ./data)"
    )
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<profile>)")
    parser.add_argument("--num-threads", type=int, help="torch.set_num_threads for the whole sweep")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--budget-note", help="text about the compute budget, shown in summary.md (kept across runs)")
    parser.add_argument("--csv-logs", action="store_true", help="keep a Lightning CSVLogger per run under <out>/logs")
    parser.add_argument("--report-only", action="store_true", help="only rebuild runs.csv, summary.md and the plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (one line per finished run)")
    parser.add_argument("--list-profiles", action="store_true", help="list the profiles and exit")
    return parser


class RichProgress:
    """Rich progress over cells (with ETA) and one line per finished cell."""

    def __init__(self, show_bar: bool = True) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.show_bar = show_bar and self.console.is_terminal
        self._progress: Any = None
        self._task: Any = None
        self._total = 0
        self._done = 0

    def start(self, total: int, skipped: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._total = total
        self.console.print(f"[bold]{total}[/] run(s) to do, {skipped} already finished (skipped).")
        if self.show_bar:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.start()
            self._task = self._progress.add_task("sweep", total=total)

    def cell_started(self, cell: Cell) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=_describe(cell))

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        self._done += 1
        if record.get("status") == "ok":
            eff = record.get("effective_sparsity")
            eff_text = "" if eff is None else f", effective sparsity {100 * float(eff):.4g}%"
            prune_s, train_s = record.get("pruning_seconds", 0.0), record.get("training_seconds", 0.0)
            line = (
                f"[green]✓[/] [{self._done}/{self._total}] {_describe(cell)}: test acc "
                f"[bold]{float(record['test_acc']):.2f}%[/]{eff_text}, "
                f"pruning {prune_s:.1f} s, training {train_s:.0f} s"
            )
        else:
            line = f"[red]✗[/] [{self._done}/{self._total}] {_describe(cell)}: {record.get('error')}"
        self.console.print(line, highlight=False, soft_wrap=True)
        if self._progress is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _describe(cell: Cell) -> str:
    sparsity = "" if cell.method == "dense" else f" @ {format_sparsity(cell.sparsity)}"
    return f"{cell.method}{sparsity} seed {cell.seed}"


def _quiet_lightning() -> None:
    import lightning.pytorch  # noqa: F401 - it sets its loggers to INFO on import; lower them afterwards

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*number of training batches.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.list_profiles:
        for profile in PROFILES.values():
            print(f"{profile.name:24s} {profile.description}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning()

    methods = _split(args.methods)
    if methods is not None and "all" in methods:
        methods = list(METHOD_LABELS)
    try:
        profile = PROFILES[args.profile].override(
            methods=methods,
            sparsities=None if args.sparsities is None else [parse_sparsity(s) for s in _split(args.sparsities) or []],
            seeds=None if args.seeds is None else [int(s) for s in _split(args.seeds) or []],
            epochs=args.epochs,
            rounds=args.rounds,
            train_subset=args.train_subset,
            batch_size=args.batch_size,
            lr=args.lr,
        )
    except ValueError as err:
        build_parser().error(str(err))
    out = Path(args.out) if args.out else RESULTS_ROOT / profile.name

    if args.report_only:
        if args.budget_note:
            save_budget_note(out, args.budget_note)
        files = write_report(out, profile=profile)
        for kind, path in files.items():
            print(f"{kind}: {path}")
        return 0

    if args.num_threads is not None:
        import torch

        torch.set_num_threads(args.num_threads)
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir(REPO_ROOT)
    config = SweepConfig(
        profile=profile,
        out_dir=out,
        data_dir=data_dir,
        accelerator=args.accelerator,
        num_workers=args.num_workers,
        num_threads=args.num_threads,
        command="python benchmarks/sweep.py " + shlex.join(argv),
        budget_note=args.budget_note,
        csv_logs=args.csv_logs,
    )
    progress = RichProgress(show_bar=not args.no_progress)
    outcome = run_sweep(config, progress=progress)
    console = progress.console
    for method, reason in outcome.unavailable.items():
        console.print(
            f"[yellow]Skipped method {method!r}[/]: {reason}. Re-run this command once it is available.",
            soft_wrap=True,
        )
    console.print(
        f"Done: {len(outcome.ran) - len(outcome.failed)} run(s) finished, {len(outcome.failed)} failed, "
        f"{len(outcome.skipped)} skipped as already finished. Results in {out}:",
        soft_wrap=True,
    )
    for kind, path in outcome.files.items():
        console.print(f"  {kind}: {path}")
    return 1 if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
