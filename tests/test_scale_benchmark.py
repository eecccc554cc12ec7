"""benchmarks/scale.py --quick: both parts run end to end and write their results with provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
        one = row["one_process"]["rank_wall_seconds"][0]
        half = row["one_process_half_set_seconds"]  # per_class 2 in quick mode: 1 per class
        assert half > 0 and row["bound"] == pytest.approx(one / half)
        assert row["bound_with_contention"] == pytest.approx(
            row["bound"] * one / max(row["two_independent_at_once_seconds"]))
    memory = record["memory"]
    assert {r["model"] for r in memory} == {"resnet20-16px-quick", "transformer-quick"}
    run = [r for r in memory if "peak_mib" in r]
    skipped = [r for r in memory if "skipped" in r]
    assert len(run) == 6 and len(skipped) == 2 and all(r["micro_batch"] is None for r in skipped)
    assert all(r["set_mib"] > 0 and r["seconds"] > 0 for r in run)
    text = (tmp_path / "scale.md").read_text()
    assert "python benchmarks/scale.py --part all --device cpu" in text and "| lenet5 | 20 |" in text
    assert "not run (without micro_batch above --unchunked-max" in text
    assert "| model | 1 process `T₁(n)` (s) | 1 process, n/2 samples `T₁(n/2)` (s) | bound |" in text


def test_memory_points_are_written_as_they_land_and_a_failure_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A point that fails (out of memory without micro_batch, say) is a row, not the end of the run; the file is
    written after every point, so a run cut short keeps what it measured."""
    seen: list[int] = []

    def fake_worker(args: object, *extra: str) -> dict[str, object]:
        if "--micro-batch" not in extra:
            raise RuntimeError("worker failed:\nTraceback ...\ntorch.OutOfMemoryError: CUDA out of memory.\n")
        seen.append(len(json.loads((tmp_path / "scale.json").read_text())["memory"]) if seen else 0)
        return {"set_mib": 1.0, "peak_mib": 10.0 + len(seen), "seconds": 0.1}

    monkeypatch.setattr(scale, "run_worker", fake_worker)
    scale.main(["--quick", "--part", "memory", "--out", str(tmp_path)])
    assert seen[1:] == [2, 4, 6][: len(seen) - 1]  # each point found the earlier ones on disk
    memory = json.loads((tmp_path / "scale.json").read_text())["memory"]
    failed = [r for r in memory if "failed" in r]
    assert failed and all(r["micro_batch"] is None for r in failed)
    assert failed[0]["failed"] == "torch.OutOfMemoryError: CUDA out of memory."
    assert "failed: torch.OutOfMemoryError: CUDA out of memory." in (tmp_path / "scale.md").read_text()


def test_memory_models_and_sizes_pick_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--models``/``--sizes`` run only the points asked for (e.g. the one a lent GPU's cap cut), and bad values
    are refused naming the argument."""
    calls: list[tuple[str, ...]] = []

    def fake_worker(args: object, *extra: str) -> dict[str, object]:
        calls.append(extra)
        return {"set_mib": 1.0, "peak_mib": 10.0, "seconds": 0.1}

    monkeypatch.setattr(scale, "run_worker", fake_worker)
    scale.main(
        ["--quick", "--part", "memory", "--models", "transformer-quick", "--sizes", "12", "--out", str(tmp_path)]
    )
    memory = json.loads((tmp_path / "scale.json").read_text())["memory"]
    assert [(r["model"], r["set_size"], r["micro_batch"]) for r in memory] == [
        ("transformer-quick", 12, 4),
        ("transformer-quick", 12, None),
    ]
    assert memory[1]["skipped"].startswith("without micro_batch above")  # 12 > the quick cap of 8
    assert len(calls) == 1 and "--models transformer-quick --sizes 12" in (tmp_path / "scale.md").read_text()
    for bad, named in ((["--models", "resnet50"], "--models resnet50"), (["--sizes", "0"], "--sizes 0")):
        with pytest.raises(SystemExit):
            scale.main(["--quick", "--part", "memory", *bad, "--out", str(tmp_path)])
        assert named in capsys.readouterr().err


def test_malloc_threshold_reaches_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--malloc-mmap-threshold`` is set in every worker's environment (glibc reads it at start) and in the
    recorded command; a negative value is refused."""
    envs: list[dict[str, str]] = []

    class FakeWorker:
        returncode = 0

        def __init__(self, cmd: list[str], **kwargs: object) -> None:
            envs.append(dict(kwargs["env"]))  # type: ignore[arg-type]

        def communicate(self) -> tuple[str, str]:
            return json.dumps({"set_mib": 1.0, "peak_mib": 10.0, "seconds": 0.1}) + "\n", ""

        def kill(self) -> None:
            pass

    def workers_at_once(args: object, extras: list[tuple[str, ...]]) -> list[dict[str, object]]:
        with monkeypatch.context() as m:  # only the workers' Popen is faked (git_state runs git too)
            m.setattr(scale.subprocess, "Popen", FakeWorker)
            return real(args, extras)

    real = scale.run_workers_at_once
    monkeypatch.setattr(scale, "run_workers_at_once", workers_at_once)
    scale.main(["--quick", "--part", "memory", "--models", "resnet20-16px-quick", "--sizes", "10",
                "--malloc-mmap-threshold", "131072", "--out", str(tmp_path)])  # fmt: skip
    assert envs and all(e["MALLOC_MMAP_THRESHOLD_"] == "131072" for e in envs)
    assert "--malloc-mmap-threshold 131072" in (tmp_path / "scale.md").read_text()
    with pytest.raises(SystemExit):
        scale.main(["--quick", "--part", "memory", "--malloc-mmap-threshold", "-1", "--out", str(tmp_path)])
