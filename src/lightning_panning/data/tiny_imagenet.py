"""Tiny-ImageNet DataModule (64x64 RGB, 200 classes) over an ``ImageFolder`` layout."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.datasets.utils import download_and_extract_archive

from lightning_panning.data.base import DatasetNotFoundError, TorchvisionDataModule

__all__ = ["TinyImageNetDataModule", "reorganize_tiny_imagenet_val"]

log = logging.getLogger(__name__)

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"


def reorganize_tiny_imagenet_val(dataset_dir: str | os.PathLike[str]) -> int:
    """Move the official validation images into one folder per class, so ``ImageFolder`` can read them.

    The archive ships ``val/images/val_<i>.JPEG`` plus ``val/val_annotations.txt`` (tab-separated: file name,
    wnid, box). This one-off step moves every image to ``val/<wnid>/val_<i>.JPEG`` and removes the emptied
    ``val/images/``. Running it again does nothing.

    Args:
        dataset_dir: the ``tiny-imagenet-200`` directory.

    Returns:
        The number of images moved.

    Raises:
        FileNotFoundError: if ``val/images/`` exists but ``val/val_annotations.txt`` does not.
    """
    val_dir = Path(dataset_dir) / "val"
    images_dir = val_dir / "images"
    if not images_dir.is_dir():
        return 0
    annotations = val_dir / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(
            f"Cannot reorganise {images_dir}: the class list {annotations} is missing; "
            "re-extract tiny-imagenet-200.zip."
        )
    moved = 0
    for line in annotations.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        file_name, wnid = fields[0], fields[1]
        source = images_dir / file_name
        if source.is_file():
            (val_dir / wnid).mkdir(exist_ok=True)
            source.rename(val_dir / wnid / file_name)
            moved += 1
    if not any(images_dir.iterdir()):
        images_dir.rmdir()
    log.info("Moved %d Tiny-ImageNet validation images into per-class folders under %s", moved, val_dir)
    return moved


class TinyImageNetDataModule(TorchvisionDataModule):
    """Tiny-ImageNet: 100,000 training and 10,000 validation images, 64x64 RGB, 200 classes.

    Batches are ``(x, y)`` with ``x`` of shape ``(B, 3, 64, 64)`` and ``y`` of shape ``(B,)``. Training images are
    augmented with ``RandomCrop(64, padding=4)`` and ``RandomHorizontalFlip``; all are normalised per channel.
    The official test split has no labels, so the official validation split is the test set (and, with the
    default ``val_split=0``, also the validation set), as in the paper.

    Expected layout under ``data_dir``::

        tiny-imagenet-200/
            train/<wnid>/images/*.JPEG      # as shipped in tiny-imagenet-200.zip
            val/<wnid>/*.JPEG               # after the one-off reorganisation below

    The archive ships the validation images flat in ``val/images/`` with labels in ``val/val_annotations.txt``.
    :meth:`prepare_data` moves them into ``val/<wnid>/`` once (see :func:`reorganize_tiny_imagenet_val`, which can
    also be run by hand). With ``download=True`` the archive is fetched from ``cs231n.stanford.edu`` first.

    Args:
        data_dir: dataset root; ``None`` falls back to ``$LIGHTNING_PANNING_DATA``, then to ``./data``.
        batch_size: samples per batch.
        num_workers: worker processes per loader.
        val_split: training images held out for validation (count or fraction); ``0`` validates on the official
            validation split.
        train_subset: use only this many (seeded, random) training images; ``None`` uses all.
        download: download missing files in ``prepare_data`` (needs internet).
        seed: seed of the split and of the subset.
        augment: random crop and flip on training images.
        pin_memory: pin host memory in the loaders.
    """

    dataset_name = "Tiny-ImageNet"
    download_hint = f"The archive is {TINY_IMAGENET_URL}; unzip it inside data_dir."
    num_classes = 200
    dims = (3, 64, 64)
    mean = (0.4802, 0.4481, 0.3975)
    std = (0.2302, 0.2265, 0.2262)

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: int | float = 0,
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

    @property
    def dataset_dir(self) -> Path:
        """``<data_dir>/tiny-imagenet-200``."""
        return self.root / "tiny-imagenet-200"

    def expected_files(self) -> list[Path]:
        """The ``train/`` and ``val/`` directories of ``<data_dir>/tiny-imagenet-200``."""
        return [self.dataset_dir / "train", self.dataset_dir / "val"]

    def _download(self) -> None:
        download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(self.root), md5=TINY_IMAGENET_MD5)

    def prepare_data(self) -> None:
        """Check or download the files, then sort the validation images into class folders (once).

        Raises:
            DatasetNotFoundError: when files are missing and cannot be downloaded.
        """
        super().prepare_data()
        reorganize_tiny_imagenet_val(self.dataset_dir)

    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        self._check_files()
        if (self.dataset_dir / "val" / "images").is_dir():
            raise DatasetNotFoundError(
                f"{self.dataset_dir / 'val'} still holds the flat `images/` folder of the archive. Run "
                "`prepare_data()` (or `reorganize_tiny_imagenet_val(<data_dir>/tiny-imagenet-200)`) once to sort "
                "the validation images into `val/<wnid>/`."
            )
        normalize = [transforms.ToTensor(), transforms.Normalize(self.mean, self.std)]
        eval_transform = transforms.Compose(normalize)
        train_transform = eval_transform
        if self.augment:
            train_transform = transforms.Compose(
                [transforms.RandomCrop(64, padding=4), transforms.RandomHorizontalFlip(), *normalize]
            )
        train_dir, val_dir = str(self.dataset_dir / "train"), str(self.dataset_dir / "val")
        train = datasets.ImageFolder(train_dir, transform=train_transform)
        train_eval = datasets.ImageFolder(train_dir, transform=eval_transform)
        test = datasets.ImageFolder(val_dir, transform=eval_transform)
        if test.classes != train.classes:
            raise DatasetNotFoundError(
                f"The class folders of {val_dir} ({len(test.classes)}) do not match those of {train_dir} "
                f"({len(train.classes)}); re-extract tiny-imagenet-200.zip and run prepare_data() again."
            )
        return train, train_eval, test
