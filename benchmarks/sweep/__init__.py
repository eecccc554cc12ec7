"""The benchmark sweep: pruning methods × sparsities × seeds, each cell an ordinary Lightning training run.

Benchmark code, not part of the installed ``lightning_panning`` package. Run it with ``python benchmarks/sweep.py``
or ``python -m benchmarks.sweep`` from the repository root. One concern per module:

* :mod:`~benchmarks.sweep.paper` — the paper's numbers and which of our methods they sit beside;
* :mod:`~benchmarks.sweep.methods` — the sweep's methods (every key of ``lightning_panning.core.METHODS`` plus
  ``dense`` and ``rlpanning``) and their callbacks;
* :mod:`~benchmarks.sweep.profiles` — profiles (network, data, recipe, default grid) and cells;
* :mod:`~benchmarks.sweep.data` — whole datasets in device memory for fast LeNet5 cells;
* :mod:`~benchmarks.sweep.cell` — running one cell with the Lightning Trainer;
* :mod:`~benchmarks.sweep.records` — ``runs.jsonl``, resume, and the one-profile-one-budget rule;
* :mod:`~benchmarks.sweep.report` and :mod:`~benchmarks.sweep.plot` — ``summary.md``, ``runs.csv``, the figure;
* :mod:`~benchmarks.sweep.stats` — Welch's and the paired-by-seed t-test, Holm's correction (the summary's verdicts);
* :mod:`~benchmarks.sweep.provenance` — the code's git commit, commands and tracebacks without machine paths;
* :mod:`~benchmarks.sweep.lean` — the cell's classifier (no per-step training metrics);
  :mod:`~benchmarks.sweep.exactness` — masked against compacted training of one cell, loss by loss;
* :mod:`~benchmarks.sweep.backends` — local (sequential or ``--jobs N`` processes) and Ray execution;
* :mod:`~benchmarks.sweep.run` — the driver, :func:`run_sweep`; :mod:`~benchmarks.sweep.cli` — the command line.

Example:
    >>> from benchmarks.sweep import PROFILES
    >>> PROFILES["lenet5-mnist"].epochs, PROFILES["lenet5-mnist"].batch_size, PROFILES["lenet5-mnist"].lr
    (80, 256, 0.1)
"""

from benchmarks.sweep.aggregate import summarize
from benchmarks.sweep.backends import BACKENDS, BackendUnavailableError, LocalBackend, RayBackend, make_backend
from benchmarks.sweep.cell import SweepConfig, execute_cell, run_cell
from benchmarks.sweep.methods import METHOD_LABELS, MethodUnavailableError, build_callback, method_unavailable_reason
from benchmarks.sweep.paper import PAPER_DENSE, PAPER_RESULTS, paper_accuracy, paper_beside
from benchmarks.sweep.profiles import DEFAULT_PROFILE, PROFILES, Cell, Profile, format_sparsity, parse_sparsity
from benchmarks.sweep.records import RecordsMismatchError, load_records
from benchmarks.sweep.report import write_report
from benchmarks.sweep.run import SweepOutcome, run_sweep

__all__ = [
    "BACKENDS",
    "DEFAULT_PROFILE",
    "METHOD_LABELS",
    "PAPER_DENSE",
    "PAPER_RESULTS",
    "PROFILES",
    "BackendUnavailableError",
    "Cell",
    "LocalBackend",
    "MethodUnavailableError",
    "Profile",
    "RayBackend",
    "RecordsMismatchError",
    "SweepConfig",
    "SweepOutcome",
    "build_callback",
    "execute_cell",
    "format_sparsity",
    "load_records",
    "make_backend",
    "method_unavailable_reason",
    "paper_accuracy",
    "paper_beside",
    "parse_sparsity",
    "run_cell",
    "run_sweep",
    "summarize",
    "write_report",
]
