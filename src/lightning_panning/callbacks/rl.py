"""``RLPanningCallback``: RLPanning (a TD3 agent chooses each round's metric weights) inside ``Trainer.fit``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lightning_panning.callbacks.base import BasePruningCallback
from lightning_panning.core.batch import LossFn
from lightning_panning.core.panning import Panning, PruningResult
from lightning_panning.rl.agent import DEFAULT_POLICY, Policy, default_policy_path, load_policy, rl_prune
from lightning_panning.rl.figures import figure_to_array, rl_rounds_figure

__all__ = ["RL_FIGURE_FILE", "RLPanningCallback", "log_rl_rounds"]

RL_FIGURE_FILE = "rlpanning_rounds.png"
SCORERS = ("synflow", "snip", "grasp")


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
    if not trainer.loggers:
        return {}
    keys = [k for k in (steps[0] if steps else {}) if isinstance(steps[0][k], (int, float)) and k != "round"]
    fig = rl_rounds_figure(steps, title) if figure and steps else None
    image = figure_to_array(fig) if fig is not None else None
    written: dict[str, str] = {}
    for logger in trainer.loggers:
        for s in steps:
            logger.log_metrics({f"{prefix}/round/{k}": float(s[k]) for k in keys}, step=int(s["round"]))
        if image is not None:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(f"{prefix}/rounds", image, global_step=0, dataformats="HWC")
            elif isinstance(logger, WandbLogger):
                logger.log_image(key=f"{prefix}/rounds", images=[image], caption=[title])
        directory = getattr(logger, "log_dir", None)
        if fig is not None and isinstance(directory, str):
            try:
                os.makedirs(directory, exist_ok=True)
                path = os.path.join(directory, RL_FIGURE_FILE)
                fig.savefig(path)
                written[type(logger).__name__] = path
            except OSError as err:
                rank_zero_warn(f"Could not write the RLPanning figure to {directory!r}: {err}")
        logger.save()
    return written


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
        rounds: ``T`` (the shipped agent was trained with 100).
        normalization: normalisation of the metric scores (``"rms"``, as in training).
        per_class: samples per class of the scoring batch.
        num_classes: classes of the scoring batch (inferred when ``None``).
        temperature: logit divisor of the classification loss.
        loss: ``"auto"``, ``"classification"``, ``"training_step"`` or a callable ``loss_fn(model, batch)``.
        seed: seed of the batch and of dropout while scoring.
        include: glob pattern(s) of parameter names to prune.
        exclude: glob pattern(s) of parameter names to keep dense.
        masked_data_scores: SNIP/GraSP at the masked network (default) or at the unmasked one.
        alpha: ``α`` of the logged reward.
        grad_term_scale: factor on the logged reward's gradient-norm term.
        dataloader: scoring data instead of the training data ``fit`` receives.
        log_figure: log the per-layer density figure and the Figure-4-like rounds figure.
        verbose: progress bar and an info line on rank zero.

    Raises:
        ValueError: at construction, for an invalid argument or a policy that cannot be found.

    Example:
        >>> cb = RLPanningCallback(target=0.9, rounds=10, verbose=False)
        >>> cb.method, cb.state_key
        ('rlpanning', "RLPanningCallback{'target': 0.9, 'method': 'rlpanning', 'policy': 'default'}")
    """

    def __init__(
        self,
        target: float = 0.98,
        policy: str | os.PathLike[str] | Policy = DEFAULT_POLICY,
        rounds: int = 100,
        *,
        normalization: str = "rms",
        per_class: int = 10,
        num_classes: int | None = None,
        temperature: float = 200.0,
        loss: str | Callable[[nn.Module, Any], Tensor] = "auto",
        seed: int = 0,
        include: str | list[str] | None = None,
        exclude: str | list[str] | None = None,
        masked_data_scores: bool = True,
        alpha: float = 100.0,
        grad_term_scale: float = 1.0,
        dataloader: DataLoader | Dataset | None = None,
        log_figure: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            target, rounds, normalization=normalization, schedule="exponential", per_class=per_class,
            num_classes=num_classes, temperature=temperature, loss=loss, seed=seed, include=include,
            exclude=exclude, masked_data_scores=masked_data_scores, shuffle_masks=False, dataloader=dataloader,
            log_figure=log_figure, verbose=verbose,
        )
        self.policy = policy
        self.policy_name = self._check_policy(policy)
        for name, value in (("alpha", alpha), ("grad_term_scale", grad_term_scale)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a number ≥ 0, got {value!r}.")
        self.alpha, self.grad_term_scale = float(alpha), float(grad_term_scale)
        self.rl_steps: list[dict[str, Any]] = []
        self._agent: Policy | None = None

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
            return str(path)
        if callable(getattr(policy, "predict", None)):
            return type(policy).__name__
        raise ValueError(
            f"`policy` must be 'default', a path to a TD3 zip or an object with `predict` (an SB3 model), got "
            f"{type(policy).__name__}."
        )

    @property
    def method(self) -> str:
        """``"rlpanning"``."""
        return "rlpanning"

    def _state_key_fields(self) -> dict[str, Any]:
        return {"target": self.target, "method": self.method, "policy": self.policy_name}

    def hparams(self) -> dict[str, Any]:
        """Configuration as plain values, with the policy, ``α`` and the gradient-term scale."""
        return {**super().hparams(), "policy": self.policy_name, "alpha": self.alpha,
                "grad_term_scale": self.grad_term_scale}

    def build_pruner(self, loss_fn: LossFn, progress: bool) -> Panning:
        """SynFlow + SNIP + GraSP with this callback's settings (weights come from the agent each round)."""
        return Panning(
            SCORERS, weights={s: 1.0 for s in SCORERS}, rounds=self.rounds, schedule="exponential",
            normalization=self.normalization or "rms",  # type: ignore[arg-type]
            masked_data_scores=self.masked_data_scores is not False, loss_fn=loss_fn, temperature=self.temperature,
            per_class=self.per_class, num_classes=self.num_classes, seed=self.seed, progress=False,
            include=self.include, exclude=self.exclude, name=self.method,
        )

    def compute_masks(
        self, pl_module: pl.LightningModule, batch: Any, loss_fn: LossFn, example_input: Tensor | None, progress: bool
    ) -> PruningResult:
        """Run Panning with the agent's weights each round and log the per-round trace (see the class docstring)."""
        if self._agent is None:
            self._agent = load_policy(self.policy)
        pruner = self.build_pruner(loss_fn, progress=False)
        bar = tqdm(total=self.rounds, desc=f"rlpanning → {self.target:g}", unit="round") if progress else None

        def on_step(summary: dict[str, Any], _step: Any) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(sparsity=f"{summary['sparsity']:.4f}", reward=f"{summary['reward']:.3f}",
                                refresh=False)

        try:
            result = rl_prune(
                pl_module, batch, self.target, self._agent, pruner=pruner, example_input=example_input,
                alpha=self.alpha, grad_term_scale=self.grad_term_scale, on_step=on_step,
            )
        finally:
            if bar is not None:
                bar.close()
        self.rl_steps = result.steps
        trainer = getattr(pl_module, "_trainer", None)
        if trainer is not None:
            log_rl_rounds(trainer, result.steps, f"RLPanning ({self.policy_name}) → {self.target:g}",
                          figure=self.log_figure)
        return PruningResult(masks=result.masks, target=result.target, method=self.method, history=result.history,
                             seconds=result.seconds)

    def extra_summary(self) -> dict[str, Any]:
        """The policy, the total reward, and per-round actions and rewards."""
        return {
            "policy": self.policy_name,
            "rl_total_reward": float(sum(s["reward"] for s in self.rl_steps)),
            "rl_actions": [[float(s[f"a{i + 1}"]) for i in range(len(SCORERS))] for s in self.rl_steps],
            "rl_rewards": [float(s["reward"]) for s in self.rl_steps],
        }
