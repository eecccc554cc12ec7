"""Benchmark sweep: pruning-before-training methods x sparsities x seeds, each a real Lightning training run.

Examples::

    python benchmarks/sweep.py                                   # default `quick` profile (LeNet5/MNIST, 1 epoch)
    python benchmarks/sweep.py --profile smoke                   # CI smoke test on offline sklearn digits
    python benchmarks/sweep.py --profile lenet5-mnist-cpu --accelerator cpu --num-threads 1
    python benchmarks/sweep.py --profile lenet5-mnist --accelerator gpu --jobs 8         # 8 cells share one GPU
    python benchmarks/sweep.py --profile lenet5-mnist --backend ray --address auto --gpus-per-cell 0.25
    python benchmarks/sweep.py --profile lenet5-mnist-cpu --methods rlpanning    # add cells to a finished sweep
    python benchmarks/sweep.py --profile lenet5-mnist-cpu --report-only          # rebuild table and plot
    python benchmarks/sweep.py --profile lenet5-mnist --merge-from OTHER/runs.jsonl  # add another machine's runs
    python benchmarks/sweep.py --profile lenet5-mnist --contested       # seeds 3 and 4 where summary.md says contested
    python benchmarks/sweep.py --list-profiles

``python -m benchmarks.sweep`` is the same command. Results go to ``benchmarks/results/<profile>/``
(``runs.jsonl``, ``runs.csv``, ``summary.md``, ``accuracy_vs_remaining.png``). The sweep is resumable: a cell
already finished in ``runs.jsonl`` is skipped, with every backend. A results folder holds one profile and one
budget: changing ``--epochs``, ``--lr``, ``--train-subset``, ``--batch-size`` or ``--rounds`` needs another ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.sweep.backends import BACKENDS, BackendUnavailableError, make_backend
from benchmarks.sweep.cell import SweepConfig, quiet_lightning
from benchmarks.sweep.methods import METHOD_LABELS
from benchmarks.sweep.profiles import DEFAULT_PROFILE, PROFILES, Cell, default_data_dir, format_sparsity, parse_sparsity
from benchmarks.sweep.provenance import scrub_command
from benchmarks.sweep.records import RecordsMismatchError, save_budget_note
from benchmarks.sweep.report import write_report
from benchmarks.sweep.run import run_sweep

__all__ = ["RESULTS_ROOT", "RichProgress", "build_parser", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_ROOT = REPO_ROOT / "benchmarks" / "results"


def _split(values: Sequence[str] | None) -> list[str] | None:
    """Accept both ``--methods a b`` and ``--methods a,b``."""
    if values is None:
        return None
    return [v for value in values for v in value.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python benchmarks/sweep.py``."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/sweep.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Profiles: {', '.join(PROFILES)} (default: {DEFAULT_PROFILE}). Methods: {', '.join(METHOD_LABELS)}.",
    )
    add = parser.add_argument
    add("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES), help="benchmark setting")
    add("--methods", nargs="+", help="methods to run (space or comma separated; 'all' for every one)")
    add("--sparsities", nargs="+", help="target sparsities, as fractions (0.99) or percentages (99)")
    add("--seeds", nargs="+", help="seeds, e.g. 0 1 2")
    add("--epochs", type=int, help="training epochs (profile default)")
    add("--rounds", type=int, help="rounds T of iterative methods (paper: 100)")
    add("--train-subset", type=int, help="train on this many training images (0: all of them)")
    add("--batch-size", type=int, help="training batch size (profile default: Table 1)")
    add("--lr", type=float, help="initial learning rate of SGD + cosine (Table 1: 0.1)")
    add("--in-memory", action=argparse.BooleanOptionalAction, help="hold the data in device memory (profile default)")
    add(
        "--compact",
        action=argparse.BooleanOptionalAction,
        help="train the compacted network of pruned cells (exact; profile default: on for the LeNet profiles)",
    )
    add("--accelerator", "--device", dest="accelerator", default="auto", help="Lightning accelerator: cpu, gpu, auto")
    add("--data-dir", help="dataset root (default: $LIGHTNING_PANNING_DATA, ../shared/datasets, ./data)")
    add("--out", help="results folder (default: benchmarks/results/<profile>)")
    add("--backend", default="local", choices=BACKENDS, help="where cells run: local processes or a Ray cluster")
    add("--jobs", type=int, default=1, help="local backend: cells at once, each in its own process (default 1)")
    add("--address", help="ray backend: cluster address ('auto' for the running cluster; default: a local Ray)")
    add("--cpus-per-cell", type=float, default=1.0, help="ray backend: CPUs per cell (default 1)")
    add("--gpus-per-cell", type=float, help="ray backend: GPUs per cell, e.g. 0.25 for 4 cells per GPU")
    add("--num-threads", type=int, help="torch threads in every process that runs cells")
    add("--num-workers", type=int, default=0, help="DataLoader worker processes when data is not in memory")
    add("--policy", help="rlpanning cells: a TD3 zip from `train-agent` (default: the policy shipped in the package)")
    add("--budget-note", help="text about the compute budget, shown in summary.md (kept across runs)")
    add("--csv-logs", action="store_true", help="keep a Lightning CSVLogger per run under <out>/logs")
    add("--report-only", action="store_true", help="only rebuild runs.csv, summary.md and the plot")
    add(
        "--merge-from",
        nargs="+",
        metavar="RUNS",
        help="append the finished runs of other runs.jsonl files (or folders) of this profile and budget whose cell "
        "is not finished here (another machine's, a lent GPU's), then rebuild the report; runs nothing",
    )
    add(
        "--contested",
        action="store_true",
        help="run seeds 3 and 4 of the methods of every comparison summary.md marks contested (one sweep per "
        "sparsity; each records the explicit --methods/--sparsities/--seeds it ran); instead of the grid",
    )
    add("--no-progress", action="store_true", help="no progress bar (one line per finished run)")
    add("--list-profiles", action="store_true", help="list the profiles and exit")
    return parser


def _describe(cell: Cell) -> str:
    sparsity = "" if cell.method == "dense" else f" @ {format_sparsity(cell.sparsity)}"
    return f"{cell.method}{sparsity} seed {cell.seed}"


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
        """Print the plan and open the bar."""
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
        """Show the cell handed out last."""
        if self._progress is not None:
            self._progress.update(self._task, description=_describe(cell))

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        """One line per finished cell."""
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
            from rich.markup import escape  # an error's "[compact]" is text, not a style tag

            line = f"[red]✗[/] [{self._done}/{self._total}] {_describe(cell)}: {escape(str(record.get('error')))}"
        self.console.print(line, highlight=False, soft_wrap=True)
        if self._progress is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        """Close the bar."""
        if self._progress is not None:
            self._progress.stop()


CONTESTED_SEEDS = ("3", "4")


def _run_contested(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> int:
    """``--contested``: one sweep per sparsity over the methods its contested comparisons name, seeds 3 and 4."""
    from benchmarks.sweep.records import load_records
    from benchmarks.sweep.report import contested_cells

    for name in ("methods", "sparsities", "seeds", "merge_from"):
        if getattr(args, name):
            parser.error(
                f"--contested picks the methods, sparsities and seeds itself; drop --{name.replace('_', '-')}."
            )
    if args.report_only:
        parser.error("--contested runs cells; drop --report-only.")
    out = Path(args.out) if args.out else RESULTS_ROOT / args.profile
    cells = contested_cells(load_records(out / "runs.jsonl"))
    if not cells:
        print(f"No comparison in {out / 'summary.md'} is contested: nothing to run.")
        return 0
    base = [a for a in argv if a != "--contested"]
    status = 0
    for sparsity, methods in cells.items():
        explicit = [*base, "--methods", *methods, "--sparsities", format_sparsity(sparsity).rstrip("%"), "--seeds",
                    *CONTESTED_SEEDS]  # fmt: skip
        print("contested: python benchmarks/sweep.py " + shlex.join(explicit), flush=True)
        status = max(status, main(explicit))
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 some cells failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_profiles:
        for profile in PROFILES.values():
            print(f"{profile.name:24s} {profile.description}")
        return 0
    if args.contested:
        return _run_contested(parser, args, argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
            in_memory=args.in_memory,
            compact=args.compact,
        )
        backend = (
            None
            if args.report_only
            else make_backend(
                args.backend,
                jobs=args.jobs,
                address=args.address,
                cpus_per_cell=args.cpus_per_cell,
                gpus_per_cell=args.gpus_per_cell,
            )
        )
    except ValueError as err:
        parser.error(str(err))
    except BackendUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.policy is not None and not args.report_only:
        if "rlpanning" not in profile.methods:
            parser.error(f"--policy {args.policy!r} is used only by rlpanning cells; add rlpanning to --methods.")
        if not Path(args.policy).is_file():
            parser.error(f"--policy {args.policy!r}: no such file; give a TD3 zip written by `train-agent`.")
        args.policy = str(Path(args.policy).resolve())
    out = Path(args.out) if args.out else RESULTS_ROOT / profile.name
    if args.merge_from:
        from benchmarks.sweep.cell import init_fingerprint
        from benchmarks.sweep.records import merge_records

        out.mkdir(parents=True, exist_ok=True)
        try:
            counts = merge_records(
                out / "runs.jsonl",
                args.merge_from,
                profile.name,
                {**profile.budget(), "init": init_fingerprint(profile)},
            )
        except (RecordsMismatchError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(
            f"merged into {out / 'runs.jsonl'}: {counts['added']} run(s) added, {counts['cell_already_finished']} "
            f"left out (their cell is finished here), {counts['failed']} failed run(s) left out"
        )
        args.report_only = True
    if args.report_only:
        if args.budget_note:
            save_budget_note(out, args.budget_note)
        for kind, path in write_report(out, profile=profile).items():
            print(f"{kind}: {path}")
        return 0

    quiet_lightning()
    if args.num_threads is not None:
        import torch

        torch.set_num_threads(args.num_threads)
    config = SweepConfig(
        profile=profile,
        out_dir=out,
        data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(REPO_ROOT),
        accelerator=args.accelerator,
        num_workers=args.num_workers,
        num_threads=args.num_threads,
        command=scrub_command("python benchmarks/sweep.py " + shlex.join(argv)),
        budget_note=args.budget_note,
        csv_logs=args.csv_logs,
        policy=args.policy,
    )
    progress = RichProgress(show_bar=not args.no_progress)
    try:
        outcome = run_sweep(config, progress=progress, backend=backend)
    except RecordsMismatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    console = progress.console
    for method, reason in outcome.unavailable.items():
        console.print(
            f"[yellow]Skipped method {method!r}[/]: {reason}. Re-run this command once it is available.", soft_wrap=True
        )
    console.print(
        f"Done: {len(outcome.ran) - len(outcome.failed)} run(s) finished, {len(outcome.failed)} failed, "
        f"{len(outcome.skipped)} skipped as already finished. Results in {out}:",
        soft_wrap=True,
    )
    for kind, path in outcome.files.items():
        console.print(f"  {kind}: {path}")
    return 1 if outcome.failed else 0
