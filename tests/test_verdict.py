"""`benchmarks/verdict.py`: ANALYSIS.md's Table 5 block and its numbers checked against the committed records."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.verdict import ANALYSIS, END, RESULTS, START, check, decimals, table, update


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    """ANALYSIS.md and the two full-budget profiles' records and summaries, copied under ``tmp_path``."""
    results = tmp_path / "results"
    for profile in ("lenet5-mnist", "lenet5-fashionmnist"):
        (results / profile).mkdir(parents=True)
        for name in ("runs.jsonl", "summary.md"):
            shutil.copy(RESULTS / profile / name, results / profile / name)
    analysis = results / "ANALYSIS.md"
    shutil.copy(ANALYSIS, analysis)
    return analysis, results


def test_the_committed_verdict_agrees_with_the_committed_records() -> None:
    assert check() == []


def test_a_mistyped_number_in_the_verdict_is_reported(tmp_path: Path) -> None:
    analysis, results = _copy(tmp_path)
    text = analysis.read_text(encoding="utf-8")
    verdict = text.index("## The verdict")
    # a Holm-adjusted p-value nobody computed, written into the verdict's prose
    marker = "**So, at 80 epochs"
    at = text.index(marker, verdict)
    analysis.write_text(text[:at] + "A stale figure: Holm 0.0421.\n\n" + text[at:], encoding="utf-8")
    problems = check(analysis, results)
    assert len(problems) == 1 and problems[0].startswith("0.0421 is in no summary")


def test_a_cell_that_lands_makes_the_table_stale_until_it_is_rewritten(tmp_path: Path) -> None:
    analysis, results = _copy(tmp_path)
    runs = results / "lenet5-mnist" / "runs.jsonl"
    lines = runs.read_text(encoding="utf-8").splitlines(keepends=True)
    runs.write_text("".join(lines[:-1]), encoding="utf-8")  # as before the last cell landed
    before = table(results)
    assert before != table(RESULTS)
    assert any("stale" in p for p in check(analysis, results))
    assert update(analysis, results) and not update(analysis, results)
    text = analysis.read_text(encoding="utf-8")
    assert text[text.index(START) + len(START) : text.index(END)].strip() == before


def test_the_table_has_every_table5_sparsity_and_says_what_did_not_run() -> None:
    rows = [line for line in table().splitlines() if line.startswith("| MNIST") or line.startswith("| FashionMNIST")]
    assert len(rows) == 12
    assert all(line.count("|") == 6 for line in rows)
    assert decimals("paper 99.40 · ours 99.33 ± 0.03 (3), 99.9%") == ["99.40", "99.33", "0.03", "99.9"]
