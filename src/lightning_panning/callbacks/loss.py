"""Finding the scoring loss of a LightningModule: the classification loss, its own ``training_step``, or the user's."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
from torch import Tensor, nn

from lightning_panning.core.batch import (
    ClassificationLoss,
    LossFn,
    batch_inputs,
    batch_labels,
    label_problem,
    move_to_device,
)
from lightning_panning.core.functional import ONE_VALUE_PER_CHANNEL, preserved_modes

__all__ = ["LOSSES", "TrainingStepLoss", "muted_logging", "resolve_loss"]

#: Names accepted by the callbacks' ``loss`` argument (besides a callable ``loss_fn(model, batch)``).
LOSSES: tuple[str, ...] = ("auto", "classification", "training_step")


def _loss_from_output(output: Any) -> Tensor:
    """The loss in what ``training_step`` returned: a scalar tensor, or a mapping's ``"loss"`` entry."""
    loss = output.get("loss") if isinstance(output, Mapping) else output
    if not isinstance(loss, Tensor) or loss.ndim != 0 or not loss.is_floating_point():
        raise TypeError(
            "Scoring with loss='training_step' needs `training_step` to return a scalar loss tensor or a dict with "
            f"a 'loss' entry, got {type(output).__name__}. Pass `loss=` a callable `loss_fn(model, batch)` instead."
        )
    return loss


class TrainingStepLoss:
    """``loss_fn(model, batch)`` that calls the LightningModule's own ``training_step`` on the batch.

    The batch index is passed by position, as Lightning does, whenever ``training_step`` takes a second argument
    (whatever its name) or ``*args``. Used by the scorers inside :func:`torch.func.functional_call`, so
    ``training_step`` sees the masked weights; the module's ``log``/``log_dict`` must be muted meanwhile
    (:func:`muted_logging`).
    """

    needs_labels = False

    def __init__(self, hint: str | None = None) -> None:
        #: what is known to be wrong with the scoring batch for a classification loss (said if ``training_step`` fails)
        self.hint = hint

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        """Loss of ``model.training_step`` on ``batch`` (a scalar tensor).

        Raises:
            ValueError: when ``training_step`` fails on the batch (the error says why, chained to the original).
        """
        step: Callable[..., Any] = getattr(model, "training_step")  # noqa: B009 - typed access to a module method
        # Lightning's own rule (`_TrainingEpochLoop._build_kwargs`): the index goes second, by position
        takes_index = is_param_in_hook_signature(step, "batch_idx", min_args=2)
        try:
            output = step(batch, 0) if takes_index else step(batch)
        except (RuntimeError, IndexError, ValueError, TypeError) as err:
            if ONE_VALUE_PER_CHANNEL in str(err):
                raise  # a scoring batch of one sample: call_with says what to do
            hint = f" The scoring batch looks wrong for a classification loss: {self.hint}." if self.hint else ""
            raise ValueError(
                f"Scoring with {type(model).__name__}.training_step failed on the scoring batch (the data the "
                f"Trainer trains on): {type(err).__name__}: {str(err).rstrip('.')}.{hint} Training would most likely "
                "fail the same way: fix the data or `training_step`, or pass the callback `loss=` a callable "
                "`loss_fn(model, batch)`."
            ) from err
        return _loss_from_output(output)

    def __repr__(self) -> str:
        return "TrainingStepLoss()"


@contextmanager
def muted_logging(module: nn.Module) -> Iterator[None]:
    """Make ``module.log`` and ``module.log_dict`` no-ops (Lightning forbids them outside its loops); restored after."""
    saved: dict[str, Any] = {name: module.__dict__[name] for name in ("log", "log_dict") if name in module.__dict__}

    def noop(*args: Any, **kwargs: Any) -> None:
        return None

    try:
        module.__dict__["log"] = noop
        module.__dict__["log_dict"] = noop
        yield
    finally:
        for name in ("log", "log_dict"):
            module.__dict__.pop(name, None)
        module.__dict__.update(saved)


def _is_xy(batch: Any) -> bool:
    return isinstance(batch, (tuple, list)) and len(batch) == 2 and batch_labels(batch) is not None


def _logits_check(pl_module: pl.LightningModule, batch: Any) -> tuple[bool, str | None]:
    """Whether ``forward`` maps the batch's inputs to logits ``(B, C)`` that its labels index, and if not, why.

    Returns:
        ``(True, None)`` when the batch is ``(x, y)`` with integer labels in ``[0, C)`` and ``forward`` returns
        floating-point ``(B, C)``; else ``False`` with what is wrong with the labels for such logits (float labels,
        labels ``≥ C``), or ``None`` when the batch does not look like a classification batch at all.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2 or not isinstance(batch[1], Tensor):
        return False, None
    x, y = batch_inputs(batch), batch[1]
    if y.ndim != 1:
        return False, None
    device = next(pl_module.parameters()).device
    try:
        with torch.no_grad(), preserved_modes(pl_module, False), muted_logging(pl_module):
            out = pl_module(move_to_device(x, device))
    except Exception:
        return False, None
    if not (isinstance(out, Tensor) and out.ndim == 2 and out.shape[0] == y.shape[0] and out.is_floating_point()):
        return False, None
    problem = label_problem(batch, out.shape[1])
    return problem is None, problem


def resolve_loss(loss: str | LossFn, pl_module: pl.LightningModule, batch: Any, temperature: float) -> LossFn:
    """The ``loss_fn(model, batch)`` that ``loss`` stands for, checked against the scoring batch.

    ``"classification"``: cross-entropy with logits ÷ ``temperature``; ``"training_step"``: the module's own loss;
    a callable: itself; ``"auto"``: classification when the batch is ``(x, y)`` with integer labels and ``forward``
    returns logits ``(B, C)`` with ``C`` above every label, else the ``training_step`` loss.

    Raises:
        ValueError: ``loss="classification"`` on data without integer labels; ``"training_step"`` (or ``"auto"``
            falling back to it) with manual optimization, whose ``training_step`` steps optimizers.
    """
    if callable(loss):
        return loss
    if loss == "classification":
        if batch_labels(batch) is None:
            problem = label_problem(batch)
            raise ValueError(
                "loss='classification' needs (x, y) batches with integer labels y of shape (B,), but the training "
                f"data gives {type(batch).__name__} batches without them{'' if problem is None else ': ' + problem}. "
                "Use loss='training_step', a callable loss, or a data-free method ('synflow', 'magnitude', 'random')."
            )
        return ClassificationLoss(temperature)
    hint = None
    if loss == "auto":
        classifies, hint = _logits_check(pl_module, batch)
        if classifies and _is_xy(batch):
            return ClassificationLoss(temperature)
    if not pl_module.automatic_optimization:
        raise ValueError(
            f"loss={loss!r} would score with `training_step`, but {type(pl_module).__name__} uses manual "
            "optimization (its training_step steps the optimizers). Pass `loss=` a callable "
            "`loss_fn(model, batch)`, or give (x, y) data with a logits-returning forward."
        )
    return TrainingStepLoss(hint)
