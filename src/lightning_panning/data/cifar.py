"""CIFAR-10 and CIFAR-100 DataModules (32x32 RGB)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from torch.utils.data import Dataset
from torchvision import datasets, transforms

from lightning_panning.data.base import TorchvisionDataModule

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule"]


class _CIFARDataModule(TorchvisionDataModule):
    """Shared code of the CIFAR DataModules (torchvision layout ``<data_dir>/cifar-10[0]-*-py/``)."""

    dataset_cls: ClassVar[type[datasets.CIFAR10]] = datasets.CIFAR10
    mean: ClassVar[tuple[float, ...]] = (0.4914, 0.4822, 0.4465)
    std: ClassVar[tuple[float, ...]] = (0.2470, 0.2435, 0.2616)
    dims = (3, 32, 32)

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: int | float = 5000,
        train_subset: int | None = None,
        download: bool = True,
        seed: int = 42,
        augment: bool = True,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(
            data_dir=data_dir,
            batch_size=batch_size,
            num_workers=num_workers,
            val_split=val_split,
            train_subset=train_subset,
            download=download,
            seed=seed,
            pin_memory=pin_memory,
        )
        self.augment = augment
        self.save_hyperparameters()

    def expected_files(self) -> list[Path]:
        """The pickled batches, e.g. ``<data_dir>/cifar-10-batches-py/data_batch_1`` … ``test_batch``."""
        folder = self.root / self.dataset_cls.base_folder
        names = [name for name, _ in self.dataset_cls.train_list + self.dataset_cls.test_list]
        return [folder / name for name in [*names, self.dataset_cls.meta["filename"]]]

    def _download(self) -> None:
        self.dataset_cls(str(self.root), train=True, download=True)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        self._check_files()
        normalize = [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        eval_transform = transforms.Compose(normalize)
        train_transform = eval_transform
        if self.augment:
            train_transform = transforms.Compose(
                [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *normalize]
            )
        root = str(self.root)
        train = self.dataset_cls(root, train=True, transform=train_transform, download=False)
        train_eval = self.dataset_cls(root, train=True, transform=eval_transform, download=False)
        test = self.dataset_cls(root, train=False, transform=eval_transform, download=False)
        return train, train_eval, test


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images, 32x32 RGB, 10 classes.

    Batches are ``(x, y)`` with ``x`` of shape ``(B, 3, 32, 32)`` and ``y`` of shape ``(B,)``. Training images are
    augmented with ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip`` (as in the paper); all images are
    normalised per channel. Files are read from ``<data_dir>/cifar-10-batches-py/`` (``data_batch_1`` …
    ``data_batch_5``, ``test_batch``, ``batches.meta``). The paper trains on all 50,000 images: use ``val_split=0``
    to reproduce it (the test set then doubles as the validation set).

    Args:
        data_dir: dataset root; ``None`` falls back to ``$LIGHTNING_PANNING_DATA``, then to ``./data``.
        batch_size: samples per batch.
        num_workers: worker processes per loader.
        val_split: training images held out for validation (count or fraction); ``0`` validates on the test set.
        train_subset: use only this many (seeded, random) training images; ``None`` uses all.
        download: download missing files in ``prepare_data`` (needs internet).
        seed: seed of the split and of the subset.
        augment: random crop and flip on training images.
        pin_memory: pin host memory in the loaders.
    """

    dataset_name = "CIFAR-10"
    num_classes = 10


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100: 50,000 training and 10,000 test images, 32x32 RGB, 100 fine classes.

    Same transforms and arguments as :class:`CIFAR10DataModule`; batches are ``(x, y)`` with ``x`` of shape
    ``(B, 3, 32, 32)``. Files are read from ``<data_dir>/cifar-100-python/`` (``train``, ``test``, ``meta``).

    Args:
        data_dir: dataset root; ``None`` falls back to ``$LIGHTNING_PANNING_DATA``, then to ``./data``.
        batch_size: samples per batch.
        num_workers: worker processes per loader.
        val_split: training images held out for validation (count or fraction); ``0`` validates on the test set.
        train_subset: use only this many (seeded, random) training images; ``None`` uses all.
        download: download missing files in ``prepare_data`` (needs internet).
        seed: seed of the split and of the subset.
        augment: random crop and flip on training images.
        pin_memory: pin host memory in the loaders.
    """

    dataset_name = "CIFAR-100"
    dataset_cls = datasets.CIFAR100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    num_classes = 100
