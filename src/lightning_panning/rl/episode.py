"""One RLPanning episode on top of a :class:`~lightning_panning.core.session.PanningSession`.

Shared by :class:`~lightning_panning.rl.env.PanningEnv`, the batched vector env
(:func:`~lightning_panning.rl.vec_env.make_vec_env`) and :func:`~lightning_panning.rl.agent.rl_prune` /
:class:`~lightning_panning.callbacks.rl.RLPanningCallback` (inference), so all of them build the observation and the
reward with the same code.

A step has three phases: :meth:`Episode.play` runs the Panning round with the action's weights, a
:class:`Measurement` of the new mask is taken (:meth:`Episode.measure` here; the vector env takes the measurements of
all its episodes in one batched computation), and :meth:`Episode.finish` turns it into the observation and eq. (7).

Passes per step (no pass is wasted):

* the round itself reuses the scoring context of the current mask (one forward + double backward on the scoring
  batch for SNIP/GraSP, one SynFlow pass) and runs the global top-k;
* one ones-pass for the effective sparsity of the new mask;
* Algorithm 1 (``masked_data_scores=True``): the sparse loss ``L_s`` and ``gᵀg`` come from the scoring context of
  the *new* mask, which the next round reuses (so they cost nothing extra); at the last step (or when the network
  has died) that context is built without the double backward, since no round will use it;
* unmasked scores (the authors' ``masked_data_scores=False``): the unmasked context is computed once per scoring
  batch and reused by every round; ``L_s`` and ``gᵀg`` then need their own forward + backward of the masked network;
* the dense network's ``L``, ``gᵀg`` and loss scale ``‖∂L/∂w ⊙ w‖₂`` once per scoring batch (from the context
  round 1 reuses): once per episode, or every step with a new batch per step (authors' preset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lightning_panning.core.masks import effective_masks
from lightning_panning.core.results import RoundRecord
from lightning_panning.core.scorers import ScoringContext
from lightning_panning.core.session import PanningSession
from lightning_panning.rl.state import (
    LossNormalizer,
    PanningPreset,
    RewardTerms,
    action_to_weights,
    authors_observation,
    get_preset,
    observation_vector,
    reward_terms,
)

__all__ = ["Episode", "EpisodeStep", "Measurement", "empty_loss", "loss_scale", "masked_loss"]


@dataclass
class Measurement:
    """What a step measures of the new mask (and, with a new batch, of the dense network).

    Attributes:
        effective: ``ρ_e`` of the new mask.
        dead: no input-output path survives.
        sparse_loss: ``L_s`` of ``c ⊙ w`` on the scoring batch.
        sparse_grad_norm: its ``gᵀg``.
        dense: ``(L, gᵀg, ‖∂L/∂w ⊙ w‖₂)`` of the dense network when the batch changed this step, else ``None``.
    """

    effective: float
    dead: bool
    sparse_loss: float
    sparse_grad_norm: float
    dense: tuple[float, float, float] | None = None


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


def empty_loss(session: PanningSession) -> float:
    """The scoring loss of the *empty* network (every prunable weight 0) on the session's scoring set.

    One forward pass per chunk, through the scoring context's public pass (mean over the chunks, size-weighted, summed
    over the ranks under data-parallel scoring).
    """
    ctx = session.context()
    zeros = {n: torch.zeros_like(p) for n, p in session.params.items()}
    with torch.no_grad():
        losses = [ctx.forward(session.pruner.loss_fn, chunk, zeros) for chunk in ctx.chunks]
    if len(losses) == 1 and ctx.scoring_set is not None and ctx.scoring_set.reduce is None:
        return float(losses[0])
    local = sum(share * loss.double() for share, loss in zip(ctx.chunk_shares(), losses, strict=True))
    return float(ctx.reduce([torch.as_tensor(local, dtype=torch.float64, device=ctx.device).reshape(1)])[0])


def loss_scale(grad: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> float:
    """``‖∂L/∂w ⊙ w‖₂`` over all prunable weights (float64): the norm of the dense network's SNIP saliency.

    Removing each weight with probability ½ changes the loss, to first order, by ``−Σ g_i w_i m_i``, whose standard
    deviation is half this norm; the ``"sensitivity"`` normalisation measures ``L_s − L`` in its units.
    """
    return math.sqrt(sum(float(((grad[n].double() * weights[n].double()) ** 2).sum()) for n in weights))


def masked_loss(session: PanningSession, dense: bool = False) -> tuple[float, float, float]:
    """Loss, ``gᵀg`` and ``‖∂L/∂w ⊙ w‖₂`` of ``c ⊙ w`` (of ``w`` when ``dense``) on the session's batch.

    One forward + backward of their own (no double backward).
    """
    p = session.pruner
    ctx = ScoringContext(
        session.model, session.scoring_params, None if dense else session.masks, session.batch, p.loss_fn,  # type: ignore[arg-type]
        resurrect=p.resurrect, masked_data_scores=True, needs_hvp=False, example_input=session.example_input,
        train_mode=p.train_mode, seed=p.seed + session.round,
    )
    grad = ctx.grad
    assert ctx.loss is not None and ctx.grad_norm is not None
    return float(ctx.loss), float(ctx.grad_norm), loss_scale(grad, ctx.theta)


class Episode:
    """Drives a :class:`PanningSession` with actions and turns its state into observations and rewards.

    Creating an episode measures the dense network (loss ``L``, gradient norm ``ΔL = gᵀg`` and the loss scale
    ``‖∂L/∂w ⊙ w‖₂``, all from the session's first scoring context, which round 1 then reuses), unless ``dense``
    gives those numbers.

    Args:
        session: a fresh session (no round run yet), from :meth:`Panning.start`.
        preset: the preset (or its name): observation layout, normalisation, penalties (see :data:`PRESETS`).
        normalizer: the ``N(·)`` of the losses; default: a new one of ``preset.loss_normalization`` (pass the env's
            own to carry running bounds across episodes).
        stop_when_dead: end the episode when the network is dead (training, eq. (7)); ``False`` keeps going until
            all ``T`` rounds have run (inference, where the caller needs a mask at the target).
        batch_fn: draws a new scoring batch; called once per step when ``preset.batch_per_step``.
        dense: ``(L, gᵀg, ‖∂L/∂w ⊙ w‖₂)`` of the dense network when the caller has already measured it.
    """

    def __init__(
        self,
        session: PanningSession,
        preset: PanningPreset | str = "default",
        normalizer: LossNormalizer | None = None,
        stop_when_dead: bool = True,
        batch_fn: Callable[[], Any] | None = None,
        dense: tuple[float, float, float] | None = None,
    ) -> None:
        if session.round != 0:
            raise ValueError(f"The session has already run {session.round} rounds; start a new one.")
        self.preset = get_preset(preset)
        if self.preset.batch_per_step and batch_fn is None:
            raise ValueError(f"Preset {self.preset.name!r} draws a new batch every step: pass `batch_fn`.")
        self.session = session
        self.stop_when_dead = stop_when_dead
        self.batch_fn = batch_fn
        self.normalizer = normalizer if normalizer is not None else LossNormalizer(self.preset.loss_normalization)
        self.scorers = list(session.pruner.scorers)
        self.rounds = len(session.schedule)
        self.sparsity = 0.0
        self.effective = 0.0
        self.dead = False
        self.set_dense(dense if dense is not None else self.measure_dense())
        n_loss, n_grad = self.normalizer("loss", self.dense_loss), self.normalizer("grad_norm", self.dense_grad_norm)
        if self.preset.observation == "authors":
            self._observation = authors_observation(n_loss, n_grad, 0.0, 0.0, 0.0, 0.0, 0.0)
        else:
            self._observation = observation_vector(n_loss, n_grad, n_loss, n_grad, 0.0, 0.0, 0.0)

    # -- measurements --------------------------------------------------------------------------------------------
    def measure_dense(self) -> tuple[float, float, float]:
        """``(L, gᵀg, ‖∂L/∂w ⊙ w‖₂)`` of the dense network on the session's batch.

        Taken from the scoring context of the mask ``None``, which the next round reuses.
        """
        ctx = self.session.context()
        grad = ctx.grad
        assert ctx.loss is not None and ctx.grad_norm is not None
        return float(ctx.loss), float(ctx.grad_norm), loss_scale(grad, ctx.theta)

    def set_dense(self, dense: tuple[float, float, float]) -> None:
        """Use these dense-network figures from now on (episode start, or a new batch)."""
        self.dense_loss, self.dense_grad_norm, self.loss_scale = float(dense[0]), float(dense[1]), float(dense[2])
        self.normalizer.reset(self.dense_loss, self.dense_grad_norm, self.loss_scale)

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

    # -- one step ------------------------------------------------------------------------------------------------
    def choose(self, action: np.ndarray | Any) -> dict[str, float]:
        """Take ``action`` (shape ``(κ,)``) for the next round; its metric weights ``p = (a + 1) / 2``."""
        if self.done:
            raise RuntimeError("The episode has ended; start a new one.")
        self._action = np.asarray(action, dtype=np.float32).reshape(-1)
        self._weights = action_to_weights(self._action, self.scorers)
        return self._weights

    def played(self, record: RoundRecord) -> None:
        """The round chosen by :meth:`choose` has run (by :meth:`play`, or by a session asking a schedule)."""
        self._record = record

    def play(self, action: np.ndarray | Any) -> RoundRecord:
        """Phase 1: run the next round with the metric weights ``p = (a + 1) / 2`` (``action`` of shape ``(κ,)``)."""
        self.played(self.session.step(self.choose(action)))
        return self._record

    def measure(self) -> Measurement:
        """Phase 2 (one episode on its own): measure the new mask; see the module docstring for the passes."""
        session = self.session
        assert session.masks is not None
        eff = effective_masks(session.model, session.masks, session.example_input)
        effective_kept = sum(int(e.sum()) for e in eff.values())
        dead = effective_kept == 0
        last = session.done or (dead and self.stop_when_dead)
        dense: tuple[float, float, float] | None = None
        if self.preset.batch_per_step:
            assert self.batch_fn is not None
            session.set_batch(self.batch_fn())
        if session.pruner.masked_data_scores:
            ctx = session.context(needs_hvp=False if last else None)
            _ = ctx.grad
            assert ctx.loss is not None and ctx.grad_norm is not None
            sparse = float(ctx.loss), float(ctx.grad_norm)
            if self.preset.batch_per_step:  # a preset mixing both: the dense figures need their own pass
                dense = masked_loss(session, dense=True)
        else:
            sparse = masked_loss(session)[:2]
            if self.preset.batch_per_step:  # the unmasked context of the new batch: dense figures + next round's scores
                ctx = session.context(needs_hvp=False if last else None)
                grad = ctx.grad
                assert ctx.loss is not None and ctx.grad_norm is not None
                dense = float(ctx.loss), float(ctx.grad_norm), loss_scale(grad, ctx.theta)
        return Measurement(effective=1.0 - effective_kept / session.total, dead=dead, sparse_loss=sparse[0],
                           sparse_grad_norm=sparse[1], dense=dense)

    def finish(self, m: Measurement) -> EpisodeStep:
        """Phase 3: the observation and eq. (7)'s reward from the round played and its measurement."""
        spec = self.preset
        record = self._record
        if m.dense is not None:
            self.set_dense(m.dense)
        self.effective, self.dead, self.sparsity = m.effective, m.dead, record.sparsity
        n_loss, n_sparse_loss = self.normalizer.pair("loss", self.dense_loss, m.sparse_loss)
        n_grad, n_sparse_grad = self.normalizer.pair("grad_norm", self.dense_grad_norm, m.sparse_grad_norm)
        t = self.session.round
        terms = reward_terms(
            n_loss, n_grad, n_sparse_loss, n_sparse_grad, self.sparsity, self.effective, dead=self.dead, t=t,
            rounds=self.rounds, alpha=spec.alpha, grad_term_scale=spec.grad_term_scale, done_offset=spec.done_offset,
        )
        if spec.observation == "authors":
            self._observation = authors_observation(n_loss, n_grad, terms.r1, terms.r2, self.effective, self.sparsity,
                                                    (t - 1) / self.rounds)
        else:
            self._observation = observation_vector(n_loss, n_grad, n_sparse_loss, n_sparse_grad, self.sparsity,
                                                   self.effective, t / self.rounds)
        info = {
            "round": t,
            "target": self.session.target,
            "sparsity": self.sparsity,
            "effective_sparsity": self.effective,
            "keep": record.keep,
            "weights": self._weights,
            "loss": self.dense_loss,
            "grad_norm": self.dense_grad_norm,
            "loss_scale": self.loss_scale,
            "sparse_loss": m.sparse_loss,
            "sparse_grad_norm": m.sparse_grad_norm,
            "dead": self.dead,
            **terms.to_dict(),
        }
        return EpisodeStep(
            observation=self._observation.copy(), terms=terms, terminated=self.dead or self.session.done,
            dead=self.dead, record=record, action=self._action, info=info,
        )

    def step(self, action: np.ndarray | Any) -> EpisodeStep:
        """Run one round with the metric weights ``p = (a + 1) / 2`` and return the new state and eq. (7)'s reward.

        Args:
            action: array of shape ``(κ,)`` in ``[-1, 1]`` (clipped).
        """
        self.play(action)
        return self.finish(self.measure())
