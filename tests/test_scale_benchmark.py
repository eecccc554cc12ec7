"""benchmarks/scale.py --quick: both parts run end to end and write their results with provenance."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import scale


def test_quick_mode_writes_speed_and_memory_results(tmp_path: Path) -> None:
    scale.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "scale.json").read_text())
    assert record["quick"] and "--quick" in record["command"] and "git_commit" in record
    assert len(record["load_start"]) == 3 and len(record["load_end"]) == 3
    assert [r["model"] for r in record["speed"]] == ["lenet5", "resnet20"]
    for row in record["speed"]:
        two = row["two_processes"]
        assert two["ranks_identical"] and len(two["rank_wall_seconds"]) == 2
        assert two["scoring"]["world_size"] == 2 and two["scoring"]["shard_sizes"] == [10, 10]
        assert row["one_process_chunks_n_2"]["scoring"]["micro_batch"] == 10
        assert row["agreement_same_chunks"]["same_decision"] >= 0.99
    memory = record["memory"]
    assert {r["model"] for r in memory} == {"resnet20-16px-quick", "transformer-quick"}
    run = [r for r in memory if "peak_mib" in r]
    skipped = [r for r in memory if "skipped" in r]
    assert len(run) == 6 and len(skipped) == 2 and all(r["micro_batch"] is None for r in skipped)
    assert all(r["set_mib"] > 0 and r["seconds"] > 0 for r in run)
    text = (tmp_path / "scale.md").read_text()
    assert "python benchmarks/scale.py --part all --device cpu" in text and "| lenet5 | 20 |" in text
    assert "not run (without micro_batch above --unchunked-max" in text
