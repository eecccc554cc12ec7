"""PanningCallback under DDP: two CPU processes (gloo, ``ddp_spawn``) end with bit-identical masks."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_panning.callbacks import PanningCallback
from test_callbacks import TinyNet, assert_masked, callback, trainer, xy_dataset


class RankMaskDump(pl.Callback):
    def __init__(self, pruner: PanningCallback, out: str) -> None:
        self.pruner, self.out = pruner, out

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.pruner.masks is not None
        assert_masked(pl_module, self.pruner.masks)
        masks = {n: m.cpu() for n, m in self.pruner.masks.items()}
        torch.save(masks, os.path.join(self.out, f"rank{trainer.global_rank}.pt"))


class PerRankSeed(TinyNet):
    """Different initial weights per process: DDP must broadcast rank 0's before pruning."""

    def setup(self, stage: str) -> None:
        torch.manual_seed(self.global_rank + 10)
        for p in self.parameters():
            nn.init.normal_(p, std=0.2)


def test_ddp_spawn_two_processes_identical_masks(tmp_path: Path) -> None:
    cb = callback()
    t = trainer(
        tmp_path, callbacks=[cb, RankMaskDump(cb, str(tmp_path))], strategy="ddp_spawn", devices=2, max_steps=2,
    )
    model = PerRankSeed()
    t.fit(model, DataLoader(xy_dataset(), batch_size=8))
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert set(rank0) == set(rank1) and all(torch.equal(rank0[n], rank1[n]) for n in rank0)
    assert_masked(model, rank0)  # weights sent back to the main process are sparse
