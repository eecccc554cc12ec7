"""The verdict's generated parts (issue 26 §5): Table 5's LeNet5 rows beside ours, and a number-by-number check.

``benchmarks/results/ANALYSIS.md`` is written by hand, except the table between the markers
``<!-- verdict-table:start -->`` and ``<!-- verdict-table:end -->``, which this script writes from the full-budget
profiles' records (``lenet5-mnist``, ``lenet5-fashionmnist``: ``<profile>/runs.jsonl``): for each dataset and each of
Table 5's sparsities, the paper's number beside ours (mean ± std over seeds, n), "not run" where no cell has
finished. ``--check`` changes nothing and exits 1 when

* the table in ANALYSIS.md differs from the one the records give now (a cell landed, and the verdict was not
  updated), or
* a decimal number written in the verdict section (from "## The verdict" to the next "## ") is found in none of the
  sources it may be copied from: the two profiles' ``summary.md``, the generated table, a seed's accuracy in the
  records (two decimals), or the paper's numbers (:mod:`benchmarks.sweep.paper`).

The second check cannot tell whether a number stands in the right sentence; it finds numbers that were mistyped or
went stale when a table changed, which is what the summaries' regeneration otherwise hides.

    python benchmarks/verdict.py            # rewrite the table in ANALYSIS.md from the records
    python benchmarks/verdict.py --check    # verify ANALYSIS.md against the records and summaries; exit 1 if not

Example:
    >>> decimals("Welch p = 0.078 (Holm 1.000), +12.94 in 5 seeds, 99.9%")
    ['0.078', '1.000', '12.94', '99.9']
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sweep.aggregate import Aggregate, summarize
from benchmarks.sweep.paper import PAPER_DENSE, PAPER_RESULTS, paper_beside
from benchmarks.sweep.profiles import format_sparsity
from benchmarks.sweep.records import latest_records, load_records

__all__ = ["PROFILES", "ROWS", "SPARSITIES", "check", "decimals", "table", "update"]

RESULTS = Path(__file__).resolve().parent / "results"
ANALYSIS = RESULTS / "ANALYSIS.md"
START = "<!-- verdict-table:start -->"
END = "<!-- verdict-table:end -->"
VERDICT_HEADING = "## The verdict"

#: The full-budget profiles and the dataset each stands for.
PROFILES: dict[str, str] = {"lenet5-mnist": "MNIST", "lenet5-fashionmnist": "FashionMNIST"}
#: Table 5's sparsities, in its order.
SPARSITIES: tuple[float, ...] = (0.9, 0.95, 0.98, 0.99, 0.999, 0.9999)
#: The table's columns: sweep method and its heading. The paper's Panning row came from the authors' code, so it
#: stands beside ``panning_authors``; ``panning`` (Algorithm 1 as written) has no paper row.
ROWS: dict[str, str] = {
    "panning_authors": "Panning (authors' code): paper · ours",
    "rlpanning": "RLPanning: paper · ours",
    "panning": "Panning (Algorithm 1): ours",
}

_NUMBER = re.compile(r"(?<![\w.])[-+−]?(\d+\.\d+)")


def decimals(text: str) -> list[str]:
    """Every decimal number written in ``text`` (digits, a point, digits), unsigned, in order."""
    return _NUMBER.findall(text)


def _ours(agg: Aggregate | None) -> str:
    if agg is None:
        return "not run"
    spread = f" ± {agg.acc_std:.2f}" if agg.n > 1 else ""
    return f"{agg.acc_mean:.2f}{spread} ({agg.n})"


def _records(results: Path) -> dict[str, list[dict[str, Any]]]:
    """Each full-budget profile's records under ``results``."""
    return {profile: load_records(results / profile / "runs.jsonl") for profile in PROFILES}


def table(results: Path = RESULTS) -> str:
    """The markdown of Table 5's LeNet5 rows beside ours, from the records under ``results``.

    Returns:
        A line per dataset's dense baseline, then one table row per (dataset, sparsity).
    """
    return _table(_records(results))


def _table(records: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    lines: list[str] = []
    body = [
        "| data | sparsity | " + " | ".join(ROWS.values()) + " |",
        "|---|---|" + "---|" * len(ROWS),
    ]
    for profile, data in PROFILES.items():
        aggs = {(a.method, a.sparsity): a for a in summarize(records[profile])}
        dense = aggs.get(("dense", 0.0))
        lines.append(f"- {data} dense: paper {PAPER_DENSE[profile]:.2f} · ours {_ours(dense)}")
        for s in SPARSITIES:
            cells = []
            for method in ROWS:
                ours = _ours(aggs.get((method, round(s, 10))))
                paper = paper_beside(profile, method, s)
                cells.append(ours if paper is None else f"{paper:.2f} · {ours}")
            body.append(f"| {data} | {format_sparsity(s)} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *body])


def _block(analysis: str, path: Path) -> tuple[int, int]:
    start, end = analysis.find(START), analysis.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"verdict.py: {path} has no '{START}' … '{END}' block to write the table into")
    return start + len(START), end


def update(analysis_path: Path = ANALYSIS, results: Path = RESULTS) -> bool:
    """Rewrite the table block of ``analysis_path`` from the records; ``True`` if it changed."""
    text = analysis_path.read_text(encoding="utf-8")
    a, b = _block(text, analysis_path)
    new = text[:a] + "\n" + table(results) + "\n" + text[b:]
    if new != text:
        analysis_path.write_text(new, encoding="utf-8")
    return new != text


def _verdict_section(text: str, path: Path) -> str:
    start = text.find(VERDICT_HEADING)
    if start < 0:
        raise SystemExit(f"verdict.py: {path} has no '{VERDICT_HEADING}' section")
    end = text.find("\n## ", start + len(VERDICT_HEADING))
    return text[start : end if end >= 0 else len(text)]


def _allowed(results: Path, records: Mapping[str, Sequence[Mapping[str, Any]]], generated: str) -> set[str]:
    allowed = set(decimals(generated))
    for profile in PROFILES:
        summary = results / profile / "summary.md"
        if summary.exists():
            allowed.update(decimals(summary.read_text(encoding="utf-8")))
        for record in latest_records(records[profile]):
            if record.get("status") == "ok" and record.get("test_acc") is not None:
                allowed.add(f"{float(record['test_acc']):.2f}")
        allowed.add(f"{PAPER_DENSE[profile]:.2f}")
        for row in PAPER_RESULTS[profile].values():
            allowed.update(f"{acc:.2f}" for acc in row.values())
    return allowed


def check(analysis_path: Path = ANALYSIS, results: Path = RESULTS) -> list[str]:
    """What in ``analysis_path`` disagrees with the records and summaries under ``results`` (empty: nothing).

    Returns:
        One message per problem: a stale table, or a decimal of the verdict section found in no source.
    """
    text = analysis_path.read_text(encoding="utf-8")
    a, b = _block(text, analysis_path)
    records = _records(results)
    generated = _table(records)
    problems: list[str] = []
    if text[a:b].strip() != generated.strip():
        problems.append("the Table 5 block is stale: run `python benchmarks/verdict.py` and update the prose")
    section = _verdict_section(text[:a] + text[b:], analysis_path)
    # sparsities are written like 99.9 or 99.99 and are not copied from a table
    allowed = _allowed(results, records, generated) | {format_sparsity(s)[:-1] for s in SPARSITIES}
    for number in decimals(section):
        if number in allowed:
            continue
        at = section.find(number)
        context = section[max(0, at - 60) : at + 20].replace("\n", " ")
        problems.append(f"{number} is in no summary, record or paper table (…{context}…)")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 on any disagreement")
    parser.add_argument("--analysis", type=Path, default=ANALYSIS, help="the ANALYSIS.md to write or check")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder holding the profiles' records")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.analysis, args.results)
        for problem in problems:
            print(f"verdict.py: {problem}", file=sys.stderr)
        if not problems:
            print(f"verdict.py: {args.analysis} agrees with the records and summaries under {args.results}")
        return 1 if problems else 0
    changed = update(args.analysis, args.results)
    print(f"verdict.py: {'rewrote' if changed else 'unchanged:'} the Table 5 block of {args.analysis}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
