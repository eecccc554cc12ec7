"""One RLPanning episode on top of a :class:`~lightning_panning.core.panning.PanningSession`.

Shared by :class:`~lightning_panning.rl.env.PanningEnv` (training) and :func:`~lightning_panning.rl.agent.rl_prune`
/ :class:`~lightning_panning.callbacks.rl.RLPanningCallback` (inference), so both build the observation and the
reward with the same code.

Cost of one step: the session's round (one forward + double backward on the scoring batch for SNIP/GraSP, one
float64 SynFlow pass, the global top-k), one float64 ones-pass for the effective sparsity, and nothing else: the loss
and ``gᵀg`` of the new sparse network come from the session's scoring context of the new mask, which the *next*
round reuses, so the observation costs no extra forward/backward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightning_panning.core.masks import effective_masks
from lightning_panning.core.panning import PanningSession, RoundRecord
from lightning_panning.rl.state import (
    LossNormalizer,
    RewardTerms,
    action_to_weights,
    observation_vector,
    reward_terms,
)

__all__ = ["Episode", "EpisodeStep"]


@dataclass
class EpisodeStep:
    """The result of one episode step (one Panning round chosen by an action).

    Attributes:
        observation: float32 array of shape (7,).
        terms: the reward terms of eq. (7) and their sum.
        terminated: ``t = T`` or the network is dead.
        dead: ``ρ_e = 1``.
        record: the Panning round's record.
        action: the action, float array of shape ``(κ,)``.
        info: plain values for logs (target, sparsity, effective sparsity, weights, raw losses, reward terms).
    """

    observation: np.ndarray
    terms: RewardTerms
    terminated: bool
    dead: bool
    record: RoundRecord
    action: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        """``R_t``."""
        return self.terms.reward


class Episode:
    """Drives a :class:`PanningSession` with actions and turns its state into observations and rewards.

    Creating an episode computes the dense network's loss ``L`` and gradient norm ``ΔL = gᵀg`` from the session's
    first scoring context (which round 1 then reuses).

    Args:
        session: a fresh session (no round run yet), from :meth:`Panning.start`.
        alpha: ``α`` of eq. (7).
        grad_term_scale: factor on the gradient-norm reward term (1; the authors' code: 0.2).
        normalizer: the ``N(·)`` of the losses; default: a new relative normaliser.
        stop_when_dead: end the episode when the network is dead (training, eq. (7)); ``False`` keeps going until
            all ``T`` rounds have run (inference, where the caller needs a mask at the target).
    """

    def __init__(
        self,
        session: PanningSession,
        alpha: float = 100.0,
        grad_term_scale: float = 1.0,
        normalizer: LossNormalizer | None = None,
        stop_when_dead: bool = True,
    ) -> None:
        if session.round != 0:
            raise ValueError(f"The session has already run {session.round} rounds; start a new one.")
        self.session = session
        self.alpha = float(alpha)
        self.grad_term_scale = float(grad_term_scale)
        self.stop_when_dead = stop_when_dead
        self.normalizer = normalizer if normalizer is not None else LossNormalizer()
        self.scorers = list(session.pruner.scorers)
        self.rounds = len(session.schedule)
        self.dense_loss, self.dense_grad_norm = self._current_loss()
        self.normalizer.reset(self.dense_loss, self.dense_grad_norm)
        self.n_loss = self.normalizer("loss", self.dense_loss)
        self.n_grad_norm = self.normalizer("grad_norm", self.dense_grad_norm)
        self.sparsity = 0.0
        self.effective = 0.0
        self.dead = False
        self._observation = observation_vector(self.n_loss, self.n_grad_norm, self.n_loss, self.n_grad_norm,
                                               0.0, 0.0, 0.0)

    def _current_loss(self) -> tuple[float, float]:
        """Loss and ``gᵀg`` of the session's current (masked) network, from its cached scoring context."""
        ctx = self.session.context()
        _ = ctx.grad
        if ctx.loss is None or ctx.grad_norm is None:  # pragma: no cover - ScoringContext always sets them
            raise RuntimeError("The scoring context computed no loss.")
        return float(ctx.loss), float(ctx.grad_norm)

    @property
    def t(self) -> int:
        """Rounds done."""
        return self.session.round

    @property
    def done(self) -> bool:
        """Whether the episode has ended (all rounds, or a dead network when ``stop_when_dead``)."""
        return (self.dead and self.stop_when_dead) or self.session.done

    @property
    def observation(self) -> np.ndarray:
        """The current observation, float32 array of shape (7,) (a copy)."""
        return self._observation.copy()

    def step(self, action: np.ndarray | Any) -> EpisodeStep:
        """Run one round with the metric weights ``p = (a + 1) / 2`` and return the new state and eq. (7)'s reward.

        Args:
            action: array of shape ``(κ,)`` in ``[-1, 1]`` (clipped).
        """
        if self.done:
            raise RuntimeError("The episode has ended; start a new one.")
        session = self.session
        action_arr = np.asarray(action, dtype=np.float32).reshape(-1)
        weights = action_to_weights(action_arr, self.scorers)
        record = session.step(weights)
        masks = session.masks
        assert masks is not None
        eff = effective_masks(session.model, masks, session.example_input)
        effective_kept = sum(int(e.sum()) for e in eff.values())
        self.effective = 1.0 - effective_kept / session.total
        self.dead = effective_kept == 0
        self.sparsity = record.sparsity
        sparse_loss, sparse_grad_norm = self._current_loss()
        n_sparse_loss = self.normalizer("loss", sparse_loss)
        n_sparse_grad = self.normalizer("grad_norm", sparse_grad_norm)
        t = session.round
        terms = reward_terms(
            self.n_loss, self.n_grad_norm, n_sparse_loss, n_sparse_grad, self.sparsity, self.effective,
            dead=self.dead, t=t, rounds=self.rounds, alpha=self.alpha, grad_term_scale=self.grad_term_scale,
        )
        self._observation = observation_vector(
            self.n_loss, self.n_grad_norm, n_sparse_loss, n_sparse_grad, self.sparsity, self.effective,
            t / self.rounds,
        )
        info = {
            "round": t,
            "target": session.target,
            "sparsity": self.sparsity,
            "effective_sparsity": self.effective,
            "keep": record.keep,
            "weights": weights,
            "loss": self.dense_loss,
            "grad_norm": self.dense_grad_norm,
            "sparse_loss": sparse_loss,
            "sparse_grad_norm": sparse_grad_norm,
            "dead": self.dead,
            **terms.to_dict(),
        }
        return EpisodeStep(
            observation=self._observation.copy(), terms=terms, terminated=self.dead or session.done, dead=self.dead,
            record=record, action=action_arr, info=info,
        )
