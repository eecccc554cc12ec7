"""``PanningCallback``: Neural Network Panning (or a baseline) on any LightningModule, inside ``Trainer.fit``."""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset

from lightning_panning.callbacks.base import BasePruningCallback, callback_pruner
from lightning_panning.core.batch import LossFn
from lightning_panning.core.methods import METHODS
from lightning_panning.core.pruner import Panning

__all__ = ["PanningCallback"]


class PanningCallback(BasePruningCallback):
    """Prune any LightningModule before its first optimizer step with Neural Network Panning, then train it sparse.

    ``Trainer(callbacks=[PanningCallback(target=0.98)])`` is the whole integration: in ``on_fit_start`` the callback
    scores the module on a class-balanced batch of the training data with the core engine
    (:class:`~lightning_panning.core.Panning`: SynFlow + SNIP + GraSP fused with Table 3's weights over 100 rounds),
    zeroes the pruned weights, and re-zeroes them after every optimizer step. Checkpoints keep the plain
    ``state_dict`` keys; the masks travel in the callback state, so resuming never prunes again. See
    :class:`~lightning_panning.callbacks.base.BasePruningCallback` for data, loss, DDP, logging and resume details.

    The engine is ``method``: a key of :data:`~lightning_panning.core.METHODS` (including any added with
    :func:`~lightning_panning.core.register_method`) or a configured :class:`~lightning_panning.core.Panning` (in
    YAML: ``method: {class_path: lightning_panning.Panning, init_args: {...}}``). The common settings are typed
    keyword arguments (``rounds``, ``per_class``, ``seed``, ``micro_batch``; ``None`` keeps the method's own);
    ``options`` takes any other :class:`~lightning_panning.core.Panning` argument (``weights``, ``scorers``,
    ``normalization``, ``selector``, ...). Everything is validated once, when the callback is built.

    After pruning, :attr:`masks` is ``{parameter name: bool tensor}``, :attr:`result` the
    :class:`~lightning_panning.core.PruningResult` and :attr:`summary` a plain dict (``target``,
    ``nominal_sparsity``, ``effective_sparsity``, ``layer_density``, ``dead_units``, ``pruning_seconds``,
    ``round_weights``, ...). With ``strategy="ddp_spawn"`` these attributes are set in the worker processes only
    (Lightning sends back just the weights); read the summary from the loggers' ``pruning_summary.json`` then.

    Args:
        target: final sparsity in (0, 1), e.g. 0.98 keeps 2% of the prunable weights.
        method: one of :data:`~lightning_panning.core.METHODS` (``"panning"``, ``"synflow"``, ``"snip"``,
            ``"grasp"``, ``"iterative_snip"``, ``"magnitude"``, ``"random"``, ...) or a configured
            :class:`~lightning_panning.core.Panning`.
        options: further :class:`~lightning_panning.core.Panning` arguments overriding the method's preset, e.g.
            ``{"weights": {"synflow": 0.2, "snip": 0.3, "grasp": 0.5}, "normalization": "authors"}``.
        rounds: ``T`` of iterative methods (one-shot methods keep 1).
        per_class: samples per class of the class-balanced scoring batch.
        seed: seed of the scoring batch, dropout and random scorers.
        micro_batch: score in chunks of at most this many samples (memory set by the chunk, not the set).
        loss: ``"auto"``, ``"classification"``, ``"training_step"`` or a callable ``loss_fn(model, batch)``.
        shuffle_masks: shuffle kept positions within each layer afterwards (Frankle et al.'s sanity check).
        dataloader: scoring data to use instead of the training data ``fit`` receives.
        log_figure: log a per-layer density figure.
        verbose: progress bar and an info line on rank zero.

    Raises:
        ValueError: at construction, for any invalid argument or option (the message names it, the value and what
            is allowed); in ``on_fit_start``, for a module with nothing prunable, missing or unusable data, or a
            checkpoint whose masks do not fit the model or were made with other settings.

    Example:
        >>> cb = PanningCallback(target=0.9, rounds=10, verbose=False)
        >>> cb.state_key, cb.pruner.rounds
        ("PanningCallback{'target': 0.9, 'method': 'panning'}", 10)
        >>> PanningCallback(target=0.9, method="snip", per_class=0)
        Traceback (most recent call last):
        ...
        ValueError: Invalid pruning settings (`options` or arguments): `per_class` must be an integer ≥ 1, got 0.
    """

    def __init__(
        self,
        target: float = 0.98,
        method: str | Panning = "panning",
        options: dict[str, Any] | None = None,
        *,
        rounds: int | None = None,
        per_class: int | None = None,
        seed: int | None = None,
        micro_batch: int | None = None,
        loss: str | LossFn = "auto",
        shuffle_masks: bool = False,
        dataloader: DataLoader | Dataset | None = None,
        log_figure: bool = True,
        verbose: bool = True,
    ) -> None:
        if not isinstance(method, Panning) and (not isinstance(method, str) or method not in METHODS):
            raise ValueError(
                f"`method` must be one of {sorted(METHODS)} or a lightning_panning.Panning, got {method!r}."
            )
        self.options = dict(options or {})
        pruner = callback_pruner(
            method, options, rounds=rounds, per_class=per_class, seed=seed, micro_batch=micro_batch, progress=False
        )
        super().__init__(
            target, pruner, loss=loss, dataloader=dataloader, shuffle_masks=shuffle_masks, log_figure=log_figure,
            verbose=verbose,
        )
