"""Tests of the sweep's :class:`~benchmarks.sweep.liveness.Liveness` probe: what it reports, and that it changes nothing."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn

from benchmarks.sweep.liveness import Liveness, measure
from lightning_panning.classifier import ImageClassifier
from lightning_panning.data import DigitsDataModule
from lightning_panning.models import LeNet5


def _fit(with_probe: bool) -> tuple[dict[str, torch.Tensor], Liveness]:
    seed_everything(3, verbose=False)
    module = ImageClassifier(LeNet5(num_classes=10), num_classes=10, lr=0.1)
    data = DigitsDataModule(image_size=28, batch_size=32, val_split=0, train_subset=96, seed=3)
    probe = Liveness(probe_size=40)
    trainer = Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, callbacks=[probe] if with_probe else [])  # fmt: skip
    trainer.fit(module, datamodule=data)
    return {k: v.clone() for k, v in module.state_dict().items()}, probe


def test_probe_reports_and_leaves_training_unchanged() -> None:
    plain, _ = _fit(with_probe=False)
    probed, probe = _fit(with_probe=True)
    assert plain.keys() == probed.keys()
    assert all(torch.equal(plain[k], probed[k]) for k in plain)  # no random number drawn, nothing changed
    results = probe.results
    assert results["logit_spread_start"] > 0.0 and results["logit_spread_end"] > 0.0
    assert set(results["dead_units_by_layer_end"]) == {
        "backbone.features.1",
        "backbone.features.4",
        "backbone.classifier.1",
    }


def test_constant_network_is_dead() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].bias.fill_(-1.0)  # every hidden unit is zero for every input: the output is the last bias
    net.train()
    stats = measure(net, torch.randn(10, 4, 4))
    assert stats["dead_units"] == 1.0 and stats["logit_spread"] == 0.0
    assert stats["dead_units_by_layer"] == {"2": 1.0}
    assert net.training  # the mode it was in


def test_probe_size_is_checked() -> None:
    import pytest

    with pytest.raises(ValueError, match="`probe_size` must be at least 2"):
        Liveness(probe_size=1)
