"""Normalisation of metric scores and the metric weights ``p_k`` of each round (METHOD §3, Table 3)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "NORMALIZATIONS",
    "TABLE3",
    "FixedWeights",
    "NonFiniteScores",
    "Normalization",
    "StageTable",
    "WeightSchedule",
    "fuse",
    "normalize",
]

Normalization = Literal["rms", "authors", "sum", "none"]
NORMALIZATIONS: tuple[str, ...] = ("rms", "authors", "sum", "none")
log = logging.getLogger(__name__)
#: The ε of the authors' ``ranking_mask`` normalisation ``S / (|Σ S| + ε)`` (``normalization="sum"``).
SUM_EPS = 1e-10

#: Table 3: upper bound of the round's sparsity → weights (SynFlow, SNIP, GraSP).
TABLE3: tuple[tuple[float, dict[str, float]], ...] = (
    (0.80, {"synflow": 0.2, "snip": 0.5, "grasp": 0.3}),
    (0.90, {"synflow": 0.2, "snip": 0.4, "grasp": 0.4}),
    (0.98, {"synflow": 0.2, "snip": 0.3, "grasp": 0.5}),
    (0.99, {"synflow": 0.4, "snip": 0.2, "grasp": 0.4}),
    (1.00, {"synflow": 0.5, "snip": 0.0, "grasp": 0.5}),
)


class NonFiniteScores(ValueError):
    """A metric's statistics are not finite (some score is NaN or inf)."""


def normalize(
    keep: Mapping[str, Tensor], saliency: Mapping[str, Tensor] | None = None, method: Normalization = "rms"
) -> dict[str, Tensor]:
    """Put one metric on a common scale, ``N(S)``, over all prunable weights together.

    * ``"rms"`` (default): ``keep / RMS(keep)`` — order-preserving, NaN-safe (all zero where the metric is all
      zero). For signed saliencies with mean ≈ 0 this is the scale of the authors' formula, on which Table 3's
      weights were tuned.
    * ``"authors"``: the authors' Panning, ``|S - μ| / σ`` on the *signed* saliency ``S``, computed with exactly
      their float operations (concatenate, divide by the mean, then the mean and sample standard deviation of the
      quotient), so it reproduces their normalised scores bit for bit; not exactly order-preserving in ``|S|``.
      A metric with mean or standard deviation 0 gives NaN, as in their code (with a logged warning).
    * ``"sum"``: the authors' one-shot (and iterative) SNIP/GraSP ranking, ``keep / (|Σ keep| + 1e-10)``
      (order-preserving up to rounding; the exact float operations of their ``ranking_mask``).
    * ``"none"``: the keep-scores unchanged.

    Args:
        keep: keep-scores ``{name: tensor W_n}``.
        saliency: the signed saliencies (needed by ``"authors"``; defaults to ``keep``).
        method: one of :data:`NORMALIZATIONS`.

    Returns:
        ``{name: tensor W_n}``: float32 for ``"rms"``/``"authors"``/``"sum"`` (the RMS is taken in float64, the
        authors' statistics in the scores' own dtype as they do), the keep-scores' own dtype for ``"none"``.

    Example:
        >>> s = {"a": torch.tensor([1.0, -2.0]), "b": torch.tensor([4.0, 0.5])}
        >>> [round(v, 4) for v in torch.cat(list(normalize(s, s, "authors").values())).tolist()]
        [0.0508, 1.1676, 1.2692, 0.1523]
        >>> torch.cat(list(normalize({"a": torch.tensor([1.0, 3.0])}, method="sum").values())).tolist()
        [0.25, 0.75]
    """
    if method == "none":
        return dict(keep)
    if method == "rms":
        count = sum(s.numel() for s in keep.values())
        sq = sum(float(torch.linalg.vector_norm(s, dtype=torch.float64)) ** 2 for s in keep.values())
        rms = math.sqrt(sq / count)
        if not math.isfinite(rms):
            raise NonFiniteScores(f"the metric's RMS is {rms} (NaN/inf scores)")
        if rms == 0.0:
            return {n: torch.zeros_like(s, dtype=torch.float32) for n, s in keep.items()}
        return {n: (s / rms).float() for n, s in keep.items()}
    if method == "authors":
        return _authors_normalization(saliency if saliency is not None else keep)
    if method == "sum":
        flat = torch.cat([s.reshape(-1) for s in keep.values()])
        factor = torch.abs(torch.sum(flat)) + SUM_EPS
        if not math.isfinite(float(factor)):
            raise NonFiniteScores(f"the metric's sum is {float(factor)} (NaN/inf scores)")
        return {n: (s / factor).float() for n, s in keep.items()}
    raise ValueError(f"Unknown `normalization` {method!r}; allowed: {list(NORMALIZATIONS)}.")


def _authors_normalization(saliency: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``|S − μ| / σ`` with the authors' exact float operations (``pruner/panning.py``, ``normalization``).

    A metric whose mean or standard deviation is 0 (SynFlow once no input-output path is left) gives NaN scores,
    exactly as their code does; a warning says so. NaN or inf in the scores themselves raise
    :class:`NonFiniteScores`.
    """
    flat = torch.cat([s.reshape(-1) for s in saliency.values()])
    mean_div = flat.mean()
    if not math.isfinite(float(mean_div)):
        raise NonFiniteScores(f"the metric's mean is {float(mean_div)} (NaN/inf scores)")
    flat.div_(mean_div)
    std, mean = flat.std(), flat.mean()
    del flat
    if float(mean_div) == 0.0 or not float(std) > 0.0:
        log.warning(
            "normalization='authors': the metric's mean is %g and the standard deviation of score/mean is %g (a "
            "constant metric, e.g. SynFlow of a network with no input-output path left), so its normalised "
            "scores are NaN, as in the authors' code, and no weight is kept from this round on. "
            "normalization='rms' maps an all-zero metric to 0 instead.",
            float(mean_div),
            float(std),
        )
    return {n: ((s / mean_div - mean) / std).abs_().float() for n, s in saliency.items()}


def fuse(normalized: Mapping[str, Tensor], weight: float, into: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Add one metric's share ``p_k · N(S_k)`` to the fused score ``S_w = Σ_k p_k · N(S_k)``.

    Fusing one metric at a time keeps a single parameter-sized accumulator alive instead of every normalised
    metric at once. Each share is rounded before it is added (no fused multiply-add), so the sum is the same float
    as the authors' ``p_1 N_1 + p_2 N_2 + p_3 N_3``.

    Args:
        normalized: ``{name: tensor W_n}``, one normalised metric.
        weight: its ``p_k``.
        into: the running sum (updated in place and returned), or ``None`` to start one.

    Returns:
        ``{name: tensor W_n}``, the running sum.
    """
    fused: dict[str, Tensor] = {} if into is None else into
    for name, s in normalized.items():
        if name in fused:
            acc = fused[name]
            if torch.result_type(acc, s) != acc.dtype:
                acc = fused[name] = acc.to(torch.result_type(acc, s))
            acc.add_(s * weight)
        else:
            fused[name] = s * weight
    return fused


@runtime_checkable
class WeightSchedule(Protocol):
    """Gives the metric weights ``{scorer: p_k}`` of a round; :meth:`reset` is called before each pruning run."""

    def __call__(self, round_index: int, sparsity: float) -> dict[str, float]:
        """Weights for round ``round_index`` (0-based) whose sparsity is ``sparsity``."""
        ...

    def reset(self) -> None:
        """Forget any state of a previous run."""
        ...


def _check_weights(weights: Mapping[str, float], argument: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in weights.items():
        if not isinstance(key, str):
            raise TypeError(f"`{argument}` keys must be scorer names, got {key!r}.")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"`{argument}[{key!r}]` must be a finite number ≥ 0, got {value!r}.")
        out[key] = float(value)
    if not out or sum(out.values()) <= 0:
        raise ValueError(f"`{argument}` must give at least one positive weight, got {dict(weights)!r}.")
    return out


class FixedWeights:
    """The same weights every round, e.g. ``FixedWeights({"snip": 1.0})`` for iterative SNIP.

    Example:
        >>> FixedWeights({"synflow": 1})(0, 0.5)
        {'synflow': 1.0}
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = _check_weights(weights, "weights")

    def __call__(self, round_index: int, sparsity: float) -> dict[str, float]:
        """The fixed weights."""
        return dict(self.weights)

    def reset(self) -> None:
        """Nothing to reset."""

    def __repr__(self) -> str:
        return f"FixedWeights({self.weights!r})"


class StageTable:
    """Weights by the round's sparsity, Table 3 by default.

    Args:
        table: rows ``(upper_bound, {scorer: weight})`` with increasing upper bounds, the last one ``1.0``; the row
            used for sparsity ``ρ`` is the first whose bound satisfies ``ρ ≤ bound + tolerance``.
        one_row_per_round: the authors' code advances the stage index by at most one row per round; ``True``
            reproduces that (not the paper's rule).
        tolerance: slack on each bound. The default ``1e-12`` absorbs float error, so a round whose sparsity is
            mathematically 0.9 but computes as ``0.9000000000000028`` still uses the ``(0.8, 0.9]`` row, as Table 3
            says; ``0.0`` is the authors' plain float comparison ``ρ > bound`` (it moves on to the next row).

    Example:
        >>> StageTable()(0, 0.95)
        {'synflow': 0.2, 'snip': 0.3, 'grasp': 0.5}
        >>> StageTable()(0, 0.9000000000000028)["snip"], StageTable(tolerance=0.0)(0, 0.9000000000000028)["snip"]
        (0.4, 0.3)
    """

    def __init__(
        self,
        table: Sequence[tuple[float, Mapping[str, float]]] | None = None,
        one_row_per_round: bool = False,
        tolerance: float = 1e-12,
    ) -> None:
        rows = TABLE3 if table is None else table
        checked: list[tuple[float, dict[str, float]]] = []
        previous = 0.0
        for i, row in enumerate(rows):
            if not (isinstance(row, (tuple, list)) and len(row) == 2):
                raise ValueError(f"`table[{i}]` must be (upper_bound, {{scorer: weight}}), got {row!r}.")
            bound, weights = float(row[0]), row[1]
            if not previous < bound <= 1.0:
                raise ValueError(f"`table` bounds must increase within (0, 1]; row {i} has bound {bound!r}.")
            checked.append((bound, _check_weights(weights, f"table[{i}]")))
            previous = bound
        if not checked or checked[-1][0] != 1.0:
            raise ValueError("The last row of `table` must have upper bound 1.0 so every sparsity has weights.")
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0.0 <= tolerance < 1e-3:
            raise ValueError(f"`tolerance` must be a number in [0, 0.001), got {tolerance!r}.")
        self.table = checked
        self.one_row_per_round = one_row_per_round
        self.tolerance = float(tolerance)
        self._stage = 0

    def row(self, sparsity: float) -> int:
        """Index of the row that covers ``sparsity``."""
        for i, (bound, _) in enumerate(self.table):
            if sparsity <= bound + self.tolerance:
                return i
        return len(self.table) - 1

    def __call__(self, round_index: int, sparsity: float) -> dict[str, float]:
        """The row's weights for this sparsity."""
        target_row = self.row(sparsity)
        if self.one_row_per_round:
            if target_row > self._stage:
                self._stage += 1
            return dict(self.table[self._stage][1])
        return dict(self.table[target_row][1])

    def reset(self) -> None:
        """Restart the stage index at the first row."""
        self._stage = 0

    def __repr__(self) -> str:
        return (
            f"StageTable(rows={len(self.table)}, one_row_per_round={self.one_row_per_round}, "
            f"tolerance={self.tolerance!r})"
        )
