"""``RLPanningCallback``: RLPanning (a TD3 agent chooses each round's metric weights) inside ``Trainer.fit``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, Dataset

from lightning_panning.callbacks.base import BasePruningCallback, callback_pruner
from lightning_panning.callbacks.reporting import send_to_loggers
from lightning_panning.core.batch import ClassificationLoss, LossFn
from lightning_panning.core.pruner import Panning
from lightning_panning.core.results import PruningResult
from lightning_panning.rl.agent import DEFAULT_POLICY, Policy, PolicyWeights, default_policy_path, load_policy
from lightning_panning.rl.env import PreciseClassificationLoss
from lightning_panning.rl.figures import rl_rounds_figure

__all__ = ["RL_FIGURE_FILE", "RL_SCORERS", "RLPanningCallback", "log_rl_rounds"]

RL_FIGURE_FILE = "rlpanning_rounds.png"
#: The metrics whose weights the shipped agent chooses, in its action order.
RL_SCORERS = ("synflow", "snip", "grasp")


@rank_zero_only
def log_rl_rounds(
    trainer: pl.Trainer, steps: Sequence[Mapping[str, Any]], title: str, figure: bool = True,
    prefix: str = "rlpanning",
) -> dict[str, str]:
    """Log the per-round trace and the Figure-4-like image to every logger of ``trainer`` (rank zero only).

    Each round's actions, weights, reward terms and sparsities go to ``log_metrics`` at step = round; the image to
    TensorBoard (``add_image``), W&B (``log_image``) and as a PNG in each logger's ``log_dir``.

    Returns:
        ``{logger class name: PNG path}`` of the figures written.
    """
    if not trainer.loggers or not steps:
        return {}
    keys = [k for k in steps[0] if isinstance(steps[0][k], (int, float)) and k != "round"]
    rows = [(int(s["round"]), {f"{prefix}/round/{k}": float(s[k]) for k in keys}) for s in steps]
    written: dict[str, str] | None = send_to_loggers(
        trainer, rows, figure=rl_rounds_figure(steps, title) if figure else None, image_key=f"{prefix}/rounds",
        figure_file=RL_FIGURE_FILE, caption=title,
    )
    return written or {}


class RLPanningCallback(BasePruningCallback):
    """Prune any LightningModule before training with RLPanning, then train it sparse.

    ``Trainer(callbacks=[RLPanningCallback(target=0.98)])``: in ``on_fit_start`` a Panning run of ``rounds`` rounds
    (SynFlow + SNIP + GraSP, exponential schedule) is driven by a TD3 agent: before each round the agent sees the
    environment's 7-number observation of the current sparse network (the same code as
    :class:`~lightning_panning.rl.env.PanningEnv`) and its deterministic action ``a ∈ [-1, 1]^3`` sets the metric
    weights ``p = (a + 1) / 2``. The agent shipped in the package (``policy="default"``) was trained on
    LeNet5/MNIST only, as in the paper, and is applied unchanged to other networks and datasets (its observation is
    scale-free). Everything else — data, loss, mask enforcement, checkpoints and resume, DDP, logging — is
    :class:`~lightning_panning.callbacks.base.BasePruningCallback`'s, as for ``PanningCallback``.

    Each round's actions, metric weights, reward (eq. 7) and its terms, nominal and effective sparsity are logged
    under ``rlpanning/round/*`` at step = round, and a figure like the paper's Figure 4 (actions and reward over the
    rounds, remaining ratio below) as the image ``rlpanning/rounds`` / ``rlpanning_rounds.png``. :attr:`rl_steps`
    keeps the per-round values.

    Args:
        target: final sparsity in (0, 1).
        policy: ``"default"`` (shipped), a path to a TD3 zip saved by ``python -m lightning_panning.rl.train``, or
            an object with SB3's ``predict(obs, deterministic=True)`` (e.g. a ``TD3`` model).
        options: further :class:`~lightning_panning.core.Panning` arguments (the shipped agent was trained with
            100 rounds, ``"rms"`` score normalisation and the exponential schedule; ``scorers`` must match the
            policy's action order; the weights are the policy's).
        rounds: ``T`` (default 100, as the agent was trained).
        per_class: samples per class of the scoring batch.
        seed: seed of the scoring batch.
        micro_batch: score in chunks of at most this many samples.
        alpha: ``α`` of the logged reward.
        grad_term_scale: factor on the logged reward's gradient-norm term.
        loss: ``"auto"``, ``"classification"``, ``"training_step"`` or a callable ``loss_fn(model, batch)``.
        dataloader: scoring data instead of the training data ``fit`` receives.
        log_figure: log the per-layer density figure and the Figure-4-like rounds figure.
        verbose: progress bar and an info line on rank zero.

    Raises:
        ValueError: at construction, for an invalid argument or option, or a policy that cannot be found.

    Example:
        >>> cb = RLPanningCallback(target=0.9, rounds=10, verbose=False)
        >>> cb.method, cb.state_key
        ('rlpanning', "RLPanningCallback{'target': 0.9, 'method': 'rlpanning', 'policy': 'default'}")
    """

    def __init__(
        self,
        target: float = 0.98,
        policy: str | os.PathLike[str] | Policy = DEFAULT_POLICY,
        options: dict[str, Any] | None = None,
        *,
        rounds: int | None = None,
        per_class: int | None = None,
        seed: int | None = None,
        micro_batch: int | None = None,
        alpha: float = 100.0,
        grad_term_scale: float = 1.0,
        loss: str | LossFn = "auto",
        dataloader: DataLoader | Dataset | None = None,
        log_figure: bool = True,
        verbose: bool = True,
    ) -> None:
        self.options = dict(options or {})
        self.policy = policy
        self.policy_name = self._check_policy(policy)
        if "weights" in self.options:
            raise ValueError(
                "`options` may not set `weights`: RLPanning's metric weights come from `policy` every round."
            )
        self.schedule = PolicyWeights(policy, alpha=alpha, grad_term_scale=grad_term_scale)

        pruner = callback_pruner(
            "panning", {"scorers": RL_SCORERS, **self.options}, rounds=rounds, per_class=per_class, seed=seed,
            micro_batch=micro_batch, weights=self.schedule, name="rlpanning", progress=False,
        )
        super().__init__(
            target, pruner, loss=loss, dataloader=dataloader, log_figure=log_figure, verbose=verbose,
        )
        for name, value in (("alpha", alpha), ("grad_term_scale", grad_term_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number ≥ 0, got {value!r}.")
        self.alpha, self.grad_term_scale = float(alpha), float(grad_term_scale)
        self.rl_steps: list[dict[str, Any]] = []

    @staticmethod
    def _check_policy(policy: Any) -> str:
        if isinstance(policy, (str, os.PathLike)):
            if str(policy) == DEFAULT_POLICY:
                try:
                    default_policy_path()
                except FileNotFoundError as err:
                    raise ValueError(f"`policy`='default': {err}") from None
                return DEFAULT_POLICY
            path = Path(policy)
            if not path.is_file():
                raise ValueError(
                    f"`policy` must be 'default', an existing TD3 zip file or an object with `predict`; the file "
                    f"{str(path)!r} does not exist."
                )
            load_policy(path)  # raises a ValueError naming `policy` for a file of the wrong observation/action shape
            return str(path)
        if callable(getattr(policy, "predict", None)):
            return type(policy).__name__
        raise ValueError(
            f"`policy` must be 'default', a path to a TD3 zip or an object with `predict` (an SB3 model), got "
            f"{type(policy).__name__}."
        )

    def _state_key_fields(self) -> dict[str, Any]:
        return {"target": self.target, "method": self.method, "policy": self.policy_name}

    def settings(self) -> dict[str, Any]:
        """The base settings and the policy."""
        return {**super().settings(), "policy": self.policy_name}

    def hparams(self) -> dict[str, Any]:
        """Configuration as plain values, with the policy, ``α`` and the gradient-term scale."""
        return {**super().hparams(), "alpha": self.alpha, "grad_term_scale": self.grad_term_scale}

    def _reset(self) -> None:
        super()._reset()
        self.rl_steps = []

    def resolve_loss(self, pl_module: pl.LightningModule, batch: Any) -> LossFn:
        """The base class's loss, with the classification loss in float64 as the agent's training environment."""
        loss_fn = super().resolve_loss(pl_module, batch)
        if type(loss_fn) is ClassificationLoss:
            return PreciseClassificationLoss(loss_fn.temperature)
        return loss_fn

    def compute_masks(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, pruner: Panning, batch: Any,
        example_input: Any,
    ) -> PruningResult:
        """The base class's run (the policy is the pruner's weight schedule), then the per-round trace to loggers."""
        result = super().compute_masks(trainer, pl_module, pruner, batch, example_input)
        self.rl_steps = list(self.schedule.steps)
        log_rl_rounds(trainer, self.rl_steps, f"RLPanning ({self.policy_name}) → {self.target:g}",
                      figure=self.log_figure)
        return result

    def extra_summary(self) -> dict[str, Any]:
        """The policy, the total reward, and per-round actions and rewards."""
        return {
            "policy": self.policy_name,
            "rl_total_reward": float(sum(s["reward"] for s in self.rl_steps)),
            "rl_actions": [[float(s[f"a{i + 1}"]) for i in range(len(self.pruner.scorers))] for s in self.rl_steps],
            "rl_rewards": [float(s["reward"]) for s in self.rl_steps],
        }
