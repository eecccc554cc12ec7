"""The driver: which cells to run, the records it writes as results arrive, and the report after each one."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from benchmarks.sweep.backends import Backend, LocalBackend
from benchmarks.sweep.cell import CellRunner, SweepConfig, init_fingerprint, policy_id, run_cell
from benchmarks.sweep.methods import method_unavailable_reason
from benchmarks.sweep.profiles import Cell, format_sparsity
from benchmarks.sweep.provenance import git_state
from benchmarks.sweep.records import (
    RECORDS_FILE,
    append_record,
    cell_key,
    check_compatible,
    load_records,
    save_meta,
)
from benchmarks.sweep.report import write_report

__all__ = ["SweepOutcome", "SweepProgress", "TqdmProgress", "base_record", "run_sweep"]

log = logging.getLogger(__name__)


class SweepProgress(Protocol):
    """Progress display across cells (the command line uses rich; :class:`TqdmProgress` is the default)."""

    def start(self, total: int, skipped: int) -> None:
        """Called once: ``total`` cells to run now, ``skipped`` already finished."""

    def cell_started(self, cell: Cell) -> None:
        """Called when a cell is handed to the backend."""

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        """Called after a cell's record is written."""

    def close(self) -> None:
        """Called once at the end."""


class TqdmProgress:
    """A tqdm bar over cells with ETA, showing the last cell handed out."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int, skipped: int) -> None:
        """Open the bar."""
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=f"cells ({skipped} done before)", unit="cell")

    def cell_started(self, cell: Cell) -> None:
        """Show the cell."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{cell.method} {format_sparsity(cell.sparsity)} seed {cell.seed}")

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        """Advance the bar."""
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
        ran: cells run now (finished or failed), in the order their results arrived.
        failed: cells that failed.
        skipped: cells skipped because ``runs.jsonl`` already holds a finished run of them.
        unavailable: methods not run because this installation cannot run them, with the reason.
        files: report files written.
    """

    ran: list[Cell] = field(default_factory=list)
    failed: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def base_record(
    cell: Cell,
    config: SweepConfig,
    budget: Mapping[str, Any],
    backend: str,
    code: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The driver's part of a cell's record: identity, budget, how it was run and the code that ran it.

    Args:
        cell: the cell.
        config: the sweep.
        budget: the training budget (:data:`~benchmarks.sweep.records.BUDGET_FIELDS`).
        backend: the backend's name.
        code: ``git_commit`` and ``git_dirty`` (:func:`~benchmarks.sweep.provenance.git_state`), read once per sweep.
    """
    return {
        "profile": config.profile.name,
        "method": cell.method,
        "sparsity": round(cell.sparsity, 10),
        "seed": cell.seed,
        **budget,
        "policy": policy_id(cell.method, config.policy),
        "in_memory": config.profile.in_memory,
        "backend": backend,
        "accelerator": config.accelerator,
        "command": config.command,
        "compact": config.profile.compact,
        **(code or {}),
    }


def run_sweep(
    config: SweepConfig,
    *,
    runner: CellRunner | None = None,
    progress: SweepProgress | None = None,
    backend: Backend | None = None,
) -> SweepOutcome:
    """Run every cell of ``config.profile`` not yet finished in ``config.out_dir``; write records and report.

    Args:
        config: the sweep.
        runner: runs one cell (default :func:`~benchmarks.sweep.cell.run_cell`) and returns its measurements.
        progress: progress display; ``None`` uses :class:`TqdmProgress`.
        backend: where cells run; ``None`` runs them one after another in this process.

    Returns:
        What ran, failed, was skipped or unavailable, and the report files.

    Raises:
        RecordsMismatchError: when ``out_dir`` holds runs of another profile or budget (nothing is run or changed).
    """
    runner = run_cell if runner is None else runner
    progress = TqdmProgress() if progress is None else progress
    backend = LocalBackend() if backend is None else backend
    out = Path(config.out_dir)
    records_path = out / RECORDS_FILE
    records = load_records(records_path)
    budget = {**config.profile.budget(), "init": init_fingerprint(config.profile)}
    check_compatible(records, config.profile.name, budget, records_path)
    out.mkdir(parents=True, exist_ok=True)
    done = {cell_key(r) for r in records if r.get("status") == "ok"}
    outcome = SweepOutcome()
    for method in config.profile.methods:
        reason = method_unavailable_reason(method)
        if reason is not None:
            outcome.unavailable[method] = reason
            log.warning("Skipping method %r: %s. Re-run the sweep once it is available.", method, reason)
    save_meta(
        out,
        profile=config.profile.name,
        last_command=config.command or None,
        budget=budget,
        budget_note=config.budget_note,
        unavailable=dict(outcome.unavailable),
    )
    code = git_state()
    todo: list[Cell] = []
    bases: dict[Cell, dict[str, Any]] = {}
    for cell in config.profile.cells():
        if cell.method in outcome.unavailable:
            continue
        bases[cell] = base_record(cell, config, budget, backend.name, code)
        if cell_key(bases[cell]) in done:
            outcome.skipped.append(cell)
        else:
            todo.append(cell)

    def report() -> None:
        outcome.files = write_report(
            out, profile=config.profile, budget_note=config.budget_note, unavailable=outcome.unavailable
        )

    def on_result(cell: Cell, result: dict[str, Any]) -> None:
        record = {**bases[cell], **result}
        append_record(records_path, record)
        outcome.ran.append(cell)
        if record.get("status") != "ok":
            outcome.failed.append(cell)
            log.error("Cell %s failed: %s", cell, record.get("error"))
        progress.cell_finished(cell, record)
        if config.report_every_cell:
            report()

    progress.start(len(todo), len(outcome.skipped))
    try:
        if todo:
            backend.run(todo, config, runner, progress.cell_started, on_result)
    finally:
        progress.close()
    report()
    return outcome
