"""A vectorised RLPanning environment: ``n_envs`` episodes advance in one batched computation.

:func:`make_vec_env` returns a Stable-Baselines3 ``VecEnv`` of ``n_envs`` :class:`~lightning_panning.rl.env.PanningEnv`
slots. Each slot keeps its own random stream, network, batch, target and :class:`~lightning_panning.rl.episode.Episode`
(so the observation and reward code is the single env's), and each slot's round (normalisation, fusion, global top-k)
runs through the core's :class:`~lightning_panning.core.session.PanningSession`. What is batched is every pass over
the networks: the ``n_envs`` networks are stacked into one :class:`StackedModel` whose forward is
:func:`torch.func.vmap` of :func:`torch.func.functional_call` over the stacked parameters, and the core's own
:class:`~lightning_panning.core.scorers.ScoringContext`, SynFlow and effective-sparsity passes run on it unchanged. One
step is then one batched forward + double backward (loss, ``gᵀg``, gradients and Hessian-gradient products of all
``n_envs`` masked networks), one batched SynFlow pass and one batched effective-sparsity pass, after which each slot's
scoring context is filled with its slice for the next round. (The authors' preset scores SynFlow with their own
linearisation in float32, which the core runs as a pass of its own, per slot; it costs one input sample.)

Up to floating-point rounding (a grouped convolution instead of ``n_envs`` convolutions) a slot produces the same
episodes as a :class:`PanningEnv` reset with the same seed. Networks with dropout draw different dropout masks.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils.data import Dataset

from lightning_panning.core.batch import ClassificationLoss
from lightning_panning.core.masks import effective_masks
from lightning_panning.core.params import prunable_parameters
from lightning_panning.core.scorers import Gradients, Needs, ScoringContext, SynFlow
from lightning_panning.rl.env import PanningEnv
from lightning_panning.rl.episode import Measurement, masked_loss

__all__ = ["PanningVecEnv", "StackedLoss", "StackedModel", "make_vec_env"]

PREFIX = "inner."


class StackedModel(nn.Module):
    """``n`` networks of one architecture as one module: every parameter and buffer gains a leading dim of size ``n``.

    ``forward(x)`` takes inputs of shape ``(n, B, ...)`` (one batch per network) or ``(1, B, ...)`` (the same batch
    for all) and returns the ``n`` outputs stacked, ``(n, B, ...)``. The stacked tensors are registered on
    :attr:`inner` (a copy of the architecture), so their names are the networks' own with the prefix ``"inner."``
    and the core's functions (:class:`~lightning_panning.core.scorers.ScoringContext`,
    :func:`~lightning_panning.core.masks.effective_masks`) can substitute them like any module's.

    Args:
        models: ``n ≥ 1`` networks with identical parameter and buffer names and shapes (no tied weights).

    Example:
        >>> nets = [torch.nn.Linear(4, 2) for _ in range(3)]
        >>> stacked = StackedModel(nets)
        >>> stacked.inner.weight.shape, stacked(torch.randn(3, 5, 4)).shape
        (torch.Size([3, 2, 4]), torch.Size([3, 5, 2]))
        >>> torch.allclose(stacked(torch.ones(1, 5, 4))[1], nets[1](torch.ones(5, 4)))
        True
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ValueError("StackedModel needs at least one network.")
        self.n = len(models)
        template = models[0]
        self.inner = copy.deepcopy(template)
        named = [dict(m.named_parameters()) for m in models]
        buffers = [dict(m.named_buffers()) for m in models]
        for module_name, module in self.inner.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, p in list(module._parameters.items()):
                if p is not None:
                    stacked = torch.stack([d[prefix + name].detach() for d in named])
                    module._parameters[name] = nn.Parameter(stacked, requires_grad=p.requires_grad)
            for name, b in list(module._buffers.items()):
                if b is not None:
                    module._buffers[name] = torch.stack([d[prefix + name].detach() for d in buffers])

    def load_slot(self, index: int, model: nn.Module) -> None:
        """Copy ``model``'s parameters and buffers into slot ``index``."""
        own = {**dict(self.inner.named_parameters()), **dict(self.inner.named_buffers())}
        with torch.no_grad():
            for name, t in [*model.named_parameters(), *model.named_buffers()]:
                own[name][index].copy_(t.detach())

    def forward(self, x: Tensor) -> Tensor:
        """``(n or 1, B, ...)`` inputs → ``(n, B, ...)`` outputs, each network on its own slice (or the shared one)."""
        if x.shape[0] not in (self.n, 1):
            raise ValueError(f"StackedModel of {self.n} networks got inputs with leading dim {x.shape[0]}.")
        tensors = {**dict(self.inner.named_parameters()), **dict(self.inner.named_buffers())}

        def one(t: dict[str, Tensor], xi: Tensor) -> Tensor:  # the architecture itself, with network i's tensors
            return functional_call(self.inner, t, (xi,))

        in_x = 0 if x.shape[0] == self.n else None
        return vmap(one, in_dims=(0, in_x), randomness="different")(tensors, x if in_x == 0 else x[0])


class StackedLoss:
    """Cross-entropy at a logit temperature for a :class:`StackedModel`: the sum of the ``n`` networks' mean losses.

    Evaluated in float64 like :class:`~lightning_panning.rl.env.PreciseClassificationLoss`.

    The gradient of the sum with respect to network ``i``'s parameters is that network's own gradient, so one
    backward serves all ``n``. :attr:`last` keeps the ``n`` losses of the latest call, shape ``(n,)``.

    Args:
        temperature: logit divisor (the environment's, 200).
    """

    #: The batch holds ``(n, B)`` labels, which the core's 1-D label check must not inspect.
    needs_labels = False

    def __init__(self, temperature: float = 200.0) -> None:
        self.temperature = float(temperature)
        self.last: Tensor | None = None

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        """``batch = (x (n, B, ...), y (n, B))`` → scalar ``Σ_i mean_b CE_ib``."""
        x, y = batch
        out = model(x)
        per_sample = F.cross_entropy((out.double() / self.temperature).flatten(0, 1), y.flatten(), reduction="none")
        per_env = per_sample.view(y.shape).mean(dim=1)
        self.last = per_env.detach()
        return per_env.sum()


def _grad_norms(grads: dict[str, Tensor], sqrt: bool = False) -> list[float]:
    """Per-network ``gᵀg`` (float64; its square root when ``sqrt``) from stacked tensors ``{name: (n, *W)}``."""
    total: Tensor | None = None
    for g in grads.values():
        part = (g.detach().double() ** 2).flatten(1).sum(dim=1)
        total = part if total is None else total + part
    assert total is not None
    return [float(v) for v in (total.sqrt() if sqrt else total)]


class PanningVecEnv(DummyVecEnv):
    """``n_envs`` RLPanning episodes whose networks are scored in one batched computation (see the module docstring).

    Built by :func:`make_vec_env`; the slots (``envs``) are :class:`PanningEnv` instances sharing one sample pool and
    one pruner. SB3's conventions hold: a finished episode's last observation is in ``info["terminal_observation"]``
    and the slot is reset at once (a new network, batch and target).

    Args:
        envs: the slots (same preset, scorers, settings and network architecture).
    """

    def __init__(self, envs: Sequence[PanningEnv]) -> None:
        super().__init__([(lambda e=e: e) for e in envs])  # type: ignore[misc]
        self.slots: list[PanningEnv] = list(envs)
        first = self.slots[0]
        loss_fn = first.pruner.loss_fn
        if not isinstance(loss_fn, ClassificationLoss):
            raise ValueError(
                f"The vectorised env batches the classification loss only; the pruner's `loss_fn` is {loss_fn!r}."
            )
        if first.pruner.reinit_linear:
            raise ValueError(
                "The vectorised env scores the networks' own weights; `reinit_linear=True` is not supported."
            )
        if first.pruner.micro_batch is not None:
            raise ValueError(
                f"The vectorised env scores each network's whole batch in one batched pass; `micro_batch`="
                f"{first.pruner.micro_batch!r} is not supported there (use PanningEnv, or leave it unset)."
            )
        self.stacked_loss = StackedLoss(loss_fn.temperature)
        self.stacked: StackedModel | None = None
        self._models: list[nn.Module | None] = [None] * len(self.slots)
        self.names: list[str] = []

    # -- set-up ----------------------------------------------------------------------------------------------------
    def _sync_models(self) -> None:
        """(Re)build the stack, or copy a slot's new network into it after its reset."""
        models = [slot.model for slot in self.slots]
        if any(m is None for m in models):  # pragma: no cover - every slot has been reset
            raise RuntimeError("Every slot must be reset before the stack is built.")
        if self.stacked is None:
            pruner = self.slots[0].pruner
            self.stacked = StackedModel([m for m in models if m is not None]).to(self.slots[0].device)
            self.names = list(prunable_parameters(models[0], pruner.include, pruner.exclude,  # type: ignore[arg-type]
                                                  pruner.predicate))
        else:
            for i, model in enumerate(models):
                if model is not self._models[i]:
                    assert model is not None
                    self.stacked.load_slot(i, model)
        self._models = list(models)

    def reset(self) -> Any:
        """Reset every slot (seeds and options from :meth:`seed` / :meth:`set_options`) and stack the networks."""
        obs = super().reset()
        self._sync_models()
        return obs

    # -- one batched step ------------------------------------------------------------------------------------------
    def _stacked_params(self) -> dict[str, nn.Parameter]:
        assert self.stacked is not None
        own = dict(self.stacked.named_parameters())
        return {PREFIX + n: own[PREFIX + n] for n in self.names}

    def _context(self, masks: dict[str, Tensor] | None, batch: Any, masked: bool, needs_hvp: bool) -> ScoringContext:
        pruner = self.slots[0].pruner
        example = self._example_input()
        return ScoringContext(
            self.stacked,  # type: ignore[arg-type]
            self._stacked_params(), masks, batch, self.stacked_loss, resurrect=pruner.resurrect,
            masked_data_scores=masked, needs_hvp=needs_hvp, example_input=example, train_mode=pruner.train_mode,
            seed=pruner.seed + self.slots[0].episode.session.round,  # type: ignore[union-attr]
        )

    def _example_input(self) -> Tensor:
        x = self.slots[0].episode.session.batch[0]  # type: ignore[union-attr]
        return torch.ones((len(self.slots), 1, *x.shape[1:]), device=x.device)

    def _inject(self, i: int, ctx: ScoringContext, grad: tuple[float, float] | None, synflow: bool) -> None:
        """Give slot ``i``'s session its slice of the batched context as the scoring context of its next round."""
        session = self.slots[i].episode.session  # type: ignore[union-attr]
        view = session.context()  # the session's own context of its new mask, filled with this network's slice
        if grad is not None:  # the batched gradient pass (masked, or unmasked and shared by the session's rounds)
            batched = ctx.hvp if ctx.needs_hvp else None
            gradients = Gradients(
                loss=grad[0], grad_norm=grad[1], grad={n: ctx.grad[PREFIX + n][i] for n in self.names},
                hvp=None if batched is None else {n: batched[PREFIX + n][i] for n in self.names},
            )
            view.cached("gradients", lambda: gradients, mask_independent=not view.masked_data_scores)
        if synflow:
            view.cached("synflow", lambda: {n: ctx.synflow[PREFIX + n][i] for n in self.names})

    def _measure_all(self) -> list[Measurement]:
        """The :class:`Measurement` of every slot's new mask, from batched passes (see the module docstring)."""
        episodes = [slot.episode for slot in self.slots]
        assert all(e is not None for e in episodes) and self.stacked is not None
        sessions = [e.session for e in episodes]  # type: ignore[union-attr]
        pruner = sessions[0].pruner
        masks = {PREFIX + n: torch.stack([s.masks[n] for s in sessions]) for n in self.names}  # type: ignore[index]
        eff = effective_masks(self.stacked, masks, self._example_input())
        kept = torch.zeros(len(sessions), dtype=torch.long)
        for e in eff.values():
            kept += e.flatten(1).sum(dim=1).cpu()
        dead = [int(k) == 0 for k in kept]
        last = [s.done or (d and e.stop_when_dead) for s, d, e in zip(sessions, dead, episodes, strict=True)]  # type: ignore[union-attr]
        go_on = not all(last)
        # the context's shared SynFlow pass is batched; a SynFlow with the authors' options runs its own pass per slot
        needs_synflow = go_on and any(
            Needs.PATHS in s.needs and not (isinstance(s, SynFlow) and (s.abs_buffers or s.dtype != "auto"))
            for s in pruner.scorers.values()
        )
        spec = self.slots[0].preset
        if spec.batch_per_step:
            for slot, session in zip(self.slots, sessions, strict=True):
                session.set_batch(slot.draw_batch())
        batch = (torch.stack([s.batch[0] for s in sessions]), torch.stack([s.batch[1] for s in sessions]))
        dense: list[tuple[float, float, float] | None] = [None] * len(sessions)
        if pruner.masked_data_scores:
            ctx = self._context(masks, batch, True, go_on and pruner.needs_hvp)
            _ = ctx.grad
            assert self.stacked_loss.last is not None
            losses, norms = self.stacked_loss.last.tolist(), _grad_norms(ctx.grad)
            if go_on:
                for i in range(len(sessions)):
                    if not last[i]:
                        self._inject(i, ctx, (losses[i], norms[i]), needs_synflow)
            if spec.batch_per_step:  # a preset mixing both: the dense figures need their own pass (per slot)
                for i, session in enumerate(sessions):
                    dense[i] = masked_loss(session, dense=True)
        else:
            sparse_ctx = self._context(masks, batch, True, False)
            _ = sparse_ctx.grad
            assert self.stacked_loss.last is not None
            losses, norms = self.stacked_loss.last.tolist(), _grad_norms(sparse_ctx.grad)
            if spec.batch_per_step:  # the unmasked scores of the new batches: dense figures + next round's scores
                ctx = self._context(masks, batch, False, go_on and pruner.needs_hvp)
                _ = ctx.grad
                assert self.stacked_loss.last is not None
                dense_losses, dense_norms = self.stacked_loss.last.tolist(), _grad_norms(ctx.grad)
                scales = _grad_norms({n: ctx.grad[n] * ctx.theta[n] for n in ctx.theta}, sqrt=True)
                for i in range(len(sessions)):
                    dense[i] = (dense_losses[i], dense_norms[i], scales[i])
                    if not last[i]:
                        self._inject(i, ctx, (dense_losses[i], dense_norms[i]), needs_synflow)
            elif needs_synflow:  # unmasked scores are cached per session; only SynFlow sees the new mask
                ctx = self._context(masks, batch, False, False)
                for i in range(len(sessions)):
                    if not last[i]:
                        self._inject(i, ctx, None, True)
        total = sessions[0].total
        return [
            Measurement(effective=1.0 - int(kept[i]) / total, dead=dead[i], sparse_loss=float(losses[i]),
                        sparse_grad_norm=float(norms[i]), dense=dense[i])
            for i in range(len(sessions))
        ]

    def step_wait(self) -> VecEnvStepReturn:
        """Play every slot's round, measure all new masks in one batched computation, finish; reset finished slots."""
        if self.stacked is None:
            raise RuntimeError("Call reset() before step().")
        for slot, action in zip(self.slots, self.actions, strict=True):
            if slot.episode is None:  # pragma: no cover - reset() starts every slot
                raise RuntimeError("Call reset() before step().")
            slot.episode.play(action)
        measurements = self._measure_all()
        for i, (slot, m) in enumerate(zip(self.slots, measurements, strict=True)):
            assert slot.episode is not None
            result = slot.episode.finish(m)
            slot.total_steps += 1
            obs = result.observation
            self.buf_rews[i] = result.reward
            self.buf_dones[i] = result.terminated
            self.buf_infos[i] = {**result.info, "TimeLimit.truncated": False}
            if result.terminated:
                self.buf_infos[i]["terminal_observation"] = obs
                obs, self.reset_infos[i] = slot.reset()
            self._save_obs(i, obs)
        self._sync_models()
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), copy.deepcopy(self.buf_infos)


def make_vec_env(
    n_envs: int,
    model_fn: Callable[[], nn.Module] | None = None,
    data: Dataset | tuple[Tensor, Tensor] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int | None = None,
    **env_kwargs: Any,
) -> PanningVecEnv:
    """A Stable-Baselines3 ``VecEnv`` of ``n_envs`` RLPanning episodes advanced in one batched computation.

    Args:
        n_envs: number of parallel episodes (``≥ 1``).
        model_fn: as for :class:`PanningEnv` (default LeNet5).
        data: as for :class:`PanningEnv` (default MNIST from ``data_dir``, loaded once for all slots).
        data_dir: torchvision MNIST root.
        seed: slot ``i`` is reset with seed ``seed + i`` at the first :meth:`~PanningVecEnv.reset` (SB3's
            convention); ``None`` seeds from the OS.
        **env_kwargs: any other :class:`PanningEnv` argument (``preset``, ``rounds``, ``per_class``, ``target``,
            ``device``, ...).

    Raises:
        ValueError: for ``n_envs < 1`` or a bad environment argument.

    Example:
        >>> import torch
        >>> net = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
        ...                                   torch.nn.Linear(8, 3))
        >>> venv = make_vec_env(4, net, (torch.randn(60, 1, 4, 4), torch.arange(3).repeat(20)), rounds=3,
        ...                     per_class=5, target=0.9, seed=0)
        >>> obs = venv.reset()
        >>> obs, rewards, dones, infos = venv.step(np.zeros((4, 3), dtype=np.float32))
        >>> obs.shape, rewards.shape, infos[0]["round"]
        ((4, 7), (4,), 1)
    """
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"`n_envs` must be a positive integer, got {n_envs!r}.")
    first = PanningEnv(model_fn, data, data_dir, **env_kwargs)
    slots = [first]
    for _ in range(n_envs - 1):  # share the (large) sample pool and the pruner; per-slot state is fresh
        slot = copy.copy(first)
        slot._np_random = None
        slot.normalizer = copy.deepcopy(first.normalizer)
        slot.episode, slot.model, slot.total_steps = None, None, 0
        slots.append(slot)
    venv = PanningVecEnv(slots)
    if seed is not None:
        venv.seed(seed)
    return venv
