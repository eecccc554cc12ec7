"""Lightning callbacks: prune a LightningModule before training and keep it sparse."""

from lightning_panning.callbacks.base import LOSSES, BasePruningCallback, TrainingStepLoss, muted_logging
from lightning_panning.callbacks.compact import CompactionCallback
from lightning_panning.callbacks.enforce import MaskEnforcer
from lightning_panning.callbacks.panning import PanningCallback
from lightning_panning.callbacks.rl import RLPanningCallback

__all__ = [
    "LOSSES",
    "BasePruningCallback",
    "CompactionCallback",
    "MaskEnforcer",
    "PanningCallback",
    "RLPanningCallback",
    "TrainingStepLoss",
    "muted_logging",
]
