"""The RLPanning observation, reward and action maths (METHOD §5), as small pure functions.

The Gymnasium environment (:class:`~lightning_panning.rl.env.PanningEnv`) and the inference-time driver used by
:class:`~lightning_panning.callbacks.rl.RLPanningCallback` both go through :class:`~lightning_panning.rl.episode.
Episode`, which calls these functions, so an agent sees exactly the same numbers in training and in use.

Normalisation ``N(·)`` of the losses
------------------------------------
The paper only says "all states are normalised"; the authors' code scales the losses by running min/max bounds kept
across episodes. Bounds that carry over from one episode to the next make an episode depend on every episode before
it, so ``reset(seed=s)`` would not reproduce the same observations (Gymnasium's and SB3's checkers test exactly
that), and a network whose loss scale differs from LeNet5's (VGG, ResNet) would sit outside the bounds the agent saw.
The default here is therefore a bounded normalisation *relative to the dense network of the episode*::

    N(x) = x / (x + x_dense)        ∈ [0, 1),   N(x_dense) = 0.5

for the loss (``x_dense = L``) and for the gradient norm ``gᵀg`` (``x_dense = ΔL``). It is strictly increasing in
``x``, scale-free (the same numbers for LeNet5 and VGG19, whatever the loss temperature), needs no state beyond the
episode, and keeps the reward terms of eq. (7) bounded by 0.5 each, comparable with ``α|ρ_e − ρ_t|`` (about 1 for a
one-point gap). The dense entries of the observation are then the constant 0.5; they are kept so that the
observation has the paper's 7-entry layout. The authors' running min/max is available as
``normalization="running"`` (reproducible only for a fresh normaliser).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "OBSERVATION_NAMES",
    "LossNormalizer",
    "NormalizationMode",
    "RewardTerms",
    "action_to_weights",
    "observation_vector",
    "reward_terms",
]

NormalizationMode = Literal["relative", "running"]

#: Names of the 7 observation entries, in order.
OBSERVATION_NAMES: tuple[str, ...] = ("loss", "grad_norm", "sparse_loss", "sparse_grad_norm", "sparsity",
                                      "effective_sparsity", "progress")


def _relative(x: float, ref: float) -> float:
    """``x / (x + ref)`` for ``x, ref ≥ 0``; ``0.5`` when both are 0."""
    x, ref = max(float(x), 0.0), max(float(ref), 0.0)
    total = x + ref
    if total == 0.0 or not math.isfinite(total):
        return 0.5 if total == 0.0 else (1.0 if math.isinf(x) else 0.0)
    return x / total


class LossNormalizer:
    """``N(·)`` for the loss and the gradient norm (see the module docstring for the choice).

    Args:
        mode: ``"relative"`` (default): ``N(x) = x / (x + x_dense)`` with the episode's dense value, reset each
            episode. ``"running"``: the authors' ``(x − min) / (max − min)`` with bounds over every value seen by
            this normaliser, across episodes (0.5 while the bounds are still equal).

    Example:
        >>> n = LossNormalizer()
        >>> n.reset(loss=2.0, grad_norm=1e-4)
        >>> n("loss", 2.0), round(n("grad_norm", 3e-4), 3)
        (0.5, 0.75)
    """

    def __init__(self, mode: NormalizationMode = "relative") -> None:
        if mode not in ("relative", "running"):
            raise ValueError(f"`normalization` must be 'relative' or 'running', got {mode!r}.")
        self.mode: NormalizationMode = mode
        self.reference: dict[str, float] = {"loss": 1.0, "grad_norm": 1.0}
        self.bounds: dict[str, list[float]] = {}

    def reset(self, loss: float, grad_norm: float) -> None:
        """Start an episode whose dense network has this loss and gradient norm ``gᵀg``."""
        self.reference = {"loss": float(loss), "grad_norm": float(grad_norm)}
        if self.mode == "running":
            self.update("loss", loss)
            self.update("grad_norm", grad_norm)

    def update(self, kind: str, value: float) -> None:
        """Widen the running bounds of ``kind`` (``"loss"`` or ``"grad_norm"``) to include ``value``."""
        lo_hi = self.bounds.setdefault(kind, [float(value), float(value)])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], float(value)), max(lo_hi[1], float(value))

    def __call__(self, kind: str, value: float) -> float:
        """``N(value)`` for ``kind`` in ``{"loss", "grad_norm"}``, in ``[0, 1]``."""
        if self.mode == "relative":
            return _relative(value, self.reference[kind])
        self.update(kind, value)
        lo, hi = self.bounds[kind]
        return 0.5 if hi <= lo else min(max((float(value) - lo) / (hi - lo), 0.0), 1.0)

    def state_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints)."""
        return {"mode": self.mode, "reference": dict(self.reference), "bounds": {k: list(v) for k, v in
                                                                                  self.bounds.items()}}


def observation_vector(
    loss: float, grad_norm: float, sparse_loss: float, sparse_grad_norm: float, sparsity: float,
    effective: float, progress: float,
) -> np.ndarray:
    """The 7 normalised numbers ``(N(L), N(ΔL), N(L_s), N(ΔL_s), ρ_t, ρ_e, t/T)`` as a float32 array of shape (7,).

    The first four arguments must already be normalised (see :class:`LossNormalizer`); every entry is clipped to
    ``[0, 1]``.

    Example:
        >>> observation_vector(0.5, 0.5, 0.5, 0.25, 0.875, 0.9375, 0.5).tolist()
        [0.5, 0.5, 0.5, 0.25, 0.875, 0.9375, 0.5]
    """
    obs = np.array([loss, grad_norm, sparse_loss, sparse_grad_norm, sparsity, effective, progress],
                   dtype=np.float32)
    return np.clip(np.nan_to_num(obs, nan=0.0), 0.0, 1.0)


@dataclass
class RewardTerms:
    """The four terms of eq. (7) and their sum ``R_t = -r1 - r2 - r3 - r_done``.

    Attributes:
        r1: ``|N(L) − N(L_s)|``.
        r2: ``|N(ΔL) − N(ΔL_s)|`` times the gradient-term scale (1; the authors' code uses 1/5).
        r3: ``α |ρ_e − ρ_t|``.
        r_done: ``T − t`` if the network is dead (``ρ_e = 1``), else 0.
        reward: ``−(r1 + r2 + r3 + r_done)``.
    """

    r1: float
    r2: float
    r3: float
    r_done: float
    reward: float

    def to_dict(self) -> dict[str, float]:
        """Plain values."""
        return asdict(self)


def reward_terms(
    n_loss: float, n_grad_norm: float, n_sparse_loss: float, n_sparse_grad_norm: float, sparsity: float,
    effective: float, *, dead: bool, t: int, rounds: int, alpha: float = 100.0, grad_term_scale: float = 1.0,
) -> RewardTerms:
    """Eq. (7): ``R_t = −|N(L) − N(L_s)| − |N(ΔL) − N(ΔL_s)| − α|ρ_e − ρ_t| − r_done``.

    Args:
        n_loss: ``N(L)`` of the dense network.
        n_grad_norm: ``N(ΔL)``, ``ΔL = gᵀg`` of the dense network.
        n_sparse_loss: ``N(L_s)`` of the sparse network after round ``t``.
        n_sparse_grad_norm: ``N(ΔL_s)``.
        sparsity: ``ρ_t``, the nominal sparsity of round ``t``.
        effective: ``ρ_e``, the effective sparsity of the mask of round ``t``.
        dead: whether no input-output path survives (``ρ_e = 1``); gives ``r_done = T − t``.
        t: rounds done (1-based round index).
        rounds: ``T``.
        alpha: ``α`` (paper: 100).
        grad_term_scale: factor on the gradient-norm term (1; the authors' code: 0.2).

    Example:
        >>> terms = reward_terms(0.5, 0.5, 0.5, 0.3, 0.9, 0.905, dead=False, t=10, rounds=100)
        >>> round(terms.r2, 6), round(terms.r3, 6), round(terms.reward, 6)
        (0.2, 0.5, -0.7)
    """
    r1 = abs(n_loss - n_sparse_loss)
    r2 = grad_term_scale * abs(n_grad_norm - n_sparse_grad_norm)
    r3 = alpha * abs(effective - sparsity)
    r_done = float(rounds - t) if dead else 0.0
    return RewardTerms(r1=r1, r2=r2, r3=r3, r_done=r_done, reward=-(r1 + r2 + r3 + r_done))


def action_to_weights(action: Sequence[float] | np.ndarray, scorers: Sequence[str]) -> dict[str, float]:
    """Eq. (6): ``p_k = (a_k + 1) / 2`` for ``a ∈ [-1, 1]^κ`` (clipped), keyed by scorer name.

    If every ``p_k`` is 0 (the action is exactly ``-1`` everywhere) the weights fall back to equal weights
    ``1/κ``, since a fused score needs at least one positive weight.

    Args:
        action: shape ``(κ,)``.
        scorers: the ``κ`` scorer names, in the action's order.

    Example:
        >>> action_to_weights([1.0, 0.0, -1.0], ["synflow", "snip", "grasp"])
        {'synflow': 1.0, 'snip': 0.5, 'grasp': 0.0}
        >>> action_to_weights([-1.0, -1.0], ["synflow", "snip"])
        {'synflow': 0.5, 'snip': 0.5}
    """
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.shape[0] != len(scorers):
        raise ValueError(f"The action has {a.shape[0]} entries but there are {len(scorers)} scorers {list(scorers)}.")
    a = np.clip(np.nan_to_num(a, nan=0.0), -1.0, 1.0)
    p = (a + 1.0) / 2.0
    if not (p > 0).any():
        p = np.full_like(p, 1.0 / len(scorers))
    return {name: float(v) for name, v in zip(scorers, p, strict=False)}
