"""What a pruning run returns: the masks and one record per round."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lightning_panning.core.masks import Masks, density

__all__ = ["PruningResult", "RoundRecord"]


@dataclass
class RoundRecord:
    """What happened in one round.

    Attributes:
        round: 1-based round index.
        sparsity: the round's sparsity ``ρ_i``.
        keep: number of weights kept after the round.
        weights: the metric weights ``p_k`` used.
        loss: loss of the network the round scored (``c_{i-1} ⊙ w``), if a data scorer ran.
        grad_norm: its ``gᵀg``.
        resurrected: weights kept now that the previous mask had removed.
        effective_sparsity: effective sparsity of the new mask (when tracked).
        seconds: wall time of the round.
    """

    round: int
    sparsity: float
    keep: int
    weights: dict[str, float]
    loss: float | None = None
    grad_norm: float | None = None
    resurrected: int = 0
    effective_sparsity: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return asdict(self)


@dataclass
class PruningResult:
    """Masks and the record of a pruning run.

    Attributes:
        masks: ``{name: bool tensor W_n}``.
        target: the requested sparsity.
        method: method name.
        history: one :class:`RoundRecord` per round.
        seconds: total wall time (this process's).
        scoring: how the scoring work was shared (plain values): ``world_size``, ``scoring_set_size``,
            ``micro_batch``, ``shard_sizes`` (samples each rank scored) and ``rank_seconds`` (each rank's wall time).
    """

    masks: Masks
    target: float
    method: str
    history: list[RoundRecord] = field(default_factory=list)
    seconds: float = 0.0
    scoring: dict[str, Any] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """Achieved nominal sparsity."""
        return 1.0 - density(self.masks)[0]
