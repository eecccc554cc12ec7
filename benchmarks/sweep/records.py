"""Records and resume: ``runs.jsonl`` holds one JSON line per finished (or failed) cell, written by the driver.

* A cell whose key (:data:`CELL_KEY_FIELDS`) is found with ``status == "ok"`` is finished and never runs again; a
  failed cell is recorded with its error and retried on the next run.
* A records file belongs to one profile and one training budget (:data:`BUDGET_FIELDS`, the initialisation's
  fingerprint included). A sweep of another profile or budget pointed at it stops before running anything, with
  an error naming each difference (:func:`check_compatible`); nothing is ever deleted or rewritten in it.
* Lines are appended, flushed and fsynced one at a time, so a crash can at worst truncate the last line, which is
  then skipped with a warning.

Example:
    >>> cell_key({"profile": "p", "method": "snip", "sparsity": 0.9 + 1e-13, "seed": 0, "epochs": 1})
    ('p', 'snip', 0.9, 0, 1, None, None, None, None, None)
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.sweep.methods import METHOD_LABELS

__all__ = [
    "BUDGET_FIELDS",
    "CELL_KEY_FIELDS",
    "CSV_FIELDS",
    "RecordsMismatchError",
    "append_record",
    "atomic_write",
    "budget_of",
    "cell_key",
    "check_compatible",
    "current_records",
    "latest_records",
    "load_meta",
    "load_records",
    "merge_records",
    "record_order",
    "save_budget_note",
    "save_meta",
    "write_csv",
]

log = logging.getLogger(__name__)

RECORDS_FILE = "runs.jsonl"
CSV_FILE = "runs.csv"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "accuracy_vs_remaining.png"
META_FILE = "sweep.json"
ANALYSIS_FILE = "ANALYSIS.md"

#: Record fields that identify a cell: a record with these values and ``status == "ok"`` is not run again.
CELL_KEY_FIELDS: tuple[str, ...] = (
    "profile",
    "method",
    "sparsity",
    "seed",
    "epochs",
    "rounds",
    "train_subset",
    "batch_size",
    "lr",
    "policy",
)

#: Record fields of the training budget; every record of one ``runs.jsonl`` has the same values.
BUDGET_FIELDS: tuple[str, ...] = (
    "model",
    "dataset",
    "epochs",
    "train_subset",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "rounds",
    "per_class",
    "cosine_per_step",
    "init",
)

#: Columns of ``runs.csv``.
CSV_FIELDS: tuple[str, ...] = (
    *CELL_KEY_FIELDS,
    "status",
    "test_acc",
    "test_loss",
    "nominal_sparsity",
    "effective_sparsity",
    "remaining",
    "kept_weights",
    "total_weights",
    "pruning_seconds",
    "training_seconds",
    "test_seconds",
    "cell_seconds",
    "model",
    "dataset",
    "momentum",
    "weight_decay",
    "per_class",
    "cosine_per_step",
    "init",
    "in_memory",
    "backend",
    "accelerator",
    "device",
    "optimizer_steps",
    "num_threads",
    "python",
    "torch",
    "lightning",
    "lightning_panning",
    "finished_at",
    "command",
    "error",
)

_MISSING = object()


class RecordsMismatchError(ValueError):
    """A records file made by another profile or with another budget than the sweep asked for."""


def cell_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The identity of a cell in a record (or in any mapping with :data:`CELL_KEY_FIELDS`)."""
    key = []
    for name in CELL_KEY_FIELDS:
        value = record.get(name)
        if name == "sparsity" and value is not None:
            value = round(float(value), 10)
        key.append(value)
    return tuple(key)


def budget_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`BUDGET_FIELDS` of a record; a field the record lacks (older records) is left out."""
    return {name: record[name] for name in BUDGET_FIELDS if name in record}


def _show(value: Any) -> str:
    return "not recorded" if value is _MISSING else ("all" if value is None else repr(value))


def check_compatible(
    records: Iterable[Mapping[str, Any]], profile: str, budget: Mapping[str, Any], path: str | os.PathLike[str]
) -> None:
    """Raise :class:`RecordsMismatchError` unless every record is of ``profile`` with exactly ``budget``.

    Args:
        records: the records already in ``path``.
        profile: the sweep's profile name.
        budget: the sweep's budget (every field of :data:`BUDGET_FIELDS`).
        path: the records file, for the message.

    Example:
        >>> old = {"profile": "a", "epochs": 1, "lr": 0.1}
        >>> check_compatible([old], "a", {"epochs": 1, "lr": 0.1}, "runs.jsonl")  # the same budget: fine
        >>> try:
        ...     check_compatible([old], "a", {"epochs": 5, "lr": 0.1}, "runs.jsonl")
        ... except RecordsMismatchError as err:
        ...     print(str(err)[:100])
        runs.jsonl holds 1 run(s) of another budget than this sweep's: epochs 1 (recorded) ≠ 5 (this sweep).
    """
    records = list(records)
    profiles = sorted({str(r.get("profile")) for r in records} - {profile})
    hint = (
        " Nothing was run and nothing in the file was changed. Write this sweep to another folder (--out), or "
        "repeat the recorded settings to resume that sweep."
    )
    if profiles:
        raise RecordsMismatchError(
            f"{path} holds runs of profile(s) {profiles}, but this sweep is profile {profile!r}.{hint}"
        )
    for record in records:
        diffs = [
            f"{name} {_show(record.get(name, _MISSING))} (recorded) ≠ {_show(budget.get(name, _MISSING))} (this sweep)"
            for name in BUDGET_FIELDS
            if record.get(name, _MISSING) != budget.get(name, _MISSING)
        ]
        if diffs:
            same = sum(1 for r in records if budget_of(r) == budget_of(record))
            raise RecordsMismatchError(
                f"{path} holds {same} run(s) of another budget than this sweep's: {'; '.join(diffs)}.{hint}"
            )


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path`` and flush it to disk (a crash can at worst truncate that one line)."""
    line = json.dumps(dict(record), sort_keys=True, default=str)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a ``runs.jsonl`` (an absent file gives ``[]``; a malformed line is skipped with a warning)."""
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d is not valid JSON (an interrupted write?); ignored.", path, number)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def merge_records(
    target: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]], profile: str, budget: Mapping[str, Any]
) -> dict[str, int]:
    """Append to ``target`` the finished runs of ``sources`` (other ``runs.jsonl`` of the same profile and budget —
    another machine's, a lent GPU's) whose cell ``target`` has not finished; nothing in ``target`` is rewritten.

    A run whose cell ``target`` already finished is left out (tables show one run per cell, the last one: a
    duplicate would silently replace it), as are failed runs and lines already in ``target``.

    Args:
        target: the ``runs.jsonl`` to extend (created if absent).
        sources: ``runs.jsonl`` files, or folders holding one.
        profile: the profile both must be of.
        budget: the budget both must have (:meth:`Profile.budget` with ``init``).

    Returns:
        ``{"added": n, "cell_already_finished": n, "failed": n}``.

    Raises:
        FileNotFoundError: a source does not exist.
        RecordsMismatchError: a source (or ``target``) holds another profile's or budget's runs; nothing is written.
    """
    existing = load_records(target)
    check_compatible(existing, profile, budget, target)
    finished = {cell_key(r) for r in existing if r.get("status") == "ok"}
    counts = {"added": 0, "cell_already_finished": 0, "failed": 0}
    new: list[dict[str, Any]] = []
    for source in sources:
        path = Path(source)
        path = path / "runs.jsonl" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"--merge-from {source}: no runs.jsonl there")
        records = load_records(path)
        check_compatible(records, profile, budget, path)
        for record in records:
            if record.get("status") != "ok":
                counts["failed"] += 1
            elif cell_key(record) in finished:
                counts["cell_already_finished"] += 1
            else:
                finished.add(cell_key(record))
                new.append(record)
    for record in new:
        append_record(target, record)
    counts["added"] = len(new)
    return counts


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per cell: the last ``ok`` one, else the last failure; in first-seen order."""
    chosen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = cell_key(record)
        previous = chosen.get(key)
        if previous is None or record.get("status") == "ok" or previous.get("status") != "ok":
            chosen[key] = dict(record)
    return list(chosen.values())


def current_records(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split :func:`latest_records` into the current ones and those superseded by a newer RLPanning policy.

    A method whose runs used several agents (the ``policy`` field) is reported with the agent of its most recently
    finished run only; the other runs stay in ``runs.jsonl`` and ``runs.csv`` but are left out of tables and plots.

    Returns:
        ``(current, superseded)``.
    """
    rows = latest_records(records)
    newest: dict[str, tuple[str, Any]] = {}
    for r in rows:
        if r.get("policy") and r.get("status") == "ok":
            method, stamp = str(r.get("method")), str(r.get("finished_at", ""))
            if method not in newest or stamp >= newest[method][0]:
                newest[method] = (stamp, r.get("policy"))
    current, superseded = [], []
    for r in rows:
        method = str(r.get("method"))
        if method in newest and r.get("policy") != newest[method][1]:
            superseded.append(r)
        else:
            current.append(r)
    return current, superseded


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _method_rank(method: str) -> int:
    names = list(METHOD_LABELS)
    return names.index(method) if method in names else len(names)


def record_order(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key of records: method (table order), sparsity, seed, finishing time."""
    return (
        _method_rank(str(record.get("method"))),
        float(record.get("sparsity") or 0.0),
        int(record.get("seed") or 0),
        str(record.get("finished_at", "")),
    )


def write_csv(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write :data:`CSV_FIELDS` of the records (one row per cell, see :func:`latest_records`) atomically."""
    path = Path(path)
    rows = sorted(latest_records(records), key=record_order)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})

    atomic_write(path, write)
    return path


def load_meta(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The contents of ``<out_dir>/sweep.json`` (``{}`` when absent or unreadable)."""
    path = Path(out_dir) / META_FILE
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return meta if isinstance(meta, dict) else {}


def save_meta(out_dir: str | os.PathLike[str], **changes: Any) -> None:
    """Update ``<out_dir>/sweep.json`` with ``changes`` (``None`` values are left as they were)."""
    meta = load_meta(out_dir)
    meta.update({k: v for k, v in changes.items() if v is not None})
    text = json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write(Path(out_dir) / META_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_budget_note(out_dir: str | os.PathLike[str], note: str) -> None:
    """Store ``note`` in ``<out_dir>/sweep.json``; the report shows it in the summary from then on."""
    save_meta(out_dir, budget_note=note)
