"""``benchmarks/model_zoo.py`` runs end to end in its smoke mode and writes what its table promises (no timing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import model_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_model_zoo_quick_with_rlpanning_writes_both_timings(tmp_path: Path) -> None:
    model_zoo.main(["--models", "shufflenet_v2_x0_5", "--quick", "--threads", "1", "--rlpanning", "--out",
                    str(tmp_path)])
    record = json.loads((tmp_path / "model_zoo_rl.json").read_text())
    (row,) = record["models"]
    assert "error" not in row, row
    assert len(row["seconds"]) == len(row["rl_seconds"]) == 2  # --quick: 2 rounds each
    assert row["sparsity"] == pytest.approx(model_zoo.TARGET, abs=1e-6)
    table = (tmp_path / "model_zoo_rl.md").read_text()
    assert "| RLPanning s / round | ratio |" in table and "shufflenet_v2_x0_5" in table
    assert record["command"].startswith("python -m benchmarks.model_zoo --models shufflenet_v2_x0_5")


def test_results_are_written_after_each_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cut short (a lent GPU's time cap) keeps every model it measured: the file is rewritten after each."""
    seen: list[int] = []

    def fake_worker(name: str, args: object) -> dict[str, object]:
        path = tmp_path / "model_zoo.json"
        seen.append(len(json.loads(path.read_text())["models"]) if path.exists() else 0)
        return {"model": name, "error": "not run in this test"}

    monkeypatch.setattr(model_zoo, "run_worker", fake_worker)
    names = list(model_zoo.MODELS)[:3]
    model_zoo.main(["--models", *names, "--out", str(tmp_path)])
    assert seen == [0, 1, 2]
    record = json.loads((tmp_path / "model_zoo.json").read_text())
    assert [r["model"] for r in record["models"]] == names and len(record["load_end"]) == 3
