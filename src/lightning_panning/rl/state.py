"""The RLPanning observation, reward and action maths (METHOD §5), as small pure functions, and the env presets.

The Gymnasium environments (:class:`~lightning_panning.rl.env.PanningEnv`, the batched
:func:`~lightning_panning.rl.vec_env.make_vec_env`) and the inference-time driver used by
:class:`~lightning_panning.callbacks.rl.RLPanningCallback` all go through :class:`~lightning_panning.rl.episode.
Episode`, which calls these functions, so an agent sees exactly the same numbers in training and in use.

Two presets (:data:`PRESETS`)
-----------------------------
``"default"`` (this project) and ``"authors"`` (the authors' ``PruningEnv.step``, reproduced exactly):

============================  ===========================================  ==========================================
                              ``"default"``                                ``"authors"``
============================  ===========================================  ==========================================
observation                   ``(N(L), N(ΔL), N(L_s), N(ΔL_s), ρ_t, ρ_e,   ``(N(L), N(ΔL), r1, r2, ρ_e, ρ_t,
                              t/T)``                                       (t−1)/T)``; ``(N(L), N(ΔL), 0, …, 0)`` at
                                                                           reset
loss normalisation ``N``      ``"sensitivity"`` (below), per batch         ``"running"`` min/max over every loss seen,
                                                                           across episodes, initialised from 10 batches
``r_done`` (dead network)     ``T − t``                                    ``T − t + 1``
gradient-norm term            ``|N(ΔL) − N(ΔL_s)|``                        ``|N(ΔL) − N(ΔL_s)| / 5``
scoring batch                 one per episode                              a new one every step
network                       a new one every episode                      one network for all episodes
scoring                       ``"panning"``: SNIP/GraSP at the masked      ``"panning_authors"``: unmasked SNIP/GraSP,
                              network (Algorithm 1)                        their normalisation, SynFlow, keep rule
============================  ===========================================  ==========================================

Normalisation ``N(·)`` of the losses
------------------------------------
The scoring loss is the cross-entropy at logit temperature 200 of an *untrained* network: ``L ≈ ln C`` whatever the
weights (within ``7e-6`` for LeNet5 with the authors' initialisation), and pruning moves it by about ``1e-6``
(``benchmarks/results/reward_terms.md`` measures every term over 24 LeNet5/MNIST episodes: 3 networks, targets 0.9
to 0.9999, random and Table-3 actions). Three findings fix the choice:

* relative to the loss itself (``"relative"``, ``N(x) = x / (x + L)``, this project's first choice) the loss term of
  eq. (7) vanishes: ``r1`` never exceeds ``1e-6`` (0.0% of the penalty) while ``r2`` reaches 0.5, so the agent never
  sees the loss;
* the distance to the *empty* network (``(L_s − L) / (L_∅ − L)``, a candidate) is no scale either: ``L_∅ − L`` is
  the dense network's small offset from ``ln C``, which varied 11-fold between the three initialisations, so the
  ratio spans 0.01 to 3.5 (5th to 95th percentile) and reaches 10;
* the sparse network's loss change scales with the dense network's first-order sensitivity to its weights, the norm
  of SNIP's saliency ``s = ‖∂L/∂w ⊙ w‖₂`` (removing each weight with probability ½ changes the loss, to first
  order, by a random amount of standard deviation ``s / 2``), which varied by 14% between the networks:
  ``|L_s − L| / s`` has median 0.08, 95th percentile 0.41 and maximum 0.50, the range of the gradient-norm term
  (0.08, 0.50, 0.50); the two carry 48% and 46% of the penalty. (With PyTorch's default initialisation the raw
  losses move 300 times more and these ratios stay the same.)

The default ``"sensitivity"`` therefore measures the loss in units of ``s`` around the dense value::

    N(L_s) = ½ + (L_s − L) / s          N(L) = ½,   r1 = |N(L) − N(L_s)| = |L_s − L| / s

``s`` comes free with the dense network's gradient (the scoring context round 1 reuses), is independent of the
temperature and of the loss scale (the shipped agent is applied to other networks), and needs no state across
episodes (``reset(seed=...)`` reproduces an episode), unlike the authors' running min/max (``"running"``), whose
span also lands ``r1`` in ``[0, 1]`` but depends on every episode before. The scoring loss is evaluated in float64
(:class:`~lightning_panning.rl.env.PreciseClassificationLoss`): in float32 its resolution at 2.3 (``2.4e-7``) would
round ``L_s − L`` to a few levels. The gradient norm ``gᵀg`` moves over orders of magnitude and keeps the bounded
relative form ``N(ΔL_s) = ΔL_s / (ΔL_s + ΔL)``. The dense entries of the default observation are the constants
``N(L) = N(ΔL) = 0.5``, kept for the paper's 7-entry layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

__all__ = [
    "LOSS_NORMALIZATIONS",
    "OBSERVATION_LAYOUTS",
    "OBSERVATION_NAMES",
    "PRESETS",
    "LossNormalizer",
    "NormalizationMode",
    "PanningPreset",
    "RewardTerms",
    "action_to_weights",
    "get_preset",
    "observation_vector",
    "reward_terms",
]

NormalizationMode = Literal["sensitivity", "relative", "running"]
#: The loss normalisations :class:`LossNormalizer` offers.
LOSS_NORMALIZATIONS: tuple[str, ...] = ("sensitivity", "relative", "running")

#: Names of the 7 observation entries of each layout, in order.
OBSERVATION_LAYOUTS: dict[str, tuple[str, ...]] = {
    "paper": ("loss", "grad_norm", "sparse_loss", "sparse_grad_norm", "sparsity", "effective_sparsity", "progress"),
    "authors": ("loss", "grad_norm", "r_loss", "r_grad_norm", "effective_sparsity", "sparsity", "progress_before"),
}
#: Names of the 7 entries of the default (paper) observation.
OBSERVATION_NAMES: tuple[str, ...] = OBSERVATION_LAYOUTS["paper"]


@dataclass(frozen=True)
class PanningPreset:
    """What an RLPanning environment observes and rewards, and how it draws networks and batches.

    Attributes:
        name: preset name.
        loss_normalization: ``N(·)`` of the losses: ``"sensitivity"``, ``"relative"`` or ``"running"`` (see the
            module docstring).
        observation: ``"paper"`` or ``"authors"`` (see :data:`OBSERVATION_LAYOUTS`).
        done_offset: ``r_done = T − t + done_offset`` when the network dies (0: eq. (7); 1: the authors' code).
        grad_term_scale: factor on the gradient-norm reward term (1; the authors' code: 0.2).
        alpha: ``α`` of eq. (7).
        batch_per_step: draw a new scoring batch every step (the authors) instead of once per episode.
        fixed_network: one network for every episode (the authors) instead of a new one at each reset.
        running_init_batches: batches whose dense loss and ``gᵀg`` initialise the running bounds (authors: 10).
        method: the pruning method of :data:`~lightning_panning.core.methods.METHODS` whose settings the episodes use
            (the agent supplies the metric weights): ``"panning"`` (Algorithm 1) or ``"panning_authors"`` (the
            authors' code bit for bit: unmasked SNIP/GraSP, their score normalisation, signed float32 SynFlow, their
            keep rule).
        panning_kwargs: further :class:`~lightning_panning.core.pruner.Panning` arguments of the preset.
    """

    name: str = "default"
    loss_normalization: NormalizationMode = "sensitivity"
    observation: Literal["paper", "authors"] = "paper"
    done_offset: int = 0
    grad_term_scale: float = 1.0
    alpha: float = 100.0
    batch_per_step: bool = False
    fixed_network: bool = False
    running_init_batches: int = 10
    method: str = "panning"
    panning_kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (stored with a trained policy)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PanningPreset:
        """The spec stored by :meth:`to_dict` (unknown keys are ignored)."""
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


#: The environment presets: this project's (``"default"``) and the authors' ``PruningEnv`` (``"authors"``).
PRESETS: dict[str, PanningPreset] = {
    "default": PanningPreset(),
    "authors": PanningPreset(
        name="authors", loss_normalization="running", observation="authors", done_offset=1, grad_term_scale=0.2,
        batch_per_step=True, fixed_network=True, method="panning_authors",
    ),
}
#: The spec the first shipped policy (v0.1, 10,000 steps) was trained with: the default layout, ``"relative"`` losses.
LEGACY_PRESET = replace(PRESETS["default"], name="relative", loss_normalization="relative")


def get_preset(preset: str | PanningPreset = "default", **overrides: Any) -> PanningPreset:
    """Resolve a preset name (or spec) and apply overrides (``None`` values are ignored).

    Raises:
        ValueError: for an unknown preset, naming the allowed ones.

    Example:
        >>> get_preset("authors").done_offset, get_preset("default", grad_term_scale=0.2).grad_term_scale
        (1, 0.2)
    """
    if isinstance(preset, PanningPreset):
        spec = preset
    elif isinstance(preset, str) and preset in PRESETS:
        spec = PRESETS[preset]
    else:
        raise ValueError(f"Unknown `preset` {preset!r}; allowed: {sorted(PRESETS)}.")
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "loss_normalization" in changes and changes["loss_normalization"] not in LOSS_NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {list(LOSS_NORMALIZATIONS)}, got {changes['loss_normalization']!r}."
        )
    return replace(spec, **changes) if changes else spec


def _relative(x: float, ref: float) -> float:
    """``x / (x + ref)`` for ``x, ref ≥ 0``; ``0.5`` when both are 0."""
    x, ref = max(float(x), 0.0), max(float(ref), 0.0)
    total = x + ref
    if total == 0.0 or not math.isfinite(total):
        return 0.5 if total == 0.0 else (1.0 if math.isinf(x) else 0.0)
    return x / total


class LossNormalizer:
    """``N(·)`` for the loss and the gradient norm ``gᵀg`` (see the module docstring for the choice).

    Args:
        mode: ``"sensitivity"`` (default): loss ``½ + (x − L) / ‖∂L/∂w ⊙ w‖₂``, gradient norm ``x / (x + ΔL)``, with
            the dense network's ``L``, ``ΔL`` and SNIP-saliency norm of the current scoring batch.
            ``"relative"``: ``x / (x + x_dense)`` for both. ``"running"``: the authors' ``(x − min) / (max − min)``
            with bounds over every value this normaliser has seen, across episodes (0.5 while the bounds are equal).

    Example:
        >>> n = LossNormalizer()
        >>> n.reset(loss=2.0, grad_norm=1e-4, loss_scale=0.5)
        >>> n("loss", 2.0), round(n("loss", 2.1), 6), round(n("grad_norm", 3e-4), 3)
        (0.5, 0.7, 0.75)
    """

    def __init__(self, mode: NormalizationMode = "sensitivity") -> None:
        if mode not in LOSS_NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {list(LOSS_NORMALIZATIONS)}, got {mode!r}.")
        self.mode: NormalizationMode = mode
        self.reference: dict[str, float] = {"loss": 1.0, "grad_norm": 1.0}
        self.loss_scale: float | None = None
        self.bounds: dict[str, list[float]] = {}

    def reset(self, loss: float, grad_norm: float, loss_scale: float | None = None) -> None:
        """Start an episode (or a new batch) whose dense network has this loss, ``gᵀg`` and ``‖∂L/∂w ⊙ w‖₂``.

        Running bounds are not touched (the authors' ``reset`` does not update them); a running normaliser that has
        seen nothing yet starts from these values.
        """
        self.reference = {"loss": float(loss), "grad_norm": float(grad_norm)}
        self.loss_scale = None if loss_scale is None else float(loss_scale)
        if self.mode == "sensitivity" and self.loss_scale is None:
            raise ValueError("The 'sensitivity' normalisation needs the loss scale ‖∂L/∂w ⊙ w‖₂ (`loss_scale`).")
        if self.mode == "running" and not self.bounds:
            self.update("loss", loss)
            self.update("grad_norm", grad_norm)

    def seed_bounds(self, losses: Sequence[float], grad_norms: Sequence[float]) -> None:
        """Initialise the running bounds as the authors' ``PruningEnv.__init__`` does from its first batches.

        Their code starts with ``max = v₀ / 100`` and ``min = v₀ · 100`` (swapped, so the first value never counts)
        and widens with every later value: the bounds are the min/max of ``values[1:]``.
        """
        for kind, values in (("loss", losses), ("grad_norm", grad_norms)):
            v = [float(x) for x in values]
            if len(v) < 2:
                raise ValueError(f"Seeding running bounds needs at least 2 values, got {len(v)}.")
            hi, lo = v[0] / 100.0, v[0] * 100.0
            for x in v[1:]:
                hi = x if x > hi else hi
                lo = x if x < lo else lo
            self.bounds[kind] = [lo, hi]

    def update(self, kind: str, value: float) -> None:
        """Widen the running bounds of ``kind`` (``"loss"`` or ``"grad_norm"``) to include ``value``."""
        lo_hi = self.bounds.setdefault(kind, [float(value), float(value)])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], float(value)), max(lo_hi[1], float(value))

    def __call__(self, kind: str, value: float) -> float:
        """``N(value)`` for ``kind`` in ``{"loss", "grad_norm"}`` (running bounds are not updated)."""
        value = float(value)
        if self.mode == "running":
            lo, hi = self.bounds.get(kind, [value, value])
            return 0.5 if hi <= lo else (value - lo) / (hi - lo)
        ref = self.reference[kind]
        if self.mode == "relative" or kind == "grad_norm":
            return _relative(value, ref)
        scale = self.loss_scale
        if scale is None or not scale > 0.0 or not math.isfinite(scale):  # no sensitivity: the dense value or beyond
            return 0.5 if value == ref else (1.0 if value > ref else 0.0)
        return 0.5 + (value - ref) / scale

    def pair(self, kind: str, dense: float, sparse: float) -> tuple[float, float]:
        """``(N(dense), N(sparse))``; a running normaliser first widens its bounds with both values (authors)."""
        if self.mode == "running":
            self.update(kind, dense)
            self.update(kind, sparse)
        return self(kind, dense), self(kind, sparse)

    def state_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints)."""
        return {"mode": self.mode, "reference": dict(self.reference), "loss_scale": self.loss_scale,
                "bounds": {k: list(v) for k, v in self.bounds.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (running bounds carried across a resumed training run)."""
        self.reference = dict(state.get("reference", self.reference))
        self.loss_scale = state.get("loss_scale")
        self.bounds = {k: list(v) for k, v in state.get("bounds", {}).items()}


def observation_vector(
    loss: float, grad_norm: float, sparse_loss: float, sparse_grad_norm: float, sparsity: float,
    effective: float, progress: float,
) -> np.ndarray:
    """The paper layout ``(N(L), N(ΔL), N(L_s), N(ΔL_s), ρ_t, ρ_e, t/T)`` as a float32 array of shape (7,).

    The first four arguments must already be normalised (see :class:`LossNormalizer`); every entry is clipped to
    ``[0, 1]``.

    Example:
        >>> observation_vector(0.5, 0.5, 0.75, 0.25, 0.875, 0.9375, 0.5).tolist()
        [0.5, 0.5, 0.75, 0.25, 0.875, 0.9375, 0.5]
    """
    obs = np.array([loss, grad_norm, sparse_loss, sparse_grad_norm, sparsity, effective, progress],
                   dtype=np.float32)
    return np.clip(np.nan_to_num(obs, nan=0.0), 0.0, 1.0)


def authors_observation(
    loss: float, grad_norm: float, r_loss: float, r_grad_norm: float, effective: float, sparsity: float,
    progress_before: float,
) -> np.ndarray:
    """The authors' layout ``(N(L), N(ΔL), r1, r2, ρ_e, ρ_t, (t−1)/T)`` as a float32 array of shape (7,), unclipped.

    Example:
        >>> [round(float(v), 4) for v in authors_observation(0.25, 0.5, 0.01, 0.02, 0.9, 0.875, 0.49)]
        [0.25, 0.5, 0.01, 0.02, 0.9, 0.875, 0.49]
    """
    return np.nan_to_num(np.array([loss, grad_norm, r_loss, r_grad_norm, effective, sparsity, progress_before],
                                  dtype=np.float32), nan=0.0)


@dataclass
class RewardTerms:
    """The four terms of eq. (7) and their sum ``R_t = -r1 - r2 - r3 - r_done``.

    Attributes:
        r1: ``|N(L) − N(L_s)|``.
        r2: ``|N(ΔL) − N(ΔL_s)|`` times the gradient-term scale (1; the authors' code uses 1/5).
        r3: ``α |ρ_e − ρ_t|``.
        r_done: ``T − t`` (authors: ``T − t + 1``) if the network is dead (``ρ_e = 1``), else 0.
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
    done_offset: int = 0,
) -> RewardTerms:
    """Eq. (7): ``R_t = −|N(L) − N(L_s)| − |N(ΔL) − N(ΔL_s)| − α|ρ_e − ρ_t| − r_done``.

    Args:
        n_loss: ``N(L)`` of the dense network.
        n_grad_norm: ``N(ΔL)``, ``ΔL = gᵀg`` of the dense network.
        n_sparse_loss: ``N(L_s)`` of the sparse network after round ``t``.
        n_sparse_grad_norm: ``N(ΔL_s)``.
        sparsity: ``ρ_t``, the nominal sparsity of round ``t``.
        effective: ``ρ_e``, the effective sparsity of the mask of round ``t``.
        dead: whether no input-output path survives (``ρ_e = 1``); gives ``r_done = T − t + done_offset``.
        t: rounds done (1-based round index).
        rounds: ``T``.
        alpha: ``α`` (paper: 100).
        grad_term_scale: factor on the gradient-norm term (1; the authors' code: 0.2).
        done_offset: 0 (eq. (7)) or 1 (the authors' code).

    Example:
        >>> terms = reward_terms(0.5, 0.5, 0.5, 0.3, 0.9, 0.905, dead=False, t=10, rounds=100)
        >>> round(terms.r2, 6), round(terms.r3, 6), round(terms.reward, 6)
        (0.2, 0.5, -0.7)
    """
    r1 = abs(n_loss - n_sparse_loss)
    r2 = grad_term_scale * abs(n_grad_norm - n_sparse_grad_norm)
    r3 = alpha * abs(effective - sparsity)
    r_done = float(rounds - t + done_offset) if dead else 0.0
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
