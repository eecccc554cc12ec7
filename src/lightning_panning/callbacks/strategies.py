"""Which Lightning and Fabric strategies pruning supports, how masks reach sharded parameters, clear errors otherwise.

The masks are kept by re-zeroing the pruned entries of the parameters an optimizer updates
(:class:`~lightning_panning.core.enforce.MaskEnforcer`), and the pruning scores a module that holds every weight on
one device. Under Lightning's ``ModelParallelStrategy`` (FSDP2 ``fully_shard`` in ``configure_model``; tensor
parallel layouts follow the same rule, untested) the callbacks therefore prune the whole model at ``setup``, before
``configure_model`` shards it, and give the enforcer masks that are DTensors sharded like their parameters
(:func:`sharded_masks`). Strategies whose shards the masks are not mapped to (FSDP1's flat parameters; Fabric, which
shards in ``fabric.setup``) or that step an optimizer on a copy of the parameters (DeepSpeed's partitioned fp32
master weights, every ZeRO stage) are refused at setup with what to do instead: never a dense or half-masked model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

from lightning_panning.core.masks import Masks

__all__ = [
    "check_fabric_strategy",
    "check_new_parameters",
    "check_strategy",
    "check_whole_before_sharding",
    "prunes_before_sharding",
    "sharded_masks",
    "unsupported_reason",
]

_TRAINER = ("lightning.pytorch.", "pytorch_lightning.")
_FABRIC = ("lightning.fabric.", "lightning_fabric.")
_DEEPSPEED = (
    "DeepSpeed's optimizer steps on its own partitioned fp32 copy of the weights (every ZeRO stage), which the "
    "pruning masks cannot reach, so the pruned weights would grow back"
)
_FSDP_TRAINER = (
    "FSDP (version 1) flattens the parameters into sharded FlatParameters, and the masks are not mapped onto those "
    "flat shards (FSDP2's DTensor shards are)"
)
_SHARDED_FABRIC = (
    "`fabric.setup` shards the parameters across the processes, so no process holds a whole weight to score and the "
    "masks do not match the shards the optimizer updates"
)
#: ``{(kind, class name): why pruning cannot run under it}``, kind ``"trainer"`` or ``"fabric"``.
UNSUPPORTED_STRATEGIES: dict[tuple[str, str], str] = {
    ("trainer", "DeepSpeedStrategy"): _DEEPSPEED,
    ("trainer", "FSDPStrategy"): _FSDP_TRAINER,
    ("fabric", "DeepSpeedStrategy"): _DEEPSPEED,
    ("fabric", "FSDPStrategy"): _SHARDED_FABRIC,
    ("fabric", "ModelParallelStrategy"): _SHARDED_FABRIC,
    ("fabric", "XLAFSDPStrategy"): _SHARDED_FABRIC,
}
_WHAT_TO_DO = {
    "trainer": (
        "Use strategy='ddp' (or 'ddp_spawn', or one device) when the model fits on one device; to shard it, use "
        "ModelParallelStrategy with FSDP2 `fully_shard` applied in `configure_model` to layers built in `__init__`: "
        "the callback prunes the whole model at `setup`, before it is sharded (see docs/guide/multi-device.md)."
    ),
    "fabric": (
        "Use strategy='ddp' (or one device), or train under Lightning's Trainer with ModelParallelStrategy (FSDP2), "
        "where the pruning callbacks prune the whole model before it is sharded (see docs/guide/multi-device.md)."
    ),
}


def _kind_and_name(strategy: Any) -> Iterable[tuple[str, str]]:
    for cls in type(strategy).__mro__:
        if cls.__module__.startswith(_TRAINER):
            yield "trainer", cls.__name__
        elif cls.__module__.startswith(_FABRIC):
            yield "fabric", cls.__name__


def unsupported_reason(strategy: Any) -> str | None:
    """Why pruning cannot run under ``strategy`` (a Lightning or Fabric strategy object), or ``None`` if it can.

    Classes are matched by module and name through the MRO, so subclasses are refused too, and a strategy whose
    dependency is not installed (DeepSpeed) is recognised without importing it.

    Example:
        >>> from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
        >>> unsupported_reason(DDPStrategy()) is None
        True
        >>> unsupported_reason(FSDPStrategy()).startswith("FSDP (version 1) flattens")
        True
    """
    for key in _kind_and_name(strategy):
        if key in UNSUPPORTED_STRATEGIES:
            return UNSUPPORTED_STRATEGIES[key]
    return None


def check_strategy(strategy: Any, who: str) -> None:
    """Raise ``ValueError`` naming ``strategy`` if a pruning callback (``who``) cannot run under it.

    Args:
        strategy: ``trainer.strategy``.
        who: the callback's class name (starts the message).
    """
    why = unsupported_reason(strategy)
    if why is not None:
        raise ValueError(
            f"{who} does not support Trainer(strategy={type(strategy).__name__}): {why}. {_WHAT_TO_DO['trainer']}"
        )


def check_fabric_strategy(strategy: Any, who: str) -> None:
    """Raise ``ValueError`` naming ``strategy`` if ``FabricPanning`` (``who``) cannot run under it.

    Args:
        strategy: ``fabric.strategy``.
        who: the class name that starts the message.
    """
    why = unsupported_reason(strategy)
    if why is not None:
        raise ValueError(
            f"{who} does not support Fabric(strategy={type(strategy).__name__}): {why}. {_WHAT_TO_DO['fabric']}"
        )


def prunes_before_sharding(strategy: Any) -> bool:
    """Whether the callbacks prune at ``setup``, before ``configure_model`` shards the model (ModelParallelStrategy).

    Example:
        >>> from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy
        >>> prunes_before_sharding(ModelParallelStrategy()), prunes_before_sharding(DDPStrategy())
        (True, False)
    """
    return ("trainer", "ModelParallelStrategy") in set(_kind_and_name(strategy))


def check_whole_before_sharding(module: nn.Module, strategy: Any, who: str) -> None:
    """Raise if ``module`` holds meta tensors at ``setup`` under a strategy that shards it afterwards.

    The callback prunes at ``setup``, before ``configure_model``; layers on the meta device there (e.g. built under
    ``trainer.init_module(empty_init=True)``) hold no values to score.
    """
    meta = [n for n, p in module.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(
            f"{who}: under {type(strategy).__name__} the model is pruned whole at `setup`, before `configure_model` "
            f"shards it, but {type(module).__name__} has parameters on the meta device there ({', '.join(meta[:3])}"
            f"{', ...' if len(meta) > 3 else ''}), which hold no values to score. Build the layers with real weights "
            "in `__init__` (not under `trainer.init_module(empty_init=True)`) and shard them in `configure_model`."
        )


def check_new_parameters(module: nn.Module, before: Iterable[str], who: str) -> None:
    """Raise if ``module`` has parameters that were not there when it was pruned at ``setup`` (never half-masked).

    Args:
        module: the module after ``configure_model`` and the strategy's setup.
        before: the parameter names it had when it was pruned.
        who: the callback's class name.
    """
    new = sorted({n for n, _ in module.named_parameters()} - set(before))
    if new:
        raise ValueError(
            f"{who}: {type(module).__name__} gained parameters after it was pruned at `setup` ({', '.join(new[:3])}"
            f"{', ...' if len(new) > 3 else ''}), e.g. layers built in `configure_model`; they were never scored and "
            "would train dense. Build every layer in `__init__` and only shard them in `configure_model`."
        )


@torch.no_grad()
def sharded_masks(module: nn.Module, masks: Mapping[str, Tensor]) -> Masks:
    """``masks`` laid out like ``module``'s parameters: a DTensor mask for each DTensor parameter, else as given.

    A DTensor parameter (FSDP2 ``fully_shard``, tensor parallel) gets its whole mask distributed with the
    parameter's own device mesh and placements, so each rank's local mask covers exactly its local shard and
    :class:`~lightning_panning.core.enforce.MaskEnforcer` multiplies shard by shard, with no communication.

    Args:
        module: the (possibly sharded) module.
        masks: ``{name: bool tensor of the parameter's global shape}``, the same on every rank.

    Returns:
        ``{name: bool mask}``: DTensors of the parameter's global shape where the parameter is a DTensor.
    """
    params = dict(module.named_parameters())
    out: Masks = {}
    for name, mask in masks.items():
        param = params.get(name)
        if isinstance(param, DTensor):
            local = mask.to(param.to_local().device)
            out[name] = distribute_tensor(local, param.device_mesh, param.placements)
        else:
            out[name] = mask
    return out
