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


def test_provenance_of_a_copy_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lent GPU machine gets the tree without .git: the commit comes from the environment, checked."""
    sys.path.insert(0, str(SCRIPT.parents[1]))
    from benchmarks.sweep.provenance import git_state

    monkeypatch.delenv("LIGHTNING_PANNING_GIT_COMMIT", raising=False)
    monkeypatch.delenv("LIGHTNING_PANNING_GIT_DIRTY", raising=False)
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_COMMIT", "a" * 40)
    assert git_state(tmp_path) == {"git_commit": "a" * 40, "git_dirty": None}
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_DIRTY", "0")
    assert git_state(tmp_path) == {"git_commit": "a" * 40, "git_dirty": False}
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_DIRTY", "yes")
    with pytest.raises(ValueError, match="LIGHTNING_PANNING_GIT_DIRTY='yes'"):
        git_state(tmp_path)
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_COMMIT", "ec18993")
    with pytest.raises(ValueError, match="40 hex digits"):
        git_state(tmp_path)
    # a real checkout ignores the variables
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_COMMIT", "a" * 40)
    if shutil.which("git") is not None and (SCRIPT.parents[1] / ".git").exists():
        assert git_state()["git_commit"] != "a" * 40
