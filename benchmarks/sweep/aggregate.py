"""Records → one aggregate per (method, sparsity) over seeds, and the seed-wise comparison of two of them.

Shared by the report (:mod:`benchmarks.sweep.report`) and the plot (:mod:`benchmarks.sweep.plot`).

Example:
    >>> a = Aggregate("panning", 0.99, 3, 98.0, 0.2, None, 1.0, 10.0, [0, 1, 2], {0: 97.8, 1: 98.0, 2: 98.2})
    >>> b = Aggregate("snip", 0.99, 3, 90.0, 0.5, None, 0.1, 10.0, [0, 1, 2], {0: 89.5, 1: 90.0, 2: 90.5})
    >>> c = compare_aggregates(a, b)
    >>> round(c.delta, 2), c.p_welch < 0.001, c.p_paired < 0.01
    (8.0, True, True)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks.sweep.methods import METHOD_LABELS
from benchmarks.sweep.records import latest_records
from benchmarks.sweep.stats import Comparison, compare

__all__ = ["Aggregate", "budget_key", "compare_aggregates", "summarize"]


@dataclass
class Aggregate:
    """Mean and standard deviation of one (method, sparsity) over seeds.

    Attributes:
        method: sweep method.
        sparsity: target sparsity (``0.0`` for dense).
        n: number of finished runs.
        acc_mean: mean test accuracy (%).
        acc_std: sample standard deviation (0 for one run).
        effective_mean: mean effective sparsity (``None`` if unknown).
        pruning_seconds: mean pruning time.
        training_seconds: mean training time.
        seeds: the seeds.
        by_seed: test accuracy (%) of each seed's run.
    """

    method: str
    sparsity: float
    n: int
    acc_mean: float
    acc_std: float
    effective_mean: float | None
    pruning_seconds: float
    training_seconds: float
    seeds: list[int]
    by_seed: dict[int, float] = field(default_factory=dict)


def budget_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The budget a record's section of the summary is grouped by."""
    return tuple(record.get(k) for k in ("epochs", "train_subset", "batch_size", "rounds", "lr", "init"))


def summarize(records: Iterable[Mapping[str, Any]]) -> list[Aggregate]:
    """Aggregate the ``ok`` records (one per cell) by (method, sparsity), in table order."""
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for record in latest_records(records):
        if record.get("status") != "ok" or record.get("test_acc") is None:
            continue
        groups.setdefault((str(record["method"]), round(float(record["sparsity"]), 10)), []).append(record)
    out: list[Aggregate] = []
    for (method, sparsity), rows in groups.items():
        accs = [float(r["test_acc"]) for r in rows]
        effective = [float(r["effective_sparsity"]) for r in rows if r.get("effective_sparsity") is not None]
        out.append(
            Aggregate(
                method=method,
                sparsity=sparsity,
                n=len(rows),
                acc_mean=statistics.fmean(accs),
                acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
                effective_mean=statistics.fmean(effective) if effective else None,
                pruning_seconds=statistics.fmean(float(r.get("pruning_seconds") or 0.0) for r in rows),
                training_seconds=statistics.fmean(float(r.get("training_seconds") or 0.0) for r in rows),
                seeds=sorted(int(r["seed"]) for r in rows),
                by_seed={int(r["seed"]): float(r["test_acc"]) for r in rows},
            )
        )
    order = list(METHOD_LABELS)
    out.sort(key=lambda a: (order.index(a.method) if a.method in order else len(order), a.sparsity))
    return out


def compare_aggregates(a: Aggregate, b: Aggregate) -> Comparison:
    """Welch's and the paired-by-seed t-test of ``a``'s accuracies against ``b``'s (not yet Holm-corrected)."""
    return compare(a.by_seed, b.by_seed)
