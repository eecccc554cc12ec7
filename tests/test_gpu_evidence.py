"""benchmarks/gpu_evidence.sh --dry-run: every command it would run on a GPU exists and takes its options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_evidence.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash")


def _dry_run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable, **env},
    )


def test_dry_run_checks_every_command() -> None:
    done = _dry_run()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in ("-m pytest -m gpu", "benchmarks/sweep_speed.py --device cuda", "benchmarks/prune_speed.py",
                 "benchmarks/transformer_scale.py --device cuda", "benchmarks/scale.py --part memory --device cuda",
                 "-m benchmarks.model_zoo --device cuda",
                 "--sparsities 99.9 --seeds 0 1 2",
                 "--sparsities 99.99 --seeds 0 1 2"):  # fmt: skip
        assert step in out
    assert "iterative_snip iterative_grasp rlpanning" in out and "dry run: every command checked" in out
    assert "FAILED" not in out


def test_dry_run_fails_when_a_command_cannot_run() -> None:
    done = _dry_run(PYTHON="false")  # no interpreter: every --help check fails
    assert done.returncode == 1 and "FAILED" in done.stdout


def test_unknown_argument_is_an_error() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--budjet", "5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--budjet" in done.stderr
