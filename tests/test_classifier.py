from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from torch.optim.lr_scheduler import CosineAnnealingLR, StepLR
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning.classifier import ImageClassifier
from lightning_panning.data import DigitsDataModule
from lightning_panning.models import LeNet5

QUIET: dict[str, Any] = {
    "accelerator": "cpu",
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
}


def test_fast_dev_run_on_digits() -> None:
    torch.manual_seed(0)
    model = ImageClassifier(LeNet5(num_classes=10), weight_decay=1e-4)
    dm = DigitsDataModule(batch_size=32)
    trainer = Trainer(fast_dev_run=True, **QUIET)
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert key in metrics and torch.isfinite(metrics[key])
    assert "val/acc_top5" not in metrics  # only from 100 classes on
    assert 0.0 <= float(metrics["val/acc"]) <= 1.0

    trainer.test(model, datamodule=dm, verbose=False)
    assert "test/acc" in trainer.callback_metrics and "test/loss" in trainer.callback_metrics

    predictions = trainer.predict(model, datamodule=dm)
    assert predictions is not None and predictions[0].shape == (32, 10)  # type: ignore[union-attr]


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_step_returns_the_loss() -> None:
    model = ImageClassifier(LeNet5())
    batch = (torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
    loss = model.training_step(batch, 0)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.requires_grad
    assert model.predict_step(batch, 0).shape == (4, 10)
    assert model.predict_step(batch[0], 0).shape == (4, 10)


def test_top5_metric_for_100_classes() -> None:
    torch.manual_seed(0)
    model = ImageClassifier(LeNet5(num_classes=100, input_size=16))
    assert set(model.val_metrics.keys()) == {"val/acc", "val/acc_top5"}
    data = TensorDataset(torch.randn(16, 1, 16, 16), torch.randint(0, 100, (16,)))
    trainer = Trainer(**QUIET)
    trainer.validate(model, DataLoader(data, batch_size=8), verbose=False)
    metrics = trainer.callback_metrics
    assert "val/acc_top5" in metrics and float(metrics["val/acc_top5"]) >= float(metrics["val/acc"])


def test_default_optimizer_is_sgd_with_cosine_annealing() -> None:
    model = ImageClassifier(LeNet5())
    model.trainer = Trainer(max_epochs=7, **QUIET)
    config = model.configure_optimizers()
    optimizer = config["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.1, 0.9, 5e-4, False)
    scheduler_config = config["lr_scheduler"]
    assert isinstance(scheduler_config, dict)
    scheduler = scheduler_config["scheduler"]
    assert isinstance(scheduler, CosineAnnealingLR) and scheduler.T_max == 7 and scheduler.eta_min == 0
    assert scheduler_config["interval"] == "epoch"


def test_cosine_per_step_when_only_max_steps_is_set() -> None:
    model = ImageClassifier(LeNet5(), lr=0.05)
    trainer = Trainer(max_epochs=-1, max_steps=3, limit_val_batches=0, **QUIET)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=64, train_subset=256))
    config = trainer.lr_scheduler_configs[0]
    assert config.interval == "step" and isinstance(config.scheduler, CosineAnnealingLR)
    assert config.scheduler.T_max == 3
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # annealed to 0


def test_optimizer_and_scheduler_callables_override_defaults() -> None:
    model = ImageClassifier(
        LeNet5(),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        lr_scheduler=lambda opt: StepLR(opt, step_size=2),
    )
    model.trainer = Trainer(max_epochs=3, **QUIET)
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Adam)
    assert isinstance(config["lr_scheduler"]["scheduler"], StepLR)  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 0}, r"`num_classes`.*0"),
        ({"lr": -0.1}, r"`lr`.*-0.1"),
        ({"nesterov": True, "momentum": 0.0}, r"`nesterov=True`.*momentum"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImageClassifier(LeNet5(), **kwargs)


def test_checkpoint_reload_outside_cli(tmp_path: Path) -> None:
    model = ImageClassifier(LeNet5(), lr=0.05)
    assert "backbone" not in model.hparams and model.hparams["lr"] == 0.05
    trainer = Trainer(max_steps=1, limit_val_batches=0, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32, train_subset=64))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    reloaded = ImageClassifier.load_from_checkpoint(path, backbone=LeNet5())
    assert reloaded.lr == 0.05
    for p, q in zip(model.parameters(), reloaded.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "backbone",
    [
        {"class_path": "lightning_panning.models.LeNet5", "init_args": {"num_classes": 10}},
        {"class_path": "torchvision.models.resnet18", "init_args": {"num_classes": 10}},
    ],
)
def test_lightning_cli_builds_backbone_from_config_and_reloads(
    backbone: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["lightning-panning"])
    config = {
        "seed_everything": 0,
        "model": {"backbone": backbone, "lr": 0.02},
        "data": {"class_path": "lightning_panning.data.DigitsDataModule", "init_args": {"batch_size": 16}},
        "trainer": {**QUIET, "max_steps": 1, "limit_val_batches": 0, "default_root_dir": str(tmp_path)},
    }
    cli = LightningCLI(ImageClassifier, args=config, run=False, save_config_callback=None, subclass_mode_data=True)
    model = cli.model
    assert isinstance(model, ImageClassifier) and model.num_classes == 10 and model.lr == 0.02
    assert model.hparams["backbone"]["class_path"] == backbone["class_path"]
    if backbone["class_path"].endswith("LeNet5"):
        cli.trainer.fit(model, datamodule=cli.datamodule)
    path = tmp_path / "cli.ckpt"
    cli.trainer.strategy.connect(model)
    cli.trainer.save_checkpoint(path)
    reloaded = ImageClassifier.load_from_checkpoint(path)  # no backbone needed: its config is in the checkpoint
    assert type(reloaded.backbone) is type(model.backbone)
    for p, q in zip(model.parameters(), reloaded.parameters(), strict=True):
        assert torch.equal(p, q)
