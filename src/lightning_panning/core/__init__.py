"""The pruning engine in pure PyTorch, one concern per module.

* :mod:`.params` — which parameters are prunable; :mod:`.batch` / :mod:`.inputs` — the scoring batch and the call
  of ``forward``; :mod:`.scorers` — the scoring context and the scorers (:mod:`.prospr`, :mod:`.ntk_sap`,
  :mod:`.phew` and :mod:`.px` — one later method each); :mod:`.probe` — the data-free path probe;
* :mod:`.fusion` — normalisation and fusion; :mod:`.weights` — the metric weights per round; :mod:`.schedules` — the
  sparsity per round; :mod:`.selection` — which weights a round keeps;
* :mod:`.session` — the loop; :mod:`.pruner` — ``Panning``, every setting; :mod:`.methods` — named presets and
  ``prune``; :mod:`.results` — what a run returns; :mod:`.masks` — applying and measuring masks; :mod:`.enforce` —
  keeping them applied while the network trains.
"""

from lightning_panning.core.batch import ClassificationLoss, LossFn, SamplePool, balanced_batch, scoring_batch
from lightning_panning.core.enforce import MaskEnforcer
from lightning_panning.core.fusion import fuse, normalize
from lightning_panning.core.inputs import ModelInput, model_input
from lightning_panning.core.masks import (
    EffectiveSparsity,
    Masks,
    apply_masks,
    density,
    effective_masks,
    effective_sparsity,
    output_spread,
    pack_masks,
    shuffle_masks,
    unpack_masks,
    zero_pruned_,
)
from lightning_panning.core.methods import METHODS, get_pruner, prune, register_method
from lightning_panning.core.ntk_sap import NTKSAP
from lightning_panning.core.params import DefaultRule, SelectionReport, prunable_parameters, selection_report
from lightning_panning.core.prospr import ProsPr
from lightning_panning.core.pruner import Panning
from lightning_panning.core.px import PX, PXError
from lightning_panning.core.results import PruningResult, RoundRecord
from lightning_panning.core.schedules import SCHEDULES, exponential, keep_count, linear
from lightning_panning.core.scorers import (
    PHEW,
    SCORERS,
    SNIP,
    GraSP,
    GraSPOriginal,
    Magnitude,
    Random,
    Scorer,
    ScoringContext,
    SynFlow,
    get_scorer,
    register_scorer,
)
from lightning_panning.core.selection import (
    SELECTORS,
    AuthorsThreshold,
    LayerQuotas,
    Selector,
    TopK,
    get_selector,
    layer_quotas,
    select_top_k,
)
from lightning_panning.core.session import PanningSession
from lightning_panning.core.weights import TABLE3, FixedWeights, StageTable, WeightSchedule

__all__ = [
    "METHODS",
    "NTKSAP",
    "PHEW",
    "PX",
    "SCHEDULES",
    "SCORERS",
    "SELECTORS",
    "SNIP",
    "TABLE3",
    "AuthorsThreshold",
    "ClassificationLoss",
    "DefaultRule",
    "EffectiveSparsity",
    "FixedWeights",
    "GraSP",
    "GraSPOriginal",
    "LayerQuotas",
    "LossFn",
    "Magnitude",
    "MaskEnforcer",
    "Masks",
    "ModelInput",
    "PXError",
    "Panning",
    "PanningSession",
    "ProsPr",
    "PruningResult",
    "Random",
    "RoundRecord",
    "SamplePool",
    "Scorer",
    "ScoringContext",
    "SelectionReport",
    "Selector",
    "StageTable",
    "SynFlow",
    "TopK",
    "WeightSchedule",
    "apply_masks",
    "balanced_batch",
    "density",
    "effective_masks",
    "effective_sparsity",
    "exponential",
    "fuse",
    "get_pruner",
    "get_scorer",
    "get_selector",
    "keep_count",
    "layer_quotas",
    "linear",
    "model_input",
    "normalize",
    "output_spread",
    "pack_masks",
    "prunable_parameters",
    "prune",
    "register_method",
    "register_scorer",
    "scoring_batch",
    "select_top_k",
    "selection_report",
    "shuffle_masks",
    "unpack_masks",
    "zero_pruned_",
]
