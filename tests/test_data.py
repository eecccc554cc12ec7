from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from PIL import Image

from lightning_panning.data import (
    DATA_DIR_ENV_VAR,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetNotFoundError,
    DigitsDataModule,
    FashionMNISTDataModule,
    LabeledSubset,
    MNISTDataModule,
    TinyImageNetDataModule,
    reorganize_tiny_imagenet_val,
)

# --------------------------------------------------------------------------- digits (offline)


def test_digits_end_to_end() -> None:
    dm = DigitsDataModule(batch_size=32, seed=0)
    assert dm.num_classes == 10 and dm.dims == (1, 28, 28)
    dm.setup("fit")
    assert dm.train_dataset is not None and dm.val_dataset is not None and dm.test_dataset is not None
    sizes = (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset))
    assert sum(sizes) == 1797 and sizes == (1294, 144, 359)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.long and int(y.max()) < 10
    xv, _ = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (1, 28, 28)
    assert len(dm.test_dataloader().dataset) == 359  # type: ignore[arg-type]
    # Normalised with the training pool's statistics, and labels exposed for class-balanced samplers.
    train_x = torch.stack([dm.train_dataset[i][0] for i in range(len(dm.train_dataset))])
    assert abs(train_x.mean().item()) < 0.1
    assert isinstance(dm.train_dataset, LabeledSubset)
    assert dm.train_dataset.targets.shape == (1294,) and dm.train_dataset.classes == [str(i) for i in range(10)]
    assert set(dm.train_dataset.targets.tolist()) == set(range(10))


def test_digits_splits_are_seeded_and_disjoint() -> None:
    def indices(seed: int) -> tuple[list[int], list[int]]:
        dm = DigitsDataModule(seed=seed)
        dm.setup()
        assert isinstance(dm.train_dataset, LabeledSubset) and isinstance(dm.val_dataset, LabeledSubset)
        return list(dm.train_dataset.indices), list(dm.val_dataset.indices)

    a_train, a_val = indices(1)
    assert indices(1) == (a_train, a_val)
    assert indices(2) != (a_train, a_val)
    assert not set(a_train) & set(a_val)


def test_digits_native_size_subset_and_test_as_val() -> None:
    dm = DigitsDataModule(image_size=8, val_split=0, train_subset=100, batch_size=100)
    dm.setup()
    assert dm.dims == (1, 8, 8)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (100, 1, 8, 8)
    assert dm.val_dataset is dm.test_dataset


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_split": -1}, r"`val_split`.*-1"),
        ({"val_split": 1.5}, r"`val_split`.*1.5"),
        ({"val_split": 5000}, r"`val_split`.*5000"),
        ({"batch_size": 0}, r"`batch_size`.*0"),
        ({"train_subset": 0}, r"`train_subset`.*0"),
        ({"image_size": 0}, r"`image_size`.*0"),
    ],
)
def test_digits_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs).setup()


# --------------------------------------------------------------------------- MNIST family (shared files)


@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule])
def test_mnist_family_from_shared_files(cls: type[MNISTDataModule], datasets_root: Path) -> None:
    dm = cls(data_dir=str(datasets_root), download=False, batch_size=64, train_subset=512)
    assert dm.num_classes == 10 and dm.dims == (1, 28, 28)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.train_dataset is not None and dm.val_dataset is not None and dm.test_dataset is not None
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (512, 5000, 10000)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,)
    assert -1.0 < x.mean().item() < 1.0  # normalised
    assert isinstance(dm.train_dataset, LabeledSubset)
    assert dm.train_dataset.targets.shape == (512,) and len(dm.train_dataset.classes) == 10
    xt, _ = next(iter(dm.test_dataloader()))
    assert xt.shape == (64, 1, 28, 28)


def test_mnist_full_train_set_keeps_torchvision_dataset(datasets_root: Path) -> None:
    dm = MNISTDataModule(data_dir=str(datasets_root), download=False, val_split=0)
    dm.setup()
    assert len(dm.train_dataset) == 60000  # type: ignore[arg-type]
    assert dm.train_dataset.targets.shape == (60000,)  # type: ignore[union-attr]
    assert dm.val_dataset is dm.test_dataset


def test_data_dir_falls_back_to_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(DATA_DIR_ENV_VAR, str(tmp_path))
    assert Path(MNISTDataModule().data_dir) == tmp_path
    monkeypatch.delenv(DATA_DIR_ENV_VAR)
    monkeypatch.chdir(tmp_path)
    assert Path(CIFAR10DataModule().data_dir) == tmp_path / "data"


# --------------------------------------------------------------------------- missing data: clear errors, no download


def test_missing_mnist_error_message(tmp_path: Path) -> None:
    dm = MNISTDataModule(data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert isinstance(info.value, DatasetNotFoundError)
    assert "MNIST" in message and str(tmp_path) in message and "download=False" in message
    assert str(Path("MNIST", "raw", "train-images-idx3-ubyte")) in message
    assert "t10k-labels-idx1-ubyte" in message
    assert DATA_DIR_ENV_VAR in message and "download=True" in message
    with pytest.raises(DatasetNotFoundError, match="MNIST"):
        dm.setup()  # setup() without the files fails the same way


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (CIFAR10DataModule, Path("cifar-10-batches-py", "data_batch_1")),
        (CIFAR100DataModule, Path("cifar-100-python", "train")),
        (TinyImageNetDataModule, Path("tiny-imagenet-200", "train")),
    ],
)
def test_missing_cifar_and_tiny_imagenet_error_message(cls: type, expected: Path, tmp_path: Path) -> None:
    dm = cls(data_dir=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert dm.dataset_name in message and str(tmp_path) in message and str(expected) in message
    assert DATA_DIR_ENV_VAR in message


def test_failed_download_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(self: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(CIFAR10DataModule, "_download", offline)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(DatasetNotFoundError, match=r"download failed.*name resolution") as info:
        dm.prepare_data()
    assert isinstance(info.value.__cause__, URLError)
    assert "cifar-10-batches-py" in str(info.value)


# --------------------------------------------------------------------------- Tiny-ImageNet layout (fake files)


def _fake_tiny_imagenet(root: Path, wnids: list[str], per_class: int) -> None:
    base = root / "tiny-imagenet-200"
    lines = []
    for c, wnid in enumerate(wnids):
        images = base / "train" / wnid / "images"
        images.mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            Image.new("RGB", (64, 64), (40 * c, 10 * i, 0)).save(images / f"{wnid}_{i}.JPEG")
    (base / "val" / "images").mkdir(parents=True)
    for i, wnid in enumerate(wnids * 2):
        name = f"val_{i}.JPEG"
        Image.new("RGB", (64, 64), (0, 0, 10 * i)).save(base / "val" / "images" / name)
        lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")


def test_tiny_imagenet_reorganises_val_and_loads(tmp_path: Path) -> None:
    wnids = ["n01443537", "n01629819", "n01641577"]
    _fake_tiny_imagenet(tmp_path, wnids, per_class=4)
    dm = TinyImageNetDataModule(data_dir=str(tmp_path), download=False, batch_size=5)
    with pytest.raises(DatasetNotFoundError, match="reorganize_tiny_imagenet_val"):
        dm.setup()  # val/images is still flat
    dm.prepare_data()
    val_dir = tmp_path / "tiny-imagenet-200" / "val"
    assert not (val_dir / "images").exists()
    assert sorted(p.name for p in val_dir.iterdir() if p.is_dir()) == wnids
    assert reorganize_tiny_imagenet_val(val_dir.parent) == 0  # idempotent
    dm.setup()
    assert (len(dm.train_dataset), len(dm.test_dataset)) == (12, 6)  # type: ignore[arg-type]
    assert dm.val_dataset is dm.test_dataset
    assert dm.train_dataset.classes == wnids  # type: ignore[union-attr]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 3, 64, 64) and y.shape == (5,)
    assert dm.num_classes == 200 and dm.dims == (3, 64, 64)
