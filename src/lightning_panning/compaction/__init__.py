"""Turn a pruned network into a really smaller and faster one: exact compaction and sparse-kernel export.

:func:`compact` removes the channels a mask leaves with no input-to-output path (folding constant ones into biases),
using Torch-Pruning's dependency graph for the surgery, and turns sparse ``Linear`` layers into CSR
(:class:`SparseLinear`) where that is measured faster. :func:`model_cost` counts parameters and multiply-accumulates.
"""

from lightning_panning.compaction.api import (
    MEMORY_FORMATS,
    MODES,
    SPARSE,
    Compaction,
    CompactionError,
    compact,
    compaction,
)
from lightning_panning.compaction.cost import ModelCost, model_cost
from lightning_panning.compaction.sparse import SparseLinear
from lightning_panning.compaction.surgery import UnsupportedModelError

__all__ = [
    "MEMORY_FORMATS",
    "MODES",
    "SPARSE",
    "Compaction",
    "CompactionError",
    "ModelCost",
    "SparseLinear",
    "UnsupportedModelError",
    "compact",
    "compaction",
    "model_cost",
]
