"""``PanningCallback``: Neural Network Panning (or a baseline) on any LightningModule, inside ``Trainer.fit``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightning_panning.callbacks.base import BasePruningCallback
from lightning_panning.core.batch import LossFn
from lightning_panning.core.fusion import FixedWeights, StageTable
from lightning_panning.core.panning import METHODS, Panning, make_pruner

__all__ = ["PanningCallback"]


class PanningCallback(BasePruningCallback):
    """Prune any LightningModule before its first optimizer step with Neural Network Panning, then train it sparse.

    ``Trainer(callbacks=[PanningCallback(target=0.98)])`` is the whole integration: in ``on_fit_start`` the callback
    scores the module on a class-balanced batch of the training data with the core engine
    (:class:`~lightning_panning.core.Panning`: SynFlow + SNIP + GraSP fused with Table 3's weights over ``rounds``
    rounds), zeroes the pruned weights, and re-zeroes them after every optimizer step. Checkpoints keep the plain
    ``state_dict`` keys; the masks travel in the callback state, so resuming never prunes again. See
    :class:`~lightning_panning.callbacks.base.BasePruningCallback` for data, loss, DDP, logging and resume details.

    After pruning, :attr:`masks` is ``{parameter name: bool tensor}``, :attr:`result` the
    :class:`~lightning_panning.core.PruningResult` and :attr:`summary` a plain dict (``target``,
    ``nominal_sparsity``, ``effective_sparsity``, ``layer_density``, ``dead_units``, ``pruning_seconds``,
    ``round_weights``, ...). With ``strategy="ddp_spawn"`` these attributes are set in the worker processes only
    (Lightning sends back just the weights); read the summary from the loggers' ``pruning_summary.json`` then.

    Args:
        target: final sparsity in (0, 1), e.g. 0.98 keeps 2% of the prunable weights.
        method: one of :data:`~lightning_panning.core.METHODS` (``"panning"``, ``"synflow"``, ``"snip"``,
            ``"grasp"``, ``"iterative_snip"``, ``"magnitude"``, ``"random"``, ...; ``"panning_authors"``,
            ``"snip_authors"``, ``"grasp_authors"``, ``"synflow_authors"`` reproduce the authors' code).
        rounds: ``T``, rounds of iterative methods (ignored by one-shot ones).
        weights: metric weights: ``None`` (Table 3 for Panning), a fixed ``{scorer: weight}`` dict, or a table of
            ``[upper_bound, {scorer: weight}]`` rows whose last bound is 1.0.
        normalization: ``None`` (the method's own: ``"rms"``, order-preserving, for ``"panning"``), ``"rms"``,
            ``"authors"`` (``|S - mean| / std``), ``"sum"`` or ``"none"``.
        schedule: ``"exponential"`` (Algorithm 1) or ``"linear"``.
        per_class: ``k``, samples per class of the scoring batch (authors: 10; 5 for 100/200 classes).
        num_classes: classes of the scoring batch (inferred when ``None``).
        temperature: logit divisor of the classification loss (authors: 200).
        loss: ``"auto"``, ``"classification"``, ``"training_step"`` or a callable ``loss_fn(model, batch)``.
        seed: seed of the batch, dropout and random scores; same seed → same masks.
        include: glob pattern(s) of parameter names to prune (default: every conv/linear ``weight``).
        exclude: glob pattern(s) of parameter names to keep dense.
        masked_data_scores: SNIP/GraSP at the masked network (Algorithm 1) or unmasked (authors' code); ``None``
            (default) keeps the method's own (``True`` except for ``"panning_authors"``).
        shuffle_masks: shuffle kept positions within each layer afterwards (Frankle et al.'s sanity check).
        dataloader: scoring data to use instead of the training data ``fit`` receives.
        log_figure: log a per-layer density figure.
        verbose: progress bar and an info line on rank zero.

    Raises:
        ValueError: at construction, for any invalid argument (the message names the argument, the value and what
            is allowed); in ``on_fit_start``, for a module with nothing prunable, missing or unusable data, or
            restored masks that do not fit the model.

    Example:
        >>> cb = PanningCallback(target=0.9, rounds=10, verbose=False)
        >>> cb.state_key
        "PanningCallback{'target': 0.9, 'method': 'panning'}"
        >>> PanningCallback(target=1.5)
        Traceback (most recent call last):
        ...
        ValueError: `target` must be in the open interval (0, 1) (the fraction of weights removed, e.g. 0.98), got 1.5.
    """

    def __init__(
        self,
        target: float = 0.98,
        method: str = "panning",
        rounds: int = 100,
        *,
        weights: dict[str, float] | list[tuple[float, dict[str, float]]] | None = None,
        normalization: str | None = None,
        schedule: str = "exponential",
        per_class: int = 10,
        num_classes: int | None = None,
        temperature: float = 200.0,
        loss: str | Callable[[nn.Module, Any], Tensor] = "auto",
        seed: int = 0,
        include: str | list[str] | None = None,
        exclude: str | list[str] | None = None,
        masked_data_scores: bool | None = None,
        shuffle_masks: bool = False,
        dataloader: DataLoader | Dataset | None = None,
        log_figure: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            target,
            rounds,
            normalization=normalization,
            schedule=schedule,
            per_class=per_class,
            num_classes=num_classes,
            temperature=temperature,
            loss=loss,
            seed=seed,
            include=include,
            exclude=exclude,
            masked_data_scores=masked_data_scores,
            shuffle_masks=shuffle_masks,
            dataloader=dataloader,
            log_figure=log_figure,
            verbose=verbose,
        )
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"`method` must be one of {sorted(METHODS)}, got {method!r}.")
        self._method = method
        self.weights = self._check_weights(weights)
        pruner = self.build_pruner(lambda model, batch: model(batch), progress=False)  # inconsistencies fail now
        self.normalization, self.masked_data_scores = pruner.normalization, pruner.masked_data_scores  # resolved

    def _check_weights(self, weights: Any) -> dict[str, float] | list[tuple[float, dict[str, float]]] | None:
        if weights is None:
            return None
        scorers = {s if isinstance(s, str) else s.label for s in METHODS[self._method]["scorers"]}
        if isinstance(weights, Mapping):
            tables: list[Mapping[str, Any]] = [weights]
        elif isinstance(weights, Sequence) and not isinstance(weights, str):
            tables = [row[1] for row in weights if isinstance(row, (list, tuple)) and len(row) == 2]
            if len(tables) != len(weights) or not all(isinstance(t, Mapping) for t in tables):
                raise ValueError(
                    f"`weights` must be None, a {{scorer: weight}} dict or a list of [upper_bound, {{scorer: weight}}] "
                    f"rows, got {weights!r}."
                )
        else:
            raise ValueError(
                f"`weights` must be None, a {{scorer: weight}} dict or a list of [upper_bound, {{scorer: weight}}] "
                f"rows, got {weights!r}."
            )
        for table in tables:
            unknown = sorted(set(table) - scorers)
            if unknown:
                raise ValueError(
                    f"`weights` names scorers {unknown} that method {self._method!r} does not use; allowed: "
                    f"{sorted(scorers)}."
                )
        try:
            if isinstance(weights, Mapping):
                FixedWeights(weights)
                return {str(k): float(v) for k, v in weights.items()}
            StageTable([(float(b), dict(t)) for b, t in weights])
        except (TypeError, ValueError) as err:
            raise ValueError(f"Invalid `weights`={weights!r}: {err}") from None
        return [(float(b), {str(k): float(v) for k, v in t.items()}) for b, t in weights]

    @property
    def method(self) -> str:
        """The pruning method (a key of :data:`~lightning_panning.core.METHODS`)."""
        return self._method

    def build_pruner(self, loss_fn: LossFn, progress: bool) -> Panning:
        """:func:`~lightning_panning.core.make_pruner` with this callback's settings."""
        return make_pruner(
            self._method,
            self.rounds,
            weights=self.weights,
            normalization=self.normalization,
            schedule=self.schedule,
            masked_data_scores=self.masked_data_scores,
            loss_fn=loss_fn,
            temperature=self.temperature,
            per_class=self.per_class,
            num_classes=self.num_classes,
            seed=self.seed,
            progress=progress,
            include=self.include,
            exclude=self.exclude,
        )

    def hparams(self) -> dict[str, Any]:
        """Configuration as plain values, including ``weights``."""
        return {**super().hparams(), "weights": self.weights}
