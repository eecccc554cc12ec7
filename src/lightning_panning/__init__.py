"""lightning-panning: Neural Network Panning and RLPanning (Kang et al. 2022) for PyTorch Lightning.

Prune any network before training with :func:`prune` (plain PyTorch), or any LightningModule inside ``Trainer.fit``
with ``Trainer(callbacks=[PanningCallback(target=0.98)])``.
"""

from lightning_panning.compaction import compact, model_cost
from lightning_panning.core import *  # noqa: F403
from lightning_panning.core import __all__ as _core_all

__version__ = "0.1.0"

__all__ = [*_core_all, "__version__", "compact", "model_cost"]
