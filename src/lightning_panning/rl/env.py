"""``PanningEnv``: Panning as a Gymnasium environment (METHOD §5), built on the core engine.

One episode is one Panning run of ``T`` rounds on a freshly initialised network; the step index is the round. The
agent's action ``a ∈ [-1, 1]^κ`` sets the metric weights ``p_k = (a_k + 1) / 2`` of that round. Scoring, fusion,
top-k selection and effective sparsity are the core's (:class:`~lightning_panning.core.session.PanningSession`);
the observation and reward maths live in :mod:`lightning_panning.rl.state` and are shared with the callback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightning_panning import ENV_ID as _PACKAGE_ENV_ID
from lightning_panning.core.batch import ClassificationLoss, SamplePool, batch_labels
from lightning_panning.core.inputs import model_input, output_logits
from lightning_panning.core.methods import get_pruner
from lightning_panning.core.pruner import Panning
from lightning_panning.core.schedules import keep_count, validate_target
from lightning_panning.core.scorers import ScoringContext
from lightning_panning.core.session import PanningSession
from lightning_panning.rl.episode import Episode
from lightning_panning.rl.state import OBSERVATION_NAMES, LossNormalizer, NormalizationMode, PanningPreset, get_preset

__all__ = [
    "ENV_ID",
    "ActionWeights",
    "PanningEnv",
    "PreciseClassificationLoss",
    "curriculum_target",
    "draw_target",
    "load_mnist",
    "observation_space",
    "seed_running_bounds",
]

log = logging.getLogger(__name__)

#: The id under which ``import lightning_panning`` registers :class:`PanningEnv` with Gymnasium.
ENV_ID = _PACKAGE_ENV_ID


def curriculum_target(
    rng: np.random.Generator, steps: int, warmup: int = 10_000, low: float = 0.8, high: float = 0.9999
) -> float:
    """Draw an episode's final target ``ρ_T`` with the authors' curriculum.

    ``U(low, 1)`` during the first ``warmup`` environment steps, then half ``U(0.9, 1)`` and half ``U(0.98, 1)``;
    clipped to ``[low, high]``. The same number of random draws is made in both phases, so the random stream does
    not depend on the phase.

    Args:
        rng: the environment's ``np_random``.
        steps: environment steps taken so far (over all episodes).
        warmup: length of the first phase.
        low: lowest target.
        high: highest target (``0.9999``).

    Example:
        >>> t = curriculum_target(np.random.default_rng(0), steps=0)
        >>> 0.8 <= t <= 0.9999
        True
    """
    coin, u = float(rng.random()), float(rng.random())
    if steps < warmup:
        lo = low
    else:
        lo = max(low, 0.9 if coin < 0.5 else 0.98)
    return float(min(max(lo + (1.0 - lo) * u, low), high))


def load_mnist(data_dir: str | os.PathLike[str] | None = None, train: bool = True) -> tuple[Tensor, Tensor]:
    """MNIST as in-memory tensors: images ``(N, 1, 28, 28)`` uint8 and labels ``(N,)`` int64.

    Args:
        data_dir: the torchvision root holding ``MNIST/raw``; default ``$LIGHTNING_PANNING_DATA``, else ``./data``.
        train: the 60,000 training images (else the 10,000 test images).

    Raises:
        FileNotFoundError: with the directory searched and how to fix it.
    """
    from torchvision import datasets

    from lightning_panning.data.base import resolve_data_dir

    root = resolve_data_dir(data_dir)
    try:
        mnist = datasets.MNIST(str(root), train=train, download=False)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"MNIST was not found under {str(root)!r} (expected {str(root / 'MNIST' / 'raw')!r} with the IDX files). "
            "Pass `data_dir=` (or set LIGHTNING_PANNING_DATA) to a torchvision MNIST root, or pass `data=` to "
            "PanningEnv."
        ) from err
    return mnist.data.unsqueeze(1).contiguous(), mnist.targets.long()


def _normalize_mnist(x: Tensor) -> Tensor:
    from lightning_panning.data.mnist import MNIST_MEAN, MNIST_STD

    return (x.float().div_(255.0).sub_(MNIST_MEAN)).div_(MNIST_STD)


class PanningEnv(gym.Env[np.ndarray, np.ndarray]):
    """Panning as a Gymnasium environment (RLPanning, METHOD §5), in one of two presets.

    ``preset="default"`` (this project) — **observation** (``Box(0, 1, (7,), float32)``): ``(N(L), N(ΔL), N(L_s),
    N(ΔL_s), ρ_t, ρ_e, t/T)``: loss and gradient norm ``gᵀg`` of the episode's dense network, the same two of the
    current sparse network, the nominal sparsity ``ρ_t`` of the current mask (0 at reset), its effective sparsity
    ``ρ_e`` and the progress ``t/T``. The loss is measured in units of the dense network's first-order sensitivity,
    ``N(L_s) = ½ + (L_s − L) / ‖∂L/∂w ⊙ w‖₂``, the gradient norm relatively, ``N(ΔL_s) = ΔL_s / (ΔL_s + ΔL)`` (so
    ``N(L) = N(ΔL) = 0.5`` are constants); both need no state across episodes, so ``reset(seed=...)`` reproduces an
    episode. The choice is measured in ``benchmarks/results/reward_terms.md`` and explained in
    :mod:`lightning_panning.rl.state`. Every episode has a new network (``model_fn()`` under a seed drawn from
    ``np_random``) and a new class-balanced batch.

    ``preset="authors"`` — the authors' ``PruningEnv.step`` exactly: observation ``(N(L), N(ΔL), r1, r2, ρ_e, ρ_t,
    (t−1)/T)`` with running min/max bounds over every loss seen (initialised from 10 batches, carried across
    episodes), ``r_done = T − t + 1``, the gradient term divided by 5, a new batch every step, one network for all
    episodes, SNIP/GraSP of the unmasked network with the authors' score normalisation. Its episodes depend on
    the ones before (the running bounds), so ``reset(seed=...)`` does not reproduce them. Its scoring is the
    core's ``"panning_authors"`` (their masks bit for bit, ``docs/differences.md``); drawn targets are capped at
    ``target_high`` (theirs reach 1, where one weight is kept).

    **Action** (``Box(-1, 1, (κ,), float32)``, ``κ`` = number of scorers): ``p_k = (a_k + 1) / 2`` are the metric
    weights of the round (all-``-1`` falls back to equal weights).

    **Reward**, eq. (7): ``R_t = −r1 − r2 − r3 − r_done`` with ``r1 = |N(L) − N(L_s)|``, ``r2 = |N(ΔL) − N(ΔL_s)|``,
    ``r3 = α|ρ_e − ρ_t|`` (``α = 100``) and ``r_done = T − t`` when the network is dead (``ρ_e = 1``), else 0; each
    term is in ``info`` (``r1``, ``r2``, ``r3``, ``r_done``) with the raw losses.

    **Episode**: ``reset`` draws a final target ``ρ_T`` (``options={"target": ρ}``, else the fixed ``target``, else
    the curriculum of :func:`curriculum_target`). It terminates at ``t = T`` or when ``ρ_e = 1``. All randomness
    comes from ``self.np_random`` (the curriculum phase also depends on :attr:`total_steps`).

    Args:
        model_fn: builds a fresh network (called under a seeded torch RNG); default
            :class:`~lightning_panning.models.LeNet5`.
        data: labelled samples: a Dataset of ``(x, y)``, or an ``(inputs (N, ...), labels (N,))`` tensor pair;
            default MNIST training images from ``data_dir`` (normalised like :class:`MNISTDataModule`).
        data_dir: torchvision root for the default MNIST; default ``$LIGHTNING_PANNING_DATA``, else ``./data``.
        preset: ``"default"`` or ``"authors"`` (see :data:`~lightning_panning.rl.state.PRESETS`).
        rounds: ``T``.
        per_class: ``k`` samples per class in the scoring batch.
        target: fixed final sparsity; ``None`` draws one per episode.
        curriculum: draw targets with the authors' curriculum (else ``U(target_low, target_high)``).
        curriculum_steps: length of the curriculum's first phase, in environment steps.
        target_low: lowest drawn target.
        target_high: highest drawn target (also clipped so that at least one weight survives).
        alpha: ``α`` (default: the preset's, 100).
        grad_term_scale: factor on the gradient-norm reward term (default: the preset's).
        scorers: the ``κ`` metrics, in action order (default: the preset's method's, SynFlow, SNIP, GraSP).
        loss_normalization: the losses' ``N``: ``"sensitivity"``, ``"relative"`` or ``"running"`` (default: the
            preset's).
        device: where the network and batch live.
        panning_kwargs: further :class:`~lightning_panning.core.pruner.Panning` arguments (over the preset's), e.g.
            ``{"masked_data_scores": False}``.

    Example:
        >>> import torch
        >>> net = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
        ...                                   torch.nn.Linear(8, 3))
        >>> data = (torch.randn(60, 1, 4, 4), torch.arange(3).repeat(20))
        >>> env = PanningEnv(net, data, rounds=4, per_class=5, target=0.9)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, env.action_space.shape
        ((7,), (3,))
        >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        >>> round(float(obs[-1]), 2), info["round"], all(k in info for k in ("r1", "r2", "r3", "r_done"))
        (0.25, 1, True)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        model_fn: Callable[[], nn.Module] | None = None,
        data: Dataset | tuple[Tensor, Tensor] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        preset: str = "default",
        rounds: int = 100,
        per_class: int = 10,
        target: float | None = None,
        curriculum: bool = True,
        curriculum_steps: int = 10_000,
        target_low: float = 0.8,
        target_high: float = 0.9999,
        alpha: float | None = None,
        grad_term_scale: float | None = None,
        scorers: Sequence[str] | None = None,
        loss_normalization: NormalizationMode | None = None,
        device: str | torch.device = "cpu",
        panning_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.preset = get_preset(
            preset, alpha=alpha, grad_term_scale=grad_term_scale, loss_normalization=loss_normalization
        )
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"`rounds` must be a positive integer, got {rounds!r}.")
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"`per_class` must be a positive integer, got {per_class!r}.")
        if target is not None:
            target = validate_target(target)
        target_low, target_high = validate_target(target_low, "target_low"), validate_target(target_high, "target_high")
        if target_low > target_high:
            raise ValueError(f"`target_low`={target_low} must not exceed `target_high`={target_high}.")
        if model_fn is None:
            from lightning_panning.models import LeNet5

            model_fn = LeNet5
        self.model_fn = model_fn
        transform = None
        if data is None:
            data = load_mnist(data_dir)
            transform = _normalize_mnist
        self.pool = SamplePool(data, transform)
        self.pool.check(per_class)
        self.rounds = rounds
        self.per_class = per_class
        self.target = target
        self.curriculum = curriculum
        self.curriculum_steps = curriculum_steps
        self.target_low, self.target_high = target_low, target_high
        self.device = torch.device(device)
        self.normalizer = LossNormalizer(self.preset.loss_normalization)
        kwargs = {**self.preset.panning_kwargs, **(panning_kwargs or {})}
        if scorers is not None:
            kwargs["scorers"] = tuple(scorers)
        if "loss_fn" not in kwargs:  # float64 loss: the reward's loss terms are not quantised
            kwargs["loss_fn"] = PreciseClassificationLoss(float(kwargs.pop("temperature", 200.0)))
        kwargs.update(rounds=rounds, per_class=per_class, progress=False, weights=ActionWeights())
        self.pruner = get_pruner(self.preset.method, **kwargs)
        self.scorers = list(self.pruner.scorers)
        self.observation_space = observation_space(self.preset)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(len(self.scorers),), dtype=np.float32)
        #: Environment steps taken so far, over all episodes (drives the curriculum; restore it when resuming).
        self.total_steps = 0
        self.episode: Episode | None = None
        self.model: nn.Module | None = None

    # -- episode set-up ------------------------------------------------------------------------------------------
    def _new_model(self) -> nn.Module:
        seed = int(self.np_random.integers(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.model_fn()
        return model.to(self.device)

    def draw_batch(self) -> tuple[Tensor, Tensor]:
        """A new class-balanced scoring batch ``(x (k·l, ...), y (k·l,))`` on the env's device, from ``np_random``."""
        batch: tuple[Tensor, Tensor] = self.pruner.scoring_batch(self.pool, self.device, generator=self.np_random)
        return batch

    def start_session(self, options: dict[str, Any] | None = None) -> PanningSession:
        """Draw a network (unless the preset keeps one), a batch and a target from ``np_random``; start a session."""
        if self.model is None or not self.preset.fixed_network:
            self.model = self._new_model()
            if self.preset.loss_normalization == "running" and self.preset.fixed_network:
                seed_running_bounds(self.normalizer, self.pruner, self.model,
                                    [self.draw_batch() for _ in range(self.preset.running_init_batches)])
        model = self.model
        batch = self.draw_batch()
        total = sum(p.numel() for p in self.pruner.parameters(model).values())
        target = draw_target(self, total, options)
        return self.pruner.start(model, batch, target, process_group=None)  # an episode is one process's

    # -- Gymnasium API -------------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: new network, new batch, new target. Returns ``(observation (7,), info)``."""
        super().reset(seed=seed)
        session = self.start_session(options)
        self.episode = Episode(session, self.preset, self.normalizer,
                               batch_fn=self.draw_batch if self.preset.batch_per_step else None)
        info = {"target": session.target, "loss": self.episode.dense_loss, "grad_norm": self.episode.dense_grad_norm,
                "loss_scale": self.episode.loss_scale, "total": session.total}
        return self.episode.observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Run one Panning round with weights ``(a + 1) / 2``: ``(obs (7,), reward, terminated, truncated, info)``."""
        if self.episode is None:
            raise RuntimeError("Call reset() before step().")
        result = self.episode.step(action)
        self.total_steps += 1
        return result.observation, float(result.reward), bool(result.terminated), False, result.info

    def close(self) -> None:
        """Drop the current network and batch."""
        self.episode = None
        self.model = None


def observation_space(spec: PanningPreset) -> spaces.Box:
    """The observation space of a preset's layout.

    ``Box(0, 1, (7,))`` for the paper layout; the authors' layout has unbounded normalised losses (at reset their
    running bounds have not seen the reset's loss) and ``[0, 1]`` elsewhere.
    """
    if spec.observation == "authors":
        low = np.array([-np.inf, -np.inf, 0, 0, 0, 0, 0], dtype=np.float32)
        high = np.array([np.inf, np.inf, np.inf, np.inf, 1, 1, 1], dtype=np.float32)
        return spaces.Box(low, high, dtype=np.float32)
    return spaces.Box(0.0, 1.0, shape=(len(OBSERVATION_NAMES),), dtype=np.float32)


class PreciseClassificationLoss(ClassificationLoss):
    """The scoring loss (cross-entropy of ``logits / T``) evaluated in float64 from the float32 logits.

    At ``T = 200`` an untrained network's loss is ``ln C`` up to about ``1e-5``, and pruning moves it by less: in
    float32 (resolution ``2.4e-7`` at 2.3) the loss term of the reward would be quantised to a few hundred levels.
    The gradients reaching the network are the same up to rounding.

    Example:
        >>> net = torch.nn.Linear(4, 3)
        >>> PreciseClassificationLoss()(net, (torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))).dtype
        torch.float64
    """

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        """Loss of ``model`` on ``batch``: inputs ``(B, ...)``, labels ``(B,)`` int64 → float64 scalar."""
        labels = batch_labels(batch)
        if labels is None:
            return super().__call__(model, batch)  # raises the core's error
        output = output_logits(model_input(model, batch)(model))  # as the core's loss: dict batches, `logits`
        if not isinstance(output, Tensor):
            return super().__call__(model, batch)  # raises the core's error
        return F.cross_entropy(output.double() / self.temperature, labels)


class ActionWeights:
    """The metric weights of an environment's pruner: each round's arrive with the agent's action.

    :class:`PanningEnv` (and the vector env) pass the action's weights to ``PanningSession.step``; a run asked for
    its weights any other way has no agent to ask, which is an error.
    """

    def __call__(self, state: Any) -> dict[str, float]:
        """Never called by the environment; the weights come with each action."""
        raise RuntimeError(
            "This pruner's metric weights come from an RL agent's actions: step it through PanningEnv, or prune with "
            "rl_prune / RLPanningCallback, which ask a policy every round."
        )

    def reset(self) -> None:
        """Nothing to reset."""

    def __repr__(self) -> str:
        return "ActionWeights()"


def draw_target(env: Any, total: int, options: dict[str, Any] | None) -> float:
    """An episode's final target for ``env`` (a :class:`PanningEnv` or one slot of the vector env).

    The option, else the fixed target, else a draw from ``env.np_random`` (curriculum or uniform), kept so that at
    least one weight survives.
    """
    high = min(env.target_high, 1.0 - 1.0 / total)
    if options and options.get("target") is not None:
        return validate_target(options["target"], "options['target']")
    if env.target is not None:
        return float(env.target)
    if env.curriculum:
        target = curriculum_target(env.np_random, env.total_steps, env.curriculum_steps, env.target_low, high)
    else:
        target = env.target_low + (high - env.target_low) * float(env.np_random.random())
    if keep_count(total, target) < 1:  # float edge: keep at least one weight
        target = 1.0 - 1.0 / total
    return float(target)


def seed_running_bounds(normalizer: LossNormalizer, pruner: Panning, model: nn.Module, batches: list[Any]) -> None:
    """The authors' initial running bounds: dense loss and ``gᵀg`` of ``model`` on each of ``batches``."""
    params = pruner.parameters(model)
    losses, grads = [], []
    for batch in batches:
        ctx = ScoringContext(model, params, None, batch, pruner.loss_fn, needs_hvp=False, train_mode=pruner.train_mode,
                             seed=pruner.seed)
        _ = ctx.grad
        losses.append(float(ctx.loss or 0.0))
        grads.append(float(ctx.grad_norm or 0.0))
    normalizer.seed_bounds(losses, grads)
