"""Strategies whose shards the masks do not reach, or that step on a copy of the weights, are refused at setup.

ModelParallelStrategy (FSDP2) is supported by the callbacks (tests/test_sharded.py runs it); Lightning's
FSDPStrategy and Fabric's FSDP refuse to run on a CPU themselves, and DeepSpeed is not installed here, so their
refusal is tested on the strategy objects (DeepSpeed's built without its ``__init__``).
"""

from __future__ import annotations

from typing import Any

import lightning.fabric.strategies as fabric_strategies
import pytest
import torch
from lightning.fabric import Fabric
from lightning.pytorch import strategies
from torch import nn

from lightning_panning.callbacks.strategies import check_fabric_strategy, check_strategy, unsupported_reason
from lightning_panning.fabric import FabricPanning


def bare(cls: type) -> Any:
    """An instance without running ``__init__`` (DeepSpeed and XLA refuse to be built when not installed)."""
    return object.__new__(cls)


REFUSED_TRAINER = {
    "FSDPStrategy": lambda: strategies.FSDPStrategy(),
    "DeepSpeedStrategy": lambda: bare(strategies.DeepSpeedStrategy),
}
REFUSED_FABRIC = {
    "FSDPStrategy": lambda: fabric_strategies.FSDPStrategy(),
    "ModelParallelStrategy": lambda: fabric_strategies.ModelParallelStrategy(parallelize_fn=lambda m, mesh: m),
    "DeepSpeedStrategy": lambda: bare(fabric_strategies.DeepSpeedStrategy),
    "XLAFSDPStrategy": lambda: bare(fabric_strategies.XLAFSDPStrategy),
}


@pytest.mark.parametrize("name", sorted(REFUSED_TRAINER))
def test_trainer_strategies_that_shard_are_refused_by_name(name: str) -> None:
    strategy = REFUSED_TRAINER[name]()
    with pytest.raises(ValueError, match=rf"PanningCallback does not support Trainer\(strategy={name}\): .*'ddp'"):
        check_strategy(strategy, "PanningCallback")


@pytest.mark.parametrize("name", sorted(REFUSED_FABRIC))
def test_fabric_strategies_that_shard_are_refused_by_name(name: str) -> None:
    strategy = REFUSED_FABRIC[name]()
    with pytest.raises(ValueError, match=rf"FabricPanning does not support Fabric\(strategy={name}\): .*prune"):
        check_fabric_strategy(strategy, "FabricPanning")


def test_subclasses_are_refused_and_whole_parameter_strategies_pass() -> None:
    class MyFSDP(strategies.FSDPStrategy):
        pass

    assert unsupported_reason(MyFSDP()) == unsupported_reason(strategies.FSDPStrategy())
    for ok in (strategies.DDPStrategy(), strategies.SingleDeviceStrategy("cpu"), strategies.ModelParallelStrategy(),
               fabric_strategies.DDPStrategy(), fabric_strategies.SingleDeviceStrategy(torch.device("cpu"))):
        assert unsupported_reason(ok) is None


def test_fabric_model_parallel_is_refused_before_touching_the_model() -> None:
    fabric = Fabric(accelerator="cpu", devices=1,
                    strategy=fabric_strategies.ModelParallelStrategy(parallelize_fn=lambda m, mesh: m))
    model = nn.Linear(4, 4)
    dense = model.weight.detach().clone()
    with pytest.raises(ValueError, match=r"FabricPanning does not support Fabric\(strategy=ModelParallelStrategy\)"):
        FabricPanning(target=0.9).setup(fabric, model)
    assert torch.equal(model.weight, dense)
