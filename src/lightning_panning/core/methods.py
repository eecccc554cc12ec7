"""The method registry (named presets of :class:`~lightning_panning.core.pruner.Panning`) and :func:`prune`.

There is one way to build a pruner from a name: :func:`get_pruner` (``method`` may also be a ready ``Panning``).
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import nn

from lightning_panning.core.batch import Data
from lightning_panning.core.masks import Masks, untrainable_reason
from lightning_panning.core.ntk_sap import NTKSAP
from lightning_panning.core.prospr import ProsPr
from lightning_panning.core.pruner import Panning
from lightning_panning.core.px import PX
from lightning_panning.core.scorers import GraSP, SynFlow
from lightning_panning.core.weights import WeightSchedule

__all__ = ["METHODS", "get_pruner", "prune", "register_method"]


#: Method name → keyword arguments of :class:`Panning`; ``"rounds": 1`` marks one-shot methods. Add entries with
#: :func:`register_method`.
METHODS: dict[str, dict[str, Any]] = {
    "panning": {"scorers": ("synflow", "snip", "grasp")},
    "synflow": {"scorers": ("synflow",), "resurrect": False},  # iterative SynFlow (Tanaka et al. 2020)
    "iterative_snip": {"scorers": ("snip",)},  # FORCE-style (de Jorge et al. 2021), with resurrection
    "iterative_grasp": {"scorers": ("grasp",)},
    "synflow_oneshot": {"scorers": ("synflow",), "rounds": 1},
    "snip": {"scorers": ("snip",), "rounds": 1},
    "grasp": {"scorers": ("grasp",), "rounds": 1},
    "grasp_original": {"scorers": ("grasp_original",), "rounds": 1},
    "magnitude": {"scorers": ("magnitude",), "rounds": 1},
    "random": {"scorers": ("random",), "rounds": 1},
    # ProsPr (Alizadeh et al. 2022, github mil-ad/prospr): their defaults (3 SGD steps, lr 0.1, plain cross-entropy,
    # one shot); selector="top_k_ceil" keeps their count ceil(m (1 - ρ)) (docs/differences.md)
    "prospr": {"scorers": (ProsPr(),), "rounds": 1, "temperature": 1.0, "normalization": "none"},
    # NTK-SAP (Wang et al. 2023, github YiteWang/NTK-SAP): their defaults (ε = 0.01, one weight draw per round,
    # removed weights stay removed); rounds=20 and selector="synaptic_flow" are theirs (docs/differences.md)
    "ntk_sap": {"scorers": (NTKSAP(),), "resurrect": False, "normalization": "none"},
    # NTK-SAP as their script runs it: T = 20 rounds (fixed) and their count and tie rule
    "ntk_sap_authors": {
        "scorers": (NTKSAP(),),
        "resurrect": False,
        "normalization": "none",
        "rounds": 20,
        "selector": "synaptic_flow",
    },
    # Panning with NTK-SAP fused as a fourth metric, equal weights
    "panning_ntk_sap": {
        "scorers": ("synflow", "snip", "grasp", NTKSAP()),
        "weights": {"synflow": 0.25, "snip": 0.25, "grasp": 0.25, "ntk_sap": 0.25},
    },
    # random at layer-wise densities (Liu et al. 2022; Evci et al. 2020): exact per-layer quotas, random positions
    "random_erk": {"scorers": ("random",), "rounds": 1, "selector": "erk", "normalization": "none"},
    "random_er": {"scorers": ("random",), "rounds": 1, "selector": "er", "normalization": "none"},
    "random_uniform": {"scorers": ("random",), "rounds": 1, "selector": "uniform", "normalization": "none"},
    # random at Panning's layer densities: Panning's masks shuffled within each layer (Frankle et al. 2021); any
    # method's own with `shuffle_masks=True`
    "panning_shuffled": {"scorers": ("synflow", "snip", "grasp"), "shuffle_masks": True},
    "phew": {"scorers": ("phew",), "rounds": 1},  # Patil & Dovrolis 2021 (data-free biased random walks)
    # PX (Iurada et al. 2024, github iurada/px-ntk-pruning): iterative like SynFlow (their 100 rounds), removed
    # weights stay removed; untouched parameters by type (normalisation, output layer)
    "px": {"scorers": (PX(),), "resurrect": False, "normalization": "none"},
    # PX as their code runs it: their name rule ('bn', 'fc' stay untouched) and their count and tie rule
    "px_authors": {
        "scorers": (PX(untouched=("bn", "fc")),),
        "resurrect": False,
        "normalization": "none",
        "selector": "synaptic_flow",
    },
    # The authors' code (github kangxiatao/RLPanning), reproduced bit for bit given the same model and batch
    # (benchmarks/authors_parity.py); docs/differences.md lists each difference to the paper and its option.
    "panning_authors": {  # their pruner/panning.py `Panning`
        "scorers": (SynFlow(signed=True, abs_buffers=True, dtype="float32"), "snip", "grasp"),
        "masked_data_scores": False,
        "normalization": "authors",
        "stage_rule": "authors",
        "selector": "authors",
    },
    "snip_authors": {  # their pruner/pruning.py `Single_ranking_pruning`, rank_algo=snip
        "scorers": ("snip",),
        "rounds": 1,
        "normalization": "sum",
        "selector": "authors",
        "reinit_linear": True,
    },
    "grasp_authors": {  # the same, rank_algo=grasp (|∂(gᵀg)/∂θ ⊙ θ|, i.e. the improved GraSP with 2Hg)
        "scorers": (GraSP(factor=2.0),),
        "rounds": 1,
        "normalization": "sum",
        "selector": "authors",
        "reinit_linear": True,
    },
    "synflow_authors": {  # their pruner/pruning.py `SynFlow` (iterative, dynamic=0)
        "scorers": (SynFlow(abs_buffers=True, dtype="float32"),),
        "resurrect": False,
        "normalization": "none",
        "selector": "authors",
    },
}
METHODS["force"] = METHODS["iterative_snip"]


def register_method(name: str, *, overwrite: bool = False, **panning_kwargs: Any) -> None:
    """Add a named method to :data:`METHODS`: a preset of :class:`Panning` arguments.

    The preset is validated by building a :class:`Panning` from it once. The name then works everywhere a method
    name does: :func:`prune`, :func:`get_pruner`, ``PanningCallback(method=...)`` and YAML configs.

    Args:
        name: the method name.
        overwrite: replace an existing method of that name (else that is an error).
        **panning_kwargs: :class:`Panning` arguments; ``rounds=1`` marks a one-shot method.

    Example:
        >>> register_method("snip_grasp_fixed", scorers=("snip", "grasp"), weights={"snip": 0.5, "grasp": 0.5})
        >>> get_pruner("snip_grasp_fixed", rounds=20).rounds
        20
        >>> del METHODS["snip_grasp_fixed"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
    if name in METHODS and not overwrite:
        raise ValueError(f"A method named {name!r} is already registered; pass `overwrite=True` to replace it.")
    if "name" in panning_kwargs:
        raise ValueError("`name` is set from the method name; leave it out of the preset.")
    Panning(**panning_kwargs, name=name)  # every setting is validated now, not at first use
    METHODS[name] = dict(panning_kwargs)


def get_pruner(method: str | Panning = "panning", **settings: Any) -> Panning:
    """The :class:`Panning` that ``method`` stands for, with ``settings`` over its preset.

    The one way every entry point (``prune``, the callbacks, the RL environment and agent, the sweep) builds its
    pruner from a method name.

    Args:
        method: a key of :data:`METHODS`, or a configured :class:`Panning` (returned as is, or
            :meth:`~Panning.replace`-d with ``settings``).
        **settings: :class:`Panning` arguments overriding the preset. ``None`` keeps the preset's own value (so an
            adapter can pass "not set" through, e.g. ``normalization=None`` keeps ``panning_authors``'
            ``"authors"``); ``rounds`` does not change a preset that fixes its rounds (one-shot methods:
            ``rounds=1``; ``ntk_sap_authors``: their 20); a ready
            :class:`~lightning_panning.core.weights.WeightSchedule` as ``weights`` replaces the preset's stage table
            (and its ``stage_rule``).

    Example:
        >>> get_pruner("snip", rounds=20).rounds, get_pruner("synflow", rounds=20).resurrect
        (1, False)
        >>> get_pruner(Panning(rounds=5), seed=1).seed
        1
    """
    given = {k: v for k, v in settings.items() if v is not None}
    if isinstance(method, Panning):
        return method.replace(**given) if given else method
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Unknown `method` {method!r}; allowed: {sorted(METHODS)} or a lightning_panning.Panning.")
    preset = METHODS[method]
    if "rounds" in preset:  # one-shot, or the authors' fixed T: the preset's rounds win
        given.pop("rounds", None)
    if isinstance(given.get("weights"), WeightSchedule) and "stage_rule" not in given:
        preset = {k: v for k, v in preset.items() if k != "stage_rule"}  # it configures the table `weights` replaces
    return Panning(**{**preset, "name": method, **given})


def prune(
    model: nn.Module,
    data: Data = None,
    target: float = 0.98,
    method: str | Panning = "panning",
    rounds: int = 100,
    example_input: Any = None,
    process_group: Any = "auto",
    **kwargs: Any,
) -> Masks:
    """Prune ``model`` before training and return ``{qualified name: bool mask}`` (``True`` = kept).

    The model is not modified; apply the result with :func:`~lightning_panning.apply_masks`. A ``UserWarning`` says
    when a pruned layer keeps no weight (:func:`~lightning_panning.core.masks.untrainable_reason`: such masks may not
    train, and it names the likely cause and what to try).

    Args:
        model: any ``nn.Module``.
        data: a DataLoader/Dataset of ``(x, y)`` (a class-balanced batch of ``per_class`` per class is drawn), a
            batch, or ``None`` for data-free methods (then pass ``example_input``).
        target: final sparsity in (0, 1), e.g. 0.98.
        method: one of :data:`METHODS` (``"panning"``, ``"synflow"``, ``"snip"``, ``"grasp"``, ...) or a configured
            :class:`Panning` (then ``rounds`` and ``kwargs`` override its settings only when given).
        rounds: ``T`` for iterative methods.
        example_input: the input's shape and layout when ``data`` is ``None``: a tensor ``(B, ...)`` (token ids
            for a model that starts with an ``nn.Embedding``), a dict of keyword arguments or a ModelInput.
        process_group: data-parallel scoring: ``"auto"`` (across all processes when ``torch.distributed`` is
            initialised: each scores its share of the same scoring set and the sums are all-reduced, so every
            process returns the same masks), ``None`` (this process alone) or a ``torch.distributed.ProcessGroup``.
        **kwargs: any :class:`Panning` argument (``weights``, ``normalization``, ``loss_fn``, ``seed``, ...).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
        >>> batch = (torch.randn(30, 1, 8, 8), torch.arange(3).repeat(10))
        >>> masks = prune(net, batch, target=0.9, rounds=10, progress=False)
        >>> sorted(masks), sum(int(m.sum()) for m in masks.values())
        (['0.weight', '2.weight'], 46)
    """
    if isinstance(method, Panning):
        pruner = get_pruner(method, **kwargs)
    else:
        pruner = get_pruner(method, rounds=rounds, **kwargs)
    masks = pruner.prune(model, data, target, example_input=example_input, process_group=process_group).masks
    reason = untrainable_reason(model, masks, target)  # emptied layers (the callbacks also check effective ones)
    if reason is not None:
        warnings.warn(f"prune: these masks may not train: {reason}", UserWarning, stacklevel=2)
    return masks
