"""The report: ``runs.csv``, ``summary.md`` (mean ± std over seeds beside the paper's numbers) and the plot.

Everything is rebuilt from ``runs.jsonl`` alone (:func:`write_report`), so ``--report-only`` reproduces it. Runs of
different budgets (older records files) get one section each. The summary says which differences the seeds
support with named tests (:mod:`benchmarks.sweep.stats`): Welch's t-test and the t-test paired by seed, both
two-sided, Holm-corrected over the comparisons of each table (their number is stated). A difference is *shown*
when both adjusted p-values are below 0.05 and *not shown* otherwise; a large difference that is not shown but
has both unadjusted p-values below 0.2 is *contested* (while fewer than 5 seeds ran for both), and the summary
gives the command that adds seeds 3 and 4.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.sweep.aggregate import Aggregate, budget_key, compare_aggregates, summarize
from benchmarks.sweep.liveness import at_chance, failure_reading, weights_on_paths
from benchmarks.sweep.methods import METHOD_LABELS
from benchmarks.sweep.paper import (
    PAPER_DENSE,
    PAPER_RESULTS,
    PAPER_ROW_NOTES,
    PAPER_ROW_OF,
    PAPER_SOURCES,
    paper_beside,
)
from benchmarks.sweep.plot import plot_accuracy
from benchmarks.sweep.profiles import PROFILES, Profile, format_sparsity
from benchmarks.sweep.provenance import scrub_command
from benchmarks.sweep.records import (
    ANALYSIS_FILE,
    CSV_FILE,
    PLOT_FILE,
    RECORDS_FILE,
    SUMMARY_FILE,
    atomic_write,
    current_records,
    load_meta,
    load_records,
    record_order,
    write_csv,
)
from benchmarks.sweep.stats import (
    ALPHA,
    CONTESTED_DELTA,
    CONTESTED_P,
    SETTLED_PAIRS,
    Comparison,
    adjust,
    holm,
    one_sample_p,
)

__all__ = ["contested_cells", "write_report", "write_summary"]

_NOT_RECORDED = object()


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _reading(c: Comparison, ahead: str, behind: str) -> str:
    """The verdict of one comparison: shown (bold), not shown, contested, or not testable."""
    if not c.testable:
        return "not testable (fewer than 2 seeds, or no spread)"
    if c.shown:
        return f"**shown: {ahead if c.delta > 0 else behind}**"
    if c.contested:
        return "not shown; **contested**: add seeds 3 and 4"
    return "not shown"


def _test_cells(c: Comparison) -> str:
    return (
        f"{c.delta:+.2f} | {_fmt_p(c.p_welch)} ({_fmt_p(c.adj_welch)}) | {_fmt_p(c.p_paired)} "
        f"({_fmt_p(c.adj_paired)}), {c.n_pairs} pairs, ahead in {c.wins}"
    )


TEST_HEAD = "Δ | Welch p (Holm) | paired p (Holm), seeds | Reading"


def _family_text(m: int) -> str:
    return (
        f"Two-sided Welch's t-test and t-test paired by seed (same seed: same initial weights and data order); "
        f"Holm's correction over the m = {m} testable comparisons of this table; *shown* where both adjusted "
        f"p < {ALPHA}, *not shown* otherwise; *contested* where not shown but both unadjusted p < {CONTESTED_P} "
        f"and |Δ| ≥ {CONTESTED_DELTA:g} point, with fewer than {SETTLED_PAIRS} seeds run by both."
    )


def _fmt_acc(agg: Aggregate) -> str:
    return f"{agg.acc_mean:.2f} ± {agg.acc_std:.2f}" if agg.n > 1 else f"{agg.acc_mean:.2f}"


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _budget_text(records: Sequence[Mapping[str, Any]], profile: Profile | None) -> str:
    first = records[0]
    seeds = sorted({int(r["seed"]) for r in records})
    subset = first.get("train_subset")
    data = "the whole training set" if subset in (None, "") else f"a seeded subset of {int(subset):,} training images"
    threads = sorted({str(r.get("num_threads")) for r in records if r.get("num_threads") is not None})
    devices = sorted({str(r.get("device") or r.get("accelerator")) for r in records})
    backends = sorted({str(r.get("backend")) for r in records if r.get("backend")})
    minutes = sum(float(r.get("cell_seconds") or 0.0) for r in records) / 60.0
    momentum = first.get("momentum")
    text = (
        f"{first.get('epochs')} epoch(s) per run on {data}, batch {first.get('batch_size')}, "
        f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}), T = {first.get('rounds')} rounds for iterative methods; "
        f"SGD{'' if momentum is None else f' (momentum {momentum})'} + cosine annealing from lr {first.get('lr')}, "
        f"weight decay {first.get('weight_decay')}; initial weights `{first.get('init', 'not recorded')}`; "
        f"device {', '.join(devices)}"
        + (f", {', '.join(threads)} torch thread(s)" if threads else "")
        + (f", backend {', '.join(backends)}" if backends else "")
        + (", data in memory" if any(r.get("in_memory") for r in records) else "")
        + f"; {minutes:.1f} min of cell time (summed over cells, not wall time) for these {len(records)} runs."
    )
    if profile is not None and profile.paper_epochs is not None:
        text += f" The paper trains {profile.paper_epochs} epochs on the whole training set and averages 3 seeds."
    return text


def _profile_differences(record: Mapping[str, Any], profile: Profile | None) -> str:
    """The budget fields in which ``record`` differs from the built-in ``profile`` (overrides, or older runs)."""
    if profile is None:
        return ""
    profile = PROFILES.get(profile.name, profile)
    diffs = []
    for name, value in profile.budget().items():
        recorded = record.get(name, _NOT_RECORDED)
        if recorded != value:
            shown = "not recorded" if recorded is _NOT_RECORDED else ("all" if recorded is None else recorded)
            diffs.append(f"{name} {shown} (profile: {'all' if value is None else value})")
    return ", ".join(diffs)


def _accuracy_table(aggs: Sequence[Aggregate], paper: str | None, sparsities: Sequence[float]) -> list[str]:
    lines = ["| Method | " + " | ".join(format_sparsity(s) for s in sparsities) + " |"]
    lines.append("|---" * (len(sparsities) + 1) + "|")
    by_key = {(a.method, a.sparsity): a for a in aggs}
    methods = [m for m in dict.fromkeys(a.method for a in aggs) if m != "dense"]
    for method in methods:
        cells = []
        for s in sparsities:
            agg = by_key.get((method, round(s, 10)))
            ours = "-" if agg is None else _fmt_acc(agg)
            ref = paper_beside(paper, method, s)
            cells.append(ours if ref is None else f"{ours} (paper {ref:.2f})")
        lines.append(f"| {_label(method)} | " + " | ".join(cells) + " |")
    shown = {PAPER_ROW_OF[m] for m in methods if m in PAPER_ROW_OF}
    for row, table in PAPER_RESULTS.get(paper or "", {}).items():
        if row in shown:
            continue
        cells = [f"(paper {table[s]:.2f})" if s in table else "-" for s in (round(x, 10) for x in sparsities)]
        if any(c != "-" for c in cells):
            lines.append(
                f"| Paper: {row} ({PAPER_ROW_NOTES.get(row, 'the paper')}) — not run here | " + " | ".join(cells) + " |"
            )
    return lines


def _noise_table(
    aggs: Sequence[Aggregate], sparsities: Sequence[float]
) -> tuple[list[str], int, list[tuple[float, Aggregate, Aggregate, Comparison]]]:
    """Each method against the best mean at its sparsity: the table, its number of comparisons, the comparisons."""
    found: list[tuple[float, Aggregate, Aggregate, Comparison]] = []
    for s in sparsities:
        rows = sorted(
            (a for a in aggs if a.method != "dense" and a.sparsity == round(s, 10)), key=lambda a: -a.acc_mean
        )
        found += [(s, a, rows[0], compare_aggregates(a, rows[0])) for a in rows[1:]]
    m = adjust([c for *_, c in found])
    lines = [f"| Sparsity | Best (mean ± std, n) | Method | {TEST_HEAD} |", "|---" * 7 + "|"]
    for s, other, best, c in found:
        lines.append(
            f"| {format_sparsity(s)} | {_label(best.method)}: {_fmt_acc(best)}, n = {best.n} | {_label(other.method)} "
            f"| {_test_cells(c)} | {_reading(c, 'above the best', 'below the best')} |"
        )
    return (lines if found else []), m, found


#: What RLPanning is judged against: Table 3's fixed metric weights in the same Algorithm 1 (``panning``), and the
#: authors' code (``panning_authors``, whose masks the paper's numbers came from).
VERDICT_BASELINES: tuple[str, ...] = ("panning", "panning_authors")
#: The methods published after the paper (issue 25) and the random baselines, judged against Panning and SynFlow.
LATER_METHODS: tuple[str, ...] = (
    "prospr",
    "ntk_sap",
    "ntk_sap_authors",
    "phew",
    "px",
    "random_erk",
    "panning_shuffled",
    "panning_ntk_sap",
)
LATER_BASELINES: tuple[str, ...] = ("panning", "synflow")
#: Figure 3's ordering: the paper puts Panning above SynFlow, iterative SNIP (FORCE) and iterative GraSP at every
#: sparsity. Both Panning variants are judged against the three; the table appears where the iterative baselines ran.
FIGURE3_SUBJECTS: tuple[str, ...] = ("panning", "panning_authors")
FIGURE3_BASELINES: tuple[str, ...] = ("synflow", "iterative_snip", "iterative_grasp")
#: A table's comparisons: (sparsity, subject, baseline, test).
Found = list[tuple[float, Aggregate, Aggregate, Comparison]]


def _paper_table(aggs: Sequence[Aggregate], paper: str | None, sparsities: Sequence[float]) -> tuple[list[str], int]:
    """Our mean against the paper's published mean, per method with a paper row and sparsity (one-sample t-test).

    Returns:
        The table (empty without paper numbers) and its number of testable rows (Holm's m).
    """
    rows: list[tuple[float, Aggregate, float, float | None]] = []
    for s in sparsities:
        for agg in aggs:
            ref = paper_beside(paper, agg.method, s) if agg.method != "dense" else None
            if ref is not None and agg.sparsity == round(s, 10):
                rows.append((s, agg, ref, one_sample_p(list(agg.by_seed.values()), ref)))
    if not rows:
        return [], 0
    tested = [p for *_, p in rows if p is not None]
    adjusted = iter(holm(tested))
    lines = [
        "| Sparsity | Method | ours (mean ± std, n) | paper | Δ | one-sample t p (Holm) | Reading |",
        "|---" * 7 + "|",
    ]
    for s, agg, ref, p in rows:
        adj = None if p is None else next(adjusted)
        delta = agg.acc_mean - ref
        if adj is None:
            reading = "not testable (fewer than 2 seeds, or no spread)"
        elif adj < ALPHA:
            reading = f"**shown: ours {'above' if delta > 0 else 'below'} the paper's mean**"
        else:
            reading = "not shown"
        lines.append(
            f"| {format_sparsity(s)} | {_label(agg.method)} | {_fmt_acc(agg)}, n = {agg.n} | {ref:.2f} | "
            f"{delta:+.2f} | {_fmt_p(p)} ({_fmt_p(adj)}) | {reading} |"
        )
    return lines, len(tested)


def _versus_table(
    aggs: Sequence[Aggregate],
    sparsities: Sequence[float],
    subjects: Sequence[str],
    baselines: Sequence[str],
    subject: str | None = None,
) -> tuple[list[str], int, list[tuple[float, Aggregate, Aggregate, Comparison]]]:
    """Each of ``subjects`` against each of ``baselines``, per sparsity (empty where none of the pairs ran).

    Each row: the difference of the means, both tests' p-values (Holm over the table's rows), in how many of the
    seeds both ran the subject is ahead, and the reading. With one subject, ``subject`` is its label: the column's
    head and the reading's subject (the rows then leave the label out).
    """
    by_key = {(a.method, a.sparsity): a for a in aggs}
    found: list[tuple[float, Aggregate, Aggregate, Comparison]] = []
    for s in sparsities:
        for method_under_test in subjects:
            agg = by_key.get((method_under_test, round(s, 10)))
            if agg is None:
                continue
            for method in baselines:
                base = by_key.get((method, round(s, 10)))
                if base is not None and method != method_under_test:
                    found.append((s, agg, base, compare_aggregates(agg, base)))
    if not found:
        return [], 0, []
    m = adjust([c for *_, c in found])
    lines = [f"| Sparsity | {subject or 'Method'} | vs | {TEST_HEAD} |", "|---" * 7 + "|"]
    ahead, behind = (f"{subject} ahead", f"{subject} behind") if subject else ("ahead", "behind")
    for s, agg, base, c in found:
        name = "" if subject else f"{_label(agg.method)}: "
        lines.append(
            f"| {format_sparsity(s)} | {name}{_fmt_acc(agg)} | {_label(base.method)}: "
            f"{_fmt_acc(base)} | {_test_cells(c)} | {_reading(c, ahead, behind)} |"
        )
    return lines, m, found


def _command_for(command: str, methods: Sequence[str], sparsity: float) -> str:
    """``command`` (a recorded sweep command) with its methods, sparsities and seeds replaced: seeds 3 and 4 of
    ``methods`` at ``sparsity``, everything else (profile, overrides, ``--out``) as recorded."""
    replaced = {"--methods", "--sparsities", "--seeds"}
    words, skipping = [], False
    for word in shlex.split(command):
        if word.startswith("--"):
            skipping = word.split("=")[0] in replaced
        if not skipping:
            words.append(word)
    extra = ["--methods", *methods, "--sparsities", format_sparsity(sparsity).rstrip("%"), "--seeds", "3", "4"]
    return shlex.join([*words, *extra])


def _contested_methods(found: Found) -> dict[float, list[str]]:
    """Per sparsity (ascending), the methods of the contested comparisons in ``found``, sorted."""
    cells: dict[float, set[str]] = {}
    for s, a, b, c in found:
        if c.contested:
            cells.setdefault(s, set()).update((a.method, b.method))
    return {s: sorted(methods) for s, methods in sorted(cells.items())}


def _contested_lines(found: Found, command: str) -> list[str]:
    """The contested comparisons and the sweep command that adds seeds 3 and 4 for their methods."""
    cells = _contested_methods(found)
    if not cells:
        return []
    text: list[str] = []
    seen: set[tuple[float, frozenset[str]]] = set()
    for s, a, b, c in found:
        pair = (s, frozenset((a.method, b.method)))
        if c.contested and pair not in seen:
            seen.add(pair)
            text.append(f"{_label(a.method)} vs {_label(b.method)} at {format_sparsity(s)} ({c.delta:+.2f})")
    commands = [_command_for(command, methods, s) for s, methods in cells.items()]
    return [
        "**Contested** (a large difference the tests neither show nor dismiss; add seeds 3 and 4 rather than argue): "
        + "; ".join(text)
        + ".",
        "",
        "```bash",
        *commands,
        "```",
        "",
    ]


def _details_table(aggs: Sequence[Aggregate], sparsities: Sequence[float]) -> list[str]:
    lines = ["| Method | " + " | ".join(format_sparsity(s) for s in sparsities) + " |"]
    lines.append("|---" * (len(sparsities) + 1) + "|")
    by_key = {(a.method, a.sparsity): a for a in aggs}
    for method in dict.fromkeys(a.method for a in aggs if a.method != "dense"):
        cells = []
        for s in sparsities:
            agg = by_key.get((method, round(s, 10)))
            if agg is None:
                cells.append("-")
                continue
            eff = "n/a" if agg.effective_mean is None else f"{100 * agg.effective_mean:.4g}%"
            cells.append(f"{eff} · {agg.pruning_seconds:.1f} s · {agg.training_seconds:.0f} s")
        lines.append(f"| {_label(method)} | " + " | ".join(cells) + " |")
    return lines


def _chance_table(group: Sequence[Mapping[str, Any]], profile: Profile | None) -> list[str]:
    """One row per pruned run at chance: its weights on input-output paths and :func:`failure_reading`."""
    classes = profile.num_classes() if profile is not None else 10
    rows = sorted((r for r in group if r.get("method") != "dense" and at_chance(r, classes)), key=record_order)
    lines = []
    for r in rows:
        count = weights_on_paths(r)
        on_paths = "n/a" if count is None else str(count)
        lines.append(
            f"| {_label(str(r['method']))} | {format_sparsity(float(r['sparsity']))} | {r['seed']} | "
            f"{float(r['test_acc']):.2f} | {on_paths} | {failure_reading(r)} |"
        )
    if not lines:
        return []
    return ["| Method | Sparsity | Seed | Accuracy | Weights on paths | Reading |", "|---|---|---|---|---|---|", *lines]


def _provenance_lines(group: Sequence[Mapping[str, Any]]) -> list[str]:
    """The git commits of the code that ran the records (``not recorded`` for records older than the field)."""
    counts: dict[str, int] = {}
    for r in group:
        commit = r.get("git_commit")
        dirty = " (dirty tree)" if r.get("git_dirty") else ""
        key = "not recorded" if not commit else f"`{str(commit)[:12]}`{dirty}"
        counts[key] = counts.get(key, 0) + 1
    parts = [f"{key}: {n} run(s)" for key, n in sorted(counts.items())]
    return ["Code (git commit of the runs): " + "; ".join(parts) + ".", ""]


def _paper_note(paper: str) -> list[str]:
    return [
        f"Paper numbers: Kang et al. 2022, {PAPER_SOURCES.get(paper, '')}; dense baseline "
        f"{PAPER_DENSE.get(paper, float('nan')):.2f}%. They were produced with the authors' code, so `(paper X)` "
        f"stands beside **{_label('panning_authors')}** (`panning_authors`, which reproduces that code's masks) and "
        f"beside RLPanning (the paper's agent, not ours), never beside **{_label('panning')}** (`panning`, the "
        "paper's Algorithm 1 as written, which differs from the authors' code: METHOD.md §3).",
        "",
    ]


def _sections(ok: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The finished records grouped by budget, the largest group first (the summary's first section)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for record in ok:
        groups.setdefault(budget_key(record), []).append(record)
    return sorted(groups.values(), key=len, reverse=True)


#: The order in which the tables' contested comparisons are listed.
CONTESTED_ORDER = ("verdict", "figure3", "later", "noise")


def _comparison_tables(
    aggs: Sequence[Aggregate], sparsities: Sequence[float]
) -> dict[str, tuple[list[str], int, Found]]:
    """Every table of tested differences of one section: ``{name: (table lines, Holm's m, comparisons)}``.

    ``noise``: each method against the best mean; ``verdict``: RLPanning against Panning and the authors' code;
    ``figure3``: both Panning variants against SynFlow and the iterative baselines (only where those ran);
    ``later``: the later methods against Panning and SynFlow. Empty tables have no lines.
    """
    tables = {
        "noise": _noise_table(aggs, sparsities),
        "verdict": _versus_table(aggs, sparsities, ("rlpanning",), VERDICT_BASELINES, subject="RLPanning"),
        "figure3": ([], 0, []),
        "later": _versus_table(aggs, sparsities, LATER_METHODS, LATER_BASELINES),
    }
    if any(a.method in FIGURE3_BASELINES[1:] for a in aggs):
        tables["figure3"] = _versus_table(aggs, sparsities, FIGURE3_SUBJECTS, FIGURE3_BASELINES)
    return tables


def contested_cells(records: Sequence[Mapping[str, Any]]) -> dict[float, list[str]]:
    """The methods of every comparison the summary marks contested, per sparsity (``sweep.py --contested``).

    Read from the same tables as ``summary.md``'s first section (the budget with the most finished runs).

    Returns:
        ``{sparsity: sorted methods}``; empty when nothing is contested.
    """
    rows, _ = current_records(records)
    sections = _sections([r for r in rows if r.get("status") == "ok" and r.get("test_acc") is not None])
    if not sections:
        return {}
    aggs = summarize(sections[0])
    sparsities = sorted({a.sparsity for a in aggs if a.method != "dense"})
    return _contested_methods([c for _, _, found in _comparison_tables(aggs, sparsities).values() for c in found])


def _section(
    group: Sequence[Mapping[str, Any]], profile: Profile | None, paper: str | None, plot: str | None
) -> list[str]:
    aggs = summarize(group)
    sparsities = sorted({a.sparsity for a in aggs if a.method != "dense"})
    epochs, subset, batch, rounds, lr, _ = budget_key(group[0])
    subset_text = "all" if subset in (None, "") else f"{int(subset):,}"
    lines = [
        f"## Test accuracy (%) — {epochs} epoch(s), training images: {subset_text}, batch {batch}, lr {lr}, "
        f"T = {rounds}",
        "",
        "**Budget.** " + _budget_text(group, profile),
        "",
    ]
    differs = _profile_differences(group[0], profile)
    if differs:
        lines += [f"These runs do not use the profile's recipe ({profile.name if profile else ''}): {differs}.", ""]
    dense = [a for a in aggs if a.method == "dense"]
    if dense:
        ref = PAPER_DENSE.get(paper or "")
        lines += [
            f"Dense baseline (no pruning): **{_fmt_acc(dense[0])}** (n = {dense[0].n})"
            + ("" if ref is None else f"; paper {ref:.2f}")
            + ".",
            "",
        ]
    if sparsities:
        counts = ", ".join(str(n) for n in sorted({a.n for a in aggs}))
        lines += [f"Mean ± std over seeds (std only when n > 1); n per cell: {counts}.", ""]
        lines += [*_accuracy_table(aggs, paper, sparsities), ""]
        tables = _comparison_tables(aggs, sparsities)
        noise, m, _ = tables["noise"]
        if noise:
            lines += ["Which differences the seeds support: each method against the best mean at its sparsity.", ""]
            lines += [_family_text(m), "", *noise, ""]
        verdict, m_verdict, _ = tables["verdict"]
        if verdict:
            lines += [
                "RLPanning against Table 3's fixed weights in the same Algorithm 1 (Panning (Algorithm 1)) and against "
                "the authors' code.",
                "",
                _family_text(m_verdict),
                "",
                *verdict,
                "",
            ]
        figure3, m_figure3, _ = tables["figure3"]
        if figure3:
            lines += [
                "Figure 3's ordering: the paper puts Panning above SynFlow (iterative), iterative SNIP (FORCE) and "
                "iterative GraSP at every sparsity. Both Panning variants against the three:",
                "",
                _family_text(m_figure3),
                "",
                *figure3,
                "",
            ]
        # only at the paper's own budget: a shorter run below the published mean says nothing about the paper
        at_paper_budget = profile is not None and profile.paper_epochs is not None and epochs == profile.paper_epochs
        versus_paper, m_paper = _paper_table(aggs, paper, sparsities) if at_paper_budget else ([], 0)
        if versus_paper:
            lines += [
                "Ours beside the paper's published means (" + PAPER_SOURCES.get(paper or "", "the paper") + "): "
                "two-sided one-sample t-test of our seeds against the paper's number, Holm's correction over the "
                f"m = {m_paper} testable rows. The paper publishes means only, so the test takes its number as "
                "exact and ignores the noise of the paper's own runs: its p-values are smaller than a comparison of "
                "two samples would give, and *shown* says that our runs do not reproduce the published mean, not "
                "by how much the two setups differ.",
                "",
                *versus_paper,
                "",
            ]
        later, m_later, _ = tables["later"]
        if later:
            lines += [
                "The later methods (ProsPr, NTK-SAP, PHEW, Panning + NTK-SAP) and the random baselines (ERK "
                "densities; Panning's masks shuffled within layers) against Panning (Algorithm 1) and SynFlow.",
                "",
                _family_text(m_later),
                "",
                *later,
                "",
            ]
        # the suggested command follows the latest CPU run's (a lent GPU's has its machine's --out and data paths)
        recorded = [r for r in group if r.get("command")]
        recorded = [r for r in recorded if r.get("accelerator") == "cpu"] or recorded
        name = profile.name if profile is not None else str(group[0].get("profile"))
        base = (
            scrub_command(str(recorded[-1]["command"]))
            if recorded
            else f"python benchmarks/sweep.py --profile {name} --accelerator cpu"
        )
        lines += _contested_lines([c for key in CONTESTED_ORDER for c in tables[key][2]], base)
        lines += ["Effective sparsity · pruning time · training time (means):", ""]
        lines += [*_details_table(aggs, sparsities), ""]
        chance = _chance_table(group, profile)
        if chance:
            lines += ["Runs that end at chance (a nearly constant output) and what their records show:", ""]
            lines += [*chance, ""]
        if plot is not None:
            lines += [f"![Accuracy against remaining weights]({plot})", ""]
    commands = list(dict.fromkeys(scrub_command(str(r.get("command"))) for r in group if r.get("command")))
    if commands:
        lines += ["Reproduce (resumable; finished cells are skipped):", "", "```bash", *commands, "```", ""]
    policies = sorted({str(r["policy"]) for r in group if r.get("policy")})
    if policies:
        lines += [
            "RLPanning agent (policy name and sha256 prefix; `default` is the policy shipped in lightning_panning): "
            + ", ".join(f"`{p}`" for p in policies),
            "",
        ]
    lines += _provenance_lines(group)
    keys = ("python", "torch", "lightning", "lightning_panning")
    vers = {f"{k} {r.get(k)}" for r in group for k in keys if r.get(k)}
    if vers:
        lines += ["Versions: " + ", ".join(sorted(vers)) + ".", ""]
    return lines


def write_summary(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    profile: Profile | None = None,
    budget_note: str | None = None,
    plot_name: str | None = PLOT_FILE,
    unavailable: Mapping[str, str] | None = None,
) -> Path:
    """Write the Markdown summary: budget, accuracy beside the paper's, tests of the differences, commands, failures.

    Args:
        records: all records of the sweep (``runs.jsonl``).
        path: the Markdown file to write (atomically).
        profile: the sweep's profile; inferred from the records if ``None``.
        budget_note: extra text about the compute budget.
        plot_name: file name of the plot to embed, or ``None``.
        unavailable: methods skipped because this installation cannot run them, with the reason.

    Returns:
        The path written.
    """
    path = Path(path)
    rows, superseded = current_records(records)
    ok = [r for r in rows if r.get("status") == "ok" and r.get("test_acc") is not None]
    failed = [r for r in rows if r.get("status") != "ok"]
    if profile is None and rows:
        profile = PROFILES.get(str(rows[0].get("profile")))
    paper = profile.paper if profile is not None else None
    title = profile.name if profile is not None else (str(rows[0].get("profile")) if rows else "sweep")
    lines = [
        f"# Sweep results: `{title}`",
        "",
        "_Generated by `benchmarks/sweep.py` from `runs.jsonl`; do not edit by hand._",
        "",
    ]
    if profile is not None:
        lines += [f"Profile `{profile.name}`: {profile.description}", ""]
    if paper is not None:
        lines += _paper_note(paper)
    if budget_note:
        lines += ["**Budget note.** " + budget_note.strip(), ""]
    if (path.parent / ANALYSIS_FILE).exists():
        lines += [f"What agrees with the paper and what does not: see [{ANALYSIS_FILE}]({ANALYSIS_FILE}).", ""]
    ordered = _sections(ok)
    if not ordered:
        lines += ["No finished runs yet.", ""]
    for index, group in enumerate(ordered):
        lines += _section(group, profile, paper, plot_name if index == 0 else None)
    if superseded:
        old = sorted({f"`{r.get('method')}` with `{r.get('policy')}`" for r in superseded})
        lines += [
            f"{len(superseded)} run(s) made with an earlier agent are kept in `runs.jsonl`/`runs.csv` but left "
            f"out of the tables and the plot: {', '.join(old)}.",
            "",
        ]
    if unavailable:
        lines += ["## Methods not run", "", *[f"- `{m}`: {reason}" for m, reason in unavailable.items()], ""]
    if failed:
        lines += ["## Failed runs", "", "| Method | Sparsity | Seed | Error |", "|---|---|---|---|"]
        for r in sorted(failed, key=record_order):
            error = str(r.get("error", "")).strip().splitlines()
            lines.append(
                f"| {r.get('method')} | {format_sparsity(float(r.get('sparsity') or 0))} | {r.get('seed')} | "
                f"{(error[-1] if error else '').replace('|', '/')[:200]} |"
            )
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    profile: Profile | None = None,
    budget_note: str | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Rebuild ``runs.csv``, ``summary.md`` and the plot from ``<out_dir>/runs.jsonl``.

    Args:
        out_dir: the results folder.
        profile: the sweep's profile (inferred from the records when ``None``).
        budget_note: budget text; defaults to the one saved in ``sweep.json`` by an earlier run.
        unavailable: methods skipped as not runnable, with the reason; defaults to the saved ones.

    Returns:
        ``{"csv": ..., "summary": ..., "plot": ...}`` (``plot`` absent when nothing finished yet).
    """
    out = Path(out_dir)
    records = load_records(out / RECORDS_FILE)
    if profile is None and records:
        profile = PROFILES.get(str(records[0].get("profile")))
    meta = load_meta(out)
    note = budget_note or meta.get("budget_note")
    if unavailable is None:
        unavailable = meta.get("unavailable") or None
    files: dict[str, Path] = {"csv": write_csv(records, out / CSV_FILE)}
    plot = plot_accuracy(
        records,
        out / PLOT_FILE,
        paper=profile.paper if profile is not None else None,
        title=profile.name if profile is not None else None,
    )
    files["summary"] = write_summary(
        records,
        out / SUMMARY_FILE,
        profile=profile,
        budget_note=note,
        plot_name=PLOT_FILE if plot is not None else None,
        unavailable=unavailable,
    )
    if plot is not None:
        files["plot"] = plot
    return files
