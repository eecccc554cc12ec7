"""PanningCallback under DDP: two CPU processes (gloo, ``ddp_spawn``) end with bit-identical masks."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_panning.callbacks import PanningCallback
from lightning_panning.core import ClassificationLoss
from test_callbacks import TinyNet, assert_masked, callback, trainer, xy_dataset


class RankMaskDump(pl.Callback):
    def __init__(self, pruner: PanningCallback, out: str) -> None:
        self.pruner, self.out = pruner, out

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.pruner.masks is not None
        assert_masked(pl_module, self.pruner.masks)
        masks = {n: m.cpu() for n, m in self.pruner.masks.items()}
        torch.save(masks, os.path.join(self.out, f"rank{trainer.global_rank}.pt"))
        torch.save(self.pruner.summary, os.path.join(self.out, f"summary{trainer.global_rank}.pt"))


class WeightsBeforePruning(pl.Callback):
    """Saves the weights each rank prunes (DDP has broadcast rank 0's); listed before the pruning callback."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, os.path.join(self.out, f"weights{trainer.global_rank}.pt"))


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


def test_ddp_spawn_ranks_share_the_scoring_work(tmp_path: Path) -> None:
    """Each rank scores half of the 16-sample set; the masks are one process's with chunks of 8 (BatchNorm in train
    mode normalises each chunk by its own statistics, so this is the reference, not the whole set at once)."""
    cb = callback(loss="classification")
    t = trainer(
        tmp_path, callbacks=[WeightsBeforePruning(str(tmp_path)), cb, RankMaskDump(cb, str(tmp_path))],
        strategy="ddp_spawn", devices=2, max_steps=1,
    )
    t.fit(PerRankSeed(), DataLoader(xy_dataset(), batch_size=8))
    summaries = [torch.load(tmp_path / f"summary{r}.pt", weights_only=False) for r in (0, 1)]
    for summary in summaries:
        assert summary["world_size"] == 2 and summary["scoring_set_size"] == 16 and summary["micro_batch"] is None
        assert summary["shard_sizes"] == [8, 8] and len(summary["rank_pruning_seconds"]) == 2
    assert summaries[0]["rank_pruning_seconds"] == summaries[1]["rank_pruning_seconds"]
    weights = [torch.load(tmp_path / f"weights{r}.pt") for r in (0, 1)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # DDP broadcast rank 0's
    model = TinyNet()
    model.load_state_dict(weights[0])
    pruner = cb.pruner.replace(micro_batch=8, loss_fn=ClassificationLoss(cb.pruner.temperature))
    one = pruner.prune(model, DataLoader(xy_dataset(), batch_size=8), cb.target, process_group=None).masks
    rank0 = torch.load(tmp_path / "rank0.pt")
    assert set(one) == set(rank0) and all(torch.equal(one[n], rank0[n]) for n in one)
