"""Lightning callbacks: prune a LightningModule before training and keep it sparse (only callbacks live here)."""

from lightning_panning.callbacks.base import BasePruningCallback
from lightning_panning.callbacks.compact import CompactionCallback
from lightning_panning.callbacks.panning import PanningCallback
from lightning_panning.callbacks.rl import RLPanningCallback

__all__ = ["BasePruningCallback", "CompactionCallback", "PanningCallback", "RLPanningCallback"]
