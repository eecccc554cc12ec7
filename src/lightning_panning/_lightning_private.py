"""The only places where this package reads Lightning internals, each guarded, each with why no public API serves.

Checked against Lightning 2.2–2.6. If an internal moves, the functions return ``None`` and their callers fall back to
the public route described in each docstring, so a Lightning upgrade degrades a convenience, never correctness.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

__all__ = ["cli_given_hparams", "fit_train_source"]


def fit_train_source(trainer: pl.Trainer) -> Any | None:
    """The training data ``Trainer.fit`` received (its ``train_dataloaders``, else the module's hook), or ``None``.

    Why private: Lightning keeps the ``train_dataloaders`` given to ``fit`` only in ``trainer.fit_loop._data_source``
    until ``FitLoop.setup_data`` runs, which is after ``on_fit_start`` (where pruning must happen, before the
    optimizers' first step and with the strategy set up). There is no public accessor before that.

    Fallback: ``None``; the pruning callback then waits for ``on_train_start``, where the public
    ``trainer.train_dataloader`` holds the same data.
    """
    source = getattr(getattr(trainer, "fit_loop", None), "_data_source", None)
    is_defined = getattr(source, "is_defined", None)
    dataloader = getattr(source, "dataloader", None)
    if not (callable(is_defined) and callable(dataloader)) or not is_defined():
        return None
    return dataloader()


def cli_given_hparams() -> dict[str, Any] | None:
    """The plain config LightningCLI hands to ``save_hyperparameters`` while it instantiates a module, else ``None``.

    Why private: only ``lightning.pytorch.core.mixins.hparams_mixin._given_hyperparameters`` tells a module that it
    is being built from a config (whose sub-modules are then plain ``class_path`` dicts that can be saved and
    rebuilt), as opposed to from Python (where they are live objects that must not be saved as hyperparameters).

    Fallback: ``None`` (treated as "built from Python": live objects are left out of the hyperparameters, so
    ``load_from_checkpoint`` needs them passed again).
    """
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # pragma: no cover - moved in a future Lightning
        return None
    given = _given_hyperparameters.get()
    return given if isinstance(given, dict) else None
