"""PanningCallback under ModelParallelStrategy (FSDP2 ``fully_shard``) on CPU with gloo.

The callback prunes the whole model at ``setup``, before ``configure_model`` shards it; the masks then become
DTensors sharded like their parameters, and the pruned weights stay zero on every shard. One process runs here (a
1-rank mesh still makes every parameter a DTensor); two processes run as a script (Lightning launches the ranks by
re-running the script).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_panning.callbacks import PanningCallback, RLPanningCallback

ROOT = Path(__file__).resolve().parents[1]

MODULE = textwrap.dedent(
    """
    import torch
    import lightning.pytorch as pl
    from torch import nn
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor


    class Sharded(pl.LightningModule):
        '''Layers built in __init__ (pruned whole at setup), sharded with FSDP2 in configure_model.'''

        def __init__(self, extra_layer: bool = False) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
            self.extra_layer = extra_layer

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        def configure_model(self):
            if self.extra_layer:
                self.head = nn.Linear(4, 4)  # built after the pruning at setup: never scored
            if self.device_mesh is None:  # not under ModelParallelStrategy: stays whole
                return
            mesh = self.device_mesh["data_parallel"]
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    fully_shard(layer, mesh=mesh)
            fully_shard(self, mesh=mesh)


    def full_weights(module):
        '''{name: the whole weight} (gathered from the shards), on the CPU.'''
        out = {}
        for name, p in module.named_parameters():
            out[name] = (p.full_tensor() if isinstance(p, DTensor) else p).detach().cpu().clone()
        return out
    """
)


@pytest.fixture(scope="module")
def sharded_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("sharded")
    (folder / "sharded_module.py").write_text(MODULE)
    sys.path.insert(0, str(folder))
    try:
        import sharded_module

        yield sharded_module
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("sharded_module", None)


@pytest.fixture(autouse=True)
def no_process_group_left() -> Iterator[None]:
    yield
    if dist.is_available() and dist.is_initialized():  # the 1-rank gloo group the strategy opened in this process
        dist.destroy_process_group()


def data(seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.arange(4).repeat(16)), batch_size=16)


def trainer(tmp_path: Path, callback: pl.Callback, steps: int, devices: int = 1) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", devices=devices, max_steps=steps, logger=False,
        strategy=ModelParallelStrategy(data_parallel_size=devices, tensor_parallel_size=1),
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, callbacks=[callback],
    )


def assert_zero_where_pruned(weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        assert torch.count_nonzero(weights[name][~mask.cpu()]) == 0, name
        assert torch.count_nonzero(weights[name][mask.cpu()]) == int(mask.sum()), name  # kept weights train


def test_prunes_whole_model_before_sharding_and_keeps_shards_zero(tmp_path: Path, sharded_module: Any) -> None:
    cb = PanningCallback(target=0.9, rounds=3, verbose=False)
    model = sharded_module.Sharded()
    trainer(tmp_path, cb, steps=4).fit(model, data())
    assert cb.masks is not None
    assert all(isinstance(p, DTensor) for p in model.parameters())  # really sharded
    # the same masks as pruning the unsharded model on one device with the same settings and data
    plain = PanningCallback(target=0.9, rounds=3, verbose=False)
    single = pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, max_steps=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[plain])
    single.fit(sharded_module.Sharded(), data())
    assert plain.masks is not None
    assert all(torch.equal(cb.masks[n].cpu(), plain.masks[n].cpu()) for n in plain.masks)
    assert_zero_where_pruned(sharded_module.full_weights(model), cb.masks)


def test_resume_restores_the_checkpoint_masks_after_setup(tmp_path: Path, sharded_module: Any) -> None:
    first = PanningCallback(target=0.9, rounds=3, verbose=False)
    t = trainer(tmp_path, first, steps=2)
    t.fit(sharded_module.Sharded(), data(seed=0))
    t.save_checkpoint(tmp_path / "first.ckpt")  # a distributed checkpoint (a folder)
    assert first.masks is not None

    resumed = PanningCallback(target=0.9, rounds=3, verbose=False)
    model = sharded_module.Sharded()
    other_data = data(seed=5)  # scoring on it at setup gives other masks; the checkpoint's must win
    trainer(tmp_path, resumed, steps=5).fit(model, other_data, ckpt_path=tmp_path / "first.ckpt")
    assert resumed.masks is not None and resumed.result is None
    assert all(torch.equal(resumed.masks[n].cpu(), first.masks[n].cpu()) for n in first.masks)
    fresh = PanningCallback(target=0.9, rounds=3, verbose=False)
    trainer(tmp_path, fresh, steps=1).fit(sharded_module.Sharded(), data(seed=5))
    assert fresh.masks is not None
    assert any(not torch.equal(fresh.masks[n].cpu(), first.masks[n].cpu()) for n in first.masks)  # the test bites
    assert_zero_where_pruned(sharded_module.full_weights(model), first.masks)


def test_rlpanning_callback_prunes_before_sharding_and_resumes(tmp_path: Path, sharded_module: Any) -> None:
    """RLPanningCallback (the shipped policy) takes the same path: whole model at setup, masks sharded, resume."""

    def rl() -> RLPanningCallback:
        return RLPanningCallback(target=0.9, rounds=3, per_class=4, verbose=False, log_figure=False)

    cb = rl()
    model = sharded_module.Sharded()
    t = trainer(tmp_path, cb, steps=3)
    t.fit(model, data())
    assert cb.masks is not None and len(cb.rl_steps) == 3
    assert all(isinstance(p, DTensor) for p in model.parameters())
    plain = rl()
    pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, max_steps=1, logger=False,
               enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
               callbacks=[plain]).fit(sharded_module.Sharded(), data())
    assert plain.masks is not None
    assert all(torch.equal(cb.masks[n].cpu(), plain.masks[n].cpu()) for n in plain.masks)
    assert_zero_where_pruned(sharded_module.full_weights(model), cb.masks)
    t.save_checkpoint(tmp_path / "rl.ckpt")

    resumed = rl()
    again = sharded_module.Sharded()
    trainer(tmp_path, resumed, steps=5).fit(again, data(seed=5), ckpt_path=tmp_path / "rl.ckpt")
    assert resumed.masks is not None and resumed.result is None  # restored from the checkpoint, not pruned again
    assert all(torch.equal(resumed.masks[n].cpu(), cb.masks[n].cpu()) for n in cb.masks)
    assert_zero_where_pruned(sharded_module.full_weights(again), cb.masks)


def test_layers_built_in_configure_model_are_an_error(tmp_path: Path, sharded_module: Any) -> None:
    cb = PanningCallback(target=0.9, rounds=2, verbose=False)
    with pytest.raises(ValueError, match=r"gained parameters after it was pruned at `setup` \(head\.bias, head\.weight"):
        trainer(tmp_path, cb, steps=1).fit(sharded_module.Sharded(extra_layer=True), data())


def test_meta_layers_at_setup_are_an_error(tmp_path: Path, sharded_module: Any) -> None:
    with torch.device("meta"):
        model = sharded_module.Sharded()
    cb = PanningCallback(target=0.9, rounds=2, verbose=False)
    with pytest.raises(ValueError, match=r"under ModelParallelStrategy the model is pruned whole at `setup`.*meta"):
        trainer(tmp_path, cb, steps=1).fit(model, data())


#: what Lightning's launcher sets in ``os.environ`` (a child must not inherit a finished run's rendezvous)
LAUNCH_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK",
                    "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")
TWO_RANKS = textwrap.dedent(
    """
    import sys
    import torch
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.utils.data import DataLoader, TensorDataset
    from lightning_panning.callbacks import PanningCallback
    from sharded_module import Sharded, full_weights

    out = sys.argv[1]
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.arange(4).repeat(16)), batch_size=16)
    cb = PanningCallback(target=0.9, rounds=3, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, max_steps=4, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, callbacks=[cb],
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
    )
    model = Sharded()
    trainer.fit(model, data)
    local = {n: tuple(p.to_local().shape) for n, p in model.named_parameters()}
    torch.save({"masks": {n: m.cpu() for n, m in cb.masks.items()}, "weights": full_weights(model), "local": local},
               f"{out}/rank{trainer.global_rank}.pt")
    """
)


def test_two_processes_shard_and_agree(tmp_path: Path, sharded_module: Any) -> None:
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    folder = str(Path(sharded_module.__file__).parent)
    path = os.pathsep.join([str(ROOT / "src"), folder, os.environ.get("PYTHONPATH", "")])
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}  # left by the 1-process fits above
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600,
        env={**env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert rank0["local"]["net.0.weight"] == (16, 8)  # each rank holds half of the (32, 8) weight
    single = PanningCallback(target=0.9, rounds=3, verbose=False)
    pl.Trainer(default_root_dir=tmp_path, accelerator="cpu", devices=1, max_steps=1, logger=False,
               enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
               callbacks=[single]).fit(sharded_module.Sharded(), data())
    assert single.masks is not None
    for name, mask in single.masks.items():
        assert torch.equal(rank0["masks"][name], mask.cpu()) and torch.equal(rank1["masks"][name], mask.cpu())
    assert_zero_where_pruned(rank0["weights"], single.masks)
    assert all(torch.equal(rank0["weights"][n], rank1["weights"][n]) for n in rank0["weights"])
