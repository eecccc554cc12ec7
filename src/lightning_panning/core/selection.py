"""Selection: which weights a round keeps, given the fused scores — one interchangeable :class:`Selector` each.

A selector answers two questions for the Panning loop, which has no keep-rule branches of its own:

* :meth:`Selector.plan`: every round's sparsity ``ρ_i`` and keep count, from the schedule, the target and ``m``;
* :meth:`Selector.select`: the round's mask from the fused scores ``{name: tensor W_n}`` and the keep count.

Built in (:data:`SELECTORS`):

* ``"top_k"`` (:class:`TopK`, default): exactly ``floor(m (1 − ρ_i) + 1e-6)`` weights with the largest scores over
  all layers together, ties to the lower global index (module order, each layer row-major);
* ``"authors"`` (:class:`AuthorsThreshold`): the authors' code — keep fraction ``κ_i = (1 − ρ_T)^(i/T)`` computed
  directly, ``int(m κ_i)`` as the rank of a threshold and every score ``≥`` it kept (ties included);
* ``"top_k_ceil"`` (:class:`TopKCeil`): exactly ``ceil(m (1 − ρ_i))`` weights, otherwise as ``"top_k"`` (ProsPr's
  code, ``keep_mask_from_scores``);
* ``"synaptic_flow"`` (:class:`SynapticFlowThreshold`): the rule of the Synaptic-Flow code base and of the code built
  on it (NTK-SAP): keep fraction ``κ_i = (1 − ρ_T)^(i/T)`` computed directly, ``int(m (1 − κ_i))`` as the rank of a
  threshold from below and every score ``≤`` it removed (ties removed);
* ``"erk"``, ``"er"``, ``"uniform"`` (:class:`LayerQuotas`): per-layer quotas (Erdős–Rényi-Kernel, Erdős–Rényi,
  the same density everywhere; Evci et al. 2020, Liu et al. 2022), then the top scores within each layer; or
  ``LayerQuotas({name: density})`` for given per-layer densities.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_panning.core.schedules import Schedule, authors_keep_count, authors_keep_fractions, keep_count

__all__ = [
    "SELECTORS",
    "AuthorsThreshold",
    "LayerQuotas",
    "Plan",
    "Selector",
    "SynapticFlowThreshold",
    "TopK",
    "TopKCeil",
    "get_selector",
    "kth_largest",
    "layer_quotas",
    "select_at_threshold",
    "select_top_k",
]

#: ``(sparsities, keep counts)``, one entry per round.
Plan = tuple[list[float], list[int]]
Masks = dict[str, Tensor]


def kth_largest(flat: Tensor, k: int, sample: int = 65536) -> Tensor:
    """The ``k``-th largest value of a 1-D tensor (exact), as a 0-d tensor.

    Large inputs first narrow the search with a strided sample: a quantile of the sample gives a bound on the
    safe side of the answer, one pass gathers the values beyond that bound (a few more than ``k``, or than
    ``m - k + 1`` from below), and ``kthvalue`` runs on those alone. The gathered count proves the bound was safe;
    if it was not (it cannot be for non-adversarial data, but correctness must not depend on it), the full
    ``kthvalue`` runs instead. When far more values than asked for reach the bound (a value shared by millions, as
    in a round whose scores are all zero), counting those strictly beyond it shows whether the bound itself is the
    answer, and nothing is gathered. Either way the result equals ``torch.kthvalue(flat, m - k + 1).values``.

    Example:
        >>> x = torch.arange(1_000_000.0).flip(0)
        >>> float(kth_largest(x, 10)), float(torch.kthvalue(x, x.numel() - 10 + 1).values)
        (999990.0, 999990.0)
    """
    m = flat.numel()
    full = flat.cpu() if flat.device.type == "mps" else flat
    if m <= 4 * sample:
        return torch.kthvalue(full, m - k + 1).values
    from_top = k <= m - k + 1  # search among the largest values, else among the smallest
    need = k if from_top else m - k + 1
    probe = flat[:: m // sample]
    n = probe.numel()
    rank = need / m * n  # expected rank of the answer within the sorted sample
    index = min(int(rank + 4.0 * rank**0.5 + 8.0), n - 1)  # ~4 standard deviations beyond it (0-based)
    if probe.device.type == "mps":
        probe = probe.cpu()
    # the sample's (index + 1)-th largest (smallest) value: an O(n) selection, not a sort
    bound = torch.kthvalue(probe, n - index if from_top else index + 1).values.to(flat.device)
    beyond = flat >= bound if from_top else flat <= bound
    found = int(torch.count_nonzero(beyond))
    if found > 2 * need + 1024:  # far more than asked for: many values tie at the bound (an all-zero round)
        strictly = int(torch.count_nonzero(flat > bound if from_top else flat < bound))
        if strictly < need:  # fewer than `need` beyond the bound, at least `need` at or beyond it: it is the answer
            return bound
    if found >= need:  # the bound is on the safe side: the answer is among the candidates
        candidates = flat[beyond]
        del beyond
        if candidates.device.type == "mps":
            candidates = candidates.cpu()
        position = candidates.numel() - need + 1 if from_top else need
        return torch.kthvalue(candidates, position).values
    return torch.kthvalue(full, m - k + 1).values


def _top_k_flat(flat: Tensor, k: int) -> Tensor:
    """Bool tensor of ``flat``'s shape with exactly the ``k`` largest entries set, ties to the lower index."""
    m = flat.numel()
    if not 0 <= k <= m:
        raise ValueError(f"Cannot keep k={k} of {m} weights.")
    if k == 0:
        return torch.zeros(m, dtype=torch.bool, device=flat.device)
    if k == m:
        return torch.ones(m, dtype=torch.bool, device=flat.device)
    threshold = kth_largest(flat, k)
    keep = flat >= threshold  # everything above the threshold and every tie at it: one pass
    extra = int(torch.count_nonzero(keep)) - k
    if extra > 0:  # more ties than places left: the ties of higher index go
        ties = flat == threshold
        cut = _after_nth_true(ties, int(torch.count_nonzero(ties)) - extra)
        keep[cut:] &= ~ties[cut:]
    return keep


def _after_nth_true(flags: Tensor, n: int, block: int = 65536) -> int:
    """The index just past the ``n``-th ``True`` of the 1-D bool tensor ``flags`` (0 when ``n`` is 0).

    Counts per block of ``block`` entries first, then looks for the ``n``-th inside its block only, so a tie shared
    by millions of scores (an all-zero round) costs a few passes over bools instead of an index of every tie.
    """
    if n <= 0:
        return 0
    m = flags.numel()
    whole = m - m % block
    counts = flags[:whole].view(-1, block).sum(1)
    if whole < m:
        counts = torch.cat([counts, flags[whole:].sum().reshape(1)])
    cumulative = counts.cumsum(0)
    b = int(torch.searchsorted(cumulative, torch.tensor([n], device=cumulative.device, dtype=cumulative.dtype)))
    before = int(cumulative[b - 1]) if b > 0 else 0
    start = b * block
    inside = torch.nonzero(flags[start : start + block]).squeeze(1)
    return start + int(inside[n - before - 1]) + 1


def select_top_k(scores: Mapping[str, Tensor], k: int) -> Masks:
    """Keep exactly the ``k`` largest scores over all layers together; ties go to the lower global index.

    The global index runs over the layers in the mapping's order, each flattened row-major, so the result is
    deterministic. Uses an O(m) selection (``kthvalue``) rather than a full sort.

    Args:
        scores: ``{name: tensor W_n}`` (any real dtype, all finite).
        k: how many to keep, ``0 ≤ k ≤ m``.

    Returns:
        ``{name: bool tensor W_n}`` with exactly ``k`` ``True`` values in total.

    Example:
        >>> m = select_top_k({"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([3.0, 0.0])}, 2)
        >>> m["a"].tolist(), m["b"].tolist()
        ([False, True], [True, False])
    """
    names = list(scores)
    keep = _top_k_flat(torch.cat([scores[n].reshape(-1) for n in names]), k)
    out: Masks = {}
    offset = 0
    for n in names:
        size = scores[n].numel()
        out[n] = keep[offset : offset + size].view(scores[n].shape)
        offset += size
    return out


def select_at_threshold(scores: Mapping[str, Tensor], k: int) -> Masks:
    """Keep every score ``≥`` the ``k``-th largest over all layers: the authors' rule (:class:`AuthorsThreshold`).

    Their code takes ``threshold = topk(scores, k)[-1]`` and keeps ``score >= threshold``, so ties at the threshold
    are all kept and the count can exceed ``k`` (use :func:`select_top_k` for exactly ``k``).

    Args:
        scores: ``{name: tensor W_n}`` (any real dtype).
        k: the rank of the threshold, ``1 ≤ k ≤ m``.

    Returns:
        ``{name: bool tensor W_n}`` with at least ``k`` ``True`` values in total (for finite scores).

    Example:
        >>> m = select_at_threshold({"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([3.0, 0.0])}, 1)
        >>> m["a"].tolist(), m["b"].tolist()
        ([False, True], [True, False])
    """
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    if not 1 <= k <= flat.numel():
        raise ValueError(f"Cannot take the threshold at rank k={k} of {flat.numel()} weights.")
    threshold = kth_largest(flat, k)
    del flat
    return {n: s >= threshold for n, s in scores.items()}


class Selector(ABC):
    """Turns a round's fused scores into its mask; subclasses implement :meth:`select` (and may re-plan)."""

    #: Registry name (logs, settings).
    name: str = ""
    #: Whether :meth:`select` keeps exactly the keep count (else the loop counts what it kept).
    exact_count: bool = True

    def plan(self, schedule: Schedule, target: float, rounds: int, total: int) -> Plan:
        """Every round's sparsity ``ρ_i`` and keep count; default ``floor(m (1 − ρ_i) + 1e-6)``.

        Raises:
            ValueError: if the final round would keep no weight.
        """
        sparsities = schedule(target, rounds)
        keeps = [keep_count(total, s) for s in sparsities]
        _check_final_keep(keeps[-1], target, total, f"floor({total} × (1 − target))")
        return sparsities, keeps

    @abstractmethod
    def select(self, scores: Mapping[str, Tensor], keep: int) -> Masks:
        """``{name: bool tensor W_n}`` from the fused scores ``{name: tensor W_n}`` and the round's keep count."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_final_keep(keep: int, target: float, total: int, rule: str) -> None:
    if keep < 1:
        raise ValueError(
            f"`target`={target!r} leaves no weight of the {total} prunable ones (keep = {rule} = 0); the largest "
            f"allowed target is {1 - 1 / total:.10g}."
        )


class TopK(Selector):
    """Exactly the round's keep count over all layers together, ties to the lower index (:func:`select_top_k`)."""

    name = "top_k"

    def select(self, scores: Mapping[str, Tensor], keep: int) -> Masks:
        """Global exact top-k."""
        return select_top_k(scores, keep)


class AuthorsThreshold(Selector):
    """The authors' keep rule: ``int(m κ_i)`` with ``κ_i`` computed directly, every score ``≥`` that rank's kept.

    See :func:`~lightning_panning.core.schedules.authors_keep_fractions`; the kept count can exceed the keep count
    where scores tie at the threshold.
    """

    name = "authors"
    exact_count = False

    def plan(self, schedule: Schedule, target: float, rounds: int, total: int) -> Plan:
        """The authors' ``ρ_i`` and ``int(m κ_i)``."""
        sparsities, fractions = authors_keep_fractions(schedule, target, rounds)
        keeps = [authors_keep_count(total, k) for k in fractions]
        _check_final_keep(keeps[-1], target, total, f"int({total} × (1 − target))")
        return sparsities, keeps

    def select(self, scores: Mapping[str, Tensor], keep: int) -> Masks:
        """Every score ``≥`` the ``keep``-th largest."""
        return select_at_threshold(scores, keep)


class TopKCeil(TopK):
    """Exactly ``ceil(m (1 − ρ_i))`` weights over all layers (ProsPr's count), ties to the lower index.

    ProsPr's code (github ``mil-ad/prospr``, ``keep_mask_from_scores``) keeps ``ceil(m · keep_ratio)`` with
    ``keep_ratio = 1 − ρ`` in plain floating point: one weight more than :class:`TopK` whenever ``m (1 − ρ)`` is not
    an integer.

    Example:
        >>> from lightning_panning.core.schedules import exponential
        >>> TopK().plan(exponential, 0.98, 1, 61706)[1], TopKCeil().plan(exponential, 0.98, 1, 61706)[1]
        ([1234], [1235])
    """

    name = "top_k_ceil"

    def plan(self, schedule: Schedule, target: float, rounds: int, total: int) -> Plan:
        """``ceil(m (1 − ρ_i))`` per round."""
        sparsities = schedule(target, rounds)
        return sparsities, [min(total, math.ceil(total * (1.0 - s))) for s in sparsities]


class SynapticFlowThreshold(Selector):
    """The Synaptic-Flow code base's global mask (``Pruner._global_mask``), which NTK-SAP's code inherits.

    Their loop computes the round's density ``κ_i = (1 − ρ_T)^(i/T)`` directly (for the exponential schedule; see
    :func:`~lightning_panning.core.schedules.authors_keep_fractions`), takes the ``int(m (1 − κ_i))``-th smallest
    score as a threshold and removes every score ``≤`` it, so ties at the threshold are removed and at most
    ``m − int(m (1 − κ_i))`` weights are kept.

    Example:
        >>> masks = SynapticFlowThreshold().select({"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([3.0, 0.0])}, 3)
        >>> masks["a"].tolist(), masks["b"].tolist()
        ([True, True], [True, False])
    """

    name = "synaptic_flow"
    exact_count = False

    def plan(self, schedule: Schedule, target: float, rounds: int, total: int) -> Plan:
        """Their ``ρ_i`` and ``m − int(m (1 − κ_i))``."""
        sparsities, fractions = authors_keep_fractions(schedule, target, rounds)
        keeps = [total - int((1.0 - k) * total) for k in fractions]
        _check_final_keep(keeps[-1], target, total, f"{total} − int((1 − κ_T) × {total})")
        return sparsities, keeps

    def select(self, scores: Mapping[str, Tensor], keep: int) -> Masks:
        """Every score above the ``m − keep``-th smallest (all kept when nothing is removed)."""
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        removed = flat.numel() - keep
        if removed < 1:
            return {n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()}
        threshold = kth_largest(flat, flat.numel() - removed + 1)  # the removed-th smallest
        del flat
        return {n: s > threshold for n, s in scores.items()}


def _erk_raw(shape: Sequence[int], kernel: bool) -> float:
    """Erdős–Rényi(-Kernel) density factor of a weight of ``shape``: ``Σ dims / Π dims`` (RigL's formula)."""
    dims = list(shape) if kernel else list(shape[:2])
    if len(dims) < 2:  # a vector (e.g. an embedding row scale): treat as one fan
        dims = [*dims, 1]
    return float(sum(dims)) / float(math.prod(dims))


def layer_quotas(
    shapes: Mapping[str, Sequence[int]], keep: int, densities: str | Mapping[str, float] = "erk"
) -> dict[str, int]:
    """How many weights each layer keeps so that the quotas add up to exactly ``keep``.

    Each layer's density is ``min(1, ε · r_n)`` with ``r_n`` the layer's raw factor — ERK ``Σ dims / Π dims`` over
    all dimensions, ER over the two fan dimensions, uniform 1, or the given density — and ``ε`` found so that the
    densities add up to ``keep`` weights (layers that would exceed 1 are dense, as in RigL's ERK). The real quotas
    are rounded down and the remaining weights go to the layers with the largest remainders (ties to the earlier
    layer), never past a layer's size.

    Args:
        shapes: ``{name: W_n}`` in module order.
        keep: total to keep, ``0 ≤ keep ≤ m``.
        densities: ``"erk"``, ``"er"``, ``"uniform"`` or ``{name: density in (0, 1]}`` for every layer (proportions:
            scaled together to the keep count, so the final round of a run at the densities' own sparsity keeps
            them exactly up to rounding).

    Returns:
        ``{name: kept count}``.

    Example:
        >>> layer_quotas({"conv": (8, 3, 3, 3), "fc": (10, 8)}, 50, "uniform")
        {'conv': 36, 'fc': 14}
        >>> sum(layer_quotas({"conv": (8, 3, 3, 3), "fc": (10, 8)}, 50, "erk").values())
        50
    """
    sizes = {n: int(math.prod(s)) for n, s in shapes.items()}
    total = sum(sizes.values())
    if not 0 <= keep <= total:
        raise ValueError(f"Cannot keep {keep} of {total} weights.")
    if isinstance(densities, str):
        if densities not in _RAW:
            raise ValueError(f"Unknown `densities` {densities!r}; allowed: {sorted(_RAW)} or {{layer: density}}.")
        raw = {n: _RAW[densities](s) for n, s in shapes.items()}
    else:
        missing = [n for n in shapes if n not in densities]
        if missing:
            raise ValueError(f"`densities` gives no density for layers {missing}.")
        raw = {}
        for n in shapes:
            d = densities[n]
            if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= float(d) <= 1.0:
                raise ValueError(f"`densities[{n!r}]` must be a number in [0, 1], got {d!r}.")
            raw[n] = float(d)
        if not any(raw[n] > 0 for n in shapes) and keep > 0:
            raise ValueError("`densities` are all 0, so no layer can keep a weight.")
    dense: set[str] = set()
    while True:  # ε for the layers not yet dense; layers pushed past density 1 become dense and ε is recomputed
        budget = keep - sum(sizes[n] for n in dense)
        weighted = sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        eps = budget / weighted if weighted > 0 else 0.0
        over = {n for n in shapes if n not in dense and eps * raw[n] > 1.0}
        if not over:
            break
        dense |= over
    real = {n: float(sizes[n]) if n in dense else eps * raw[n] * sizes[n] for n in shapes}
    quotas = {n: min(sizes[n], math.floor(real[n] + 1e-9)) for n in shapes}
    short = keep - sum(quotas.values())
    order = sorted(shapes, key=lambda n: (-(real[n] - quotas[n]), list(shapes).index(n)))
    while short > 0:
        progressed = False
        for n in order:
            if short == 0:
                break
            if quotas[n] < sizes[n]:
                quotas[n] += 1
                short -= 1
                progressed = True
        if not progressed:  # pragma: no cover - keep <= total guarantees room
            raise AssertionError("no room left for the remaining quota")
    return quotas


_RAW: dict[str, Callable[[Sequence[int]], float]] = {
    "erk": lambda s: _erk_raw(s, kernel=True),
    "er": lambda s: _erk_raw(s, kernel=False),
    "uniform": lambda s: 1.0,
}


class LayerQuotas(Selector):
    """Per-layer quotas (:func:`layer_quotas`), then the top scores within each layer (ties to the lower index).

    Args:
        densities: ``"erk"`` (default), ``"er"``, ``"uniform"``, or ``{name: density}`` for every prunable layer.

    Example:
        >>> scores = {"a": torch.tensor([[4.0, 3.0], [2.0, 1.0]]), "b": torch.tensor([[9.0, 8.0], [7.0, 6.0]])}
        >>> masks = LayerQuotas("uniform").select(scores, 4)
        >>> masks["a"].tolist(), masks["b"].tolist()
        ([[True, True], [False, False]], [[True, True], [False, False]])
    """

    def __init__(self, densities: str | Mapping[str, float] = "erk") -> None:
        if isinstance(densities, str):
            if densities not in _RAW:
                raise ValueError(f"Unknown `densities` {densities!r}; allowed: {sorted(_RAW)} or {{layer: density}}.")
            self.densities: str | dict[str, float] = densities
            self.name = densities
        elif isinstance(densities, Mapping):
            self.densities = {str(k): float(v) for k, v in densities.items()}
            self.name = "layer_densities"
        else:
            raise ValueError(
                f"`densities` must be 'erk', 'er', 'uniform' or a {{layer: density}} dict, got {densities!r}."
            )

    def select(self, scores: Mapping[str, Tensor], keep: int) -> Masks:
        """Each layer's quota of its own top scores."""
        quotas = layer_quotas({n: tuple(s.shape) for n, s in scores.items()}, keep, self.densities)
        return {n: _top_k_flat(s.reshape(-1), quotas[n]).view(s.shape) for n, s in scores.items()}

    def __repr__(self) -> str:
        return f"LayerQuotas({self.densities!r})"


#: Name → selector factory.
SELECTORS: dict[str, Callable[[], Selector]] = {
    "top_k": TopK,
    "authors": AuthorsThreshold,
    "top_k_ceil": TopKCeil,
    "synaptic_flow": SynapticFlowThreshold,
    "erk": lambda: LayerQuotas("erk"),
    "er": lambda: LayerQuotas("er"),
    "uniform": lambda: LayerQuotas("uniform"),
}


def get_selector(selector: str | Selector | Any) -> Selector:
    """Resolve a selector given by name (:data:`SELECTORS`) or as an instance.

    Example:
        >>> get_selector("erk")
        LayerQuotas('erk')
    """
    if isinstance(selector, Selector):
        return selector
    if isinstance(selector, str) and selector in SELECTORS:
        return SELECTORS[selector]()
    raise ValueError(f"Unknown `selector` {selector!r}; allowed: {sorted(SELECTORS)} or a Selector instance.")
