"""Finding the training data of a ``Trainer.fit`` call for the scoring batch, before the fit loop attaches it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_panning._lightning_private import fit_train_source
from lightning_panning.core.batch import batch_inputs

__all__ = ["example_input", "find_train_data"]


def _first_loader(source: Any) -> Any:
    """One DataLoader/Dataset out of what a ``train_dataloader()`` may return (a loader or a collection of them)."""
    if isinstance(source, Mapping) and source:
        return _first_loader(next(iter(source.values())))
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], (DataLoader, Dataset, Mapping, list)):
        return _first_loader(source[0])
    iterables = getattr(source, "iterables", None)  # CombinedLoader
    if iterables is not None and iterables is not source:
        return _first_loader(iterables)
    return source


def find_train_data(trainer: pl.Trainer) -> Any | None:
    """The training data of this ``fit``, in Lightning's own order of precedence, or ``None``.

    The datamodule's ``train_dataloader()``, else the ``train_dataloaders`` given to ``fit``, else the module's
    ``train_dataloader()`` hook. Once the fit loop has attached the data (from ``on_train_start``) that is the public
    ``trainer.train_dataloader``; before, the ``fit`` arguments are read from the one guarded internal
    (:func:`~lightning_panning._lightning_private.fit_train_source`). A collection of loaders gives its first loader.
    """
    datamodule = getattr(trainer, "datamodule", None)  # public, but set per fit (untyped)
    if datamodule is not None and is_overridden("train_dataloader", datamodule):
        return _first_loader(datamodule.train_dataloader())
    if trainer.train_dataloader is not None:
        return _first_loader(trainer.train_dataloader)
    source = fit_train_source(trainer)
    return None if source is None else _first_loader(source)


def example_input(batch: Any, pl_module: pl.LightningModule) -> Tensor | None:
    """The input tensor ``(B, ...)`` of the scoring batch, else the module's ``example_input_array``, else ``None``."""
    if batch is not None:
        try:
            x = batch_inputs(batch)
        except TypeError:
            x = None
        if isinstance(x, Tensor):
            return x
    example = getattr(pl_module, "example_input_array", None)
    return example if isinstance(example, Tensor) else None
