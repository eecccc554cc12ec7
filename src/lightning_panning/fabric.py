"""Pruning for Lightning Fabric: :class:`FabricPanning` prunes a model after ``fabric.setup`` and keeps it sparse.

Fabric has no automatic hooks, so the integration is one object with three calls::

    model, optimizer = fabric.setup(model, optimizer)
    pruning = FabricPanning(target=0.98)
    state = {"model": model, "optimizer": optimizer, "pruning": pruning}
    if resume:
        fabric.load(path, state)                   # weights, optimizer and masks
    pruning.setup(fabric, model, [optimizer], data=train_set)   # prunes unless masks were loaded
    ...                                            # train: pruned weights are re-zeroed after every step
    fabric.save(path, state)                       # the masks travel in the checkpoint (1 bit per weight)

Under multi-process strategies (``strategy="ddp"``) the ranks share the scoring work (data-parallel scoring,
:mod:`~lightning_panning.core.distributed`) and every rank ends with bit-identical masks, verified by a hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch.distributed as dist
from lightning.fabric import Fabric
from lightning.fabric.wrappers import is_wrapped
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn
from torch.optim import Optimizer

from lightning_panning.callbacks.base import callback_pruner, float32_batch, float32_scoring
from lightning_panning.callbacks.data import unsharded
from lightning_panning.callbacks.reporting import build_summary, measure_effective_sparsity, summary_line
from lightning_panning.callbacks.strategies import check_fabric_strategy
from lightning_panning.core.batch import ClassificationLoss, Data, LossFn
from lightning_panning.core.enforce import MaskEnforcer
from lightning_panning.core.inputs import model_input
from lightning_panning.core.masks import Masks, pack_masks, unpack_masks
from lightning_panning.core.methods import METHODS
from lightning_panning.core.pruner import Panning, plain
from lightning_panning.core.results import PruningResult
from lightning_panning.core.schedules import validate_target

__all__ = ["FabricPanning"]

#: Settings that do not change the masks (left out of the resume check).
_NOT_MASK_SETTINGS = ("progress", "track_effective")


class FabricPanning:
    """Prune a model that Lightning Fabric has set up, keep it sparse while it trains, and carry the masks.

    :meth:`setup` prunes the model (any method of :data:`~lightning_panning.core.METHODS` or a configured
    :class:`~lightning_panning.core.Panning`) on a class-balanced scoring batch drawn from ``data`` with the
    pruner's seed, zeroes the pruned weights and registers a post-step hook on each optimizer that re-zeroes them
    after every ``optimizer.step()`` (:class:`~lightning_panning.core.enforce.MaskEnforcer`). The object is a
    Fabric *stateful*: put it in the state dict given to ``fabric.save`` / ``fabric.load`` and the masks (packed,
    1 bit per weight), the summary and the settings that made them travel with the checkpoint; a :meth:`setup`
    after ``fabric.load`` re-installs the loaded masks and never prunes again, and loading masks made with other
    settings is an error naming them.

    With several processes (``Fabric(strategy="ddp", devices=N)``) every rank draws the same seeded scoring set,
    scores its own chunks of it, and the sums are all-reduced: every rank ends with the same masks, verified by a
    hash. A DataLoader with a ``DistributedSampler`` (from ``fabric.setup_dataloaders``) is read whole; ranks given
    different data are an error naming them. Sharded strategies (FSDP, DeepSpeed, model parallel) are
    refused with an error that says what to do.

    Args:
        target: final sparsity in (0, 1).
        method: a key of :data:`~lightning_panning.core.METHODS` or a configured
            :class:`~lightning_panning.core.Panning`.
        options: further :class:`~lightning_panning.core.Panning` arguments overriding the method's preset.
        rounds: ``T`` of iterative methods.
        per_class: samples per class of the scoring batch.
        seed: seed of the scoring batch, dropout and random scorers.
        micro_batch: score in chunks of at most this many samples.
        loss: ``"classification"`` (cross-entropy on ``(x, y)`` batches with logits divided by the pruner's
            ``temperature``) or a callable ``loss_fn(model, batch) -> scalar``.
        verbose: an info line on rank zero after pruning or restoring.

    Example:
        >>> import torch
        >>> from lightning.fabric import Fabric
        >>> fabric = Fabric(accelerator="cpu", devices=1)
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> net, opt = fabric.setup(net, torch.optim.SGD(net.parameters(), lr=0.1))
        >>> pruning = FabricPanning(target=0.9, rounds=5, verbose=False)
        >>> data = (torch.randn(40, 8), torch.arange(4).repeat(10))
        >>> masks = pruning.setup(fabric, net, [opt], data=data)
        >>> sum(int(m.sum()) for m in masks.values())  # floor(192 * 0.1 + 1e-6) weights kept
        19
        >>> net(data[0]).sum().backward(); opt.step()
        >>> int((net.module[0].weight == 0).sum()) >= 128 - 19    # still pruned after the step
        True
    """

    def __init__(
        self,
        target: float = 0.98,
        method: str | Panning = "panning",
        options: Mapping[str, Any] | None = None,
        *,
        rounds: int | None = None,
        per_class: int | None = None,
        seed: int | None = None,
        micro_batch: int | None = None,
        loss: str | LossFn = "classification",
        verbose: bool = True,
    ) -> None:
        try:
            self.target = validate_target(target)
        except TypeError as err:
            raise ValueError(str(err)) from None
        if not isinstance(method, Panning) and (not isinstance(method, str) or method not in METHODS):
            raise ValueError(
                f"`method` must be one of {sorted(METHODS)} or a lightning_panning.Panning, got {method!r}."
            )
        self.pruner = callback_pruner(
            method, options, rounds=rounds, per_class=per_class, seed=seed, micro_batch=micro_batch, progress=False
        )
        if not (callable(loss) or loss == "classification"):
            raise ValueError(
                f"`loss` must be 'classification' or a callable loss_fn(model, batch) -> scalar tensor, got {loss!r}."
            )
        self.loss = loss
        if not isinstance(verbose, bool):
            raise ValueError(f"`verbose` must be True or False, got {verbose!r}.")
        self.verbose = verbose
        self.result: PruningResult | None = None
        self.summary: dict[str, Any] = {}
        self._masks: Masks | None = None
        self._made_with: dict[str, Any] | None = None
        self._restored = False
        self._enforcer: MaskEnforcer | None = None
        self._module: nn.Module | None = None
        self._optimizers: list[Optimizer] = []

    @property
    def masks(self) -> Masks | None:
        """``{parameter name: bool mask}`` (``True`` = kept) once pruned or loaded, else ``None``."""
        return self._masks

    def settings(self) -> dict[str, Any]:
        """Everything that decides the masks, as plain values (saved with them and compared on load)."""
        pruner = {k: v for k, v in self.pruner.settings().items() if k not in _NOT_MASK_SETTINGS}
        return {"target": self.target, "method": self.pruner.name, **pruner, "loss": plain(self.loss)}

    # -- the one call a training script makes ---------------------------------------------------------------------
    def setup(
        self,
        fabric: Fabric,
        model: nn.Module,
        optimizers: Optimizer | Iterable[Optimizer] = (),
        *,
        data: Data = None,
        example_input: Any = None,
    ) -> Masks:
        """Prune ``model`` (unless masks were loaded), zero its pruned weights and keep them zero after every step.

        Args:
            fabric: the launched Fabric.
            model: the module returned by ``fabric.setup`` (or the module given to it).
            optimizers: the optimizers that update it (as returned by ``fabric.setup``); each gets a post-step hook.
            data: the scoring data: a Dataset, a DataLoader (not set up by Fabric) or an ``(x, y)`` batch;
                ``None`` for data-free methods.
            example_input: the input's shape for data-free scorers and the effective sparsity (a tensor
                ``(B, ...)``; default: the scoring batch).

        Returns:
            The masks, ``{parameter name: bool tensor of the parameter's shape}`` on the parameters' device.

        Raises:
            ValueError: for a sharded strategy, nothing prunable, missing data, or loaded masks that do not fit the
                model.
        """
        check_fabric_strategy(fabric.strategy, type(self).__name__)
        module = model.module if is_wrapped(model) else model  # Fabric's wrapper: its public `module` is the original
        assert isinstance(module, nn.Module)
        if isinstance(optimizers, Optimizer):
            optimizers = [optimizers]
        self.detach()
        self._module, self._optimizers = module, list(optimizers)
        if self._masks is None:
            self._prune(fabric, module, data, example_input)
        elif self._restored and self.verbose:
            rank_zero_info(f"{type(self).__name__}: masks loaded from the checkpoint; not pruning again.")
        self._install()
        assert self._masks is not None
        return self._masks

    def _prune(self, fabric: Fabric, module: nn.Module, data: Data, example_input: Any) -> None:
        """Prune, the ranks sharing the scoring work (the one place the pruning is called).

        With several processes every rank draws the same scoring set (a loader with a ``DistributedSampler`` is
        read whole), scores its own chunks, and the sums are all-reduced (:mod:`~lightning_panning.core.distributed`):
        every rank computes the same masks, verified by a hash; ranks given different data are an error naming them.
        """
        pruner = self.pruner
        if pruner.needs_data:
            loss_fn = self.loss if callable(self.loss) else ClassificationLoss(pruner.temperature)
            pruner = pruner.replace(loss_fn=loss_fn)
        device = next(iter(pruner.parameters(module).values())).device
        batch = None if data is None else pruner.scoring_batch(unsharded(data), device)
        group = None
        if fabric.world_size > 1:
            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError(
                    f"{type(self).__name__}: the {type(fabric.strategy).__name__} runs {fabric.world_size} processes "
                    "without a torch.distributed process group, which the ranks share the scoring work through; use "
                    "strategy='ddp' or a single device."
                )
            group = dist.group.WORLD
        with float32_scoring(module) as upcast:  # Fabric(precision="bf16-true"): score the exact float32 twin
            if upcast:
                batch = float32_batch(batch)
            self.result = pruner.prune(module, batch, self.target, example_input=example_input, process_group=group)
        self._masks, self._made_with = self.result.masks, self.settings()
        example = example_input
        if example is None and batch is not None:
            try:
                example = model_input(module, batch)
            except (TypeError, ValueError):
                example = None
        effective = measure_effective_sparsity(module, self._masks, example, type(self).__name__)
        self.summary = build_summary(self.result, self._masks, effective, {"world_size": fabric.world_size})
        if self.verbose:
            rank_zero_info(f"{type(self).__name__}: {summary_line(self.summary)}")

    def _install(self) -> None:
        assert self._module is not None and self._masks is not None
        try:
            self._enforcer = MaskEnforcer(self._module, self._masks)
        except ValueError as err:
            raise ValueError(
                f"{type(self).__name__}: the pruning masks do not fit {type(self._module).__name__}: {err} Load the "
                "checkpoint into the model it was made from."
            ) from None
        device = next(iter(self._enforcer.params)).device if self._enforcer.params else None
        self._masks = {n: m.to(device) for n, m in self._masks.items()}
        self._enforcer.apply()
        self._enforcer.attach(self._optimizers)

    def detach(self) -> None:
        """Remove the optimizer hooks (the masks are kept; :meth:`setup` installs them again)."""
        if self._enforcer is not None:
            self._enforcer.detach()
            self._enforcer = None

    # -- Fabric's stateful protocol -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The packed masks (1 bit per weight), the summary and the settings that made them (empty before pruning)."""
        if self._masks is None:
            return {}
        return {"version": 1, "masks": pack_masks(self._masks), "summary": dict(self.summary),
                "settings": self._made_with}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Take the masks of a checkpoint; if :meth:`setup` already ran, re-install them on the same model.

        Raises:
            ValueError: if the masks were made with other settings (naming each one that differs).
        """
        packed = state_dict.get("masks")
        if not packed:
            return
        saved = state_dict.get("settings")
        current = self.settings()
        changed = [
            f"`{k}` is {saved[k]!r} in the checkpoint but {current[k]!r} here"
            for k in current
            if saved is not None and k in saved and saved[k] != current[k]
        ]
        if changed:
            raise ValueError(
                f"{type(self).__name__}: the checkpoint's pruning masks were made with other settings: "
                f"{'; '.join(changed)}. Loading never prunes again: load with the checkpoint's settings, or start "
                "without loading to prune anew."
            )
        self._masks = unpack_masks(packed)
        self.summary = dict(state_dict.get("summary", {}))
        self._made_with = saved
        self._restored = True
        if self._enforcer is not None:  # loaded after setup: the loaded masks replace the ones installed
            self.detach()
            self._install()
