"""benchmarks/sweep_speed.py's report: a per-epoch difference that came out zero or negative is shown as noise."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GPU_RUN = ROOT / "benchmarks" / "results" / "gpu-evidence" / "2026-12-04-1525"


@pytest.fixture()
def sweep_speed():
    sys.path.insert(0, str(ROOT))
    from benchmarks import sweep_speed

    return sweep_speed


def test_negative_difference_is_noise_not_a_speed(tmp_path: Path, sweep_speed) -> None:
    shutil.copy(GPU_RUN / "sweep_speed.json", tmp_path / "sweep_speed.json")
    results = json.loads((tmp_path / "sweep_speed.json").read_text())
    row = results["devices"]["cuda"]["sparsity"]["99%"]
    assert row["masked"]["epoch_seconds"] < 0  # the committed noisy run this guards against
    sweep_speed.write(results, tmp_path)
    md = (tmp_path / "sweep_speed.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| 99% |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1].endswith("(noise)") and cells[5] == "n/a"  # masked s/epoch, speed-up
    assert "-0.38x" not in md and "measures nothing" in md
    assert f"test acc after {results['settings']['long_epochs']} epochs" in md
    ok = next(x for x in md.splitlines() if x.startswith("| 99.9% |"))
    assert "(noise)" not in ok and "1.37x" in ok


def test_ratio_and_seconds_helpers(sweep_speed) -> None:
    assert sweep_speed._ratio(2.0, 1.0) == "2.00x"
    assert sweep_speed._ratio(0.0, 1.0) == sweep_speed._ratio(1.0, -0.5) == "n/a"
    assert sweep_speed._secs(0.5) == "0.500" and sweep_speed._secs(0.0) == "0.000 (noise)"
