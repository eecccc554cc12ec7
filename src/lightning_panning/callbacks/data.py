"""Finding the training data of a ``Trainer.fit`` call for the scoring batch, before the fit loop attaches it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lightning_panning._lightning_private import fit_train_source
from lightning_panning.core.inputs import ModelInput, model_input

__all__ = ["example_input", "find_train_data", "unsharded"]


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


def unsharded(data: Any) -> Any:
    """``data`` as every rank reads it whole: the scoring set must be the same on every rank.

    A DataLoader whose sampler is a ``DistributedSampler`` (the one Lightning puts in once the fit loop has attached
    the data) gives each rank its own part; it is read instead through a plain DataLoader over the same dataset, with
    the same batch size, collate function and shuffling. Anything else is returned as it is.
    """
    if not isinstance(data, DataLoader) or not isinstance(data.sampler, DistributedSampler):
        return data
    return DataLoader(
        data.dataset, batch_size=data.batch_size or 1, shuffle=bool(getattr(data.sampler, "shuffle", False)),
        collate_fn=data.collate_fn,
    )


def example_input(batch: Any, pl_module: pl.LightningModule) -> ModelInput | None:
    """The call of ``forward`` that the data-free scorers copy: from the scoring batch, else ``example_input_array``.

    The batch is matched to ``forward``'s signature (:func:`~lightning_panning.core.inputs.model_input`: a dict's
    keyword arguments, a tuple's positional inputs); ``example_input_array`` follows Lightning's convention (a tuple
    is positional arguments, a dict keyword arguments). ``None`` when neither gives one.
    """
    if batch is not None:
        try:
            return model_input(pl_module, batch)
        except (TypeError, ValueError):
            pass
    example = getattr(pl_module, "example_input_array", None)
    if isinstance(example, Tensor):
        return ModelInput((example,))
    if isinstance(example, tuple):
        return ModelInput(example)
    if isinstance(example, Mapping):
        return ModelInput(kwargs=dict(example))
    return None
