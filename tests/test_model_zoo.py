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
