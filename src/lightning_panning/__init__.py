"""lightning-panning: Neural Network Panning and RLPanning (Kang et al. 2022) for PyTorch Lightning.

Prune any network before training with :func:`prune` (plain PyTorch), or any LightningModule inside ``Trainer.fit``
with ``Trainer(callbacks=[PanningCallback(target=0.98)])``. Importing the package registers the RLPanning
environment with Gymnasium: ``gym.make("lightning_panning/Panning-v0", data_dir=...)``.
"""

import gymnasium as _gym

from lightning_panning.compaction import compact, model_cost
from lightning_panning.core import *  # noqa: F403
from lightning_panning.core import __all__ as _core_all

__version__ = "0.1.0"

#: Gymnasium id of :class:`lightning_panning.rl.PanningEnv` (registered on import; the env module loads lazily).
ENV_ID = "lightning_panning/Panning-v0"
if ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="lightning_panning.rl.env:PanningEnv")

__all__ = [*_core_all, "ENV_ID", "__version__", "compact", "model_cost"]
