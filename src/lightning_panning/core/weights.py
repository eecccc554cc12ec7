"""The metric weights ``p_k`` of each round: one :class:`WeightSchedule` seam (METHOD §3, Table 3).

Table 3's stage table, fixed weights, a user's table and the RL policy (:class:`lightning_panning.rl.PolicyWeights`)
are each a small object the Panning loop asks before every round with the live run (:class:`RoundState`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "STAGE_RULES",
    "TABLE3",
    "FixedWeights",
    "RoundState",
    "StageTable",
    "WeightSchedule",
    "resolve_weights",
]

#: Table 3: upper bound of the round's sparsity → weights (SynFlow, SNIP, GraSP).
TABLE3: tuple[tuple[float, dict[str, float]], ...] = (
    (0.80, {"synflow": 0.2, "snip": 0.5, "grasp": 0.3}),
    (0.90, {"synflow": 0.2, "snip": 0.4, "grasp": 0.4}),
    (0.98, {"synflow": 0.2, "snip": 0.3, "grasp": 0.5}),
    (0.99, {"synflow": 0.4, "snip": 0.2, "grasp": 0.4}),
    (1.00, {"synflow": 0.5, "snip": 0.0, "grasp": 0.5}),
)




class RoundState(Protocol):
    """What a weight schedule may read of the live run (a :class:`~lightning_panning.core.session.PanningSession`).

    Attributes:
        round: rounds done so far, i.e. the 0-based index of the round about to run.
        sparsity: that round's sparsity ``ρ_i``.
        keep: that round's keep count.
        masks: the current masks ``{name: bool tensor W_n}`` (``None`` before the first round).
        generator: a CPU ``torch.Generator`` seeded from the pruner's ``seed`` (for stochastic schedules).
    """

    @property
    def round(self) -> int: ...  # noqa: D102

    @property
    def sparsity(self) -> float: ...  # noqa: D102

    @property
    def keep(self) -> int: ...  # noqa: D102

    @property
    def masks(self) -> Mapping[str, Tensor] | None: ...  # noqa: D102

    @property
    def generator(self) -> torch.Generator: ...  # noqa: D102


@runtime_checkable
class WeightSchedule(Protocol):
    """Gives the metric weights ``{scorer: p_k}`` of each round, asked with the live run before the round.

    Table 3 (:class:`StageTable`), fixed weights (:class:`FixedWeights`), a user's table and the RL agent
    (:class:`lightning_panning.rl.PolicyWeights`) are all one of these. :meth:`reset` is called when a run starts.
    """

    def __call__(self, state: RoundState) -> Mapping[str, float]:
        """Weights for the round about to run (``state.round``, ``state.sparsity``, ``state.keep``)."""
        ...

    def reset(self) -> None:
        """Forget any state of a previous run."""
        ...


# A schedule may also define ``update(record, state)``: the session calls it after each round whose weights it
# gave, with that round's :class:`~lightning_panning.core.results.RoundRecord` (the RL policy measures the new mask).


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
        >>> FixedWeights({"synflow": 1})(None)
        {'synflow': 1.0}
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = _check_weights(weights, "weights")

    def __call__(self, state: RoundState | None) -> dict[str, float]:
        """The fixed weights (``state`` is not read)."""
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
        >>> StageTable().weights_at(0.95)
        {'synflow': 0.2, 'snip': 0.3, 'grasp': 0.5}
        >>> rho = 0.9000000000000028
        >>> StageTable().weights_at(rho)["snip"], StageTable(tolerance=0.0).weights_at(rho)["snip"]
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

    def __call__(self, state: RoundState) -> dict[str, float]:
        """The weights of the row for the round's sparsity."""
        return self.weights_at(state.sparsity)

    def weights_at(self, sparsity: float) -> dict[str, float]:
        """The weights for a round of this sparsity (advances the stage with ``one_row_per_round``)."""
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


#: ``stage_rule`` → how Panning builds its stage table: the paper's (row by the round's sparsity, bounds with a
#: float tolerance) or the authors' (at most one row per round, plain ``ρ_i > bound``).
STAGE_RULES: dict[str, dict[str, Any]] = {
    "paper": {},
    "authors": {"one_row_per_round": True, "tolerance": 0.0},
}


def resolve_weights(
    weights: WeightSchedule | Mapping[str, float] | Sequence[Any] | None, stage_rule: str = "paper"
) -> WeightSchedule:
    """The schedule ``weights`` stands for: ``None`` → Table 3, a mapping → fixed, a list of rows → a table.

    Args:
        weights: ``None``, ``{scorer: p_k}``, ``[(upper bound, {scorer: p_k}), ...]`` or a :class:`WeightSchedule`.
        stage_rule: a key of :data:`STAGE_RULES`, for the stage tables built here.

    Example:
        >>> resolve_weights({"snip": 1})
        FixedWeights({'snip': 1.0})
    """
    if stage_rule not in STAGE_RULES:
        raise ValueError(f"Unknown `stage_rule` {stage_rule!r}; allowed: {list(STAGE_RULES)}.")
    if weights is None:
        return StageTable(**STAGE_RULES[stage_rule])
    if isinstance(weights, WeightSchedule):
        if stage_rule != "paper":
            raise ValueError(
                f"`stage_rule`={stage_rule!r} configures the stage table Panning builds from `weights`=None or a list "
                f"of rows; with a ready {type(weights).__name__} configure it directly, e.g. "
                "StageTable(one_row_per_round=True, tolerance=0.0)."
            )
        return weights
    if isinstance(weights, Mapping):
        return FixedWeights(weights)
    if isinstance(weights, Sequence) and not isinstance(weights, str):
        return StageTable(weights, **STAGE_RULES[stage_rule])
    raise TypeError(
        f"`weights` must be None (Table 3), a {{scorer: weight}} mapping, a table of (bound, weights) rows, or a "
        f"WeightSchedule; got {weights!r}."
    )
