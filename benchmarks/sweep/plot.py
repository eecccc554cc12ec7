"""The plot: test accuracy against the fraction of weights remaining (log axis), like the paper's Figure 3."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.sweep.aggregate import Aggregate, budget_key, summarize
from benchmarks.sweep.methods import METHOD_COLORS, METHOD_LABELS
from benchmarks.sweep.paper import PAPER_DENSE, PAPER_RESULTS, PAPER_ROW_NOTES, PAPER_ROW_OF
from benchmarks.sweep.records import atomic_write, current_records

__all__ = ["plot_accuracy"]


def _paper_line(ax: Any, method: str, pruned: Sequence[Aggregate], paper: str | None) -> None:
    """The paper's numbers beside ``method`` (where it has them) as hollow markers on a dotted line."""
    row = PAPER_ROW_OF.get(method)
    ref = PAPER_RESULTS.get(paper or "", {}).get(row or "", {})
    if not ref:
        return
    lo, hi = min(a.sparsity for a in pruned), max(a.sparsity for a in pruned)
    pts = sorted((s, v) for s, v in ref.items() if lo - 1e-9 <= s <= hi + 1e-9)
    if not pts:
        return
    ax.plot(
        [1.0 - s for s, _ in pts],
        [v for _, v in pts],
        linestyle=":",
        marker="o",
        mfc="none",
        ms=5,
        color=METHOD_COLORS.get(method, "k"),
        label=f"paper: {row} ({PAPER_ROW_NOTES.get(row or '', 'the paper')})",
    )


def plot_accuracy(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    paper: str | None = None,
    title: str | None = None,
) -> Path | None:
    """Plot test accuracy against the fraction of weights remaining (log axis), like the paper's Figure 3.

    One line per method with the std over seeds shaded, the dense baseline as a grey horizontal line, and the
    paper's numbers beside the method they belong to (``PAPER_ROW_OF``) as hollow markers on dotted lines of the
    same colour. Only the budget with the most runs is plotted.

    Args:
        records: the sweep's records.
        path: the PNG to write (atomically).
        paper: key of ``PAPER_RESULTS`` to overlay, if any.
        title: figure title.

    Returns:
        The path written, or ``None`` when there is nothing to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in current_records(records)[0] if r.get("status") == "ok" and r.get("test_acc") is not None]
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for record in ok:
        groups.setdefault(budget_key(record), []).append(record)
    if not groups:
        return None
    group = max(groups.values(), key=len)
    aggs = summarize(group)
    pruned = [a for a in aggs if a.method != "dense"]
    fig = Figure(figsize=(9.5, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    remaining = sorted({1.0 - a.sparsity for a in pruned}) or [1e-1, 1e-4]
    ax.set_xlim(remaining[-1] * 2.0, remaining[0] / 2.0)  # inverted: sparser to the right, as in Figure 3
    for method in dict.fromkeys(a.method for a in pruned):
        rows = [a for a in pruned if a.method == method]
        x = [1.0 - a.sparsity for a in rows]
        y = [a.acc_mean for a in rows]
        err = [a.acc_std for a in rows]
        color = METHOD_COLORS.get(method, "k")
        ax.plot(x, y, marker="o", ms=4, color=color, label=METHOD_LABELS.get(method, method))
        if any(e > 0 for e in err):
            low = [m - e for m, e in zip(y, err, strict=True)]
            high = [m + e for m, e in zip(y, err, strict=True)]
            ax.fill_between(x, low, high, color=color, alpha=0.2)
        _paper_line(ax, method, pruned, paper)
    dense = [a for a in aggs if a.method == "dense"]
    if dense:
        ax.axhline(dense[0].acc_mean, color="0.5", lw=1.5, label=f"Dense ({dense[0].acc_mean:.2f})")
    ref_dense = PAPER_DENSE.get(paper or "")
    if ref_dense is not None:
        ax.axhline(ref_dense, color="0.5", lw=1.0, ls=":", label=f"Dense, paper ({ref_dense:.2f})")
    ax.set_xlabel("fraction of weights remaining (log scale)")
    ax.set_ylabel("test accuracy (%)")
    epochs, subset, _, rounds, lr, _ = budget_key(group[0])
    subset_text = "all images" if subset in (None, "") else f"{int(subset):,} images"
    seeds = len({r.get("seed") for r in group})
    name = title or str(group[0].get("profile"))
    ax.set_title(f"{name}: {epochs} epoch(s), {subset_text}, lr {lr}, T = {rounds}, {seeds} seed(s)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    out = Path(path)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    return out
