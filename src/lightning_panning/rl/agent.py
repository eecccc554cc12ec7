"""The TD3 Panning agent (Table 4), the shipped default policy, and RL-driven pruning of any network.

* :func:`make_td3` builds a Stable-Baselines3 ``TD3`` with the paper's hyperparameters.
* :func:`load_policy` resolves ``"default"`` (the policy shipped in this package), a path, or a model instance.
* :func:`policy_fingerprint` names a policy file by its network weights, so that metadata never changes its identity.
* :func:`rl_prune` prunes a network with a policy, round by round, with the same observation and reward code as
  the training environment (:class:`~lightning_panning.rl.episode.Episode`); the Lightning callback uses it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from lightning_panning.core.batch import ClassificationLoss, Data
from lightning_panning.core.masks import Masks
from lightning_panning.core.methods import get_pruner
from lightning_panning.core.pruner import Panning
from lightning_panning.core.results import RoundRecord
from lightning_panning.core.session import PanningSession
from lightning_panning.rl.env import PreciseClassificationLoss
from lightning_panning.rl.episode import Episode, EpisodeStep
from lightning_panning.rl.state import LEGACY_PRESET, PRESETS, NormalizationMode, PanningPreset, get_preset

__all__ = [
    "DEFAULT_POLICY",
    "TD3_HYPERPARAMETERS",
    "Policy",
    "PolicyWeights",
    "RLPruningResult",
    "check_policy_spaces",
    "default_policy_path",
    "evaluate_policy_rewards",
    "evaluate_table3_rewards",
    "load_policy",
    "make_td3",
    "policy_preset",
    "rl_prune",
]

log = logging.getLogger(__name__)

#: Name of the policy shipped inside the package (``lightning_panning/rl/policies/default.zip``).
DEFAULT_POLICY = "default"

#: Table 4 of the paper (plus TD3's usual target-noise clip 0.5 and policy delay 2), as ``TD3`` keyword arguments;
#: the exploration noise (``NormalActionNoise(0, 0.1)``) and the Tanh 256-256 networks are added by :func:`make_td3`.
TD3_HYPERPARAMETERS: dict[str, Any] = {
    "learning_rate": 3e-4,
    "learning_starts": 2000,
    "batch_size": 256,
    "gamma": 0.99,
    "tau": 0.01,
    "target_policy_noise": 0.2,
    "target_noise_clip": 0.5,
    "policy_delay": 2,
    "train_freq": 1,
    "gradient_steps": 1,
}
EXPLORATION_NOISE = 0.1
NET_ARCH = [256, 256]


@runtime_checkable
class Policy(Protocol):
    """Anything with SB3's ``predict(observation, deterministic=...) -> (action, state)``."""

    def predict(self, observation: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, Any]:
        """Action for an observation of shape (7,)."""
        ...


def make_td3(
    env: Any,
    *,
    seed: int = 0,
    device: str = "cpu",
    tensorboard_log: str | None = None,
    buffer_size: int = 1_000_000,
    verbose: int = 0,
    **overrides: Any,
) -> Any:
    """A Stable-Baselines3 ``TD3`` with Table 4's hyperparameters.

    Actor and critics are MLPs 256-256 with Tanh (three linear layers), Adam with learning rate 3e-4, 2,000 random
    start steps, batch 256, Gaussian exploration noise σ = 0.1, γ = 0.99, τ = 0.01, target policy noise 0.2 (clip
    0.5), policy delay 2.

    Args:
        env: a Gymnasium env or SB3 VecEnv (normally :class:`~lightning_panning.rl.env.PanningEnv`).
        seed: seed of the agent (networks, exploration noise, replay sampling).
        device: torch device of the agent.
        tensorboard_log: directory for TensorBoard logs (episode rewards as ``rollout/ep_rew_mean``).
        buffer_size: replay buffer capacity.
        verbose: SB3 verbosity.
        **overrides: any other ``TD3`` argument (e.g. ``learning_starts=100`` for a smoke test).

    Returns:
        ``stable_baselines3.TD3``.
    """
    from stable_baselines3 import TD3
    from stable_baselines3.common.noise import NormalActionNoise

    n_actions = int(np.prod(env.action_space.shape))
    kwargs: dict[str, Any] = {
        **TD3_HYPERPARAMETERS,
        "policy_kwargs": {"net_arch": list(NET_ARCH), "activation_fn": nn.Tanh},
        "action_noise": NormalActionNoise(np.zeros(n_actions), EXPLORATION_NOISE * np.ones(n_actions)),
        "buffer_size": buffer_size,
    }
    kwargs.update(overrides)
    return TD3("MlpPolicy", env, seed=seed, device=device, tensorboard_log=tensorboard_log, verbose=verbose, **kwargs)


def default_policy_path() -> Path:
    """Path of the policy shipped in the package (``lightning_panning/rl/policies/default.zip``).

    Raises:
        FileNotFoundError: if the file is missing from this installation.
    """
    resource = importlib.resources.files("lightning_panning.rl") / "policies" / "default.zip"
    path = Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(
            f"The default RLPanning policy is missing from this installation ({path}). Reinstall lightning-panning, "
            "or pass `policy=` a path to a TD3 zip trained with `python -m lightning_panning.rl.train`."
        )
    return path


#: The member of a Stable-Baselines3 zip that holds the policy's network weights (actor and critics).
POLICY_WEIGHTS_MEMBER = "policy.pth"


def policy_fingerprint(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a policy file's network weights: the ``policy.pth`` member of an SB3 zip, else the whole file.

    The zip's other members (SB3's ``data`` with its ``tensorboard_log`` directory, ``system_info.txt``, the
    optimisers' states) do not change what the policy does, so rewriting them keeps the fingerprint; any change to
    the weights changes it. The sweep's RLPanning cells and the shipped policy's ``default.json`` use it.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"`path`={str(path)!r} is not a file; pass a TD3 zip or another policy file.")
    digest = hashlib.sha256()
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as archive:
            if POLICY_WEIGHTS_MEMBER in archive.namelist():
                digest.update(archive.read(POLICY_WEIGHTS_MEMBER))
                return digest.hexdigest()
    digest.update(file.read_bytes())
    return digest.hexdigest()


def load_policy(
    policy: str | os.PathLike[str] | Policy = DEFAULT_POLICY,
    device: str | torch.device = "cpu",
    observation_dim: int = 7,
    action_dim: int | None = 3,
) -> Policy:
    """Resolve a policy: ``"default"`` (shipped), a path to an SB3 ``TD3`` zip, or an object with ``predict``.

    A loaded model (or a given one with ``observation_space`` / ``action_space``) is checked against the shapes the
    Panning episode uses: observations ``(observation_dim,)`` and actions ``(action_dim,)`` (one per scorer).

    Args:
        policy: what to load.
        device: torch device for a loaded model.
        observation_dim: observation length (7).
        action_dim: number of scorers ``κ`` (``None``: not checked).

    Raises:
        FileNotFoundError: for a path that does not exist.
        TypeError: for an object without ``predict``.
        ValueError: for a policy whose observation or action shape does not fit.
    """
    if isinstance(policy, Policy) and not isinstance(policy, (str, os.PathLike)):
        check_policy_spaces(policy, observation_dim, action_dim, label=type(policy).__name__)
        return policy
    if isinstance(policy, (str, os.PathLike)):
        from stable_baselines3 import TD3

        path = default_policy_path() if str(policy) == DEFAULT_POLICY else Path(policy)
        if not path.is_file() and not path.with_suffix(".zip").is_file():
            raise FileNotFoundError(
                f"`policy`={str(policy)!r} is neither 'default' nor an existing file; pass a TD3 zip saved by "
                "`python -m lightning_panning.rl.train` or an SB3 model."
            )
        try:
            model = TD3.load(str(path), device=device)
        except Exception as err:  # a zip that is not an SB3 TD3 model
            raise ValueError(
                f"`policy`={str(policy)!r} could not be loaded as a Stable-Baselines3 TD3 model "
                f"({type(err).__name__}: {err})."
            ) from err
        check_policy_spaces(model, observation_dim, action_dim, label=str(policy))
        return model
    raise TypeError(
        f"`policy` must be 'default', a path to a TD3 zip, or an object with `predict` (an SB3 model); got "
        f"{type(policy).__name__}."
    )


def check_policy_spaces(policy: Any, observation_dim: int = 7, action_dim: int | None = 3, label: str = "") -> None:
    """Raise a ``ValueError`` naming ``policy`` if its spaces (when it has them) do not fit the Panning episode.

    Example:
        >>> from gymnasium import spaces
        >>> class Wrong:
        ...     observation_space = spaces.Box(0, 1, (5,))
        ...     action_space = spaces.Box(-1, 1, (3,))
        >>> check_policy_spaces(Wrong(), label="wrong.zip")
        Traceback (most recent call last):
        ...
        ValueError: `policy`='wrong.zip' expects observations of shape (5,) and actions of shape (3,); RLPanning ...
    """
    obs_space, act_space = getattr(policy, "observation_space", None), getattr(policy, "action_space", None)
    obs_shape = tuple(getattr(obs_space, "shape", None) or ())
    act_shape = tuple(getattr(act_space, "shape", None) or ())
    want_obs, want_act = (observation_dim,), (action_dim,) if action_dim is not None else None
    bad_obs = obs_space is not None and obs_shape != want_obs
    bad_act = act_space is not None and want_act is not None and act_shape != want_act
    if bad_obs or bad_act:
        raise ValueError(
            f"`policy`={label!r} expects observations of shape {obs_shape} and actions of shape {act_shape}; "
            f"RLPanning gives observations of shape {want_obs} and needs actions of shape "
            f"{want_act if want_act is not None else '(κ,)'} (one per scorer). Train a policy on "
            "`lightning_panning.rl.PanningEnv` (`python -m lightning_panning.rl.train`)."
        )


def policy_preset(policy: Any) -> PanningPreset:
    """The environment spec a policy was trained with.

    Policies saved by :mod:`lightning_panning.rl.train` carry it (``panning_preset``); a TD3 model without it is the
    first shipped policy (``"relative"`` loss normalisation, :data:`~lightning_panning.rl.state.LEGACY_PRESET`); any
    other object gets the default preset.
    """
    stored = getattr(policy, "panning_preset", None)
    if isinstance(stored, dict):
        return PanningPreset.from_dict(stored)
    if type(policy).__name__ == "TD3":
        return LEGACY_PRESET
    return PRESETS["default"]


@dataclass
class RLPruningResult:
    """Masks and per-round trace of an RL-driven Panning run.

    Attributes:
        masks: ``{name: bool tensor W_n}`` at the target sparsity.
        target: the requested sparsity.
        history: the Panning rounds' records.
        steps: per round, the action ``a`` (list of ``κ`` floats), the weights ``p``, the reward and its terms, the
            nominal and effective sparsity and the remaining ratio.
        seconds: wall time.
        scoring: how the scoring work was shared (as ``PruningResult.scoring``: world size, scoring-set size,
            ``micro_batch``, samples per rank, each rank's seconds).
    """

    masks: Masks
    target: float
    history: list[RoundRecord] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    scoring: dict[str, Any] = field(default_factory=dict)

    @property
    def total_reward(self) -> float:
        """Sum of the per-round rewards."""
        return float(sum(s["reward"] for s in self.steps))


def step_summary(step: EpisodeStep, scorers: Sequence[str]) -> dict[str, Any]:
    """Plain values of one step for logs and figures: action ``a_k``, reward, its terms, sparsities."""
    out: dict[str, Any] = {
        "round": step.info["round"],
        "reward": step.reward,
        "sparsity": step.info["sparsity"],
        "effective_sparsity": step.info["effective_sparsity"],
        "remaining": 1.0 - step.info["sparsity"],
        "keep": step.info["keep"],
        "dead": step.dead,
        "r1": step.terms.r1,
        "r2": step.terms.r2,
        "r3": step.terms.r3,
        "r_done": step.terms.r_done,
        "sparse_loss": step.info["sparse_loss"],
        "sparse_grad_norm": step.info["sparse_grad_norm"],
    }
    for i, name in enumerate(scorers):
        out[f"a{i + 1}"] = float(step.action[i])
        out[f"p_{name}"] = float(step.info["weights"][name])
    return out


class PolicyWeights:
    """RLPanning's metric weights as a :class:`~lightning_panning.core.weights.WeightSchedule`: a TD3 policy.

    Before each round the policy sees the environment's observation of the live session (the same
    :class:`~lightning_panning.rl.episode.Episode` code as :class:`~lightning_panning.rl.env.PanningEnv`) and its
    action ``a ∈ [-1, 1]^κ`` gives the weights ``p = (a + 1) / 2``; after the round the new mask is measured and
    eq. (7)'s reward computed (:meth:`update`). :attr:`steps` holds one summary per round
    (:func:`step_summary`). Put it in any :class:`~lightning_panning.core.pruner.Panning` as ``weights=``.

    Args:
        policy: ``"default"`` (shipped), a TD3 zip path, or an object with SB3's ``predict`` (loaded on first use).
        preset: the environment preset the policy was trained with; default: the one stored with the policy.
        alpha: ``α`` of the reward (logs only); default: the preset's.
        grad_term_scale: factor on the gradient-norm reward term (logs only); default: the preset's.
        loss_normalization: the losses' ``N(·)`` in the observation; default: the preset's.
        deterministic: deterministic actions (inference).
        on_step: called after each round with its summary and the raw
            :class:`~lightning_panning.rl.episode.EpisodeStep`.
    """

    def __init__(
        self,
        policy: str | os.PathLike[str] | Policy = DEFAULT_POLICY,
        *,
        preset: str | PanningPreset | None = None,
        alpha: float | None = None,
        grad_term_scale: float | None = None,
        loss_normalization: NormalizationMode | None = None,
        deterministic: bool = True,
        on_step: Callable[[dict[str, Any], EpisodeStep], None] | None = None,
    ) -> None:
        self.policy = policy
        self.preset, self.alpha, self.grad_term_scale = preset, alpha, grad_term_scale
        self.loss_normalization = loss_normalization
        self.deterministic = deterministic
        self.on_step = on_step
        self._steps: list[dict[str, Any]] = []
        self._agent: Policy | None = None
        self._spec: PanningPreset | None = None
        self._episode: Episode | None = None

    @property
    def steps(self) -> list[dict[str, Any]]:
        """One summary per round of the current (or last) run (:func:`step_summary`)."""
        return self._steps

    @property
    def agent(self) -> Policy:
        """The loaded policy."""
        if self._agent is None:
            self._agent = load_policy(self.policy, action_dim=None)
        return self._agent

    @property
    def spec(self) -> PanningPreset:
        """The environment preset the observations are built with (one scoring batch for the whole run)."""
        if self._spec is None:
            spec = get_preset(self.preset if self.preset is not None else policy_preset(self.agent), alpha=self.alpha,
                              grad_term_scale=self.grad_term_scale, loss_normalization=self.loss_normalization)
            self._spec = replace(spec, batch_per_step=False)
        return self._spec

    def reset(self) -> None:
        """Start a new run."""
        self._steps = []
        self._episode = None

    def __call__(self, state: PanningSession) -> dict[str, float]:
        """The policy's weights for the session's next round."""
        if self._episode is None or self._episode.session is not state:
            label = str(self.policy) if isinstance(self.policy, (str, os.PathLike)) else type(self.policy).__name__
            check_policy_spaces(self.agent, 7, len(state.pruner.scorers), label=label)
            self._episode = Episode(state, self.spec, stop_when_dead=False)
        action, _ = self.agent.predict(self._episode.observation, deterministic=self.deterministic)
        return self._episode.choose(np.asarray(action, dtype=np.float32).reshape(-1))

    def update(self, record: RoundRecord, state: PanningSession) -> None:
        """Measure the round's new mask: the next observation and the round's reward."""
        assert self._episode is not None
        self._episode.played(record)
        step = self._episode.finish(self._episode.measure())
        summary = step_summary(step, list(state.pruner.scorers))
        self._steps.append(summary)
        if self.on_step is not None:
            self.on_step(summary, step)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings, not a loaded agent or a live run."""
        return {**self.__dict__, "_agent": None, "_episode": None, "on_step": None}

    def __repr__(self) -> str:
        policy = self.policy if isinstance(self.policy, (str, os.PathLike)) else type(self.policy).__name__
        return f"PolicyWeights({str(policy)!r})"


def rl_prune(
    model: nn.Module,
    data: Data,
    target: float,
    policy: str | os.PathLike[str] | Policy = DEFAULT_POLICY,
    *,
    preset: str | PanningPreset | None = None,
    alpha: float | None = None,
    grad_term_scale: float | None = None,
    loss_normalization: NormalizationMode | None = None,
    example_input: Tensor | None = None,
    deterministic: bool = True,
    on_step: Callable[[dict[str, Any], EpisodeStep], None] | None = None,
    pruner: Panning | None = None,
    process_group: Any = "auto",
    **settings: Any,
) -> RLPruningResult:
    """Prune ``model`` with RLPanning: each round's metric weights come from ``policy`` (METHOD §5).

    The run is an ordinary :class:`~lightning_panning.core.pruner.Panning` run whose weight schedule is
    :class:`PolicyWeights`; all ``T`` rounds run even if the network dies early, so the result always has the
    target's keep count.

    Args:
        model: any network (not modified; apply the masks with :func:`~lightning_panning.apply_masks`).
        data: a DataLoader/Dataset (a class-balanced batch of ``per_class`` per class is drawn) or an ``(x, y)``
            batch.
        target: final sparsity in (0, 1).
        policy: ``"default"`` (shipped), a TD3 zip path, or an SB3 model.
        preset: the environment preset the policy was trained with (observation layout, normalisation, scoring
            method); default: the one stored with the policy (:func:`policy_preset`). The episode uses the given
            batch for every round.
        alpha: ``α`` of the reward (for logs only; it does not change the masks); default: the preset's.
        grad_term_scale: factor on the gradient-norm reward term (logs only); default: the preset's.
        loss_normalization: the losses' ``N(·)``; default: the preset's (it must match the policy's training).
        example_input: input shape for SynFlow / effective sparsity when ``data`` has none.
        deterministic: deterministic actions (inference).
        on_step: called after each round with the step's summary (see :func:`step_summary`) and the raw step.
        pruner: a ready :class:`Panning` (its weights are replaced by the policy's); give either it or
            ``settings``, not both.
        process_group: data-parallel scoring, as in :meth:`Panning.prune` (``"auto"``, ``None`` or a
            ``torch.distributed.ProcessGroup``): the observations' losses and gradient norms are reduced over the
            ranks like the scores, so every rank sees the same observations and takes the same actions.
        **settings: :class:`Panning` arguments over the preset's scoring method: ``rounds`` (``T``, default 100),
            ``per_class``, ``seed``, ``scorers`` (in the policy's action order; default SynFlow, SNIP, GraSP),
            ``loss_fn``, ``include``, ...

    Raises:
        ValueError: for ``pruner`` together with ``settings`` (they would be ignored).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> batch = (torch.randn(40, 8), torch.arange(4).repeat(10))
        >>> class Equal:  # any object with SB3's predict()
        ...     def predict(self, obs, deterministic=True):
        ...         return np.zeros(3, dtype=np.float32), None
        >>> result = rl_prune(net, batch, target=0.9, policy=Equal(), rounds=5)
        >>> sum(int(m.sum()) for m in result.masks.values()), len(result.steps)
        (19, 5)
    """
    start = time.perf_counter()
    if pruner is not None and settings:
        raise ValueError(
            f"rl_prune got a ready `pruner` and Panning arguments {sorted(settings)}, which it would ignore; "
            "set them on the pruner (`pruner.replace(...)`) or pass no pruner."
        )
    schedule = PolicyWeights(policy, preset=preset, alpha=alpha, grad_term_scale=grad_term_scale,
                             loss_normalization=loss_normalization, deterministic=deterministic, on_step=on_step)
    if pruner is None:  # the preset's scoring method, then the caller's arguments; the policy sets the weights
        spec = schedule.spec
        pruner = get_pruner(spec.method, **{"rounds": 100, "per_class": 10, **spec.panning_kwargs, **settings,
                                            "weights": schedule, "progress": False})
    else:
        pruner = get_pruner(pruner, weights=schedule, progress=False)
    if type(pruner.loss_fn) is ClassificationLoss:  # the training env's float64 loss, so observations match
        pruner = pruner.replace(loss_fn=PreciseClassificationLoss(pruner.loss_fn.temperature))
    result = pruner.prune(model, data, target, example_input=example_input, process_group=process_group)
    return RLPruningResult(masks=result.masks, target=target, history=result.history, steps=list(schedule.steps),
                           seconds=time.perf_counter() - start, scoring=result.scoring)


def evaluate_policy_rewards(
    policy: Policy | str | os.PathLike[str],
    env_factory: Callable[[], Any],
    targets: Sequence[float] = (0.9, 0.99, 0.999),
    episodes_per_target: int = 2,
    seed: int = 10_000,
) -> dict[str, Any]:
    """Mean episode reward of ``policy`` on fresh episodes with fixed targets (deterministic actions).

    Args:
        policy: what :func:`load_policy` accepts, or a callable ``obs -> action`` wrapped in ``predict``.
        env_factory: builds a :class:`~lightning_panning.rl.env.PanningEnv`.
        targets: fixed final sparsities.
        episodes_per_target: episodes per target (seeds ``seed, seed + 1, ...``).
        seed: first reset seed.

    Returns:
        ``{"mean": float, "per_target": {target: mean}, "episodes": [...]}``.
    """
    agent = load_policy(policy)
    env = env_factory()
    episodes: list[dict[str, Any]] = []
    for target in targets:
        for j in range(episodes_per_target):
            obs, _ = env.reset(seed=seed + j, options={"target": float(target)})
            total, done, length, info = 0.0, False, 0, {}
            while not done:
                action, _ = agent.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                length += 1
                done = terminated or truncated
            episodes.append({"target": float(target), "seed": seed + j, "reward": total, "length": length,
                             "effective_sparsity": float(info.get("effective_sparsity", float("nan")))})
    env.close()
    return _reward_summary(episodes, targets)


def evaluate_table3_rewards(
    env_factory: Callable[[], Any],
    targets: Sequence[float] = (0.9, 0.99, 0.999),
    episodes_per_target: int = 2,
    rounds: int = 100,
    layout: str = "paper",
    seed: int = 10_000,
) -> dict[str, Any]:
    """:func:`evaluate_policy_rewards` for Table 3's fixed weights (:class:`FixedActionPolicy`), one target at a time.

    Table 3's actions depend on the episode's target, which the observation does not carry, so each target gets its
    own policy. The episodes (targets and reset seeds) are those :func:`evaluate_policy_rewards` plays with the same
    arguments, so the two results pair episode by episode.

    Args:
        env_factory: builds a :class:`~lightning_panning.rl.env.PanningEnv`.
        targets: fixed final sparsities.
        episodes_per_target: episodes per target (seeds ``seed, seed + 1, ...``).
        rounds: ``T`` of the environment.
        layout: its observation layout (``"paper"`` or ``"authors"``; a preset's ``observation``).
        seed: first reset seed.

    Returns:
        ``{"mean": float, "per_target": {target: mean}, "episodes": [...]}``.
    """
    episodes: list[dict[str, Any]] = []
    for target in targets:
        policy = FixedActionPolicy(target, rounds, layout=layout)
        episodes += evaluate_policy_rewards(policy, env_factory, (target,), episodes_per_target, seed)["episodes"]
    return _reward_summary(episodes, targets)


def _reward_summary(episodes: Sequence[Mapping[str, Any]], targets: Sequence[float]) -> dict[str, Any]:
    per_target = {str(t): float(np.mean([e["reward"] for e in episodes if e["target"] == t])) for t in targets}
    return {"mean": float(np.mean([e["reward"] for e in episodes])), "per_target": per_target,
            "episodes": list(episodes)}


class FixedActionPolicy:
    """Table 3's weights as actions, ``a_k = 2 p_k − 1`` (the hand-tuned Panning baseline for evaluations).

    The round about to run is read from the observation's progress (``t/T`` in the paper layout; ``(t−1)/T`` in the
    authors', where ``ρ_t = 0`` marks the reset); its sparsity comes from the exponential schedule of the given target
    (the observation alone does not determine the final target).

    Args:
        target: the episode's final sparsity.
        rounds: ``T``.
        scorers: action order.
        layout: the observation layout, ``"paper"`` or ``"authors"``.

    Example:
        >>> policy = FixedActionPolicy(0.99, rounds=100)
        >>> policy.predict(np.zeros(7, dtype=np.float32))[0].tolist()  # round 1 (ρ = 0.045): Table 3's first row
        [-0.6000000238418579, 0.0, -0.4000000059604645]
    """

    def __init__(self, target: float, rounds: int, scorers: Sequence[str] = ("synflow", "snip", "grasp"),
                 layout: str = "paper") -> None:
        from lightning_panning.core.schedules import exponential
        from lightning_panning.core.weights import StageTable

        self.table = StageTable()
        self.schedule = exponential(target, rounds)
        self.rounds = rounds
        self.scorers = list(scorers)
        self.layout = layout

    def predict(self, observation: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, None]:
        """Table 3's weights for the next round, as an action in ``[-1, 1]^κ``."""
        t = round(float(observation[-1]) * self.rounds)
        if self.layout == "authors" and float(observation[5]) > 0.0:
            t += 1
        weights = self.table.weights_at(self.schedule[min(t, self.rounds - 1)])
        return np.array([2.0 * weights.get(s, 0.0) - 1.0 for s in self.scorers], dtype=np.float32), None
