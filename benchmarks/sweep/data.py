"""Fast cells for MNIST-size data: the whole dataset as tensors in device memory, batches drawn by index.

A DataLoader over MNIST builds every batch from 256 single-image reads (a PIL image, ``ToTensor``, ``Normalize``,
then ``collate``) in the training process. For a small network that work costs more than the training step, and on
a GPU each batch is copied to the device again. :class:`InMemoryDataModule` wraps one of the project's DataModules,
turns its train and test splits into two tensors each on the Trainer's device once, in ``setup``, and serves
batches with ``images[indices]``. The loaders are still ``torch.utils.data.DataLoader`` objects (a
``BatchSampler`` over a ``RandomSampler`` with ``batch_size=None``), so the Lightning Trainer, the pruning callbacks
and their class-balanced scoring batch see an ordinary DataLoader; the sample order is the one
``DataLoader(shuffle=True)`` draws from the same global RNG state, and the tensors are the transforms' exact values
(computed on the CPU), so a cell trains on the same batches either way.

Only datasets whose transforms are deterministic can be held this way: MNIST and FashionMNIST (``ToTensor`` +
``Normalize``) and the offline digits; CIFAR's random crops must be drawn per epoch and are refused.

Example:
    >>> from lightning_panning.data import DigitsDataModule
    >>> dm = InMemoryDataModule(DigitsDataModule(batch_size=32, val_split=0), device="cpu")
    >>> dm.setup("fit")
    >>> x, y = next(iter(dm.train_dataloader()))
    >>> tuple(x.shape), tuple(y.shape), len(dm.train_dataloader()) == dm.num_train_batches()
    ((32, 1, 28, 28), (32,), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler, Subset

__all__ = ["DeviceTensorDataset", "InMemoryDataModule", "device_loader", "to_device_dataset"]


class DeviceTensorDataset(Dataset[tuple[Tensor, Tensor]]):
    """A split as two tensors on one device; an index gives a sample, a list or tensor of indices a batch.

    Args:
        images: inputs of shape ``(N, C, H, W)``.
        targets: class indices of shape ``(N,)``, on the same device.
        classes: class names (read by the class-balanced scoring batch), if known.
    """

    def __init__(self, images: Tensor, targets: Tensor, classes: Sequence[str] | None = None) -> None:
        if images.ndim != 4 or targets.shape != (images.shape[0],) or images.device != targets.device:
            raise ValueError(
                f"`images` must have shape (N, C, H, W) and `targets` shape (N,) on the same device, got "
                f"{tuple(images.shape)} on {images.device} and {tuple(targets.shape)} on {targets.device}."
            )
        self.images = images
        self.targets = targets
        if classes is not None:
            self.classes = list(classes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(index, int):
            index = torch.as_tensor(index, dtype=torch.long).to(self.images.device, non_blocking=True)
        return self.images[index], self.targets[index]


def _mnist_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """All images of a torchvision MNIST-format dataset, transformed as its ``ToTensor`` + ``Normalize`` would."""
    from torchvision import transforms

    steps = getattr(dataset.transform, "transforms", None)
    if (
        steps is None
        or len(steps) != 2
        or not isinstance(steps[0], transforms.ToTensor)
        or not isinstance(steps[1], transforms.Normalize)
        or dataset.target_transform is not None
    ):
        raise ValueError(
            f"In-memory data supports {type(dataset).__name__} with the transform Compose([ToTensor(), Normalize()]) "
            f"and no target transform, got transform={dataset.transform!r}, "
            f"target_transform={dataset.target_transform!r}."
        )
    norm = steps[1]
    # ToTensor: uint8 → float32 / 255; Normalize: (x - mean) / std, per channel; the same float32 operations
    # elementwise, on the CPU, so the values equal the per-sample transforms bit for bit.
    images = dataset.data.to(torch.float32).div(255).unsqueeze(1)
    mean = torch.as_tensor(norm.mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(norm.std, dtype=torch.float32).view(-1, 1, 1)
    images.sub_(mean).div_(std)
    return images, torch.as_tensor(dataset.targets, dtype=torch.long)


def _cpu_tensors(dataset: Dataset) -> tuple[Tensor, Tensor, list[str] | None]:
    from torchvision.datasets import MNIST

    from lightning_panning.data import TensorImageDataset

    if isinstance(dataset, Subset):
        images, targets, classes = _cpu_tensors(dataset.dataset)
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        return images[index], targets[index], classes
    if isinstance(dataset, MNIST):  # FashionMNIST is a subclass
        images, targets = _mnist_tensors(dataset)
        return images, targets, list(dataset.classes)
    if isinstance(dataset, TensorImageDataset):
        return dataset.images, torch.as_tensor(dataset.targets, dtype=torch.long), list(dataset.classes)
    raise ValueError(
        f"In-memory data supports MNIST, FashionMNIST and the digits dataset (deterministic transforms), got a "
        f"{type(dataset).__name__}. Run this profile with --no-in-memory."
    )


def to_device_dataset(dataset: Dataset, device: torch.device | str) -> DeviceTensorDataset:
    """``dataset`` (MNIST, FashionMNIST, digits, or a ``Subset`` of one) as a :class:`DeviceTensorDataset`.

    Raises:
        ValueError: for any other dataset, or an MNIST with other transforms.
    """
    images, targets, classes = _cpu_tensors(dataset)
    return DeviceTensorDataset(images.to(device), targets.to(device), classes)


def device_loader(dataset: DeviceTensorDataset, batch_size: int, shuffle: bool) -> DataLoader:
    """A DataLoader of ``(x, y)`` batches of ``dataset`` drawn by index (no workers, no per-sample reads).

    With ``shuffle`` the order is the one ``DataLoader(dataset, batch_size, shuffle=True)`` would give from the same
    global RNG state: the same ``RandomSampler`` and ``BatchSampler``.
    """
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=False))


class InMemoryDataModule(LightningDataModule):
    """Wrap a project DataModule so its splits live in device memory (see the module's docstring).

    Args:
        inner: a :class:`~lightning_panning.data.SplitDataModule` (MNIST, FashionMNIST or digits).
        device: where to hold the tensors; ``None`` uses the Trainer's root device (known in ``setup``).
    """

    def __init__(self, inner: Any, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.batch_size: int = inner.batch_size
        self.device = None if device is None else torch.device(device)
        self.train_dataset: DeviceTensorDataset | None = None
        self.val_dataset: DeviceTensorDataset | None = None
        self.test_dataset: DeviceTensorDataset | None = None

    def prepare_data(self) -> None:
        """Check (or download) the inner DataModule's files."""
        self.inner.prepare_data()

    def num_train_batches(self) -> int:
        """Batches per training epoch, without moving anything to a device."""
        self.inner.setup("fit")
        return math.ceil(len(self.inner.train_dataset) / self.batch_size)

    def _target_device(self) -> torch.device:
        if self.device is not None:
            return self.device
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        """Build the inner splits and copy them to the device (once)."""
        if self.train_dataset is not None:
            return
        self.inner.setup(stage)
        device = self._target_device()
        self.train_dataset = to_device_dataset(self.inner.train_dataset, device)
        self.test_dataset = to_device_dataset(self.inner.test_dataset, device)
        same = self.inner.val_dataset is self.inner.test_dataset
        self.val_dataset = self.test_dataset if same else to_device_dataset(self.inner.val_dataset, device)

    def _ready(self, dataset: DeviceTensorDataset | None) -> DeviceTensorDataset:
        if dataset is None:
            raise RuntimeError("InMemoryDataModule.setup() must run before its dataloaders are requested.")
        return dataset

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches ``(x, y)`` of shapes ``(B, C, H, W)`` and ``(B,)`` on the device."""
        return device_loader(self._ready(self.train_dataset), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Batches of the validation split (the test set when the inner ``val_split`` is 0)."""
        return device_loader(self._ready(self.val_dataset), self.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Batches of the test set."""
        return device_loader(self._ready(self.test_dataset), self.batch_size, shuffle=False)
