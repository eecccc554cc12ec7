"""An offline DataModule on scikit-learn's 8x8 handwritten digits (no download, no files)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from lightning_panning.data.base import SplitDataModule, _split_size

__all__ = ["DigitsDataModule", "TensorImageDataset"]


class TensorImageDataset(Dataset[tuple[Tensor, int]]):
    """In-memory image classification dataset with torchvision-style ``targets`` and ``classes``.

    Args:
        images: float tensor of shape ``(N, C, H, W)``.
        targets: class indices of shape ``(N,)``.
        classes: class names, indexed by class index.

    Example:
        >>> ds = TensorImageDataset(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 2]), ["a", "b", "c"])
        >>> x, y = ds[1]
        >>> tuple(x.shape), y
        ((1, 8, 8), 1)
    """

    def __init__(self, images: Tensor, targets: Tensor, classes: list[str]) -> None:
        if images.ndim != 4 or targets.shape != (images.shape[0],):
            raise ValueError(
                f"`images` must have shape (N, C, H, W) and `targets` shape (N,), got {tuple(images.shape)} and "
                f"{tuple(targets.shape)}."
            )
        self.images = images
        self.targets = targets
        self.classes = classes

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.targets[index])


class DigitsDataModule(SplitDataModule):
    """The 1,797 8x8 grayscale digits of :func:`sklearn.datasets.load_digits`, 10 classes, fully offline.

    Pixels (0-16) are scaled to [0, 1], normalised with the training pool's mean and std, and resized with
    bilinear interpolation to ``image_size`` (28 by default, so the Caffe LeNet5 of the paper applies unchanged).
    A seeded ``test_split`` is held out first; ``val_split`` is then taken from what is left. Batches are ``(x, y)``
    with ``x`` of shape ``(B, 1, image_size, image_size)`` and ``y`` of shape ``(B,)``.

    Args:
        batch_size: samples per batch.
        num_workers: worker processes per loader.
        val_split: samples of the training pool held out for validation (count or fraction); ``0`` validates on
            the test split.
        test_split: samples held out for testing (count or fraction of all 1,797).
        image_size: side of the (square) images yielded; 8 keeps the original resolution.
        train_subset: use only this many (seeded, random) training samples; ``None`` uses all.
        seed: seed of the splits and of the subset.
        pin_memory: pin host memory in the loaders.

    Example:
        >>> dm = DigitsDataModule(batch_size=16)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), tuple(y.shape), dm.num_classes, dm.dims
        ((16, 1, 28, 28), (16,), 10, (1, 28, 28))
        >>> len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
        (1294, 144, 359)
    """

    num_classes = 10

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_split: int | float = 0.1,
        test_split: int | float = 0.2,
        image_size: int = 28,
        train_subset: int | None = None,
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
        if image_size < 1:
            raise ValueError(f"`image_size` must be a positive integer, got {image_size!r}.")
        if isinstance(test_split, bool) or test_split <= 0:
            raise ValueError(f"`test_split` must be a positive count or a fraction in (0, 1), got {test_split!r}.")
        self.test_split = test_split
        self.image_size = image_size
        self.dims = (1, image_size, image_size)
        self.save_hyperparameters()

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
        targets = torch.as_tensor(bunch.target, dtype=torch.long)
        total = images.shape[0]
        n_test = _split_size(self.test_split, total, "test_split")
        # A generator distinct from the validation split's, so both splits stay independent of each other.
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(self.seed + 1))
        test_idx, pool_idx = perm[:n_test], perm[n_test:]
        mean, std = images[pool_idx].mean(), images[pool_idx].std()
        images = (images - mean) / std
        if self.image_size != images.shape[-1]:
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        classes = [str(c) for c in range(10)]
        pool = TensorImageDataset(images[pool_idx], targets[pool_idx], classes)
        test = TensorImageDataset(images[test_idx], targets[test_idx], classes)
        return pool, pool, test
