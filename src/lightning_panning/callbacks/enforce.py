"""The Lightning side of keeping pruned weights at zero: :class:`EnforcingCallback` over the core's MaskEnforcer."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_panning.core.enforce import MaskEnforcer

__all__ = ["EnforcingCallback"]


class EnforcingCallback(Callback):
    """A callback that keeps its :class:`MaskEnforcer` (``self._enforcer``, set by the subclass) on the optimizers.

    Re-attaches it when the Trainer's optimizers were re-created (e.g. by another callback) and detaches it at
    ``teardown``, so that no hook outlives the fit.
    """

    _enforcer: MaskEnforcer | None = None

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enforcer is not None and not self._enforcer.attached_to(trainer.optimizers):
            self._enforcer.attach(trainer.optimizers)
            self._enforcer.apply()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._enforcer is not None:
            self._enforcer.detach()
            self._enforcer = None
