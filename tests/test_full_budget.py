"""benchmarks/full_budget.sh --dry-run: issue 26 section 2's order, and every step is a sweep command that parses."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.sweep.cli import build_parser

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "full_budget.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _steps(*args: str) -> list[list[str]]:
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


def test_steps_follow_the_issue_order_and_parse() -> None:
    steps = _steps("--jobs", "1", "--data-dir", "data", "--out-root", "out")
    parsed = [build_parser().parse_args(step[2:]) for step in steps]  # drop "python benchmarks/sweep.py"
    order = [(a.profile, tuple(a.sparsities or ()), tuple(a.methods)) for a in parsed]
    assert order[0][:2] == ("lenet5-mnist", ("99.9",)) and order[1][:2] == ("lenet5-mnist", ("99.99",))
    assert order[2] == ("lenet5-mnist", (), ("dense",))
    assert order[3][:2] == ("lenet5-fashionmnist", ("99.9",)) and order[4][2] == ("dense",)
    assert [o[1] for o in order[5:]] == [("99",), ("99",), ("90",), ("90",), ("95",), ("95",), ("98",), ("98",)]
    methods = "panning panning_authors synflow iterative_snip iterative_grasp rlpanning".split()
    assert all(list(a.methods) == methods for a in parsed if a.methods != ["dense"])
    assert all(a.jobs == 1 and a.num_threads == 1 and a.seeds == ["0", "1", "2"] for a in parsed)
    assert all(a.data_dir == "data" and a.out == f"out/{a.profile}" for a in parsed)


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--jobs", "x"], ["--budget", "5"]])
def test_bad_arguments_are_errors(args: list[str]) -> None:
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and (args[0] in done.stderr or args[1] in done.stderr)
