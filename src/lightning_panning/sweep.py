"""Benchmark sweeps: pruning methods x sparsities x seeds, each cell a real Lightning training run.

The reusable half of ``benchmarks/sweep.py``. A sweep is described by a :class:`Profile` (model, data, Table 1
hyperparameters, default methods, sparsities and seeds) and run with :func:`run_sweep`, which

* runs every *cell* (one method at one sparsity with one seed) as ``seed_everything`` → model →
  :class:`~lightning_panning.classifier.ImageClassifier` → DataModule → ``Trainer(callbacks=[PanningCallback(...)])``
  → ``fit`` → ``test`` (see :func:`run_cell`);
* appends one JSON line per finished cell to ``runs.jsonl`` (flushed and fsynced), which is the resumability record:
  a cell whose key (:data:`CELL_KEY_FIELDS`) is found there with ``status == "ok"`` is skipped next time, and a
  failed cell is recorded with its error and retried on the next run;
* rewrites ``runs.csv``, ``summary.md`` (mean ± std per method and sparsity beside the paper's numbers) and
  ``accuracy_vs_remaining.png`` (the paper's Figure 3 format) after every cell, so partial results are never lost.

:func:`write_report` rebuilds the three report files from ``runs.jsonl`` alone.

Example:
    >>> profile = PROFILES["smoke"].override(methods=("dense", "random"), sparsities=(0.9,), seeds=(0,))
    >>> [(c.method, c.sparsity) for c in profile.cells()]
    [('dense', 0.0), ('random', 0.9)]
    >>> format_sparsity(0.9999), paper_accuracy("lenet5-mnist", "panning", 0.999)
    ('99.99%', 95.51)
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import platform
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "CELL_KEY_FIELDS",
    "CSV_FIELDS",
    "DEFAULT_PROFILE",
    "METHOD_LABELS",
    "PAPER_DENSE",
    "PAPER_RESULTS",
    "PAPER_SOURCES",
    "PROFILES",
    "Aggregate",
    "Cell",
    "CellRunner",
    "MethodUnavailableError",
    "Profile",
    "SweepConfig",
    "SweepOutcome",
    "SweepProgress",
    "TqdmProgress",
    "append_record",
    "build_callback",
    "cell_key",
    "current_records",
    "default_data_dir",
    "format_sparsity",
    "latest_records",
    "load_records",
    "method_unavailable_reason",
    "paper_accuracy",
    "parse_sparsity",
    "plot_accuracy",
    "policy_id",
    "run_cell",
    "run_sweep",
    "save_budget_note",
    "summarize",
    "versions",
    "write_csv",
    "write_report",
    "write_summary",
]

log = logging.getLogger(__name__)

RECORDS_FILE = "runs.jsonl"
CSV_FILE = "runs.csv"
SUMMARY_FILE = "summary.md"
PLOT_FILE = "accuracy_vs_remaining.png"
META_FILE = "sweep.json"
ANALYSIS_FILE = "ANALYSIS.md"

# ---------------------------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------------------------

#: Sweep method name → display label, in the order tables and plots list them. Every name but ``dense``,
#: ``panning_shuffled`` and ``rlpanning`` is a key of :data:`lightning_panning.core.METHODS`.
METHOD_LABELS: dict[str, str] = {
    "dense": "Dense (no pruning)",
    "panning": "Panning",
    "rlpanning": "RLPanning",
    "panning_shuffled": "Panning, layer-wise shuffled",
    "synflow": "SynFlow (iterative)",
    "synflow_oneshot": "SynFlow (one-shot)",
    "iterative_snip": "Iterative SNIP (FORCE)",
    "iterative_grasp": "Iterative GraSP",
    "snip": "SNIP",
    "grasp": "GraSP",
    "grasp_original": "GraSP (original, signed)",
    "magnitude": "Magnitude",
    "random": "Random",
}

#: Line colour of each method in the plot (grey is kept for the dense baselines).
METHOD_COLORS: dict[str, str] = {
    "panning": "C0",
    "rlpanning": "C3",
    "panning_shuffled": "C9",
    "synflow": "C1",
    "synflow_oneshot": "C8",
    "iterative_snip": "C4",
    "iterative_grasp": "C5",
    "snip": "C2",
    "grasp": "C6",
    "grasp_original": "C5",
    "magnitude": "C8",
    "random": "k",
}

#: Methods that build a :class:`~lightning_panning.callbacks.PanningCallback` with ``method=`` the same name.
PANNING_CALLBACK_METHODS: tuple[str, ...] = (
    "panning",
    "synflow",
    "synflow_oneshot",
    "iterative_snip",
    "iterative_grasp",
    "snip",
    "grasp",
    "grasp_original",
    "magnitude",
    "random",
)


class MethodUnavailableError(RuntimeError):
    """A sweep method whose implementation cannot be imported here (e.g. ``rlpanning`` before it lands)."""


def method_unavailable_reason(method: str) -> str | None:
    """Why ``method`` cannot run in this installation, or ``None`` when it can.

    Args:
        method: a key of :data:`METHOD_LABELS`.

    Returns:
        ``None``, or a one-line explanation.

    Raises:
        ValueError: for an unknown method.

    Example:
        >>> method_unavailable_reason("panning") is None
        True
    """
    if method not in METHOD_LABELS:
        raise ValueError(f"Unknown sweep method {method!r}; allowed: {list(METHOD_LABELS)}.")
    if method == "rlpanning":
        try:
            from lightning_panning import callbacks

            getattr(callbacks, "RLPanningCallback")  # noqa: B009 - may not exist yet
        except (ImportError, AttributeError) as err:
            return f"lightning_panning.callbacks.RLPanningCallback cannot be imported ({type(err).__name__}: {err})"
    return None


def _accepted_kwargs(cls: type, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``cls.__init__`` accepts (all of them if it takes ``**kwargs``)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(kwargs)
    return {k: v for k, v in kwargs.items() if k in params}


def build_callback(
    method: str,
    sparsity: float,
    *,
    rounds: int = 100,
    seed: int = 0,
    per_class: int = 10,
    num_classes: int | None = None,
) -> Any:
    """The pruning callback of one sweep cell (``None`` for ``dense``).

    Args:
        method: a key of :data:`METHOD_LABELS`.
        sparsity: target sparsity in (0, 1) (ignored for ``dense``).
        rounds: ``T`` for iterative methods.
        seed: seed of the scoring batch and of random scores.
        per_class: samples per class of the scoring batch.
        num_classes: classes of the scoring batch.

    Returns:
        A :class:`~lightning_panning.callbacks.PanningCallback`, an ``RLPanningCallback`` or ``None``.

    Raises:
        ValueError: for an unknown method.
        MethodUnavailableError: for ``rlpanning`` when its callback cannot be imported.

    Example:
        >>> build_callback("panning_shuffled", 0.9, rounds=5).shuffle_masks
        True
    """
    if method not in METHOD_LABELS:
        raise ValueError(f"Unknown sweep method {method!r}; allowed: {list(METHOD_LABELS)}.")
    if method == "dense":
        return None
    common: dict[str, Any] = {
        "rounds": rounds,
        "seed": seed,
        "per_class": per_class,
        "num_classes": num_classes,
        "log_figure": False,
        "verbose": False,
    }
    if method == "rlpanning":
        reason = method_unavailable_reason(method)
        if reason is not None:
            raise MethodUnavailableError(reason)
        from lightning_panning import callbacks

        rl_cls: type = getattr(callbacks, "RLPanningCallback")  # noqa: B009
        return rl_cls(sparsity, **_accepted_kwargs(rl_cls, common))
    from lightning_panning.callbacks import PanningCallback

    if method == "panning_shuffled":
        return PanningCallback(sparsity, "panning", shuffle_masks=True, **common)
    return PanningCallback(sparsity, method, **common)


# ---------------------------------------------------------------------------------------------------------------------
# The paper's numbers (METHOD.md §2 and §7: Tables 2, 5 and 6), test accuracy in %
# ---------------------------------------------------------------------------------------------------------------------

#: Dense (unpruned) test accuracy per paper setting.
PAPER_DENSE: dict[str, float] = {
    "lenet5-mnist": 99.40,
    "lenet5-fashionmnist": 91.98,
    "vgg19-cifar10": 94.20,
    "vgg19-tinyimagenet": 63.29,
    "resnet18-tinyimagenet": 63.92,
}

#: ``{setting: {method: {sparsity: accuracy %}}}``; method names are sweep method names. ``snip``/``grasp`` on
#: VGG19/CIFAR-10 are the paper's improved metrics ("Ours SNIP/GraSP" of Table 2, which is what this project's
#: ``snip``/``grasp`` implement); ``grasp_original`` is Table 2's original GraSP; ``snip_original`` (Table 2's
#: original SNIP) has no sweep method and is kept for reference only.
PAPER_RESULTS: dict[str, dict[str, dict[float, float]]] = {
    "lenet5-mnist": {
        "panning": {0.9: 99.37, 0.95: 99.21, 0.98: 99.11, 0.99: 99.09, 0.999: 95.51, 0.9999: 40.85},
        "rlpanning": {0.9: 99.40, 0.95: 99.18, 0.98: 99.23, 0.99: 99.15, 0.999: 97.89, 0.9999: 45.43},
    },
    "lenet5-fashionmnist": {
        "panning": {0.9: 90.67, 0.95: 90.14, 0.98: 88.74, 0.99: 86.92, 0.999: 68.97, 0.9999: 26.67},
        "rlpanning": {0.9: 90.84, 0.95: 90.53, 0.98: 89.35, 0.99: 87.41, 0.999: 69.02, 0.9999: 30.26},
    },
    "vgg19-cifar10": {
        "panning": {0.9: 94.02, 0.95: 93.66, 0.98: 92.81, 0.99: 91.75, 0.999: 83.87, 0.9999: 62.32},
        "rlpanning": {0.9: 94.09, 0.95: 93.80, 0.98: 92.98, 0.99: 92.12, 0.999: 84.52, 0.9999: 64.51},
        "snip": {0.85: 94.05, 0.9: 93.98, 0.95: 93.86, 0.98: 91.83, 0.99: 10.0},
        "grasp": {0.85: 93.77, 0.9: 93.69, 0.95: 93.48, 0.98: 92.78, 0.99: 91.8},
        "grasp_original": {0.85: 93.59, 0.9: 93.50, 0.95: 92.90, 0.98: 92.39, 0.99: 91.0},
        "snip_original": {0.85: 93.91, 0.9: 93.82, 0.95: 93.72, 0.98: 91.16, 0.99: 10.0},
    },
    "vgg19-tinyimagenet": {
        "panning": {0.9: 61.67, 0.95: 60.25, 0.98: 58.33},
        "rlpanning": {0.9: 61.84, 0.95: 59.83, 0.98: 58.17},
    },
    "resnet18-tinyimagenet": {
        "rlpanning": {0.9: 61.07, 0.95: 58.73, 0.98: 55.82},
    },
}

#: Where each setting's numbers come from.
PAPER_SOURCES: dict[str, str] = {
    "lenet5-mnist": "Table 5 (mean of 3 runs, 80 epochs)",
    "lenet5-fashionmnist": "Table 5 (mean of 3 runs, 80 epochs)",
    "vgg19-cifar10": "Tables 2 and 5 (mean of 3 runs, 180 epochs)",
    "vgg19-tinyimagenet": "Table 6 (200 epochs)",
    "resnet18-tinyimagenet": "Table 6 (300 epochs)",
}


def paper_accuracy(setting: str | None, method: str, sparsity: float) -> float | None:
    """The paper's test accuracy (%) for ``method`` at ``sparsity`` in ``setting``, or ``None`` if it gives none.

    ``method="dense"`` returns the setting's dense baseline at any sparsity.

    Example:
        >>> paper_accuracy("lenet5-fashionmnist", "rlpanning", 0.99), paper_accuracy("lenet5-mnist", "snip", 0.9)
        (87.41, None)
    """
    if setting is None:
        return None
    if method == "dense":
        return PAPER_DENSE.get(setting)
    table = PAPER_RESULTS.get(setting, {}).get(method, {})
    for s, acc in table.items():
        if math.isclose(s, sparsity, rel_tol=0.0, abs_tol=1e-9):
            return acc
    return None


# ---------------------------------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------------------------------

PAPER_SPARSITIES: tuple[float, ...] = (0.9, 0.95, 0.98, 0.99, 0.999, 0.9999)
PAPER_METHODS: tuple[str, ...] = ("dense", "panning", "rlpanning", "synflow", "snip", "grasp", "random")


@dataclass(frozen=True)
class Cell:
    """One training run of a sweep.

    Attributes:
        method: sweep method (a key of :data:`METHOD_LABELS`).
        sparsity: target sparsity; ``0.0`` for ``dense``.
        seed: the seed of everything in the run (initialisation, data order and subset, scoring batch).
    """

    method: str
    sparsity: float
    seed: int


@dataclass(frozen=True)
class Profile:
    """A benchmark setting: network, data, training recipe and the default grid.

    Attributes:
        name: profile name (also the default results folder name).
        description: one line for the summary.
        model: ``"lenet5"``, ``"vgg19"`` or ``"resnet18"``.
        dataset: ``"digits"``, ``"mnist"``, ``"fashionmnist"``, ``"cifar10"``, ``"cifar100"`` or ``"tinyimagenet"``.
        epochs: training epochs.
        batch_size: training batch size.
        weight_decay: SGD weight decay (Table 1).
        lr: initial learning rate of SGD + cosine annealing (Table 1: 0.1).
        momentum: SGD momentum (Table 1: 0.9).
        methods: sweep methods.
        sparsities: target sparsities in (0, 1).
        seeds: seeds; each (method, sparsity) runs once per seed.
        rounds: ``T`` of iterative methods (paper: 100).
        per_class: samples per class of the scoring batch (paper: 10; 5 for 100/200 classes).
        train_subset: train on this many (seeded) training samples; ``None`` uses all.
        validate: run the validation loop each epoch (on the test set: the paper's protocol); off saves time.
        cosine_per_step: anneal the learning rate per optimizer step over the whole run (``Trainer(max_steps=...)``)
            instead of per epoch. Identical in spirit to Table 1's cosine for long runs, and what makes 1-epoch
            budgets meaningful (a per-epoch cosine over one epoch keeps lr = 0.1 throughout).
        paper: key of :data:`PAPER_RESULTS` / :data:`PAPER_DENSE` to compare with, if any.
        paper_epochs: epochs of the paper's runs in this setting (Table 1), for the budget statement.
        datamodule_kwargs: extra DataModule arguments.
    """

    name: str
    description: str
    model: str
    dataset: str
    epochs: int
    batch_size: int
    weight_decay: float
    lr: float = 0.1
    momentum: float = 0.9
    methods: tuple[str, ...] = PAPER_METHODS
    sparsities: tuple[float, ...] = PAPER_SPARSITIES
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 100
    per_class: int = 10
    train_subset: int | None = None
    validate: bool = False
    cosine_per_step: bool = True
    paper: str | None = None
    paper_epochs: int | None = None
    datamodule_kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHOD_LABELS]
        if unknown:
            raise ValueError(f"Profile {self.name!r}: unknown methods {unknown}; allowed: {list(METHOD_LABELS)}.")
        bad = [s for s in self.sparsities if not 0.0 < s < 1.0]
        if bad:
            raise ValueError(f"Profile {self.name!r}: sparsities must be in (0, 1), got {bad}.")
        for name in ("epochs", "batch_size", "rounds", "per_class"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Profile {self.name!r}: `{name}` must be a positive integer, got {value!r}.")
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError(
                f"Profile {self.name!r}: `train_subset` must be positive or None, got {self.train_subset}."
            )
        if not self.seeds:
            raise ValueError(f"Profile {self.name!r}: `seeds` must not be empty.")

    def override(self, **changes: Any) -> Profile:
        """A copy with ``changes`` applied (``None`` values are ignored, except for ``train_subset=0`` → all data).

        Example:
            >>> PROFILES["lenet5-mnist"].override(epochs=2, train_subset=0, seeds=None).epochs
            2
        """
        clean = {k: v for k, v in changes.items() if v is not None}
        if clean.get("train_subset") == 0:
            clean["train_subset"] = None
        for key in ("methods", "sparsities", "seeds"):
            if key in clean:
                clean[key] = tuple(dict.fromkeys(clean[key]))
        return dataclasses.replace(self, **clean)

    def cells(self) -> list[Cell]:
        """The grid, seed-major (every method at every sparsity for seed 0 first); ``dense`` once per seed."""
        cells: list[Cell] = []
        for seed in self.seeds:
            for method in self.methods:
                if method == "dense":
                    cells.append(Cell("dense", 0.0, seed))
                    continue
                cells.extend(Cell(method, sparsity, seed) for sparsity in sorted(self.sparsities))
        return cells

    def num_classes(self) -> int:
        """Classes of the dataset."""
        return {"cifar100": 100, "tinyimagenet": 200}.get(self.dataset, 10)


def _paper_profile(name: str, model: str, dataset: str, epochs: int, batch: int, wd: float, **kw: Any) -> Profile:
    return Profile(
        name=name,
        description=kw.pop("description"),
        model=model,
        dataset=dataset,
        epochs=epochs,
        batch_size=batch,
        weight_decay=wd,
        paper=kw.pop("paper", name),
        paper_epochs=epochs,
        **kw,
    )


#: The built-in profiles. Paper profiles use Table 1's hyperparameters (SGD, momentum 0.9, cosine from lr 0.1).
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="smoke",
            description="CI smoke test: LeNet5 on the offline sklearn digits (upsampled to 28x28), 1 epoch.",
            model="lenet5",
            dataset="digits",
            epochs=1,
            batch_size=64,
            weight_decay=1e-4,
            methods=("dense", "panning", "random"),
            sparsities=(0.9, 0.99),
            seeds=(0,),
            rounds=5,
            per_class=5,
            train_subset=512,
        ),
        Profile(
            name="quick",
            description=(
                "Default, 6 min on an idle 2-core CPU (measured; longer under load): LeNet5/MNIST at 90/99/99.9% "
                "with the budget of the committed results: 1 epoch on a 30,000-image training subset, batch 64, "
                "lr 0.01 (the dense LeNet5 diverges at Table 1's lr 0.1), 1 seed, T = 100; full 10,000-image test set."
            ),
            model="lenet5",
            dataset="mnist",
            epochs=1,
            batch_size=64,
            lr=0.01,
            weight_decay=1e-4,
            methods=("dense", "panning", "synflow", "snip", "grasp", "random"),
            sparsities=(0.9, 0.99, 0.999),
            seeds=(0,),
            train_subset=30000,
            paper="lenet5-mnist",
            paper_epochs=80,
        ),
        _paper_profile(
            "lenet5-mnist", "lenet5", "mnist", 80, 256, 1e-4, description="LeNet5 (Caffe) on MNIST, Table 1 recipe."
        ),
        _paper_profile(
            "lenet5-fashionmnist",
            "lenet5",
            "fashionmnist",
            80,
            256,
            1e-4,
            description="LeNet5 (Caffe) on FashionMNIST, Table 1 recipe.",
        ),
        _paper_profile(
            "vgg19-cifar10",
            "vgg19",
            "cifar10",
            180,
            128,
            5e-4,
            description="VGG19 (BatchNorm) on CIFAR-10, Table 1 recipe (crop + flip).",
            methods=("dense", "panning", "rlpanning", "synflow", "snip", "grasp", "grasp_original", "random"),
            sparsities=(0.85, *PAPER_SPARSITIES),
        ),
        _paper_profile(
            "resnet18-cifar100",
            "resnet18",
            "cifar100",
            180,
            128,
            5e-4,
            description="ResNet18 on CIFAR-100, Table 1 recipe (Figure 3 of the paper; no table numbers).",
            methods=("dense", "panning", "rlpanning", "synflow", "iterative_snip", "iterative_grasp"),
            per_class=5,
            paper=None,
        ),
        _paper_profile(
            "vgg19-tinyimagenet",
            "vgg19",
            "tinyimagenet",
            200,
            128,
            5e-4,
            description="VGG19 (BatchNorm) on Tiny-ImageNet (64x64, 200 classes), Table 1 recipe.",
            sparsities=(0.9, 0.95, 0.98),
            per_class=5,
        ),
        _paper_profile(
            "resnet18-tinyimagenet",
            "resnet18",
            "tinyimagenet",
            300,
            128,
            1e-4,
            description="ResNet18 on Tiny-ImageNet (64x64, 200 classes), Table 1 recipe.",
            sparsities=(0.9, 0.95, 0.98),
            per_class=5,
        ),
    )
}

DEFAULT_PROFILE = "quick"


def default_data_dir(repo_root: str | os.PathLike[str] | None = None) -> Path:
    """Dataset root: ``$LIGHTNING_PANNING_DATA``, else ``<repo>/../shared/datasets`` if it exists, else ``./data``.

    Args:
        repo_root: the repository root (the folder holding ``benchmarks/``), if known.

    Example:
        >>> isinstance(default_data_dir(), Path)
        True
    """
    env = os.environ.get("LIGHTNING_PANNING_DATA")
    if env:
        return Path(env).expanduser().resolve()
    if repo_root is not None:
        shared = Path(repo_root).resolve().parent / "shared" / "datasets"
        if shared.is_dir():
            return shared
    return Path("data").resolve()


def parse_sparsity(text: str) -> float:
    """A sparsity from the command line: a fraction (``0.999``) or a percentage (``99.9``).

    Example:
        >>> parse_sparsity("99.9"), parse_sparsity("0.98")
        (0.999, 0.98)
    """
    value = float(text)
    if 1.0 < value < 100.0:
        value = round(value / 100.0, 10)
    if not 0.0 < value < 1.0:
        raise ValueError(f"A sparsity must be a fraction in (0, 1) or a percentage in (1, 100), got {text!r}.")
    return value


def format_sparsity(sparsity: float) -> str:
    """``0.9999`` → ``'99.99%'``; ``0.0`` → ``'0%'``."""
    return f"{round(sparsity * 100, 6):g}%"


# ---------------------------------------------------------------------------------------------------------------------
# One cell
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class SweepConfig:
    """A sweep: the profile (with overrides applied) and how to run it.

    Attributes:
        profile: the grid and recipe.
        out_dir: results folder (``runs.jsonl``, ``runs.csv``, ``summary.md``, the plot).
        data_dir: dataset root (unused by ``digits``).
        accelerator: Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``, ...).
        num_workers: DataLoader workers.
        num_threads: ``torch.set_num_threads`` value recorded with the runs (set by the caller), if any.
        command: the command line that reproduces the sweep (recorded in every run).
        budget_note: free text about the compute budget, saved in ``sweep.json`` and shown in the summary.
        csv_logs: keep a Lightning ``CSVLogger`` per cell under ``<out_dir>/logs``.
        report_every_cell: rewrite the CSV, summary and plot after every cell (else only at the end).
    """

    profile: Profile
    out_dir: Path
    data_dir: Path | None = None
    accelerator: str = "auto"
    num_workers: int = 0
    num_threads: int | None = None
    command: str = ""
    budget_note: str | None = None
    csv_logs: bool = False
    report_every_cell: bool = True


#: Record fields that identify a cell: a record with these values and ``status == "ok"`` is not run again.
CELL_KEY_FIELDS: tuple[str, ...] = (
    "profile",
    "method",
    "sparsity",
    "seed",
    "epochs",
    "rounds",
    "train_subset",
    "batch_size",
    "lr",
    "policy",
)

#: Columns of ``runs.csv``.
CSV_FIELDS: tuple[str, ...] = (
    *CELL_KEY_FIELDS,
    "status",
    "test_acc",
    "test_loss",
    "nominal_sparsity",
    "effective_sparsity",
    "remaining",
    "kept_weights",
    "total_weights",
    "pruning_seconds",
    "training_seconds",
    "test_seconds",
    "cell_seconds",
    "model",
    "dataset",
    "weight_decay",
    "per_class",
    "accelerator",
    "device",
    "optimizer_steps",
    "num_threads",
    "python",
    "torch",
    "lightning",
    "lightning_panning",
    "finished_at",
    "command",
    "error",
)


def cell_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """The identity of a cell in a record (or in any mapping with :data:`CELL_KEY_FIELDS`).

    Example:
        >>> cell_key({"profile": "p", "method": "snip", "sparsity": 0.9, "seed": 0, "epochs": 1, "rounds": 100,
        ...           "train_subset": None, "batch_size": 256, "lr": 0.1})
        ('p', 'snip', 0.9, 0, 1, 100, None, 256, 0.1, None)
    """
    key = []
    for name in CELL_KEY_FIELDS:
        value = record.get(name)
        if name == "sparsity" and value is not None:
            value = round(float(value), 10)
        key.append(value)
    return tuple(key)


def policy_id(method: str) -> str | None:
    """Identity of the agent an ``rlpanning`` cell uses: ``"default:<sha256 prefix>"``; ``None`` for other methods.

    It is part of the cell key, so RLPanning cells run again when the shipped policy changes.
    """
    if method != "rlpanning" or method_unavailable_reason(method) is not None:
        return None
    try:
        from lightning_panning.rl.agent import default_policy_path

        digest = hashlib.sha256(Path(default_policy_path()).read_bytes()).hexdigest()
    except (ImportError, OSError) as err:
        return f"default:unknown ({type(err).__name__})"
    return f"default:{digest[:12]}"


def versions() -> dict[str, str]:
    """Versions of Python, torch, lightning and this package (no host names, no paths)."""
    import lightning
    import torch

    from lightning_panning import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "lightning_panning": __version__,
    }


def _build_model(profile: Profile) -> Any:
    from lightning_panning import models

    num_classes = profile.num_classes()
    if profile.model == "lenet5":
        return models.LeNet5(num_classes=num_classes, in_channels=1, input_size=28)
    input_size = 64 if profile.dataset == "tinyimagenet" else 32
    if profile.model == "vgg19":
        return models.VGG19(num_classes=num_classes, input_size=input_size)
    if profile.model == "resnet18":
        return models.ResNet18(num_classes=num_classes)
    raise ValueError(f"Unknown model {profile.model!r}; allowed: 'lenet5', 'vgg19', 'resnet18'.")


def _build_datamodule(profile: Profile, config: SweepConfig, seed: int) -> Any:
    from lightning_panning import data

    extra = dict(profile.datamodule_kwargs)
    common: dict[str, Any] = {
        "batch_size": profile.batch_size,
        "num_workers": config.num_workers,
        "val_split": 0,
        "train_subset": profile.train_subset,
        "seed": seed,
    }
    if profile.dataset == "digits":
        return data.DigitsDataModule(image_size=28, **common, **extra)
    classes = {
        "mnist": data.MNISTDataModule,
        "fashionmnist": data.FashionMNISTDataModule,
        "cifar10": data.CIFAR10DataModule,
        "cifar100": data.CIFAR100DataModule,
        "tinyimagenet": data.TinyImageNetDataModule,
    }
    if profile.dataset not in classes:
        raise ValueError(f"Unknown dataset {profile.dataset!r}; allowed: 'digits', {sorted(classes)}.")
    data_dir = None if config.data_dir is None else str(config.data_dir)
    return classes[profile.dataset](data_dir=data_dir, download=False, **common, **extra)


def _metric(results: Sequence[Mapping[str, Any]], name: str) -> float | None:
    for entry in results:
        if name in entry:
            return float(entry[name])
    return None


def run_cell(cell: Cell, config: SweepConfig) -> dict[str, Any]:
    """Train and test one cell with the ordinary Lightning Trainer; return its measurements.

    ``seed_everything(seed)`` → model → :class:`~lightning_panning.classifier.ImageClassifier` (SGD + cosine,
    Table 1) → DataModule (``val_split=0``: the whole training set, or the profile's subset) →
    ``Trainer(callbacks=[pruning callback])`` (none for ``dense``) → ``fit`` → ``test``. With
    ``profile.cosine_per_step`` the Trainer runs ``epochs x batches per epoch`` steps (``max_steps``), so that the
    classifier anneals its cosine schedule per step.

    Args:
        cell: what to run.
        config: the sweep.

    Returns:
        ``test_acc`` (%), ``test_loss``, ``nominal_sparsity``, ``effective_sparsity``, ``kept_weights``,
        ``total_weights``, ``layer_density``, ``pruning_seconds``, ``training_seconds`` (fit time without pruning)
        and ``test_seconds``.

    Raises:
        MethodUnavailableError: when the cell's method cannot be imported here.
    """
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from lightning_panning.classifier import ImageClassifier
    from lightning_panning.core.params import prunable_parameters

    profile = config.profile
    seed_everything(cell.seed, workers=True, verbose=False)
    backbone = _build_model(profile)
    module = ImageClassifier(
        backbone,
        num_classes=profile.num_classes(),
        lr=profile.lr,
        momentum=profile.momentum,
        weight_decay=profile.weight_decay,
    )
    datamodule = _build_datamodule(profile, config, cell.seed)
    callback = build_callback(
        cell.method,
        cell.sparsity,
        rounds=profile.rounds,
        seed=cell.seed,
        per_class=profile.per_class,
        num_classes=profile.num_classes(),
    )
    logger: Any = False
    if config.csv_logs:
        version = f"{cell.method}-{format_sparsity(cell.sparsity).rstrip('%')}-seed{cell.seed}"
        logger = CSVLogger(str(config.out_dir / "logs"), name="", version=version)
    length: dict[str, Any] = {"max_epochs": profile.epochs}
    if profile.cosine_per_step:
        datamodule.prepare_data()
        datamodule.setup("fit")
        length = {"max_epochs": -1, "max_steps": profile.epochs * len(datamodule.train_dataloader())}
    trainer = Trainer(
        **length,
        accelerator=config.accelerator,
        devices=1,
        callbacks=[] if callback is None else [callback],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if profile.validate else 0,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    test_seconds = time.perf_counter() - start

    total = sum(p.numel() for p in prunable_parameters(backbone).values())
    summary: dict[str, Any] = dict(getattr(callback, "summary", None) or {})
    pruning_seconds = float(summary.get("pruning_seconds", 0.0))
    acc = _metric(results, "test/acc")
    return {
        "test_acc": None if acc is None else 100.0 * acc,
        "test_loss": _metric(results, "test/loss"),
        "nominal_sparsity": float(summary.get("nominal_sparsity", 0.0)),
        "effective_sparsity": summary.get("effective_sparsity", 0.0 if callback is None else None),
        "kept_weights": int(summary.get("kept_weights", total)),
        "total_weights": int(summary.get("total_weights", total)),
        "layer_density": summary.get("layer_density", {}),
        "pruning_seconds": pruning_seconds,
        "training_seconds": max(fit_seconds - pruning_seconds, 0.0),
        "test_seconds": test_seconds,
        "device": type(trainer.accelerator).__name__.replace("Accelerator", "").lower(),
        "optimizer_steps": int(trainer.global_step),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------------


def append_record(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append one JSON line to ``path`` and flush it to disk (a crash can at worst truncate that one line)."""
    line = json.dumps(dict(record), sort_keys=True, default=str)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a ``runs.jsonl`` (an absent file gives ``[]``; a malformed line is skipped with a warning)."""
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d is not valid JSON (an interrupted write?); ignored.", path, number)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def latest_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per cell: the last ``ok`` one, else the last failure; in first-seen order."""
    chosen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = cell_key(record)
        previous = chosen.get(key)
        if previous is None or record.get("status") == "ok" or previous.get("status") != "ok":
            chosen[key] = dict(record)
    return list(chosen.values())


def current_records(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split :func:`latest_records` into the current ones and those superseded by a newer RLPanning policy.

    A method whose runs used several agents (the ``policy`` field) is reported with the agent of its most recently
    finished run only; the other runs stay in ``runs.jsonl`` and ``runs.csv`` but are left out of tables and plots.

    Returns:
        ``(current, superseded)``.
    """
    rows = latest_records(records)
    newest: dict[str, tuple[str, Any]] = {}
    for r in rows:
        if r.get("policy") and r.get("status") == "ok":
            method, stamp = str(r.get("method")), str(r.get("finished_at", ""))
            if method not in newest or stamp >= newest[method][0]:
                newest[method] = (stamp, r.get("policy"))
    current, superseded = [], []
    for r in rows:
        method = str(r.get("method"))
        if method in newest and r.get("policy") != newest[method][1]:
            superseded.append(r)
        else:
            current.append(r)
    return current, superseded


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_csv(records: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write :data:`CSV_FIELDS` of the records (one row per cell, see :func:`latest_records`) atomically."""
    path = Path(path)
    rows = sorted(latest_records(records), key=_record_order)

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})

    _atomic_write(path, write)
    return path


def _method_rank(method: str) -> int:
    names = list(METHOD_LABELS)
    return names.index(method) if method in names else len(names)


def _record_order(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        _method_rank(str(record.get("method"))),
        float(record.get("sparsity") or 0.0),
        int(record.get("seed") or 0),
        str(record.get("finished_at", "")),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation and report
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class Aggregate:
    """Mean and standard deviation of one (method, sparsity) over seeds.

    Attributes:
        method: sweep method.
        sparsity: target sparsity (``0.0`` for dense).
        n: number of finished runs.
        acc_mean: mean test accuracy (%).
        acc_std: sample standard deviation (0 for one run).
        effective_mean: mean effective sparsity (``None`` if unknown).
        pruning_seconds: mean pruning time.
        training_seconds: mean training time.
        seeds: the seeds.
    """

    method: str
    sparsity: float
    n: int
    acc_mean: float
    acc_std: float
    effective_mean: float | None
    pruning_seconds: float
    training_seconds: float
    seeds: list[int]


def _budget(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        record.get("epochs"),
        record.get("train_subset"),
        record.get("batch_size"),
        record.get("rounds"),
        record.get("lr"),
    )


def summarize(records: Iterable[Mapping[str, Any]]) -> list[Aggregate]:
    """Aggregate the ``ok`` records (one per cell) by (method, sparsity), in table order."""
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for record in latest_records(records):
        if record.get("status") != "ok" or record.get("test_acc") is None:
            continue
        groups.setdefault((str(record["method"]), round(float(record["sparsity"]), 10)), []).append(record)
    out: list[Aggregate] = []
    for (method, sparsity), rows in groups.items():
        accs = [float(r["test_acc"]) for r in rows]
        effective = [float(r["effective_sparsity"]) for r in rows if r.get("effective_sparsity") is not None]
        out.append(
            Aggregate(
                method=method,
                sparsity=sparsity,
                n=len(rows),
                acc_mean=statistics.fmean(accs),
                acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
                effective_mean=statistics.fmean(effective) if effective else None,
                pruning_seconds=statistics.fmean(float(r.get("pruning_seconds") or 0.0) for r in rows),
                training_seconds=statistics.fmean(float(r.get("training_seconds") or 0.0) for r in rows),
                seeds=sorted(int(r["seed"]) for r in rows),
            )
        )
    out.sort(key=lambda a: (_method_rank(a.method), a.sparsity))
    return out


def _fmt_acc(agg: Aggregate) -> str:
    return f"{agg.acc_mean:.2f} ± {agg.acc_std:.2f}" if agg.n > 1 else f"{agg.acc_mean:.2f}"


def _budget_text(records: Sequence[Mapping[str, Any]], profile: Profile | None) -> str:
    first = records[0]
    seeds = sorted({int(r["seed"]) for r in records})
    subset = first.get("train_subset")
    data = "the whole training set" if subset in (None, "") else f"a seeded subset of {int(subset):,} training images"
    threads = sorted({str(r.get("num_threads")) for r in records if r.get("num_threads") is not None})
    accel = sorted({str(r.get("device") or r.get("accelerator")) for r in records})
    cpu_minutes = sum(float(r.get("cell_seconds") or 0.0) for r in records) / 60.0
    text = (
        f"{first.get('epochs')} epoch(s) per run on {data}, batch {first.get('batch_size')}, "
        f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}), T = {first.get('rounds')} rounds for iterative methods; "
        f"SGD + cosine annealing from lr {first.get('lr')} (per step), weight decay {first.get('weight_decay')}; "
        f"device {', '.join(accel)}"
        + (f", {', '.join(threads)} torch thread(s)" if threads else "")
        + f"; {cpu_minutes:.1f} min of wall time for these {len(records)} runs."
    )
    if profile is not None and profile.paper_epochs is not None:
        text += f" The paper trains {profile.paper_epochs} epochs on the whole training set and averages 3 seeds."
    return text


def _table(aggs: Sequence[Aggregate], paper: str | None, sparsities: Sequence[float]) -> list[str]:
    header = "| Method | " + " | ".join(format_sparsity(s) for s in sparsities) + " |"
    lines = [header, "|---" * (len(sparsities) + 1) + "|"]
    by_key = {(a.method, a.sparsity): a for a in aggs}
    methods = [m for m in dict.fromkeys(a.method for a in aggs) if m != "dense"]
    for method in methods:
        cells = []
        for s in sparsities:
            agg = by_key.get((method, round(s, 10)))
            ours = "-" if agg is None else _fmt_acc(agg)
            ref = paper_accuracy(paper, method, s)
            cells.append(ours if ref is None else f"{ours} (paper {ref:.2f})")
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    # paper-only rows for methods the paper reports but this sweep did not run
    for method, table in PAPER_RESULTS.get(paper or "", {}).items():
        if method in methods or method not in METHOD_LABELS:
            continue
        cells = [f"(paper {table[s]:.2f})" if s in table else "-" for s in (round(x, 10) for x in sparsities)]
        if any(c != "-" for c in cells):
            lines.append(f"| {METHOD_LABELS[method]} — not run | " + " | ".join(cells) + " |")
    return lines


def _details_table(aggs: Sequence[Aggregate], sparsities: Sequence[float]) -> list[str]:
    header = "| Method | " + " | ".join(format_sparsity(s) for s in sparsities) + " |"
    lines = [header, "|---" * (len(sparsities) + 1) + "|"]
    by_key = {(a.method, a.sparsity): a for a in aggs}
    for method in dict.fromkeys(a.method for a in aggs):
        if method == "dense":
            continue
        cells = []
        for s in sparsities:
            agg = by_key.get((method, round(s, 10)))
            if agg is None:
                cells.append("-")
                continue
            eff = "n/a" if agg.effective_mean is None else f"{100 * agg.effective_mean:.4g}%"
            cells.append(f"{eff} · {agg.pruning_seconds:.1f} s · {agg.training_seconds:.0f} s")
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return lines


def _load_meta(out_dir: Path) -> dict[str, Any]:
    path = out_dir / META_FILE
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _save_meta(out_dir: Path, config: SweepConfig, unavailable: Mapping[str, str] | None = None) -> None:
    meta = _load_meta(out_dir)
    meta["profile"] = config.profile.name
    meta["last_command"] = config.command
    if config.budget_note:
        meta["budget_note"] = config.budget_note
    if unavailable is not None:
        meta["unavailable"] = dict(unavailable)
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _atomic_write(out_dir / META_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_budget_note(out_dir: str | os.PathLike[str], note: str) -> None:
    """Store ``note`` in ``<out_dir>/sweep.json``; :func:`write_report` shows it in the summary from then on."""
    out = Path(out_dir)
    meta = _load_meta(out)
    meta["budget_note"] = note
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _atomic_write(out / META_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_summary(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    profile: Profile | None = None,
    budget_note: str | None = None,
    plot_name: str | None = PLOT_FILE,
    unavailable: Mapping[str, str] | None = None,
) -> Path:
    """Write the Markdown summary: budget, commands, versions, accuracy tables beside the paper's, failures.

    Runs are grouped by budget (epochs, training subset, batch size, rounds), one section per budget.

    Args:
        records: all records of the sweep (``runs.jsonl``).
        path: the Markdown file to write (atomically).
        profile: the sweep's profile (its paper setting and Table 1 epochs); inferred from the records if ``None``.
        budget_note: extra text about the compute budget.
        plot_name: file name of the plot to embed, or ``None``.
        unavailable: methods skipped because they cannot be imported, with the reason.

    Returns:
        The path written.
    """
    path = Path(path)
    rows, superseded = current_records(records)
    ok = [r for r in rows if r.get("status") == "ok" and r.get("test_acc") is not None]
    failed = [r for r in rows if r.get("status") != "ok"]
    if profile is None and rows:
        profile = PROFILES.get(str(rows[0].get("profile")))
    paper = profile.paper if profile is not None else None
    title = profile.name if profile is not None else (str(rows[0].get("profile")) if rows else "sweep")
    lines = [f"# Sweep results: `{title}`", ""]
    lines.append("_Generated by `benchmarks/sweep.py` from `runs.jsonl`; do not edit by hand._")
    lines.append("")
    if profile is not None:
        lines += [profile.description, ""]
    if paper is not None:
        lines += [
            f"Paper numbers: Kang et al. 2022, {PAPER_SOURCES.get(paper, '')}; dense baseline "
            f"{PAPER_DENSE.get(paper, float('nan')):.2f}%. They are shown as `(paper X)` beside ours.",
            "",
        ]
    if budget_note:
        lines += ["**Budget note.** " + budget_note.strip(), ""]
    analysis = path.parent / ANALYSIS_FILE
    if analysis.exists():
        lines += [f"What agrees with the paper and what does not: see [{ANALYSIS_FILE}]({ANALYSIS_FILE}).", ""]

    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for record in ok:
        groups.setdefault(_budget(record), []).append(record)
    ordered = sorted(groups.values(), key=len, reverse=True)
    if not ordered:
        lines += ["No finished runs yet.", ""]
    for index, group in enumerate(ordered):
        aggs = summarize(group)
        sparsities = sorted({a.sparsity for a in aggs if a.method != "dense"})
        epochs, subset, batch, rounds, lr = _budget(group[0])
        subset_text = "all" if subset in (None, "") else f"{int(subset):,}"
        heading = (
            f"## Test accuracy (%) — {epochs} epoch(s), training images: {subset_text}, batch {batch}, lr {lr}, "
            f"T = {rounds}"
        )
        lines += [heading, ""]
        lines += ["**Budget.** " + _budget_text(group, profile), ""]
        dense = [a for a in aggs if a.method == "dense"]
        ref = PAPER_DENSE.get(paper or "")
        if dense:
            d = dense[0]
            lines.append(
                f"Dense baseline (no pruning): **{_fmt_acc(d)}** (n = {d.n})"
                + ("" if ref is None else f"; paper {ref:.2f}")
                + "."
            )
            lines.append("")
        if sparsities:
            lines.append("Mean ± std over seeds (std only when n > 1); n per cell: " + _n_text(aggs) + ".")
            lines.append("")
            lines += _table(aggs, paper, sparsities)
            lines.append("")
            lines.append("Effective sparsity · pruning time · training time (means):")
            lines.append("")
            lines += _details_table(aggs, sparsities)
            lines.append("")
        if index == 0 and plot_name is not None and sparsities:
            lines += [f"![Accuracy against remaining weights]({plot_name})", ""]
        commands = list(dict.fromkeys(str(r.get("command")) for r in group if r.get("command")))
        if commands:
            lines += ["Reproduce (resumable; finished cells are skipped):", "", "```bash", *commands, "```", ""]
        policies = sorted({str(r["policy"]) for r in group if r.get("policy")})
        if policies:
            lines += ["RLPanning agent (shipped policy, sha256 prefix): " + ", ".join(f"`{p}`" for p in policies), ""]
        vers = {
            f"{k} {r.get(k)}" for r in group for k in ("python", "torch", "lightning", "lightning_panning") if r.get(k)
        }
        if vers:
            lines += ["Versions: " + ", ".join(sorted(vers)) + ".", ""]
    if superseded:
        old = sorted({f"`{r.get('method')}` with `{r.get('policy')}`" for r in superseded})
        lines += [
            f"{len(superseded)} run(s) made with an earlier agent are kept in `runs.jsonl`/`runs.csv` but left out "
            f"of the tables and the plot: {', '.join(old)}.",
            "",
        ]
    if unavailable:
        lines += ["## Methods not run", ""]
        lines += [f"- `{m}`: {reason}" for m, reason in unavailable.items()]
        lines.append("")
    if failed:
        lines += ["## Failed runs", "", "| Method | Sparsity | Seed | Error |", "|---|---|---|---|"]
        for r in sorted(failed, key=_record_order):
            error = str(r.get("error", "")).strip().splitlines()
            lines.append(
                f"| {r.get('method')} | {format_sparsity(float(r.get('sparsity') or 0))} | {r.get('seed')} | "
                f"{(error[-1] if error else '').replace('|', '/')[:200]} |"
            )
        lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def _n_text(aggs: Sequence[Aggregate]) -> str:
    counts = sorted({a.n for a in aggs})
    return ", ".join(map(str, counts))


def plot_accuracy(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    paper: str | None = None,
    title: str | None = None,
) -> Path | None:
    """Plot test accuracy against the fraction of weights remaining (log axis), like the paper's Figure 3.

    One line per method with the std over seeds shaded, the dense baseline as a grey horizontal line, and the
    paper's numbers (where it has them) as hollow markers on dotted lines of the same colour. Only the budget with
    the most runs is plotted.

    Args:
        records: the sweep's records.
        path: the PNG to write (atomically).
        paper: key of :data:`PAPER_RESULTS` to overlay, if any.
        title: figure title.

    Returns:
        The path written, or ``None`` when there is nothing to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = [r for r in current_records(records)[0] if r.get("status") == "ok" and r.get("test_acc") is not None]
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for record in ok:
        groups.setdefault(_budget(record), []).append(record)
    if not groups:
        return None
    group = max(groups.values(), key=len)
    aggs = summarize(group)
    pruned = [a for a in aggs if a.method != "dense"]
    fig = Figure(figsize=(9.0, 4.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    remaining = sorted({1.0 - a.sparsity for a in pruned}) or [1e-1, 1e-4]
    ax.set_xlim(remaining[-1] * 2.0, remaining[0] / 2.0)  # inverted: sparser to the right, as in Figure 3
    for method in dict.fromkeys(a.method for a in pruned):
        rows = [a for a in pruned if a.method == method]
        x = [1.0 - a.sparsity for a in rows]
        y = [a.acc_mean for a in rows]
        err = [a.acc_std for a in rows]
        color = METHOD_COLORS.get(method, "k")
        ax.plot(x, y, marker="o", ms=4, color=color, label=METHOD_LABELS.get(method, method))
        if any(e > 0 for e in err):
            ax.fill_between(
                x,
                [m - e for m, e in zip(y, err, strict=True)],
                [m + e for m, e in zip(y, err, strict=True)],
                color=color,
                alpha=0.2,
            )
        ref = PAPER_RESULTS.get(paper or "", {}).get(method, {})
        if ref:  # the paper's numbers within the swept range
            lo, hi = min(a.sparsity for a in pruned), max(a.sparsity for a in pruned)
            pts = sorted((s, v) for s, v in ref.items() if lo - 1e-9 <= s <= hi + 1e-9)
            ax.plot(
                [1.0 - s for s, _ in pts],
                [v for _, v in pts],
                linestyle=":",
                marker="o",
                mfc="none",
                ms=5,
                color=color,
                label=f"{METHOD_LABELS.get(method, method)} (paper)",
            )
    dense = [a for a in aggs if a.method == "dense"]
    if dense:
        ax.axhline(dense[0].acc_mean, color="0.5", lw=1.5, label=f"Dense ({dense[0].acc_mean:.2f})")
    ref_dense = PAPER_DENSE.get(paper or "")
    if ref_dense is not None:
        ax.axhline(ref_dense, color="0.5", lw=1.0, ls=":", label=f"Dense, paper ({ref_dense:.2f})")
    ax.set_xlabel("fraction of weights remaining (log scale)")
    ax.set_ylabel("test accuracy (%)")
    epochs, subset, _, rounds, lr = _budget(group[0])
    subset_text = "all images" if subset in (None, "") else f"{int(subset):,} images"
    name = title or str(group[0].get("profile"))
    ax.set_title(f"{name} — {epochs} epoch(s), {subset_text}, lr {lr}, T = {rounds}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    out = Path(path)

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    _atomic_write(out, write)
    return out


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    profile: Profile | None = None,
    budget_note: str | None = None,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Rebuild ``runs.csv``, ``summary.md`` and the plot from ``<out_dir>/runs.jsonl``.

    Args:
        out_dir: the results folder.
        profile: the sweep's profile (inferred from the records when ``None``).
        budget_note: budget text; defaults to the one saved in ``sweep.json`` by an earlier run.
        unavailable: methods skipped as not importable, with the reason.

    Returns:
        ``{"csv": ..., "summary": ..., "plot": ...}`` (``plot`` absent when nothing finished yet).
    """
    out = Path(out_dir)
    records = load_records(out / RECORDS_FILE)
    if profile is None and records:
        profile = PROFILES.get(str(records[0].get("profile")))
    meta = _load_meta(out)
    note = budget_note or meta.get("budget_note")
    if unavailable is None:
        unavailable = meta.get("unavailable") or None
    files: dict[str, Path] = {"csv": write_csv(records, out / CSV_FILE)}
    plot = plot_accuracy(
        records,
        out / PLOT_FILE,
        paper=profile.paper if profile is not None else None,
        title=profile.name if profile is not None else None,
    )
    files["summary"] = write_summary(
        records,
        out / SUMMARY_FILE,
        profile=profile,
        budget_note=note,
        plot_name=PLOT_FILE if plot is not None else None,
        unavailable=unavailable,
    )
    if plot is not None:
        files["plot"] = plot
    return files


# ---------------------------------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------------------------------

#: ``run(cell, config) -> measurements``; :func:`run_cell` by default, replaceable in tests.
CellRunner = Callable[[Cell, SweepConfig], Mapping[str, Any]]


class SweepProgress(Protocol):
    """Progress display across cells (the benchmark script uses rich; :class:`TqdmProgress` is the default)."""

    def start(self, total: int, skipped: int) -> None:
        """Called once: ``total`` cells to run now, ``skipped`` already finished."""

    def cell_started(self, cell: Cell) -> None:
        """Called before a cell runs."""

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        """Called after a cell, with its record."""

    def close(self) -> None:
        """Called once at the end."""


class TqdmProgress:
    """A tqdm bar over cells with ETA, showing the current cell and the last accuracy."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int, skipped: int) -> None:
        """Open the bar."""
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=f"cells ({skipped} done before)", unit="cell")

    def cell_started(self, cell: Cell) -> None:
        """Show the running cell."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{cell.method} {format_sparsity(cell.sparsity)} seed {cell.seed}")

    def cell_finished(self, cell: Cell, record: Mapping[str, Any]) -> None:
        """Advance the bar."""
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes:
        ran: cells run now (finished or failed).
        failed: cells that raised.
        skipped: cells skipped because ``runs.jsonl`` already holds a finished run of them.
        unavailable: methods not run because they cannot be imported, with the reason.
        files: report files written.
    """

    ran: list[Cell] = field(default_factory=list)
    failed: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def _base_record(cell: Cell, config: SweepConfig) -> dict[str, Any]:
    profile = config.profile
    return {
        "profile": profile.name,
        "method": cell.method,
        "sparsity": round(cell.sparsity, 10),
        "seed": cell.seed,
        "epochs": profile.epochs,
        "rounds": profile.rounds,
        "train_subset": profile.train_subset,
        "batch_size": profile.batch_size,
        "model": profile.model,
        "dataset": profile.dataset,
        "weight_decay": profile.weight_decay,
        "lr": profile.lr,
        "per_class": profile.per_class,
        "policy": policy_id(cell.method),
        "accelerator": config.accelerator,
        "num_threads": config.num_threads,
        "command": config.command,
        **versions(),
    }


def run_sweep(
    config: SweepConfig,
    *,
    runner: CellRunner | None = None,
    progress: SweepProgress | None = None,
) -> SweepOutcome:
    """Run every cell of ``config.profile`` not yet finished in ``config.out_dir``; write records and report.

    Args:
        config: the sweep.
        runner: runs one cell (default :func:`run_cell`); it returns the measurements merged into the record.
        progress: progress display; ``None`` uses :class:`TqdmProgress`.

    Returns:
        What ran, failed, was skipped or unavailable, and the report files.
    """
    runner = run_cell if runner is None else runner
    progress = TqdmProgress() if progress is None else progress
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / RECORDS_FILE
    done = {cell_key(r) for r in load_records(records_path) if r.get("status") == "ok"}
    outcome = SweepOutcome()
    for method in config.profile.methods:
        reason = method_unavailable_reason(method)
        if reason is not None:
            outcome.unavailable[method] = reason
            log.warning("Skipping method %r: %s. Re-run the sweep once it is available.", method, reason)
    _save_meta(out, config, outcome.unavailable)
    todo: list[Cell] = []
    for cell in config.profile.cells():
        if cell.method in outcome.unavailable:
            continue
        if cell_key(_base_record(cell, config)) in done:
            outcome.skipped.append(cell)
        else:
            todo.append(cell)
    progress.start(len(todo), len(outcome.skipped))
    try:
        for cell in todo:
            progress.cell_started(cell)
            record = _base_record(cell, config)
            start = time.perf_counter()
            try:
                measured = dict(runner(cell, config))
                record.update(measured)
                record["status"] = "ok"
                sparsity = float(record.get("nominal_sparsity") or 0.0)
                record["remaining"] = 1.0 - sparsity
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as err:  # a failing cell is recorded and the sweep goes on
                record["status"] = "error"
                record["error"] = f"{type(err).__name__}: {err}"
                record["traceback"] = traceback.format_exc(limit=20)
                outcome.failed.append(cell)
                log.error("Cell %s failed: %s", cell, record["error"])
            record["cell_seconds"] = time.perf_counter() - start
            record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            append_record(records_path, record)
            outcome.ran.append(cell)
            progress.cell_finished(cell, record)
            if config.report_every_cell:
                outcome.files = write_report(
                    out, profile=config.profile, budget_note=config.budget_note, unavailable=outcome.unavailable
                )
    finally:
        progress.close()
    outcome.files = write_report(
        out, profile=config.profile, budget_note=config.budget_note, unavailable=outcome.unavailable
    )
    return outcome
