"""RLPanningCallback: prunes to the exact keep count with the shipped policy, on a network the agent never saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning.callbacks.rl import RL_FIGURE_FILE, RLPanningCallback
from lightning_panning.core import keep_count

pytestmark = pytest.mark.usefixtures("one_thread")


class TinyVGG(pl.LightningModule):
    """A VGG-like conv net with BatchNorm on 3x16x16 inputs, 5 classes: nothing like the LeNet5 the agent saw."""

    def __init__(self) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]

        self.net = nn.Sequential(
            *block(3, 8), *block(8, 8), nn.MaxPool2d(2), *block(8, 16), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 4 * 4, 5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(60, 3, 16, 16, generator=g), torch.arange(60) % 5)
        return DataLoader(data, batch_size=20)


def fit(callback: RLPanningCallback, tmp_path: Path, **kwargs: Any) -> TinyVGG:
    torch.manual_seed(0)
    model = TinyVGG()
    defaults: dict[str, Any] = {
        "max_steps": 2, "accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
        "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": tmp_path,
    }
    defaults.update(kwargs)
    pl.Trainer(callbacks=[callback], **defaults).fit(model)
    return model


def test_shipped_policy_prunes_unseen_vgg_to_target(tmp_path):
    cb = RLPanningCallback(target=0.95, options={"rounds": 8, "per_class": 4}, verbose=False)
    model = fit(cb, tmp_path, logger=[CSVLogger(tmp_path), TensorBoardLogger(tmp_path)])
    total = sum(m.numel() for m in cb.masks.values())
    assert sum(int(m.sum()) for m in cb.masks.values()) == keep_count(total, 0.95)
    for name, mask in cb.masks.items():  # still sparse after two optimizer steps
        assert torch.all(model.get_parameter(name).detach()[~mask] == 0)
    assert len(cb.rl_steps) == 8 and all(np.isfinite(s["reward"]) for s in cb.rl_steps)
    actions = np.array([[s["a1"], s["a2"], s["a3"]] for s in cb.rl_steps])
    assert np.all(np.abs(actions) <= 1.0)
    assert cb.summary["method"] == "rlpanning" and cb.summary["policy"] == "default"
    assert len(cb.summary["rl_actions"]) == 8
    # per-round metrics and the Figure-4-like image reached the loggers
    metrics = (Path(tmp_path) / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "rlpanning/round/a1" in metrics and "rlpanning/round/reward" in metrics
    assert any(p.name == RL_FIGURE_FILE for p in Path(tmp_path).rglob("*.png"))


def test_deterministic_and_policy_object(tmp_path):
    class Constant:
        def predict(self, obs, deterministic=True):
            assert deterministic and obs.shape == (7,) and obs.dtype == np.float32
            return np.array([1.0, -1.0, 0.0], dtype=np.float32), None

    cb = RLPanningCallback(target=0.9, policy=Constant(), options={"rounds": 3, "per_class": 4}, verbose=False, log_figure=False)
    fit(cb, tmp_path)
    assert [s["p_synflow"] for s in cb.rl_steps] == [1.0, 1.0, 1.0]
    assert [s["p_snip"] for s in cb.rl_steps] == [0.0, 0.0, 0.0]
    a = RLPanningCallback(target=0.9, options={"rounds": 4, "per_class": 4}, verbose=False, log_figure=False)
    b = RLPanningCallback(target=0.9, options={"rounds": 4, "per_class": 4}, verbose=False, log_figure=False)
    fit(a, tmp_path / "a")
    fit(b, tmp_path / "b")
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)


def test_resume_restores_masks_without_pruning_again(tmp_path):
    cb = RLPanningCallback(target=0.9, options={"rounds": 3, "per_class": 4}, verbose=False, log_figure=False)
    fit(cb, tmp_path, enable_checkpointing=True, max_steps=1)
    ckpt = next(Path(tmp_path).rglob("*.ckpt"))
    resumed = RLPanningCallback(target=0.9, options={"rounds": 3, "per_class": 4}, verbose=False, log_figure=False)
    model = TinyVGG()
    pl.Trainer(callbacks=[resumed], max_steps=2, logger=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).fit(model, ckpt_path=ckpt)
    assert resumed.rl_steps == []  # restored, not recomputed
    assert all(torch.equal(cb.masks[n].cpu(), resumed.masks[n].cpu()) for n in cb.masks)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        RLPanningCallback(policy=tmp_path / "nope.zip")
    with pytest.raises(ValueError, match="predict"):
        RLPanningCallback(policy=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target"):
        RLPanningCallback(target=1.0)
    with pytest.raises(ValueError, match="alpha"):
        RLPanningCallback(alpha=-1.0)


def test_figure_helper_and_state_json(tmp_path):
    from lightning_panning.rl.figures import figure_to_array, rl_rounds_figure

    steps = [{"round": t, "a1": 0.1 * t, "a2": -0.2, "a3": 0.3, "reward": -0.1 * t, "remaining": 0.9 ** t}
             for t in range(1, 6)]
    image = figure_to_array(rl_rounds_figure(steps, "test"))
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    json.dumps(steps)  # plain values
