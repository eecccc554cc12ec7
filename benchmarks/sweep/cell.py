"""Running one cell: ``seed_everything`` → model → ``ImageClassifier`` → DataModule → ``Trainer.fit`` → ``test``.

:func:`run_cell` is the whole measurement of a cell with the ordinary Lightning Trainer and the project's callbacks.
:func:`execute_cell` wraps any runner so that it never raises: it returns the measurements, or the error and its
traceback, with the timing and the worker's versions. It is what every backend runs, in this process, in a
subprocess or on a Ray worker.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.sweep.methods import build_callback, method_unavailable_reason
from benchmarks.sweep.profiles import Cell, Profile, format_sparsity
from benchmarks.sweep.provenance import scrub_traceback

__all__ = [
    "CellRunner",
    "SweepConfig",
    "execute_cell",
    "init_fingerprint",
    "policy_id",
    "quiet_lightning",
    "run_cell",
    "versions",
]


@dataclass
class SweepConfig:
    """A sweep: the profile (with overrides applied) and how to run it.

    Attributes:
        profile: the grid and recipe.
        out_dir: results folder (``runs.jsonl``, ``runs.csv``, ``summary.md``, the plot).
        data_dir: dataset root (unused by ``digits``).
        accelerator: Lightning accelerator (``"cpu"``, ``"gpu"``, ``"auto"``, ...).
        num_workers: DataLoader workers (not used with in-memory data).
        num_threads: ``torch.set_num_threads`` in every process that runs cells, if given.
        command: the command line that reproduces the sweep (recorded in every run).
        budget_note: free text about the compute budget, saved in ``sweep.json`` and shown in the summary.
        csv_logs: keep a Lightning ``CSVLogger`` per cell under ``<out_dir>/logs``.
        policy: path of the TD3 zip that ``rlpanning`` cells use (``None``: the policy shipped in lightning_panning);
            every process that runs cells must be able to read it.
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
    policy: str | None = None


#: ``run(cell, config) -> measurements``; :func:`run_cell` by default, replaceable in tests.
CellRunner = Callable[[Cell, SweepConfig], Mapping[str, Any]]


def quiet_lightning() -> None:
    """Lower Lightning's INFO logs and its warnings about worker counts (the sweep chooses them on purpose)."""
    import lightning.pytorch  # noqa: F401 - it sets its loggers to INFO on import; lower them afterwards

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*number of training batches.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=pattern)


def versions() -> dict[str, str]:
    """Versions of Python, torch, lightning and lightning_panning in this process (no host names, no paths)."""
    import lightning
    import torch

    from lightning_panning import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "lightning_panning": __version__,
    }


def policy_id(method: str, policy: str | None = None) -> str | None:
    """Identity of the agent an ``rlpanning`` cell uses; ``None`` for other methods.

    ``"default:<sha256 prefix>"`` for the policy shipped in lightning_panning (``policy=None``), else
    ``"<file name without .zip>:<sha256 prefix>"`` of the given file, or ``"<folder>/default:..."`` for another file
    named ``default.zip`` (``train-agent`` exports to ``<out>/export/default.zip``). The digest is
    :func:`~lightning_panning.rl.agent.policy_fingerprint`'s: the network weights, not the zip's metadata. It is part
    of the cell key, so RLPanning cells run again when the policy changes, and never twice with the same one.
    """
    if method != "rlpanning" or method_unavailable_reason(method) is not None:
        return None
    name = "default" if policy is None else Path(policy).stem
    try:
        from lightning_panning.rl.agent import default_policy_path, policy_fingerprint

        shipped = Path(default_policy_path())
        path = shipped if policy is None else Path(policy)
        if name == "default" and path.resolve() != shipped.resolve():
            name = f"{path.resolve().parent.name}/default"
        digest = policy_fingerprint(path)
    except (ImportError, OSError) as err:
        return f"{name}:unknown ({type(err).__name__})"
    return f"{name}:{digest[:12]}"


def build_model(profile: Profile) -> Any:
    """The profile's network with the profile's initialisation (``init``)."""
    from lightning_panning import models

    num_classes, init = profile.num_classes(), profile.init
    if profile.model == "lenet5":
        return models.LeNet5(num_classes=num_classes, in_channels=1, input_size=28, init=init)
    if profile.model == "lenet300":
        return models.LeNet300100(num_classes=num_classes, input_size=28 * 28, init=init)
    input_size = 64 if profile.dataset == "tinyimagenet" else 32
    if profile.model == "vgg19":
        return models.VGG19(num_classes=num_classes, input_size=input_size, init=init)
    if profile.model == "resnet18":
        return models.ResNet18(num_classes=num_classes, init=init)
    raise ValueError(f"Unknown model {profile.model!r}; allowed: 'lenet5', 'lenet300', 'vgg19', 'resnet18'.")


def init_fingerprint(profile: Profile) -> str:
    """``"<model>-<init>:<sha256 prefix>"`` of the network's initial weights under seed 0.

    Pruning at initialisation scores the initial weights, so runs made before and after a change of the models'
    initialisation are different runs: this fingerprint is part of the budget a records file is bound to.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(profile)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return f"{profile.model}-{profile.init}:{digest.hexdigest()[:12]}"


def build_datamodule(profile: Profile, config: SweepConfig, seed: int) -> Any:
    """The profile's DataModule (``val_split=0``: the whole training set, or its seeded subset), in memory or not."""
    from lightning_panning import data

    extra = dict(profile.datamodule_kwargs)
    common: dict[str, Any] = {
        "batch_size": profile.batch_size,
        "num_workers": 0 if profile.in_memory else config.num_workers,
        "val_split": 0,
        "train_subset": profile.train_subset,
        "seed": seed,
    }
    classes = {
        "mnist": data.MNISTDataModule,
        "fashionmnist": data.FashionMNISTDataModule,
        "cifar10": data.CIFAR10DataModule,
        "cifar100": data.CIFAR100DataModule,
        "tinyimagenet": data.TinyImageNetDataModule,
    }
    if profile.dataset == "digits":
        datamodule: Any = data.DigitsDataModule(image_size=28, **common, **extra)
    elif profile.dataset in classes:
        data_dir = None if config.data_dir is None else str(config.data_dir)
        datamodule = classes[profile.dataset](data_dir=data_dir, download=False, **common, **extra)
    else:
        raise ValueError(f"Unknown dataset {profile.dataset!r}; allowed: 'digits', {sorted(classes)}.")
    if profile.in_memory:
        from benchmarks.sweep.data import InMemoryDataModule

        return InMemoryDataModule(datamodule)
    return datamodule


def _train_batches(datamodule: Any) -> int:
    if hasattr(datamodule, "num_train_batches"):
        datamodule.prepare_data()
        return int(datamodule.num_train_batches())
    datamodule.prepare_data()
    datamodule.setup("fit")
    return len(datamodule.train_dataloader())


def input_shape(profile: Profile) -> tuple[int, int, int]:
    """``(C, H, W)`` of one input image of the profile's dataset (as :func:`build_model` expects it)."""
    if profile.model in ("lenet5", "lenet300"):
        return (1, 28, 28)
    size = 64 if profile.dataset == "tinyimagenet" else 32
    return (3, size, size)


def _compacted_parameters(compactor: Any) -> int | None:
    result = None if compactor is None else compactor.training_result
    if result is None or result.after is None:
        return None
    return int(result.after.parameters)


def _metric(results: Sequence[Mapping[str, Any]], name: str) -> float | None:
    for entry in results:
        if name in entry:
            return float(entry[name])
    return None


def run_cell(cell: Cell, config: SweepConfig, *, extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train and test one cell with the ordinary Lightning Trainer; return its measurements.

    With ``profile.cosine_per_step`` the Trainer runs ``epochs × batches per epoch`` steps (``max_steps``), so that
    the classifier anneals its cosine schedule per step.

    Args:
        cell: method, sparsity and seed.
        config: the sweep.
        extra_callbacks: more Lightning callbacks, after the sweep's own (e.g. one that records the loss per step).

    Returns:
        ``test_acc`` (%), ``test_loss``, ``nominal_sparsity``, ``effective_sparsity``, ``kept_weights``,
        ``total_weights``, ``layer_density``, ``pruning_seconds``, ``training_seconds`` (fit time without pruning),
        ``test_seconds``, ``device``, ``optimizer_steps``, and what :class:`~benchmarks.sweep.liveness.Liveness`
        measured after pruning and after training (``logit_spread_start``, ``dead_units_start``,
        ``logit_spread_end``, ``dead_units_end``, ``dead_units_by_layer_end``); ``compact`` (whether the compacted
        network was trained, ``profile.compact`` for pruned cells) and ``compacted_parameters`` (its parameter
        count). With ``compact``, the end-of-training Liveness counts the units of the compacted network: the removed
        channels (dead towards the output) are not among them.

    Raises:
        MethodUnavailableError: when the cell's method cannot run in this installation.
    """
    import torch
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from benchmarks.sweep.lean import SweepClassifier
    from benchmarks.sweep.liveness import Liveness
    from lightning_panning.callbacks.compact import CompactionCallback
    from lightning_panning.core.params import prunable_parameters

    profile = config.profile
    seed_everything(cell.seed, workers=True, verbose=False)
    backbone = build_model(profile)
    module = SweepClassifier(
        backbone,
        num_classes=profile.num_classes(),
        lr=profile.lr,
        momentum=profile.momentum,
        weight_decay=profile.weight_decay,
    )
    datamodule = build_datamodule(profile, config, cell.seed)
    callback = build_callback(
        cell.method,
        cell.sparsity,
        rounds=profile.rounds,
        seed=cell.seed,
        per_class=profile.per_class,
        num_classes=profile.num_classes(),
        policy=config.policy,
    )
    logger: Any = False
    if config.csv_logs:
        version = f"{cell.method}-{format_sparsity(cell.sparsity).rstrip('%')}-seed{cell.seed}"
        logger = CSVLogger(str(Path(config.out_dir) / "logs"), name="", version=version)
    length: dict[str, Any] = {"max_epochs": profile.epochs}
    if profile.cosine_per_step:
        length = {"max_epochs": -1, "max_steps": profile.epochs * _train_batches(datamodule)}
    liveness = Liveness()
    callbacks: list[Any] = [] if callback is None else [callback, liveness]
    compactor = None
    if callback is None:
        callbacks = [liveness]
    elif profile.compact and hasattr(callback, "masks"):  # a pruning callback that exposes its masks
        # after Liveness, so that its start measurement reads the masked network (as in runs without compaction)
        compactor = CompactionCallback(
            export=False,
            train_compacted=True,
            example_input=torch.zeros(1, *input_shape(profile)),
            verbose=False,
        )
        callbacks.append(compactor)
    trainer = Trainer(
        **length,
        accelerator=config.accelerator,
        devices=1,
        callbacks=[*callbacks, *extra_callbacks],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if profile.validate else 0,
    )
    # before training: a mask that removes every weight (e.g. the authors' NaN scores) leaves no nonzero weight after
    total = sum(p.numel() for p in prunable_parameters(backbone).values())
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    results = trainer.test(module, datamodule=datamodule, verbose=False)
    test_seconds = time.perf_counter() - start

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
        "compact": compactor is not None,
        "compacted_parameters": _compacted_parameters(compactor),
        **liveness.results,
    }


def execute_cell(runner: CellRunner, cell: Cell, config: SweepConfig) -> dict[str, Any]:
    """Run ``runner(cell, config)`` and return the result part of its record; never raises for a failing cell.

    Returns:
        The runner's measurements with ``status="ok"`` and ``remaining``, or ``status="error"`` with ``error`` and
        ``traceback``; always ``cell_seconds``, ``finished_at``, ``num_threads`` and :func:`versions`.
    """
    import torch

    quiet_lightning()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    start = time.perf_counter()
    result: dict[str, Any]
    try:
        result = dict(runner(cell, config))
        result["status"] = "ok"
        result["remaining"] = 1.0 - float(result.get("nominal_sparsity") or 0.0)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # a failing cell is recorded and the sweep goes on
        result = {
            "status": "error",
            "error": f"{type(err).__name__}: {err}",
            "traceback": scrub_traceback(traceback.format_exc(limit=20)),
        }
    result["cell_seconds"] = time.perf_counter() - start
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["num_threads"] = torch.get_num_threads()
    result.update(versions())
    return result
