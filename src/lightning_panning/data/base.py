"""Shared machinery of the example DataModules: seeded splits, loaders and clear missing-data errors."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = [
    "DATA_DIR_ENV_VAR",
    "DatasetNotFoundError",
    "LabeledSubset",
    "SplitDataModule",
    "TorchvisionDataModule",
    "resolve_data_dir",
]

log = logging.getLogger(__name__)

#: Environment variable read when ``data_dir`` is not given.
DATA_DIR_ENV_VAR = "LIGHTNING_PANNING_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing and could not be downloaded."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """Return the dataset root: ``data_dir``, else ``$LIGHTNING_PANNING_DATA``, else ``./data``.

    Args:
        data_dir: an explicit root directory, or ``None``.

    Returns:
        The root directory as an absolute path (it need not exist).

    Example:
        >>> resolve_data_dir("/srv/datasets").as_posix()
        '/srv/datasets'
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV_VAR) or "data"
    return Path(data_dir).expanduser().resolve()


class LabeledSubset(Subset):
    """A :class:`~torch.utils.data.Subset` that keeps the ``targets`` and ``classes`` of its parent dataset.

    Class-balanced samplers read ``dataset.targets``; a plain ``Subset`` would hide them.

    Args:
        dataset: the parent dataset; its ``targets`` (sequence or tensor of class indices) are used if present.
        indices: indices into ``dataset``.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> parent = TensorDataset(torch.zeros(4, 1), torch.tensor([0, 1, 0, 1]))
        >>> parent.targets = torch.tensor([0, 1, 0, 1])
        >>> LabeledSubset(parent, [1, 3]).targets
        tensor([1, 1])
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        super().__init__(dataset, list(indices))

    @property
    def targets(self) -> torch.Tensor:
        """Class indices of the subset's samples, shape ``(len(self),)``."""
        parent_targets = getattr(self.dataset, "targets", None)
        if parent_targets is None:
            raise AttributeError(f"{type(self.dataset).__name__} has no `targets` attribute.")
        return torch.as_tensor(parent_targets)[torch.as_tensor(self.indices, dtype=torch.long)]

    @property
    def classes(self) -> list[str]:
        """Class names of the parent dataset."""
        classes = getattr(self.dataset, "classes", None)
        if classes is None:
            raise AttributeError(f"{type(self.dataset).__name__} has no `classes` attribute.")
        return list(classes)


def _split_size(value: int | float, total: int, name: str) -> int:
    """Turn a count or a fraction of ``total`` into a count, validating it."""
    if isinstance(value, bool) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative count or a fraction in [0, 1), got {value!r}.")
    if isinstance(value, float) and not value.is_integer():
        if value >= 1:
            raise ValueError(f"`{name}` must be a non-negative count or a fraction in [0, 1), got {value!r}.")
        return round(value * total)
    count = int(value)
    if count >= total:
        raise ValueError(f"`{name}` must be smaller than the {total} available samples, got {value!r}.")
    return count


class SplitDataModule(LightningDataModule, ABC):
    """Base DataModule: seeded train/val split, optional training subset and the four dataloaders.

    Subclasses set :attr:`num_classes` and :attr:`dims` and implement :meth:`_build` which returns the datasets.
    The validation set is carved out of the training set (with evaluation transforms) when ``val_split > 0``; with
    ``val_split=0`` the test set doubles as the validation set, which is the protocol of the Panning paper
    (train on the whole training set, report test accuracy).

    Args:
        batch_size: samples per batch of every loader.
        num_workers: worker processes per loader (``persistent_workers`` is turned on when this is positive).
        val_split: training samples held out for validation: a count, or a fraction in ``(0, 1)``; ``0`` uses the
            test set for validation.
        train_subset: use only this many training samples (a seeded random subset of what is left after the
            validation split); ``None`` uses all of them. Handy for short CPU runs.
        seed: seed of the split and of the subset; the same seed gives the same samples.
        pin_memory: pin host memory in the loaders (useful when training on a GPU).
    """

    #: Number of classes.
    num_classes: int
    #: Shape ``(C, H, W)`` of one sample as yielded by the loaders.
    dims: tuple[int, int, int]

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: int | float = 0,
        train_subset: int | None = None,
        seed: int = 42,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        if num_workers < 0:
            raise ValueError(f"`num_workers` must be a non-negative integer, got {num_workers!r}.")
        if isinstance(val_split, bool) or val_split < 0:
            raise ValueError(f"`val_split` must be a non-negative count or a fraction in [0, 1), got {val_split!r}.")
        if train_subset is not None and train_subset < 1:
            raise ValueError(f"`train_subset` must be a positive integer or None, got {train_subset!r}.")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_split = val_split
        self.train_subset = train_subset
        self.seed = seed
        self.pin_memory = pin_memory
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None

    @abstractmethod
    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        """Return ``(train, train_with_eval_transforms, test)``; the first two index the same samples."""

    def _split_indices(self, total: int) -> tuple[list[int], list[int]]:
        """Seeded ``(train_indices, val_indices)`` over ``total`` training samples."""
        n_val = _split_size(self.val_split, total, "val_split")
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed)).tolist()
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        if self.train_subset is not None:
            train_idx = train_idx[: self.train_subset]
        return train_idx, val_idx

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (``stage`` is ignored: all splits are cheap to index).

        Args:
            stage: ``"fit"``, ``"validate"``, ``"test"``, ``"predict"`` or ``None``.
        """
        if self.train_dataset is not None:
            return
        train, train_eval, test = self._build()
        total = len(train)  # type: ignore[arg-type]
        train_idx, val_idx = self._split_indices(total)
        full_train = self.val_split == 0 and self.train_subset is None
        self.train_dataset = train if full_train else LabeledSubset(train, train_idx)
        self.val_dataset = LabeledSubset(train_eval, val_idx) if val_idx else test
        self.test_dataset = test

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders are requested.")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled loader over the training split; batches ``(x, y)`` of shapes ``(B, *dims)`` and ``(B,)``."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Loader over the validation split (or the test set when ``val_split=0``)."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Loader over the test set."""
        return self._loader(self.test_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Loader over the test set, for ``Trainer.predict``."""
        return self._loader(self.test_dataset, shuffle=False)


class TorchvisionDataModule(SplitDataModule):
    """Base of DataModules whose files live under a data root: checks, downloads and explains missing files.

    Subclasses set :attr:`dataset_name` and :attr:`download_hint`, and implement :meth:`expected_files` and
    :meth:`_download`.

    Args:
        data_dir: dataset root; ``None`` falls back to ``$LIGHTNING_PANNING_DATA``, then to ``./data``.
        batch_size: samples per batch of every loader.
        num_workers: worker processes per loader.
        val_split: training samples held out for validation (count or fraction); ``0`` validates on the test set.
        train_subset: use only this many (seeded, random) training samples; ``None`` uses all.
        download: download missing files in :meth:`prepare_data` (needs internet).
        seed: seed of the split and of the subset.
        pin_memory: pin host memory in the loaders.
    """

    #: Human-readable dataset name used in messages.
    dataset_name: str = "dataset"
    #: Extra sentence on how to obtain the files by hand (shown in the missing-data error).
    download_hint: str = ""

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: int | float = 0,
        train_subset: int | None = None,
        download: bool = True,
        seed: int = 42,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            val_split=val_split,
            train_subset=train_subset,
            seed=seed,
            pin_memory=pin_memory,
        )
        self.data_dir = str(resolve_data_dir(data_dir))
        self.download = download

    @property
    def root(self) -> Path:
        """The resolved dataset root directory."""
        return Path(self.data_dir)

    @abstractmethod
    def expected_files(self) -> list[Path]:
        """Paths (files or directories) that must exist under :attr:`root` for the dataset to load."""

    @abstractmethod
    def _download(self) -> None:
        """Download (and unpack) the dataset into :attr:`root`."""

    def missing_files(self) -> list[Path]:
        """The entries of :meth:`expected_files` that do not exist."""
        return [path for path in self.expected_files() if not path.exists()]

    def _not_found(self, reason: str) -> DatasetNotFoundError:
        missing = self.missing_files()
        shown = "\n".join(f"  - {path}" for path in missing[:8])
        if len(missing) > 8:
            shown += f"\n  - ... and {len(missing) - 8} more"
        hint = f" {self.download_hint}" if self.download_hint else ""
        return DatasetNotFoundError(
            f"{self.dataset_name} not found under data_dir={self.data_dir!r} ({reason}). Missing:\n{shown}\n"
            f"To fix it, point `data_dir` (or the {DATA_DIR_ENV_VAR} environment variable) at a directory that holds "
            f"these files, or pass `download=True` on a machine with internet access.{hint}"
        )

    def prepare_data(self) -> None:
        """Check that the files exist; download them when they do not and ``download=True``.

        Raises:
            DatasetNotFoundError: (a ``FileNotFoundError``) when files are missing and ``download=False``, or when
                the download fails (e.g. no internet); the message lists the expected paths and how to fix it.
        """
        if not self.missing_files():
            return
        if not self.download:
            raise self._not_found("download=False")
        log.info("Downloading %s into %s", self.dataset_name, self.data_dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._download()
        except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError; torchvision raises RuntimeError
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise self._not_found(f"download failed: {first_line}") from err
        if self.missing_files():
            raise self._not_found("files still missing after the download")

    def _check_files(self) -> None:
        if self.missing_files():
            raise self._not_found("prepare_data() was not run or did not download them")
