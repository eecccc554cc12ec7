"""Tests of the benchmark sweep package ``benchmarks.sweep``: profiles, records and resume, report, command line."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from benchmarks.sweep import cli, methods, records, run
from benchmarks.sweep.cell import SweepConfig, build_model, init_fingerprint, policy_id, run_cell
from benchmarks.sweep.methods import METHOD_LABELS, build_callback, core_methods, method_unavailable_reason
from benchmarks.sweep.paper import paper_accuracy, paper_beside
from benchmarks.sweep.profiles import PAPER_RECIPE_METHODS, PROFILES, Cell, get_profile, parse_sparsity
from benchmarks.sweep.records import (
    RecordsMismatchError,
    append_record,
    cell_key,
    current_records,
    latest_records,
    load_records,
)
from benchmarks.sweep.report import write_report, write_summary
from benchmarks.sweep.run import run_sweep
from lightning_panning.core import METHODS

REPO = Path(__file__).resolve().parents[1]
OLD_RESULTS = REPO / "benchmarks" / "results" / "old-budget"


class CountingRunner:
    """A fake cell runner (accuracy = 90 − 10·sparsity + seed) that counts the cells it ran."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.cells: list[Cell] = []

    def __call__(self, cell: Cell, config: SweepConfig) -> Mapping[str, Any]:
        self.cells.append(cell)
        if self.inner is not None:
            return self.inner(cell, config)
        acc = 90.0 - 10.0 * cell.sparsity + cell.seed
        return {"test_acc": acc, "nominal_sparsity": cell.sparsity, "effective_sparsity": cell.sparsity}


class NullProgress:
    def start(self, total: int, skipped: int) -> None: ...

    def cell_started(self, cell: Cell) -> None: ...

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def _config(tmp_path: Path, profile: str = "smoke", **overrides: Any) -> SweepConfig:
    return SweepConfig(
        profile=PROFILES[profile].override(**overrides),
        out_dir=tmp_path / "out",
        accelerator="cpu",
        command="pytest",
        report_every_cell=False,
    )


# -- end to end: the smoke profile with real Lightning runs --------------------------------------------------------------


def test_smoke_profile_end_to_end_and_resume(tmp_path: Path) -> None:
    """Real training runs (Digits, 1 epoch), then a resumed run that trains nothing, then --report-only."""
    out = tmp_path / "smoke"
    argv = [
        "--profile", "smoke", "--methods", "panning,random", "--sparsities", "90", "--rounds", "3",
        "--train-subset", "192", "--accelerator", "cpu", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert cli.main(argv) == 0

    rows = load_records(out / "runs.jsonl")
    assert [(r["method"], r["sparsity"], r["status"]) for r in rows] == [("panning", 0.9, "ok"), ("random", 0.9, "ok")]
    for record in rows:
        assert 0.0 <= record["test_acc"] <= 100.0
        assert record["nominal_sparsity"] == pytest.approx(0.9, abs=1e-4)
        assert record["effective_sparsity"] is not None and record["effective_sparsity"] >= 0.9 - 1e-4
        assert record["pruning_seconds"] > 0.0 and record["training_seconds"] > 0.0
        assert record["rounds"] == 3 and record["train_subset"] == 192 and record["epochs"] == 1
        assert (
            record["momentum"] == 0.9 and record["init"].startswith("lenet5-authors:") and record["backend"] == "local"
        )
        assert record["command"].startswith("python benchmarks/sweep.py --profile smoke")
        assert {"python", "torch", "lightning", "lightning_panning"} <= set(record)
        assert record["optimizer_steps"] == 3  # 192 images / batch 64, one epoch
        assert record["logit_spread_start"] > 0.0 and record["logit_spread_end"] > 0.0  # Liveness ran on the test set
        assert 0.0 <= record["dead_units_start"] <= 1.0 and 0.0 <= record["dead_units_end"] <= 1.0
        assert len(record["dead_units_by_layer_end"]) == 3  # LeNet5's three ReLUs

    with (out / "runs.csv").open() as handle:
        assert sorted(r["method"] for r in csv.DictReader(handle)) == ["panning", "random"]
    summary = (out / "summary.md").read_text()
    assert "| Panning (Algorithm 1) |" in summary and "| Random |" in summary and "accuracy_vs_remaining.png" in summary
    assert f"{rows[0]['test_acc']:.2f}" in summary
    png = (out / "accuracy_vs_remaining.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000

    # resume: every cell is finished, so no training happens
    counting = CountingRunner(inner=run_cell)
    profile = PROFILES["smoke"].override(methods=("panning", "random"), sparsities=(0.9,), rounds=3, train_subset=192)
    outcome = run_sweep(
        SweepConfig(profile=profile, out_dir=out, accelerator="cpu", command="pytest"),
        runner=counting,
        progress=NullProgress(),
    )
    assert counting.cells == [] and outcome.ran == [] and len(outcome.skipped) == 2
    assert len(load_records(out / "runs.jsonl")) == 2

    # report-only rebuilds the files from the records
    for name in ("runs.csv", "summary.md", "accuracy_vs_remaining.png"):
        (out / name).unlink()
    assert cli.main(["--profile", "smoke", "--out", str(out), "--report-only"]) == 0
    assert "| Random |" in (out / "summary.md").read_text()
    assert (out / "runs.csv").exists() and (out / "accuracy_vs_remaining.png").exists()


def test_entry_points_work_from_the_repository_root() -> None:
    """`python benchmarks/sweep.py` and `python -m benchmarks.sweep`, as a fresh clone runs them."""
    for command in (["benchmarks/sweep.py"], ["-m", "benchmarks.sweep"]):
        done = subprocess.run(
            [sys.executable, *command, "--list-profiles"], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        assert "lenet5-mnist-cpu" in done.stdout and "smoke" in done.stdout


# -- resumability and bookkeeping with a fake runner ---------------------------------------------------------------------


def test_resume_skips_only_finished_cells(tmp_path: Path) -> None:
    config = _config(tmp_path, methods=("dense", "snip"), sparsities=(0.9, 0.99), seeds=(0, 1))
    first = CountingRunner()
    outcome = run_sweep(config, runner=first, progress=NullProgress())
    assert len(first.cells) == 6  # dense once per seed + 2 sparsities x 2 seeds
    assert len(outcome.ran) == 6 and not outcome.failed

    # more seeds and a new sparsity: only the new cells run
    bigger = _config(tmp_path, methods=("dense", "snip"), sparsities=(0.9, 0.99, 0.999), seeds=(0, 1, 2))
    second = CountingRunner()
    outcome = run_sweep(bigger, runner=second, progress=NullProgress())
    assert len(outcome.skipped) == 6
    assert sorted((c.method, c.sparsity, c.seed) for c in second.cells) == sorted(
        [("dense", 0.0, 2), ("snip", 0.999, 0), ("snip", 0.999, 1)] + [("snip", s, 2) for s in (0.9, 0.99, 0.999)]
    )
    keys = [cell_key(r) for r in load_records(config.out_dir / "runs.jsonl")]
    assert len(keys) == len(set(keys)) == 12  # no cell ran twice


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"epochs": 2}, "epochs 1 (recorded) ≠ 2 (this sweep)"),
        ({"lr": 0.01}, "lr 0.1 (recorded) ≠ 0.01 (this sweep)"),
        ({"train_subset": 0}, "train_subset 512 (recorded) ≠ all (this sweep)"),
        ({"rounds": 7}, "rounds 5 (recorded) ≠ 7 (this sweep)"),
    ],
)
def test_records_of_another_budget_are_refused_and_kept(tmp_path: Path, change: dict[str, Any], named: str) -> None:
    config = _config(tmp_path, methods=("dense", "random"), sparsities=(0.9,))
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    before = (config.out_dir / "runs.jsonl").read_bytes()
    runner = CountingRunner()
    with pytest.raises(RecordsMismatchError, match="another budget") as info:
        run_sweep(_config(tmp_path, methods=("dense", "random"), sparsities=(0.9,), **change), runner=runner)
    assert named in str(info.value) and "--out" in str(info.value)
    assert runner.cells == [] and (config.out_dir / "runs.jsonl").read_bytes() == before


def test_records_of_another_profile_or_init_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, methods=("dense",))
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    other = SweepConfig(profile=PROFILES["quick"].override(methods=("dense",)), out_dir=config.out_dir)
    with pytest.raises(RecordsMismatchError, match=r"profile\(s\) \['smoke'\], but this sweep is profile 'quick'"):
        run_sweep(other, runner=CountingRunner(), progress=NullProgress())
    # the models' initialisation changed (a new init scheme): the old runs are not the same runs
    monkeypatch.setattr(run, "init_fingerprint", lambda profile: "lenet5-authors:000000000000")
    with pytest.raises(RecordsMismatchError, match=r"init 'lenet5-authors:\w+' \(recorded\) ≠ 'lenet5-authors:0+'"):
        run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    assert len(load_records(config.out_dir / "runs.jsonl")) == 1


def test_init_fingerprint_follows_the_initialisation() -> None:
    smoke = PROFILES["smoke"]
    assert init_fingerprint(smoke) == init_fingerprint(smoke.override(seeds=(5,), epochs=3))
    kaiming = init_fingerprint(smoke.override(init="kaiming"))
    assert kaiming.startswith("lenet5-kaiming:") and kaiming.split(":")[1] != init_fingerprint(smoke).split(":")[1]


def test_cli_reports_a_records_mismatch_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "old"
    shutil.copytree(OLD_RESULTS / "lenet5-mnist-1epoch", out)
    before = (out / "runs.jsonl").read_bytes()
    assert cli.main(["--profile", "lenet5-mnist", "--methods", "dense", "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    for named in ("epochs 1 (recorded) ≠ 80", "lr 0.01 (recorded) ≠ 0.1", "batch_size 64", "init not recorded"):
        assert named in err
    assert (out / "runs.jsonl").read_bytes() == before


def test_old_committed_results_still_load_and_report(tmp_path: Path) -> None:
    """The superseded 1-epoch results keep loading; the report says they are not the profile's recipe."""
    for name, n in (("lenet5-mnist-1epoch", 80), ("lenet5-fashionmnist-1epoch", 15)):
        out = tmp_path / name
        shutil.copytree(OLD_RESULTS / name, out)
        rows = load_records(out / "runs.jsonl")
        assert len(rows) == n and all(r["status"] == "ok" for r in rows)
        summary = write_report(out)["summary"].read_text()
        assert "epochs 1 (profile: 80)" in summary and "lr 0.01 (profile: 0.1)" in summary
        assert "SUPERSEDED" in summary  # the saved budget note labels the old budget
        dense = [r["test_acc"] for r in rows if r["method"] == "dense"]
        assert f"{sum(dense) / len(dense):.2f}" in summary


def test_summary_names_overrides_of_the_profiles_recipe(tmp_path: Path) -> None:
    config = _config(tmp_path, methods=("dense",), epochs=2, lr=0.05)
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    summary = (config.out_dir / "summary.md").read_text()
    assert "do not use the profile's recipe (smoke): epochs 2 (profile: 1), lr 0.05 (profile: 0.1)." in summary


def test_failed_cell_is_recorded_and_retried(tmp_path: Path) -> None:
    def flaky(cell: Cell, config: SweepConfig) -> Mapping[str, Any]:
        if cell.method == "random":
            raise RuntimeError("boom")
        return CountingRunner()(cell, config)

    config = _config(tmp_path, methods=("dense", "random"), sparsities=(0.9,))
    outcome = run_sweep(config, runner=flaky, progress=NullProgress())
    assert [c.method for c in outcome.failed] == ["random"] and len(outcome.ran) == 2
    rows = load_records(config.out_dir / "runs.jsonl")
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 1 and "RuntimeError: boom" in failed[0]["error"] and "Traceback" in failed[0]["traceback"]
    assert "## Failed runs" in (config.out_dir / "summary.md").read_text()

    again = CountingRunner()
    run_sweep(config, runner=again, progress=NullProgress())
    assert [c.method for c in again.cells] == ["random"]
    latest = latest_records(load_records(config.out_dir / "runs.jsonl"))
    assert sorted(r["status"] for r in latest) == ["ok", "ok"]
    assert "## Failed runs" not in (config.out_dir / "summary.md").read_text()


def test_interrupted_sweep_keeps_finished_cells_and_resumes(tmp_path: Path) -> None:
    class StopAfterOne(NullProgress):
        def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
            raise KeyboardInterrupt

    config = _config(tmp_path, methods=("dense", "random"), sparsities=(0.9,))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, runner=CountingRunner(), progress=StopAfterOne())
    assert [r["method"] for r in load_records(config.out_dir / "runs.jsonl")] == ["dense"]
    again = CountingRunner()
    run_sweep(config, runner=again, progress=NullProgress())
    assert [c.method for c in again.cells] == ["random"]


def test_truncated_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    append_record(path, {"profile": "p", "method": "snip", "sparsity": 0.9, "seed": 0, "status": "ok"})
    with path.open("a") as handle:
        handle.write('{"profile": "p", "meth')  # a crash in the middle of a write
    assert len(load_records(path)) == 1


def test_method_missing_from_core_methods_is_skipped_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(METHODS, "iterative_grasp")  # as `panning_authors` before the authors' preset lands
    reason = method_unavailable_reason("iterative_grasp")
    assert reason is not None and "not a key of lightning_panning.core.METHODS" in reason
    config = _config(tmp_path, methods=("dense", "iterative_grasp"), sparsities=(0.9,))
    runner = CountingRunner()
    outcome = run_sweep(config, runner=runner, progress=NullProgress())
    assert list(outcome.unavailable) == ["iterative_grasp"]
    assert [c.method for c in runner.cells] == ["dense"]
    assert "`iterative_grasp`: 'iterative_grasp' is not a key" in (config.out_dir / "summary.md").read_text()
    with pytest.raises(methods.MethodUnavailableError, match="iterative_grasp"):
        build_callback("iterative_grasp", 0.9)


def _record(method: str, sparsity: float, seed: int, acc: float, **extra: Any) -> dict[str, Any]:
    profile = PROFILES["lenet5-mnist"]
    return {
        "profile": profile.name, "method": method, "sparsity": sparsity, "seed": seed, "status": "ok",
        "test_acc": acc, "init": "lenet5:abc", **profile.budget(), **extra,
    }  # fmt: skip


def test_summary_puts_the_papers_numbers_beside_panning_authors_and_judges_noise(tmp_path: Path) -> None:
    rows = [_record("dense", 0.0, s, 99.3 + 0.01 * s) for s in range(3)]
    rows += [_record("panning", 0.999, s, 96.0 + 0.1 * s) for s in range(3)]  # 96.10 ± 0.10
    rows += [_record("panning_authors", 0.999, s, 95.8 + 0.2 * s) for s in range(3)]  # 96.00 ± 0.20
    rows += [_record("snip", 0.999, s, 90.0 + s) for s in range(3)]  # 91.00 ± 1.00
    rows += [_record("synflow", 0.999, 0, 96.5)]  # one seed
    path = write_summary(rows, tmp_path / "summary.md", profile=PROFILES["lenet5-mnist"], budget_note="tiny budget")
    text = path.read_text()
    assert "| Panning (authors' code) | 96.00 ± 0.20 (paper 95.51) |" in text
    assert "| Panning (Algorithm 1) | 96.10 ± 0.10 |" in text  # no paper number beside Algorithm 1
    assert "produced with the authors' code" in text and "paper 99.40" in text
    assert "| Paper: rlpanning (the authors' code and their trained agent" in text  # paper-only row
    rows_999 = [line for line in text.splitlines() if line.startswith("| 99.9% | SynFlow (iterative): 96.50, n = 1 |")]
    assert len(rows_999) == 3 and all("not testable (fewer than 2 seeds" in line for line in rows_999)
    assert "m = 0 testable comparisons" in text
    three = write_summary([r for r in rows if r["method"] != "synflow"], tmp_path / "s2.md", profile=None).read_text()
    assert "m = 2 testable comparisons" in three
    snip = next(line for line in three.splitlines() if line.startswith("| 99.9% |") and "| SNIP |" in line)
    panning = {s: 96.0 + 0.1 * s for s in range(3)}
    welch = stats.ttest_ind([90.0, 91.0, 92.0], list(panning.values()), equal_var=False).pvalue
    paired = stats.ttest_rel([90.0, 91.0, 92.0], list(panning.values())).pvalue
    assert snip.startswith("| 99.9% | Panning (Algorithm 1): 96.10 ± 0.10, n = 3 | SNIP | -5.10 |")
    assert f"| {welch:.3f} ({min(1.0, 2 * welch):.3f}) | {paired:.3f} ({min(1.0, 2 * paired):.3f}), 3 pairs" in snip
    assert "**shown: below the best**" in snip  # the smaller p of m = 2: Holm doubles it
    assert "**Budget note.** tiny budget" in text and "The paper trains 80 epochs" in text


def test_summary_judges_rlpanning_against_table3_weights_and_the_authors_code_paired_by_seed(tmp_path: Path) -> None:
    rows = [_record("panning", 0.99, s, acc) for s, acc in enumerate((97.0, 97.2, 97.4))]  # 97.20 ± 0.20
    rows += [_record("panning_authors", 0.99, s, acc) for s, acc in enumerate((96.0, 99.0, 96.0))]  # 97.00 ± 1.73
    rows += [_record("rlpanning", 0.99, s, acc, policy="default:abc") for s, acc in enumerate((98.0, 98.1, 95.9))]
    rows += [_record("panning", 0.999, s, 90.0 + s) for s in range(3)]  # no RLPanning at 99.9%: no row
    text = write_summary(rows, tmp_path / "summary.md", profile=PROFILES["lenet5-mnist"]).read_text()
    assert "| Sparsity | RLPanning | vs | Δ | Welch p (Holm) | paired p (Holm), seeds | Reading |" in text
    vs_panning = next(line for line in text.splitlines() if line.startswith("| 99% | 97.33 ± 1.24 | Panning (Algorithm"))
    vs_authors = next(line for line in text.splitlines() if line.startswith("| 99% | 97.33 ± 1.24 | Panning (authors"))
    assert "| +0.13 |" in vs_panning and "3 pairs, ahead in 2 |" in vs_panning  # seeds 0, 1 above 97.0 and 97.2
    assert "| +0.33 |" in vs_authors and "3 pairs, ahead in 1 |" in vs_authors  # only seed 0 above the authors' 96.0
    assert "m = 2 testable comparisons" in text and "not shown" in vs_panning
    assert not any(line.startswith("| 99.9% | ") and "pairs" in line for line in text.splitlines())
    rows = [_record("panning", 0.99, s, 97.0 + 0.01 * s + 0.02 * (s == 2)) for s in range(3)]
    rows += [_record("rlpanning", 0.99, s, 95.0 + 0.01 * s) for s in range(3)]
    rows += [_record("panning_authors", 0.99, 0, 94.0)]
    lines = write_summary(rows, tmp_path / "s2.md", profile=None).read_text().splitlines()
    behind = next(line for line in lines if line.startswith("| 99% | 95.01 ± 0.01 | Panning (Algorithm"))
    assert "| -2.01 |" in behind and "**shown: RLPanning behind**" in behind  # m = 1: no correction
    one = next(line for line in lines if line.startswith("| 99% | 95.01 ± 0.01 | Panning (authors"))
    assert "| +1.01 |" in one and "1 pairs, ahead in 1 | not testable" in one
    text = write_summary([r for r in rows if r["method"] != "rlpanning"], tmp_path / "s3.md", profile=None).read_text()
    assert "vs Panning (Algorithm 1)" not in text


def test_summary_judges_the_later_methods_against_panning_and_synflow(tmp_path: Path) -> None:
    rows = [_record("panning", 0.99, s, 97.0 + 0.1 * s) for s in range(3)]  # 97.10 ± 0.10
    rows += [_record("synflow", 0.99, s, 97.5 + 0.1 * s) for s in range(3)]  # 97.60 ± 0.10
    rows += [_record("prospr", 0.99, s, 90.0 + 0.1 * s + 0.05 * (s == 1)) for s in range(3)]
    rows += [_record("random_erk", 0.99, s, 11.35) for s in range(3)]  # at chance in every seed: no spread
    rows += [_record("rlpanning", 0.99, s, 96.0 + s, policy="default:abc") for s in range(3)]  # not a later method
    text = write_summary(rows, tmp_path / "summary.md", profile=PROFILES["lenet5-mnist"]).read_text()
    assert "against Panning (Algorithm 1) and SynFlow" in text
    lines = text.splitlines()
    later = [line for line in lines if line.startswith("| 99% | ProsPr: ") or line.startswith("| 99% | Random (ERK")]
    assert len(later) == 4  # ProsPr and ERK-random, each against Panning and SynFlow
    vs_synflow = next(line for line in later if "ProsPr" in line and "| SynFlow (iterative): 97.60" in line)
    assert "| -7.48 |" in vs_synflow and "3 pairs, ahead in 0 |" in vs_synflow
    assert "**shown: behind**" in vs_synflow
    assert not any(line.startswith("| 99% | RLPanning: ") for line in lines)  # RLPanning has its own table
    block = text[text.index("against Panning (Algorithm 1) and SynFlow"):]
    assert "m = 4 testable comparisons" in block.split("|")[0]  # Holm over this table's rows
    assert "| RLPanning | vs |" in text  # the RLPanning table keeps its own head


def test_summary_tests_figure3s_ordering_and_the_papers_means(tmp_path: Path) -> None:
    rows = [_record("panning", 0.999, s, 95.0 + 0.1 * s) for s in range(3)]  # 95.10 ± 0.10
    rows += [_record("panning_authors", 0.999, s, acc) for s, acc in enumerate((94.0, 95.5, 94.3))]
    rows += [_record("synflow", 0.999, s, 95.6 + 0.2 * s) for s in range(3)]
    rows += [_record("iterative_grasp", 0.999, s, 80.0 + 3.0 * s + 0.5 * (s == 1)) for s in range(3)]
    rows += [_record("rlpanning", 0.999, s, 90.0 + s, policy="default:abc") for s in range(3)]
    text = write_summary(rows, tmp_path / "summary.md", profile=PROFILES["lenet5-mnist"]).read_text()
    lines = text.splitlines()
    block = text[text.index("Figure 3's ordering") :]
    assert "m = 4 testable comparisons" in block.split("|")[0]  # two Panning variants × SynFlow, iterative GraSP
    vs_grasp = next(line for line in lines if line.startswith("| 99.9% | Panning (Algorithm 1): 95.10 ± 0.10 | Iter"))
    assert "| +11.93 |" in vs_grasp and "3 pairs, ahead in 3 |" in vs_grasp
    paper = [line for line in lines if line.startswith("| 99.9% | Panning (authors' code) | ")]
    assert len(paper) == 1 and "| 95.51 |" in paper[0]
    expected = stats.ttest_1samp([94.0, 95.5, 94.3], 95.51).pvalue
    rl_p = stats.ttest_1samp([90.0, 91.0, 92.0], 97.89).pvalue
    assert rl_p < expected  # Holm, m = 2: the smaller p doubled, the larger kept (it is not below the first's)
    assert f"| {expected:.3f} ({max(expected, min(1.0, 2 * rl_p)):.3f}) |" in paper[0]
    rl = next(line for line in lines if line.startswith("| 99.9% | RLPanning | "))
    assert "| 97.89 | -6.89 |" in rl and "**shown: ours below the paper's mean**" in rl
    assert "takes its number as exact" in text and "m = 2 testable rows" in text
    # without the iterative baselines (the 5-epoch profiles' SNIP and GraSP are one-shot) there is no Figure 3 table
    two = write_summary([r for r in rows if r["method"] != "iterative_grasp"], tmp_path / "s2.md", profile=None)
    assert "Figure 3's ordering" not in two.read_text()


def test_contested_command_follows_the_latest_cpu_run(tmp_path: Path) -> None:
    cpu = "python benchmarks/sweep.py --profile lenet5-mnist --accelerator cpu --jobs 2 --data-dir data"
    gpu = "python benchmarks/sweep.py --profile lenet5-mnist --accelerator gpu --jobs 7 --out elsewhere/x"
    rows = [_record("panning", 0.999, s, 95.0 + 0.1 * s, accelerator="cpu", command=cpu) for s in range(3)]
    rows += [
        _record("synflow", 0.999, s, acc, accelerator="gpu", command=gpu) for s, acc in enumerate((92.5, 94.5, 93.6))
    ]
    text = write_summary(rows, tmp_path / "summary.md", profile=PROFILES["lenet5-mnist"]).read_text()
    assert "**Contested**" in text
    suggestion = text[text.index("**Contested**") :].split("```bash")[1].split("```")[0].strip()
    assert suggestion.startswith(cpu) and "--accelerator gpu" not in suggestion and "--seeds 3 4" in suggestion


def test_contested_runs_seeds_3_and_4_of_the_contested_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--contested``: one sweep per sparsity with the methods the summary marks contested, seeds 3 and 4, each
    with its explicit command recorded; nothing contested: nothing run."""
    from benchmarks.sweep.report import contested_cells

    rows = [_record("panning", 0.999, s, 95.0 + 0.1 * s) for s in range(3)]
    rows += [_record("synflow", 0.999, s, acc) for s, acc in enumerate((92.5, 94.5, 93.6))]  # contested (above)
    rows += [_record("iterative_snip", 0.9999, s, 30.0 + s) for s in range(3)]  # alone at its sparsity
    out = tmp_path / "lenet5-mnist"
    out.mkdir()
    (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert contested_cells(rows) == {0.999: ["panning", "synflow"]}
    ran: list[tuple[Any, ...]] = []

    def fake_run_sweep(config: SweepConfig, **_: Any) -> run.SweepOutcome:
        ran.append((config.profile.methods, config.profile.sparsities, config.profile.seeds, config.command))
        return run.SweepOutcome()

    monkeypatch.setattr(cli, "run_sweep", fake_run_sweep)
    assert cli.main(["--profile", "lenet5-mnist", "--out", str(out), "--accelerator", "cpu", "--contested"]) == 0
    assert len(ran) == 1
    methods_run, sparsities, seeds, command = ran[0]
    assert methods_run == ("panning", "synflow") and sparsities == (0.999,) and seeds == (3, 4)
    assert "--contested" not in command and "--methods panning synflow --sparsities 99.9 --seeds 3 4" in command
    ran.clear()
    quiet = tmp_path / "quiet"
    quiet.mkdir()
    (quiet / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    assert cli.main(["--profile", "lenet5-mnist", "--out", str(quiet), "--contested"]) == 0 and ran == []
    with pytest.raises(SystemExit):
        cli.main(["--profile", "lenet5-mnist", "--out", str(out), "--contested", "--seeds", "5"])


def test_summary_reads_the_runs_at_chance(tmp_path: Path) -> None:
    """Layer collapse, no signal from the start, death in training, and runs made before the Liveness probe."""
    chance = {"test_loss": 2.3026, "total_weights": 1000}
    rows = [_record("panning", 0.999, s, 90.0 + s, test_loss=0.3, effective_sparsity=0.9991) for s in (0, 2)]
    rows += [
        _record("panning", 0.999, 1, 10.0, **chance, effective_sparsity=0.9991, logit_spread_start=5e-4,
                logit_spread_end=0.0),
        _record("snip", 0.999, 0, 10.0, **chance, effective_sparsity=1.0),
        _record("snip", 0.999, 1, 10.0, **chance, effective_sparsity=0.995, logit_spread_start=0.0,
                logit_spread_end=0.0),
        _record("snip", 0.999, 2, 11.35, **chance, effective_sparsity=0.995),
    ]  # fmt: skip
    text = write_summary(rows, tmp_path / "summary.md", profile=PROFILES["lenet5-mnist"]).read_text()
    table = text[text.index("Runs that end at chance") :].splitlines()
    assert "| Panning (Algorithm 1) | 99.9% | 1 | 10.00 | 1 | output became constant during training" in text
    assert "| SNIP | 99.9% | 0 | 10.00 | 0 | no input-output path left (layer collapse) |" in text
    assert "| SNIP | 99.9% | 1 | 10.00 | 5 | paths left but no signal through them from the start" in text
    assert "| SNIP | 99.9% | 2 | 11.35 | 5 | paths left; not probed" in text
    assert sum(line.startswith("| Panning") for line in table) == 1  # the seeds that trained are not listed
    healthy = write_summary(rows[:2], tmp_path / "s2.md", profile=None).read_text()
    assert "Runs that end at chance" not in healthy


def test_paper_numbers_match_method_md() -> None:
    assert paper_accuracy("lenet5-mnist", "dense", 0.5) == 99.40
    assert paper_accuracy("lenet5-mnist", "rlpanning", 0.9999) == 45.43
    assert paper_accuracy("lenet5-fashionmnist", "panning", 0.999) == 68.97
    assert paper_accuracy("vgg19-cifar10", "grasp_original", 0.85) == 93.59
    assert paper_accuracy("vgg19-cifar10", "snip", 0.99) == 10.0
    assert paper_accuracy("vgg19-tinyimagenet", "panning", 0.98) == 58.33
    assert paper_accuracy("lenet5-mnist", "snip", 0.9) is None
    assert paper_accuracy(None, "panning", 0.9) is None
    assert paper_beside("lenet5-mnist", "panning_authors", 0.99) == 99.09
    assert paper_beside("lenet5-mnist", "panning", 0.99) is None


def test_profiles_use_table1_recipe() -> None:
    for name in ("lenet5-mnist", "lenet5-fashionmnist", "lenet5-mnist-cpu", "lenet5-fashionmnist-cpu", "quick"):
        p = PROFILES[name]
        assert (p.batch_size, p.weight_decay, p.lr, p.momentum, p.train_subset) == (256, 1e-4, 0.1, 0.9, None), name
        assert p.model == "lenet5" and p.in_memory and p.cosine_per_step and p.init == "authors"
    full = PROFILES["lenet5-mnist"]
    assert full.epochs == 80 and full.seeds == (0, 1, 2)
    assert full.sparsities == (0.9, 0.95, 0.98, 0.99, 0.999, 0.9999)
    assert (
        PROFILES["lenet5-fashionmnist"].epochs == 80 and PROFILES["lenet5-fashionmnist"].sparsities == full.sparsities
    )
    cpu, fcpu = PROFILES["lenet5-mnist-cpu"], PROFILES["lenet5-fashionmnist-cpu"]
    assert cpu.epochs >= 5 and cpu.seeds == (0, 1, 2) and cpu.sparsities == (0.99, 0.999, 0.9999)
    assert fcpu.dataset == "fashionmnist" and fcpu.sparsities == (0.99, 0.999) and fcpu.epochs >= 5
    for p in (full, cpu, fcpu):
        assert p.methods == PAPER_RECIPE_METHODS
    for method in ("panning", "panning_authors", "rlpanning", "synflow", "snip", "grasp", "iterative_snip"):
        assert method in PAPER_RECIPE_METHODS
    vgg = PROFILES["vgg19-cifar10"]
    assert (vgg.epochs, vgg.batch_size, vgg.weight_decay) == (180, 128, 5e-4)
    assert PROFILES["resnet18-tinyimagenet"].epochs == 300 and PROFILES["resnet18-cifar100"].per_class == 5


def test_lenet300_profile_is_an_unseen_network_for_the_agent(tmp_path: Path) -> None:
    """LeNet-300-100 on FashionMNIST: RLPanning against both Panning variants; one real cell trains an MLP."""
    p = PROFILES["lenet300-fashionmnist-cpu"]
    assert (p.model, p.dataset, p.paper) == ("lenet300", "fashionmnist", None)
    assert (p.batch_size, p.weight_decay, p.lr, p.momentum, p.train_subset, p.epochs) == (256, 1e-4, 0.1, 0.9, None, 5)
    assert {"rlpanning", "panning", "panning_authors"} <= set(p.methods) and p.seeds == (0, 1, 2)
    assert p.sparsities == (0.99, 0.999, 0.9999)
    model = build_model(p)
    assert type(model).__name__ == "LeNet300100" and sum(q.numel() for q in model.parameters()) == 266_610

    config = _config(tmp_path, "lenet300-fashionmnist-cpu", dataset="digits", epochs=1, batch_size=64,
                     train_subset=192, methods=("panning",), sparsities=(0.99,), seeds=(0,), rounds=3, per_class=5,
                     in_memory=False)
    record = run_cell(Cell("panning", 0.99, 0), config)
    assert init_fingerprint(p).startswith("lenet300-authors:")
    assert record["effective_sparsity"] >= 0.99 - 1e-4 and 0.0 <= record["test_acc"] <= 100.0


def test_cell_whose_mask_removes_every_weight_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The authors' NaN scores can prune every weight (LeNet-300-100 at 99.99%): the cell records it, no error."""
    import torch
    from lightning.pytorch.callbacks import Callback

    class PruneEverything(Callback):
        masks: dict[str, Any] | None = None  # exposed as a pruning callback's: the cell trains it compacted

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            with torch.no_grad():
                self.masks = {}
                for name, param in pl_module.named_parameters():
                    if name.endswith("weight"):
                        param.zero_()
                        self.masks[name] = torch.zeros_like(param, dtype=torch.bool)

    monkeypatch.setattr("benchmarks.sweep.cell.build_callback", lambda *args, **kwargs: PruneEverything())
    config = _config(tmp_path, "lenet300-fashionmnist-cpu", dataset="digits", epochs=1, batch_size=64,
                     train_subset=128, in_memory=False)
    record = run_cell(Cell("panning", 0.9999, 0), config)
    assert record["total_weights"] == 266_200 and record["test_acc"] is not None
    assert record["compact"] and record["compacted_parameters"] is not None


def test_every_core_method_is_a_sweep_method() -> None:
    assert set(core_methods()) <= set(METHOD_LABELS)
    assert "force" not in METHOD_LABELS  # an alias of iterative_snip
    assert {"dense", "rlpanning", "panning_shuffled", "panning_authors"} <= set(METHOD_LABELS)


def test_cells_and_keys() -> None:
    profile = PROFILES["smoke"].override(methods=("dense", "snip"), sparsities=(0.99, 0.9), seeds=(3,))
    assert profile.cells() == [Cell("dense", 0.0, 3), Cell("snip", 0.9, 3), Cell("snip", 0.99, 3)]
    record = {"profile": "smoke", "method": "snip", "sparsity": 0.9 + 1e-13, "seed": 3, "epochs": 1, "rounds": 5}
    assert cell_key(record)[2] == 0.9
    assert PROFILES["smoke"].override(train_subset=0).train_subset is None


def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"profile 'smoke': unknown method\(s\) \['nope'\]; allowed: \['dense'"):
        PROFILES["smoke"].override(methods=("nope",))
    with pytest.raises(ValueError, match=r"Unknown profile 'lenet9'; allowed: \["):
        get_profile("lenet9")
    with pytest.raises(ValueError, match="sparsity"):
        parse_sparsity("100")
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['bogus'\]"):
        build_callback("bogus", 0.9)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "lenet9"], "argument --profile: invalid choice: 'lenet9'"),
        (["--methods", "panning,bogus"], "unknown method(s) ['bogus']; allowed:"),
        (["--backend", "slurm"], "argument --backend: invalid choice: 'slurm'"),
        (["--backend", "ray", "--jobs", "4"], "--jobs is an option of --backend local"),
        (["--jobs", "0"], "`jobs` must be a positive integer, got 0"),
        (["--sparsities", "150"], "A sparsity must be a fraction in (0, 1)"),
        (["--methods", "panning", "--policy", __file__], "is used only by rlpanning cells; add rlpanning to --methods"),
        (["--methods", "rlpanning", "--policy", "no/such.zip"], "--policy 'no/such.zip': no such file"),
    ],
)
def test_cli_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_ray_not_installed_gives_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert cli.main(["--profile", "smoke", "--backend", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--backend ray needs Ray" in err and "pip install 'ray[default]" in err


def _engine(callback: Any, name: str) -> Any:
    """An engine setting of a callback (held by its pruner when the callback takes an ``options`` dict)."""
    return getattr(getattr(callback, "pruner", callback), name)


def test_build_callback_maps_methods() -> None:
    assert build_callback("dense", 0.9) is None
    cb = build_callback("grasp_original", 0.95, rounds=7, seed=4, per_class=3)
    assert (cb.method, cb.target, cb.shuffle_masks) == ("grasp_original", 0.95, False)
    assert (_engine(cb, "seed"), _engine(cb, "per_class")) == (4, 3)
    shuffled = build_callback("panning_shuffled", 0.9, rounds=7)
    assert (shuffled.method, shuffled.shuffle_masks, _engine(shuffled, "rounds")) == ("panning_shuffled", True, 7)
    assert build_callback("iterative_snip", 0.9, rounds=7).method == "iterative_snip"
    rl = build_callback("rlpanning", 0.99, rounds=9, seed=2)
    assert (type(rl).__name__, rl.target, _engine(rl, "rounds"), _engine(rl, "seed")) == (
        "RLPanningCallback",
        0.99,
        9,
        2,
    )


def test_plot_and_meta(tmp_path: Path) -> None:
    config = _config(tmp_path, methods=("dense", "snip", "random"), sparsities=(0.9, 0.99), seeds=(0, 1))
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    png = config.out_dir / "accuracy_vs_remaining.png"
    assert png.exists() and png.stat().st_size > 5000
    meta = json.loads((config.out_dir / "sweep.json").read_text())
    assert (
        meta["profile"] == "smoke"
        and meta["budget"]["epochs"] == 1
        and meta["budget"]["init"].startswith("lenet5-authors:")
    )
    assert all(math.isfinite(float(r["test_acc"])) for r in load_records(config.out_dir / "runs.jsonl"))


def test_new_rlpanning_policy_supersedes_old_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tmp_path, methods=("rlpanning",), sparsities=(0.9,))
    monkeypatch.setattr(run, "policy_id", lambda m, policy=None: "default:aaaa" if m == "rlpanning" else None)
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    monkeypatch.setattr(run, "policy_id", lambda m, policy=None: "default:bbbb" if m == "rlpanning" else None)
    again = CountingRunner()
    run_sweep(config, runner=again, progress=NullProgress())
    assert len(again.cells) == 1  # a new agent: the cell runs again
    current, superseded = current_records(load_records(config.out_dir / "runs.jsonl"))
    assert [r["policy"] for r in current] == ["default:bbbb"] and [r["policy"] for r in superseded] == ["default:aaaa"]
    summary = (config.out_dir / "summary.md").read_text()
    assert "earlier agent" in summary and "default:aaaa" in summary
    assert records.RECORDS_FILE == "runs.jsonl"


def test_rlpanning_cells_with_a_policy_file_are_their_own_cells(tmp_path: Path) -> None:
    from lightning_panning.rl.agent import default_policy_path, policy_fingerprint

    mine = tmp_path / "agent50k.zip"
    shutil.copyfile(default_policy_path(), mine)
    digest = policy_fingerprint(mine)[:12]  # the weights' digest, not the zip's
    assert digest != hashlib.sha256(mine.read_bytes()).hexdigest()[:12]
    assert policy_id("rlpanning") == f"default:{digest}"  # the same bytes as the shipped one
    assert policy_id("rlpanning", str(mine)) == f"agent50k:{digest}" and policy_id("snip", str(mine)) is None
    (tmp_path / "export").mkdir()
    exported = shutil.copyfile(mine, tmp_path / "export" / "default.zip")  # what `train-agent` writes
    assert policy_id("rlpanning", str(exported)) == f"export/default:{digest}"
    assert policy_id("rlpanning", str(default_policy_path())) == f"default:{digest}"
    cb = build_callback("rlpanning", 0.99, policy=str(mine))
    assert cb.policy_name == str(mine)
    config = _config(tmp_path, methods=("rlpanning",), sparsities=(0.9,), seeds=(0,))
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    config.policy = str(mine)
    again = CountingRunner()
    run_sweep(config, runner=again, progress=NullProgress())
    assert len(again.cells) == 1  # another policy (by name): the cell runs again, the shipped policy's run is kept
    policies = [r["policy"] for r in load_records(config.out_dir / "runs.jsonl")]
    assert policies == [f"default:{digest}", f"agent50k:{digest}"]
    seen: list[Any] = []
    run_sweep(config, runner=CountingRunner(lambda cell, cfg: seen.append(cfg.policy) or {}), progress=NullProgress())
    assert seen == []  # finished with this policy: never run twice


def test_a_failed_cell_prints_its_error_literally() -> None:
    """Brackets in an error are text: "pip install 'lightning-panning[compact]'" keeps its "[compact]"."""
    import io

    from rich.console import Console

    progress = cli.RichProgress(show_bar=False)
    progress.console = Console(file=io.StringIO(), width=300)
    progress.start(1, 0)
    cell = run.Cell(method="panning", sparsity=0.999, seed=0)
    progress.cell_finished(cell, {"status": "failed", "error": "ImportError: pip install 'lightning-panning[compact]'"})
    printed = progress.console.file.getvalue()
    assert "pip install 'lightning-panning[compact]'" in printed and "[1/1]" in printed


def test_merge_from_adds_only_runs_of_cells_not_finished_here(tmp_path: Path) -> None:
    """--merge-from: another machine's runs of the same profile and budget join, a finished cell is not replaced,
    failures and other budgets stay out; the report is rebuilt."""
    from benchmarks.sweep.cell import init_fingerprint

    profile = PROFILES["lenet5-mnist"]
    init = init_fingerprint(profile)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    for r in [_record("panning", 0.999, 0, 95.0, init=init), _record("panning", 0.999, 1, 94.0, init=init)]:
        records.append_record(here / "runs.jsonl", r)
    before = (here / "runs.jsonl").read_text()
    others = [
        _record("panning", 0.999, 0, 99.0, init=init, accelerator="gpu"),  # finished here: left out
        _record("panning", 0.999, 2, 95.5, init=init, accelerator="gpu"),  # new: added
        _record("synflow", 0.999, 0, 95.7, init=init, accelerator="gpu", status="failed"),  # failed: left out
    ]
    for r in others:
        records.append_record(there / "runs.jsonl", r)
    argv = ["--profile", "lenet5-mnist", "--out", str(here), "--merge-from", str(there)]
    assert cli.main(argv) == 0
    merged = load_records(here / "runs.jsonl")
    assert (here / "runs.jsonl").read_text().startswith(before)
    assert [(r["seed"], r["test_acc"]) for r in merged] == [(0, 95.0), (1, 94.0), (2, 95.5)]
    assert "| Panning (Algorithm 1) | 94.83 ± 0.76 |" in (here / "summary.md").read_text()
    assert cli.main(argv) == 0 and len(load_records(here / "runs.jsonl")) == 3  # merging twice adds nothing
    # another budget is refused and nothing is written
    records.append_record(tmp_path / "other.jsonl", _record("panning", 0.999, 3, 90.0, init=init, epochs=5))
    assert cli.main(["--profile", "lenet5-mnist", "--out", str(here), "--merge-from", str(tmp_path / "other.jsonl")]) == 2
    assert cli.main(["--profile", "lenet5-mnist", "--out", str(here), "--merge-from", str(tmp_path / "nothing")]) == 2
    assert len(load_records(here / "runs.jsonl")) == 3
