"""Tests of ``benchmarks/collapse_check.py``: which runs count as "at chance with paths", and the re-runs it makes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import collapse_check
from benchmarks.sweep.records import append_record, load_records


def _record(method: str, seed: int, acc: float, loss: float, effective: float, **extra: Any) -> dict[str, Any]:
    return {
        "profile": "smoke", "method": method, "sparsity": 0.9, "seed": seed, "status": "ok", "test_acc": acc,
        "test_loss": loss, "effective_sparsity": effective, "total_weights": 1000, "kept_weights": 100, **extra,
    }  # fmt: skip


def test_at_chance_and_paths() -> None:
    ln10 = math.log(10)
    assert collapse_check.at_chance(_record("panning", 0, 11.35, 2.301, 0.95), 10)  # MNIST's constant output
    assert collapse_check.at_chance(_record("panning", 0, 10.0, ln10, 0.95), 10)
    assert not collapse_check.at_chance(_record("panning", 0, 19.6, 2.292, 0.95), 10)  # weak, but not constant
    assert not collapse_check.at_chance(_record("panning", 0, 11.0, 1.2, 0.95), 10)
    assert not collapse_check.at_chance(_record("panning", 0, 10.0, ln10, 0.95, status="error"), 10)
    assert collapse_check.has_paths(_record("panning", 0, 10.0, ln10, 0.95))
    assert not collapse_check.has_paths(_record("panning", 0, 10.0, ln10, 1.0))  # layer collapse: the mask's fault
    assert not collapse_check.has_paths(_record("panning", 0, 10.0, ln10, None))


def test_collapsed_cells_keeps_the_latest_record_and_skips_dense() -> None:
    ln10 = math.log(10)
    records = [
        _record("random", 0, 10.0, ln10, 0.95),
        _record("random", 0, 80.0, 0.5, 0.95),  # the same cell run again, and trained: not collapsed any more
        _record("random", 1, 10.0, ln10, 0.95),
        _record("random", 2, 10.0, ln10, 1.0),
        {**_record("dense", 0, 10.0, ln10, 0.0), "sparsity": 0.0},
    ]
    assert [(c["method"], c["seed"]) for c in collapse_check.collapsed_cells(records, 10)] == [("random", 1)]


def test_reruns_and_report(tmp_path: Path) -> None:
    """Real smoke-profile cells: the collapsed seed again at the profile's lr, every seed of its group at --lrs."""
    results, out = tmp_path / "results", tmp_path / "check"
    runs = results / "smoke" / "runs.jsonl"
    runs.parent.mkdir(parents=True)
    ln10 = math.log(10)
    append_record(runs, _record("random", 0, 10.0, ln10, 0.95, lr=0.1))  # at chance, paths left: checked
    append_record(runs, _record("random", 1, 55.0, 1.5, 0.95, lr=0.1))  # same group, trained
    append_record(runs, {**_record("panning", 0, 10.0, ln10, 1.0), "sparsity": 0.99})  # no path left: not checked
    argv = ["--profiles", "smoke", "--lrs", "0.05", "--results", str(results), "--out", str(out), "--num-threads", "1"]
    assert collapse_check.main(argv) == 0

    base_lr = collapse_check.PROFILES["smoke"].lr
    again = load_records(collapse_check.lr_folder(out, "smoke", base_lr) / "runs.jsonl")
    assert [(r["method"], r["sparsity"], r["seed"], r["lr"]) for r in again] == [("random", 0.9, 0, base_lr)]
    smaller = load_records(collapse_check.lr_folder(out, "smoke", 0.05) / "runs.jsonl")
    assert sorted((r["method"], r["seed"], r["lr"], r["status"]) for r in smaller) == [
        ("random", 0, 0.05, "ok"),
        ("random", 1, 0.05, "ok"),
    ]

    report = json.loads((out / "collapse_check.json").read_text())
    assert [(row["method"], row["seed"]) for row in report["rows"]] == [("random", 0), ("random", 1)]
    first, second = report["rows"]
    assert first["runs"][f"{base_lr:g}"]["at_chance"] and first["rerun"]["lr"] == base_lr
    assert "rerun" not in second and second["runs"]["0.05"]["test_acc"] == pytest.approx(
        next(r["test_acc"] for r in smaller if r["seed"] == 1), abs=0.01
    )
    assert report["groups"][0]["at_chance"][f"{base_lr:g}"] == "1/2"
    text = (out / "collapse_check.md").read_text()
    assert "| smoke | random | 90% | 0 | 100 (50) | 10.00* |" in text and "lr 0.05" in text
    assert "dead_units_end" in second["runs"]["0.05"] and "% |" in text  # the re-runs carry the Liveness probe

    # --report-only keeps the command that ran the cells
    assert collapse_check.main([*argv, "--report-only"]) == 0
    assert json.loads((out / "collapse_check.json").read_text())["command"].endswith("--num-threads 1")

    # a second run trains nothing: every cell is finished
    assert collapse_check.main(argv) == 0
    assert len(load_records(collapse_check.lr_folder(out, "smoke", 0.05) / "runs.jsonl")) == 2


def test_bad_lr_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        collapse_check.main(["--lrs", "0", "--report-only"])
    assert "--lrs must be positive" in capsys.readouterr().err
