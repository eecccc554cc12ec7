"""MNIST and FashionMNIST DataModules (28x28 grayscale, 10 classes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from torch.utils.data import Dataset
from torchvision import datasets, transforms

from lightning_panning.data.base import TorchvisionDataModule

__all__ = ["MNIST_MEAN", "MNIST_STD", "FashionMNISTDataModule", "MNISTDataModule"]

#: Mean and standard deviation of the MNIST training images (pixel values in [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class _MNISTFamilyDataModule(TorchvisionDataModule):
    """Shared code of the MNIST-format DataModules (torchvision layout ``<data_dir>/<Name>/raw/*-ubyte``)."""

    dataset_cls: ClassVar[type[datasets.MNIST]] = datasets.MNIST
    mean: ClassVar[tuple[float, ...]] = (MNIST_MEAN,)
    std: ClassVar[tuple[float, ...]] = (MNIST_STD,)
    num_classes = 10
    dims = (1, 28, 28)

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        val_split: int | float = 5000,
        train_subset: int | None = None,
        download: bool = True,
        seed: int = 42,
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
        self.save_hyperparameters()

    def expected_files(self) -> list[Path]:
        """The four uncompressed IDX files, e.g. ``<data_dir>/MNIST/raw/train-images-idx3-ubyte``."""
        raw = self.root / self.dataset_cls.__name__ / "raw"
        return [raw / os.path.splitext(os.path.basename(name))[0] for name, _ in self.dataset_cls.resources]

    def _download(self) -> None:
        for train in (True, False):
            self.dataset_cls(str(self.root), train=train, download=True)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        self._check_files()
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(self.mean, self.std)])
        train = self.dataset_cls(str(self.root), train=True, transform=transform, download=False)
        test = self.dataset_cls(str(self.root), train=False, transform=transform, download=False)
        return train, train, test  # no augmentation: the validation split can share the training dataset


class MNISTDataModule(_MNISTFamilyDataModule):
    """MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grayscale, 10 classes.

    Batches are ``(x, y)`` with ``x`` of shape ``(B, 1, 28, 28)`` (normalised with mean 0.1307, std 0.3081) and
    ``y`` of shape ``(B,)``. No augmentation (as in the paper's LeNet5 runs: batch 256). Files are read from the
    torchvision layout ``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.

    Args:
        data_dir: dataset root; ``None`` falls back to ``$LIGHTNING_PANNING_DATA``, then to ``./data``.
        batch_size: samples per batch.
        num_workers: worker processes per loader.
        val_split: training images held out for validation (count or fraction); ``0`` validates on the test set.
        train_subset: use only this many (seeded, random) training images; ``None`` uses all.
        download: download missing files in ``prepare_data`` (needs internet).
        seed: seed of the split and of the subset.
        pin_memory: pin host memory in the loaders.

    Example:
        >>> dm = MNISTDataModule(data_dir="/nonexistent", download=False)
        >>> dm.num_classes, dm.dims
        (10, (1, 28, 28))
    """

    dataset_name = "MNIST"


class FashionMNISTDataModule(_MNISTFamilyDataModule):
    """Fashion-MNIST clothing images: 60,000 training and 10,000 test images, 28x28 grayscale, 10 classes.

    Batches are ``(x, y)`` with ``x`` of shape ``(B, 1, 28, 28)`` (normalised with mean 0.2860, std 0.3530) and
    ``y`` of shape ``(B,)``. Files are read from ``<data_dir>/FashionMNIST/raw/*-ubyte``.

    Args:
        data_dir: dataset root; ``None`` falls back to ``$LIGHTNING_PANNING_DATA``, then to ``./data``.
        batch_size: samples per batch.
        num_workers: worker processes per loader.
        val_split: training images held out for validation (count or fraction); ``0`` validates on the test set.
        train_subset: use only this many (seeded, random) training images; ``None`` uses all.
        download: download missing files in ``prepare_data`` (needs internet).
        seed: seed of the split and of the subset.
        pin_memory: pin host memory in the loaders.
    """

    dataset_name = "FashionMNIST"
    dataset_cls = datasets.FashionMNIST
    mean = (0.2860,)
    std = (0.3530,)
