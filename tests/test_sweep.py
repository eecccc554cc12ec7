"""Tests of the benchmark sweep (``lightning_panning.sweep`` and ``benchmarks/sweep.py``)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from lightning_panning import sweep
from lightning_panning.sweep import (
    PROFILES,
    Cell,
    SweepConfig,
    append_record,
    build_callback,
    cell_key,
    latest_records,
    load_records,
    paper_accuracy,
    parse_sparsity,
    run_sweep,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("benchmarks_sweep", REPO / "benchmarks" / "sweep.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CountingRunner:
    """Wraps :func:`sweep.run_cell` (or a fake) and counts the cells it ran."""

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


def _config(tmp_path: Path, **overrides: Any) -> SweepConfig:
    profile = PROFILES["smoke"].override(**overrides)
    return SweepConfig(
        profile=profile, out_dir=tmp_path / "out", accelerator="cpu", command="pytest", report_every_cell=False
    )


# -- end to end: the smoke profile with real Lightning runs --------------------------------------------------------------


def test_smoke_profile_end_to_end_and_resume(tmp_path: Path) -> None:
    """Real training runs (Digits, 1 epoch), then a resumed run that trains nothing, then --report-only."""
    script = _load_script()
    out = tmp_path / "smoke"
    argv = [
        "--profile", "smoke", "--methods", "panning,random", "--sparsities", "90", "--rounds", "3",
        "--train-subset", "192", "--accelerator", "cpu", "--out", str(out), "--no-progress",
    ]  # fmt: skip
    assert script.main(argv) == 0

    records = load_records(out / "runs.jsonl")
    assert [(r["method"], r["sparsity"], r["status"]) for r in records] == [
        ("panning", 0.9, "ok"),
        ("random", 0.9, "ok"),
    ]
    for record in records:
        assert 0.0 <= record["test_acc"] <= 100.0
        assert record["nominal_sparsity"] == pytest.approx(0.9, abs=1e-4)
        assert record["effective_sparsity"] is not None and record["effective_sparsity"] >= 0.9 - 1e-4
        assert record["pruning_seconds"] > 0.0 and record["training_seconds"] > 0.0
        assert record["rounds"] == 3 and record["train_subset"] == 192 and record["epochs"] == 1
        assert record["command"].startswith("python benchmarks/sweep.py --profile smoke")
        assert {"python", "torch", "lightning", "lightning_panning"} <= set(record)
        assert record["optimizer_steps"] == 3  # 192 images / batch 64, one epoch

    with (out / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["method"] for r in rows) == ["panning", "random"]
    summary = (out / "summary.md").read_text()
    assert "| Panning |" in summary and "| Random |" in summary and "accuracy_vs_remaining.png" in summary
    assert f"{records[0]['test_acc']:.2f}" in summary
    png = (out / "accuracy_vs_remaining.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000

    # resume: every cell is finished, so no training happens
    counting = CountingRunner(inner=sweep.run_cell)
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
    assert script.main(["--profile", "smoke", "--out", str(out), "--report-only"]) == 0
    assert "| Panning |" in (out / "summary.md").read_text()
    assert (out / "runs.csv").exists() and (out / "accuracy_vs_remaining.png").exists()


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
    # a different budget (epochs) is a different cell
    third = CountingRunner()
    run_sweep(_config(tmp_path, methods=("dense",), epochs=2), runner=third, progress=NullProgress())
    assert len(third.cells) == 1


def test_failed_cell_is_recorded_and_retried(tmp_path: Path) -> None:
    def flaky(cell: Cell, config: SweepConfig) -> Mapping[str, Any]:
        if cell.method == "random":
            raise RuntimeError("boom")
        return CountingRunner()(cell, config)

    config = _config(tmp_path, methods=("dense", "random"), sparsities=(0.9,))
    outcome = run_sweep(config, runner=flaky, progress=NullProgress())
    assert [c.method for c in outcome.failed] == ["random"] and len(outcome.ran) == 2
    records = load_records(config.out_dir / "runs.jsonl")
    failed = [r for r in records if r["status"] == "error"]
    assert len(failed) == 1 and "RuntimeError: boom" in failed[0]["error"] and "Traceback" in failed[0]["traceback"]
    assert "## Failed runs" in (config.out_dir / "summary.md").read_text()

    again = CountingRunner()
    run_sweep(config, runner=again, progress=NullProgress())
    assert [c.method for c in again.cells] == ["random"]
    latest = latest_records(load_records(config.out_dir / "runs.jsonl"))
    assert sorted(r["status"] for r in latest) == ["ok", "ok"]
    assert "## Failed runs" not in (config.out_dir / "summary.md").read_text()


def test_truncated_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    append_record(path, {"profile": "p", "method": "snip", "sparsity": 0.9, "seed": 0, "status": "ok"})
    with path.open("a") as handle:
        handle.write('{"profile": "p", "meth')  # a crash in the middle of a write
    assert len(load_records(path)) == 1


def test_unavailable_method_is_skipped_with_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sweep.method_unavailable_reason
    monkeypatch.setattr(sweep, "method_unavailable_reason", lambda m: "not here yet" if m == "rlpanning" else real(m))
    config = _config(tmp_path, methods=("dense", "rlpanning"), sparsities=(0.9,))
    runner = CountingRunner()
    outcome = run_sweep(config, runner=runner, progress=NullProgress())
    assert outcome.unavailable == {"rlpanning": "not here yet"}
    assert [c.method for c in runner.cells] == ["dense"]
    assert "`rlpanning`: not here yet" in (config.out_dir / "summary.md").read_text()


def test_summary_shows_mean_std_and_paper_numbers(tmp_path: Path) -> None:
    profile = PROFILES["lenet5-mnist"].override(methods=("dense", "panning"), sparsities=(0.9, 0.999), seeds=(0, 1))
    config = SweepConfig(
        profile=profile, out_dir=tmp_path / "out", command="pytest", budget_note="tiny budget", report_every_cell=False
    )
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    summary = (config.out_dir / "summary.md").read_text()
    # acc = 90 - 10 s + seed: mean 81.5 ± 0.71 at 90%, paper 99.37
    assert "81.50 ± 0.71 (paper 99.37)" in summary
    assert "(paper 95.51)" in summary and "paper 99.40" in summary
    assert "RLPanning — not run" in summary  # the paper's row is still shown
    assert "**Budget note.** tiny budget" in summary
    assert "The paper trains 80 epochs" in summary
    files = write_report(config.out_dir)  # report-only keeps the saved budget note
    assert "tiny budget" in files["summary"].read_text()


# -- small pieces -------------------------------------------------------------------------------------------------------


def test_paper_numbers_match_method_md() -> None:
    assert paper_accuracy("lenet5-mnist", "dense", 0.5) == 99.40
    assert paper_accuracy("lenet5-mnist", "rlpanning", 0.9999) == 45.43
    assert paper_accuracy("lenet5-fashionmnist", "panning", 0.999) == 68.97
    assert paper_accuracy("vgg19-cifar10", "grasp_original", 0.85) == 93.59
    assert paper_accuracy("vgg19-cifar10", "snip", 0.99) == 10.0
    assert paper_accuracy("vgg19-tinyimagenet", "panning", 0.98) == 58.33
    assert paper_accuracy("lenet5-mnist", "snip", 0.9) is None
    assert paper_accuracy(None, "panning", 0.9) is None


def test_profiles_use_table1_hyperparameters() -> None:
    mnist, vgg = PROFILES["lenet5-mnist"], PROFILES["vgg19-cifar10"]
    assert (mnist.epochs, mnist.batch_size, mnist.weight_decay, mnist.lr, mnist.momentum) == (80, 256, 1e-4, 0.1, 0.9)
    assert (vgg.epochs, vgg.batch_size, vgg.weight_decay) == (180, 128, 5e-4)
    assert PROFILES["resnet18-tinyimagenet"].epochs == 300 and PROFILES["resnet18-cifar100"].per_class == 5
    assert mnist.sparsities == (0.9, 0.95, 0.98, 0.99, 0.999, 0.9999) and mnist.seeds == (0, 1, 2)
    assert sweep.DEFAULT_PROFILE in PROFILES


def test_cells_and_keys() -> None:
    profile = PROFILES["smoke"].override(methods=("dense", "snip"), sparsities=(0.99, 0.9), seeds=(3,))
    assert profile.cells() == [Cell("dense", 0.0, 3), Cell("snip", 0.9, 3), Cell("snip", 0.99, 3)]
    record = {"profile": "smoke", "method": "snip", "sparsity": 0.9 + 1e-13, "seed": 3, "epochs": 1, "rounds": 5}
    assert cell_key(record)[2] == 0.9
    assert PROFILES["smoke"].override(train_subset=0).train_subset is None
    with pytest.raises(ValueError, match="unknown methods"):
        PROFILES["smoke"].override(methods=("nope",))


def test_parse_sparsity() -> None:
    assert parse_sparsity("99.99") == 0.9999 and parse_sparsity("0.95") == 0.95
    with pytest.raises(ValueError, match="sparsity"):
        parse_sparsity("100")


def test_build_callback_maps_methods() -> None:
    assert build_callback("dense", 0.9) is None
    cb = build_callback("grasp_original", 0.95, rounds=7, seed=4)
    assert (cb.method, cb.target, cb.seed, cb.shuffle_masks) == ("grasp_original", 0.95, 4, False)
    shuffled = build_callback("panning_shuffled", 0.9, rounds=7)
    assert (shuffled.method, shuffled.shuffle_masks, shuffled.rounds) == ("panning", True, 7)
    with pytest.raises(ValueError, match="Unknown sweep method"):
        build_callback("bogus", 0.9)


def test_plot_has_one_line_per_method(tmp_path: Path) -> None:
    config = _config(tmp_path, methods=("dense", "snip", "random"), sparsities=(0.9, 0.99), seeds=(0, 1))
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    png = config.out_dir / "accuracy_vs_remaining.png"
    assert png.exists() and png.stat().st_size > 5000
    meta = json.loads((config.out_dir / "sweep.json").read_text())
    assert meta["profile"] == "smoke"
    assert all(math.isfinite(float(r["test_acc"])) for r in load_records(config.out_dir / "runs.jsonl"))


def test_new_rlpanning_policy_supersedes_old_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sweep.method_unavailable_reason
    monkeypatch.setattr(sweep, "method_unavailable_reason", lambda m: None if m == "rlpanning" else real(m))
    config = _config(tmp_path, methods=("rlpanning",), sparsities=(0.9,))
    monkeypatch.setattr(sweep, "policy_id", lambda m: "default:aaaa" if m == "rlpanning" else None)
    run_sweep(config, runner=CountingRunner(), progress=NullProgress())
    monkeypatch.setattr(sweep, "policy_id", lambda m: "default:bbbb" if m == "rlpanning" else None)
    again = CountingRunner()
    run_sweep(config, runner=again, progress=NullProgress())
    assert len(again.cells) == 1  # a new agent: the cell runs again
    current, superseded = sweep.current_records(load_records(config.out_dir / "runs.jsonl"))
    assert [r["policy"] for r in current] == ["default:bbbb"] and [r["policy"] for r in superseded] == ["default:aaaa"]
    summary = (config.out_dir / "summary.md").read_text()
    assert "earlier agent" in summary and "default:aaaa" in summary
