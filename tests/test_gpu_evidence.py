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
                 "--profile lenet5-mnist", "--profile lenet5-fashionmnist",
                 "--sparsities 99.9 --seeds 0 1 2",
                 "--sparsities 99.99 --seeds 0 1 2", "--profile lenet5-mnist --contested"):  # fmt: skip
        assert step in out
    assert "iterative_snip iterative_grasp rlpanning" in out and "dry run: every command checked" in out
    assert "FAILED" not in out


def test_dry_run_fails_when_a_command_cannot_run() -> None:
    done = _dry_run(PYTHON="false")  # no interpreter: every --help check fails
    assert done.returncode == 1 and "FAILED" in done.stdout


def test_unknown_argument_is_an_error() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--budjet", "5"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--budjet" in done.stderr


def test_provenance_of_a_copied_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the tree on another machine: the commit comes from the environment, checked, and wins."""
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
    # the variables win over a checkout's own git (the lent machine's .git is the session's starting commit)
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_COMMIT", "a" * 40)
    monkeypatch.setenv("LIGHTNING_PANNING_GIT_DIRTY", "1")
    assert git_state() == {"git_commit": "a" * 40, "git_dirty": True}
    monkeypatch.delenv("LIGHTNING_PANNING_GIT_COMMIT")
    if shutil.which("git") is not None and (SCRIPT.parents[1] / ".git").exists():
        assert git_state()["git_commit"] != "a" * 40


def _script(*args: str, script: Path = SCRIPT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def test_steps_and_budget_are_checked() -> None:
    done = _script("--steps", "scale,cellz")
    assert done.returncode == 2 and "unknown step 'cellz'" in done.stderr and "pytest,speed,prune" in done.stderr
    done = _script("--budget", "ten")
    assert done.returncode == 2 and "--budget ten" in done.stderr
    done = _script("--carried", "no-such-folder")
    assert done.returncode == 2 and "--carried no-such-folder: no such folder" in done.stderr
    done = _script("--dry-run", "--steps", "scale,cells")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scale: " in done.stdout and "cells: " in done.stdout and "pytest: " not in done.stdout


def test_preflight_names_what_is_missing(tmp_path: Path) -> None:
    """Before any step: a module the chosen steps import, or the data, missing -> exit 3 naming it (no step runs)."""
    done = _script("--preflight", "--steps", "cells", "--data-dir", str(tmp_path))
    assert done.returncode == 3 and f"no MNIST under '{tmp_path}'" in done.stderr
    # an interpreter without torch_pruning: hide it behind a module that is not importable
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch_pruning':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    done = _script("--preflight", "--steps", "speed", "--data-dir", str(tmp_path),
                   PYTHONPATH=f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "missing Python modules: torch_pruning" in done.stderr and "gpu_prepare.sh" in done.stderr


def test_carried_folder_supplies_data_authors_and_commit(tmp_path: Path) -> None:
    """--carried: gzipped datasets are unpacked in place, the commit file becomes the records' provenance."""
    import gzip

    carried = SCRIPT.parents[1] / ".gpu-test-carried"
    shutil.rmtree(carried, ignore_errors=True)
    try:
        raw = carried / "datasets" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"labels"))
        (carried / "authors").mkdir()
        (carried / "commit").write_text("b" * 40 + "\n")
        (carried / "dirty").write_text("0\n")
        done = _script("--carried", str(carried), "--preflight", "--steps", "cells,prune")
        out = done.stdout + done.stderr
        assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == b"labels", out
        assert f"data {carried}/datasets" in out or "missing Python modules" in out
        assert f"authors' code {carried}/authors" in out or "missing Python modules" in out
    finally:
        shutil.rmtree(carried, ignore_errors=True)


def test_prepare_refuses_bad_arguments(tmp_path: Path) -> None:
    prepare = SCRIPT.parent / "gpu_prepare.sh"
    done = _script("--colour", script=prepare)
    assert done.returncode == 2 and "unknown argument '--colour'" in done.stderr
    done = _script("--out", "/tmp/elsewhere", script=prepare)
    assert done.returncode == 2 and "must be a folder inside the repository" in done.stderr
    done = _script("--data-dir", str(tmp_path), script=prepare)
    assert done.returncode == 2 and f"no MNIST under '{tmp_path}'" in done.stderr


def test_scrub_takes_machine_paths_out_of_logs(tmp_path: Path) -> None:
    root = SCRIPT.parents[1].resolve()
    log = tmp_path / "step.log"
    log.write_text(f'  File "{root}/benchmarks/x.py", line 3\n/usr/lib/python3/site-packages/torch/a.py:1: W\n'
                   "tmp_path = PosixPath('/tmp/pytest-of-root/pytest-0/t0')\nsaved to /root/.cache/x.bin\n")
    done = _script("--scrub", str(tmp_path))
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert '"benchmarks/x.py"' in text and "<site-packages>/torch/a.py" in text and "'<tmp>'" in text
    assert "<home>" in text and "/tmp/" not in text and "/root/" not in text and str(root) not in text
    done = _script("--scrub", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no such folder" in done.stderr
