"""``PanningEnv``: Panning as a Gymnasium environment (METHOD §5), built on the core engine.

One episode is one Panning run of ``T`` rounds on a freshly initialised network; the step index is the round. The
agent's action ``a ∈ [-1, 1]^κ`` sets the metric weights ``p_k = (a_k + 1) / 2`` of that round. Scoring, fusion,
top-k selection and effective sparsity are the core's (:class:`~lightning_panning.core.panning.PanningSession`);
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
from gymnasium import spaces
from torch import Tensor, nn
from torch.utils.data import Dataset

from lightning_panning.core.batch import SamplePool
from lightning_panning.core.panning import Panning, PanningSession
from lightning_panning.core.schedules import keep_count, validate_target
from lightning_panning.rl.episode import Episode
from lightning_panning.rl.state import OBSERVATION_NAMES, LossNormalizer, NormalizationMode

__all__ = ["ENV_ID", "PanningEnv", "curriculum_target", "load_mnist"]

log = logging.getLogger(__name__)

#: The id under which :mod:`lightning_panning.rl` registers :class:`PanningEnv` with Gymnasium.
ENV_ID = "lightning_panning/Panning-v0"


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
    """Panning as a Gymnasium environment (RLPanning, METHOD §5).

    **Observation** (``Box(0, 1, (7,), float32)``): ``(N(L), N(ΔL), N(L_s), N(ΔL_s), ρ_t, ρ_e, t/T)`` — loss and
    gradient norm ``gᵀg`` of the episode's dense network, the same two of the current sparse network, the nominal
    sparsity ``ρ_t`` of the current mask (0 at reset), its effective sparsity ``ρ_e`` and the progress ``t/T``.
    ``N`` is the bounded normalisation relative to the dense network, ``N(x) = x / (x + x_dense)`` (so the dense
    entries are 0.5), chosen over the authors' running min/max because bounds carried across episodes would break
    ``reset(seed=...)`` reproducibility and would not transfer to networks with other loss scales; see
    :mod:`lightning_panning.rl.state`. ``normalization="running"`` gives the authors' bounds.

    **Action** (``Box(-1, 1, (κ,), float32)``, ``κ`` = number of scorers): ``p_k = (a_k + 1) / 2`` are the metric
    weights of the round (all-``-1`` falls back to equal weights).

    **Reward**, eq. (7): ``R_t = −|N(L) − N(L_s)| − |N(ΔL) − N(ΔL_s)| − α|ρ_e − ρ_t| − r_done`` with ``α = 100`` and
    ``r_done = T − t`` when the network is dead (``ρ_e = 1``), else 0. ``grad_term_scale=0.2`` gives the authors'
    "/5" on the gradient-norm term.

    **Episode**: ``reset`` initialises a new network (``model_fn()`` under a seed drawn from ``np_random``), draws a
    new class-balanced batch of ``per_class`` samples per class, and a final target ``ρ_T`` (``options={"target":
    ρ}``, else the fixed ``target``, else the curriculum of :func:`curriculum_target`). It terminates at ``t = T`` or
    when ``ρ_e = 1``. All randomness comes from ``self.np_random``: the same ``reset(seed=s)`` gives the same
    observations and step results (the curriculum phase also depends on :attr:`total_steps`, the number of steps
    taken so far; with a fixed or given target it does not matter).

    Args:
        model_fn: builds a fresh network (called under a seeded torch RNG at each reset); default
            :class:`~lightning_panning.models.LeNet5`.
        data: labelled samples: a Dataset of ``(x, y)``, or an ``(inputs (N, ...), labels (N,))`` tensor pair;
            default MNIST training images from ``data_dir`` (normalised like :class:`MNISTDataModule`).
        data_dir: torchvision root for the default MNIST; default ``$LIGHTNING_PANNING_DATA``, else ``./data``.
        rounds: ``T``.
        per_class: ``k`` samples per class in the scoring batch.
        target: fixed final sparsity; ``None`` draws one per episode.
        curriculum: draw targets with the authors' curriculum (else ``U(target_low, target_high)``).
        curriculum_steps: length of the curriculum's first phase, in environment steps.
        target_low: lowest drawn target.
        target_high: highest drawn target (also clipped so that at least one weight survives).
        alpha: ``α``.
        grad_term_scale: factor on the gradient-norm reward term.
        scorers: the ``κ`` metrics, in action order.
        normalization: ``"relative"`` or ``"running"`` (see above).
        device: where the network and batch live.
        panning_kwargs: further :class:`~lightning_panning.core.panning.Panning` arguments, e.g.
            ``{"normalization": "authors"}`` for the authors' score normalisation or ``{"masked_data_scores": False}``.

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
        >>> round(float(obs[-1]), 2), info["round"]
        (0.25, 1)
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        model_fn: Callable[[], nn.Module] | None = None,
        data: Dataset | tuple[Tensor, Tensor] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        rounds: int = 100,
        per_class: int = 10,
        target: float | None = None,
        curriculum: bool = True,
        curriculum_steps: int = 10_000,
        target_low: float = 0.8,
        target_high: float = 0.9999,
        alpha: float = 100.0,
        grad_term_scale: float = 1.0,
        scorers: Sequence[str] = ("synflow", "snip", "grasp"),
        normalization: NormalizationMode = "relative",
        device: str | torch.device = "cpu",
        panning_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"`rounds` must be a positive integer, got {rounds!r}.")
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"`per_class` must be a positive integer, got {per_class!r}.")
        if target is not None:
            target = validate_target(target)
        target_low, target_high = validate_target(target_low, "target_low"), validate_target(target_high, "target_high")
        if target_low > target_high:
            raise ValueError(f"`target_low`={target_low} must not exceed `target_high`={target_high}.")
        if normalization not in ("relative", "running"):
            raise ValueError(f"`normalization` must be 'relative' or 'running', got {normalization!r}.")
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
        self.alpha = float(alpha)
        self.grad_term_scale = float(grad_term_scale)
        self.device = torch.device(device)
        self.normalizer = LossNormalizer(normalization)
        # the agent supplies every round's weights; equal weights only satisfy Panning's check for custom scorers
        kwargs = {"rounds": rounds, "per_class": per_class, "progress": False,
                  "weights": {str(s): 1.0 for s in scorers}, **(panning_kwargs or {})}
        self.pruner = Panning(scorers, **kwargs)
        self.scorers = list(self.pruner.scorers)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(len(OBSERVATION_NAMES),), dtype=np.float32)
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

    def _draw_target(self, total: int, options: dict[str, Any] | None) -> float:
        high = min(self.target_high, 1.0 - 1.0 / total)
        if options and options.get("target") is not None:
            return validate_target(options["target"], "options['target']")
        if self.target is not None:
            return self.target
        if self.curriculum:
            target = curriculum_target(self.np_random, self.total_steps, self.curriculum_steps, self.target_low, high)
        else:
            target = self.target_low + (high - self.target_low) * float(self.np_random.random())
        if keep_count(total, target) < 1:  # float edge: keep at least one weight
            target = 1.0 - 1.0 / total
        return float(target)

    def start_session(self, options: dict[str, Any] | None = None) -> PanningSession:
        """Draw a network, a batch and a target from ``np_random`` and start a Panning session (used by reset)."""
        model = self._new_model()
        batch = self.pruner.scoring_batch(self.pool, self.device, generator=self.np_random)
        total = sum(p.numel() for p in self.pruner.parameters(model).values())
        target = self._draw_target(total, options)
        self.model = model
        return self.pruner.start(model, batch, target)

    # -- Gymnasium API -------------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: new network, new batch, new target. Returns ``(observation (7,), info)``."""
        super().reset(seed=seed)
        session = self.start_session(options)
        self.episode = Episode(session, self.alpha, self.grad_term_scale, self.normalizer)
        info = {"target": session.target, "loss": self.episode.dense_loss, "grad_norm": self.episode.dense_grad_norm,
                "total": session.total}
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
