"""Example LightningDataModules: MNIST, FashionMNIST, CIFAR-10/100, Tiny-ImageNet and offline sklearn digits.

Every DataModule exposes ``num_classes`` and ``dims`` (``(C, H, W)`` of one sample), takes only plain arguments
(so LightningCLI configs can build them) and splits its data with a seeded generator. File-based ones read
``data_dir``, else ``$LIGHTNING_PANNING_DATA``, else ``./data``, and raise :class:`DatasetNotFoundError` (a
``FileNotFoundError``) listing the expected files when data are missing and cannot be downloaded.
"""

from lightning_panning.data.base import (
    DATA_DIR_ENV_VAR,
    DatasetNotFoundError,
    LabeledSubset,
    SplitDataModule,
    TorchvisionDataModule,
    resolve_data_dir,
)
from lightning_panning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lightning_panning.data.digits import DigitsDataModule, TensorImageDataset
from lightning_panning.data.mnist import FashionMNISTDataModule, MNISTDataModule
from lightning_panning.data.tiny_imagenet import TinyImageNetDataModule, reorganize_tiny_imagenet_val

__all__ = [
    "DATA_DIR_ENV_VAR",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "LabeledSubset",
    "MNISTDataModule",
    "SplitDataModule",
    "TensorImageDataset",
    "TinyImageNetDataModule",
    "TorchvisionDataModule",
    "reorganize_tiny_imagenet_val",
    "resolve_data_dir",
]
