"""GPU checks: skipped where no CUDA device is present (CI has none; run them on a GPU machine)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning.callbacks import PanningCallback
from lightning_panning.classifier import ImageClassifier
from lightning_panning.core import keep_count, prunable_parameters, prune

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 1, 8, 8, generator=g), torch.arange(10).repeat(20)
    return DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True)


def test_prune_on_cuda_matches_cpu_keep_count_and_mostly_the_masks() -> None:
    cpu = prune(small_cnn(), loader(), 0.95, rounds=10, progress=False)
    gpu = prune(small_cnn().cuda(), loader(), 0.95, rounds=10, progress=False)
    total = sum(p.numel() for p in prunable_parameters(small_cnn()).values())
    assert all(m.is_cuda for m in gpu.values())
    assert sum(int(m.sum()) for m in gpu.values()) == keep_count(total, 0.95)
    agree = sum(int((cpu[n] == gpu[n].cpu()).sum()) for n in cpu) / total
    assert agree > 0.99  # float reductions differ between devices; near-tied weights may swap


def test_callback_prunes_on_the_trainer_gpu_and_keeps_weights_zero(tmp_path) -> None:
    model = ImageClassifier(small_cnn(), num_classes=10, lr=0.05)
    pruner = PanningCallback(target=0.9, options={"rounds": 5}, verbose=False)
    trainer = pl.Trainer(
        accelerator="gpu", devices=1, max_epochs=1, callbacks=[pruner], logger=False,
        enable_checkpointing=False, default_root_dir=tmp_path, precision="bf16-mixed",
    )  # fmt: skip
    trainer.fit(model, train_dataloaders=loader())
    params = dict(model.named_parameters())
    for name, mask in pruner.masks.items():
        assert (params[name][~mask.to(params[name].device)] == 0).all()
