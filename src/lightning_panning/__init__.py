"""lightning-panning: Neural Network Panning and RLPanning (Kang et al. 2022) for PyTorch Lightning.

Prune any network before training with :func:`prune` (plain PyTorch), or any LightningModule inside ``Trainer.fit``
with ``Trainer(callbacks=[PanningCallback(target=0.98)])`` (:mod:`lightning_panning.callbacks`). Importing the
package registers the RLPanning environment with Gymnasium: ``gym.make("lightning_panning/Panning-v0", ...)``.
The engine's every piece is in :mod:`lightning_panning.core`; what a user calls is here.
"""

import gymnasium as _gym

from lightning_panning.compaction import compact
from lightning_panning.core import (
    METHODS,
    SNIP,
    FixedWeights,
    GraSP,
    LayerQuotas,
    Magnitude,
    Panning,
    PruningResult,
    Random,
    Scorer,
    ScoringContext,
    Selector,
    StageTable,
    SynFlow,
    TopK,
    WeightSchedule,
    apply_masks,
    density,
    effective_sparsity,
    get_pruner,
    prunable_parameters,
    prune,
    register_method,
    register_scorer,
    shuffle_masks,
)
from lightning_panning.core.enforce import MaskEnforcer

__version__ = "0.1.0"

#: Gymnasium id of :class:`lightning_panning.rl.PanningEnv` (registered on import; the env module loads lazily).
ENV_ID = "lightning_panning/Panning-v0"
if ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="lightning_panning.rl.env:PanningEnv")

__all__ = [
    "ENV_ID",
    "METHODS",
    "SNIP",
    "FixedWeights",
    "GraSP",
    "LayerQuotas",
    "Magnitude",
    "MaskEnforcer",
    "Panning",
    "PruningResult",
    "Random",
    "Scorer",
    "ScoringContext",
    "Selector",
    "StageTable",
    "SynFlow",
    "TopK",
    "WeightSchedule",
    "__version__",
    "apply_masks",
    "compact",
    "density",
    "effective_sparsity",
    "get_pruner",
    "prunable_parameters",
    "prune",
    "register_method",
    "register_scorer",
    "shuffle_masks",
]
