"""What every prune-before-training callback shares: validation, data, loss, DDP, enforcement, state and logging."""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from typing_extensions import override

from lightning_panning.callbacks.enforce import MaskEnforcer
from lightning_panning.callbacks.reporting import build_summary, log_summary
from lightning_panning.core.batch import (
    ClassificationLoss,
    LossFn,
    balanced_batch,
    batch_inputs,
    batch_labels,
    move_to_device,
)
from lightning_panning.core.functional import preserved_modes
from lightning_panning.core.fusion import NORMALIZATIONS
from lightning_panning.core.masks import (
    EffectiveSparsity,
    Masks,
    effective_sparsity,
    pack_masks,
    shuffle_masks,
    unpack_masks,
)
from lightning_panning.core.panning import Panning, PanningSession, PruningResult, RoundRecord
from lightning_panning.core.params import prunable_parameters
from lightning_panning.core.schedules import SCHEDULES, validate_target

__all__ = ["LOSSES", "BasePruningCallback", "TrainingStepLoss", "muted_logging"]

#: Names accepted by the ``loss`` argument (besides a callable ``loss_fn(model, batch)``).
LOSSES: tuple[str, ...] = ("auto", "classification", "training_step")


def _fail(argument: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"`{argument}` must be {allowed}, got {value!r}.")


def _check_int(argument: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(argument, value, f"an integer ≥ {minimum}")
    return value


def _check_bool(argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(argument, value, "True or False")
    return value


def _check_patterns(argument: str, value: Any) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _fail(argument, value, "None, a glob pattern (str) or a list of glob patterns")


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
    """``loss_fn(model, batch)`` that calls the LightningModule's own ``training_step(batch, 0)``.

    Used by the scorers inside :func:`torch.func.functional_call`, so ``training_step`` sees the masked weights.
    The module's ``log``/``log_dict`` must be muted meanwhile (:func:`muted_logging`).
    """

    needs_labels = False

    def __call__(self, model: nn.Module, batch: Any) -> Tensor:
        """Loss of ``model.training_step`` on ``batch`` (a scalar tensor)."""
        step: Callable[..., Any] = getattr(model, "training_step")  # noqa: B009 - typed access to a module method
        params = inspect.signature(step).parameters
        takes_index = "batch_idx" in params or any(p.kind is p.VAR_POSITIONAL for p in params.values())
        return _loss_from_output(step(batch, 0) if takes_index else step(batch))

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


def _first_loader(source: Any) -> Any:
    """One DataLoader/Dataset out of what a ``train_dataloader()`` may return (a loader or a collection of them)."""
    if isinstance(source, Mapping) and source:
        return _first_loader(next(iter(source.values())))
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], (DataLoader, Dataset, Mapping, list)):
        return _first_loader(source[0])
    iterables = getattr(source, "iterables", None)  # CombinedLoader
    if iterables is not None and iterables is not source:
        return _first_loader(iterables)
    return source


def _is_xy(batch: Any) -> bool:
    return isinstance(batch, (tuple, list)) and len(batch) == 2 and batch_labels(batch) is not None


class BasePruningCallback(Callback, ABC):
    """Prune a LightningModule once before training and keep it sparse through training, checkpoints and resume.

    The base class does everything but deciding the masks:

    1. **When.** In :meth:`on_fit_start`: after the checkpoint's weights and this callback's state are restored and
       after the strategy has moved the module to its device, wrapped it (DDP) and created the optimizers, before
       the first optimizer step. Strategies that restore checkpoints only after setup (DeepSpeed, FSDP) are handled
       in :meth:`on_train_start` instead, so that a resumed run never prunes again.
    2. **Data.** The callback's ``dataloader`` if given, else ``trainer.datamodule.train_dataloader()``, else the
       source ``fit`` received (module hook or dataloaders). The train dataloader is not attached yet in
       ``on_fit_start``, so it is obtained from that source directly. ``(x, y)`` batches with integer labels become a
       class-balanced batch of ``per_class`` samples per class (seeded); other batches are used as they come (first
       batch). Data-free scorers take only the input shape (or ``example_input_array``).
    3. **Loss.** :meth:`resolve_loss`: ``"classification"`` (cross-entropy, logits ÷ ``temperature``),
       ``"training_step"`` (the module's own loss; its ``self.log`` calls are muted), a callable
       ``loss_fn(model, batch)``, or ``"auto"``: classification when batches are ``(x, y)`` with integer labels and
       ``forward`` returns logits ``(B, C)`` with ``C`` above every label, else the ``training_step`` loss.
    4. **DDP.** Every rank runs the same deterministic pruning (same seed and data; DDP has already broadcast rank
       0's initial weights), which keeps collective ops inside the model (SyncBatchNorm) matched across ranks; then
       rank 0's packed masks are broadcast with ``trainer.strategy.broadcast`` and used everywhere, so all ranks hold
       bit-identical masks even where floating-point non-determinism could break a tie differently.
    5. **Sparse training.** :class:`~lightning_panning.callbacks.enforce.MaskEnforcer`: masks applied once, then
       re-applied by a post-step hook on each of the Trainer's optimizers (one fused multiply, no forward hooks, no
       ``weight_orig``/``weight_mask``), so checkpoints load into the plain model with ``strict=True``.
    6. **State.** :meth:`state_dict` holds packed masks (1 bit per weight) and the summary; after a restore the
       masks are re-installed, not recomputed. :attr:`state_key` includes :meth:`_state_key_fields`.
    7. **Observability.** A rank-zero tqdm bar over the rounds (off with ``verbose=False`` or
       ``Trainer(enable_progress_bar=False)``); the summary and density figure go to every logger
       (:func:`~lightning_panning.callbacks.reporting.log_summary`).

    **Subclassing (the seam for other pruners, e.g. RLPanning).** Implement :meth:`build_pruner` (a configured
    :class:`~lightning_panning.core.Panning`), and either

    * override :meth:`round_weights` to supply each round's metric weights ``{scorer: p_k}`` from the live
      :class:`~lightning_panning.core.PanningSession` (its ``history`` holds the losses, gradient norms and
      effective sparsities of earlier rounds; return ``None`` to use the pruner's own schedule), or
    * override :meth:`compute_masks` entirely to return any :class:`~lightning_panning.core.PruningResult`.

    :meth:`on_round` is called after every round and :meth:`extra_summary` adds entries to the summary (e.g. the
    agent's name). Extra constructor arguments belong in :meth:`hparams` and, if they change the masks,
    :meth:`_state_key_fields`.

    Args:
        target: final sparsity in (0, 1).
        rounds: number of pruning rounds ``T`` (one-shot methods ignore it).
        normalization: metric normalisation (one of :data:`~lightning_panning.core.fusion.NORMALIZATIONS`), or
            ``None`` for the method's own.
        schedule: sparsity schedule over the rounds: ``"exponential"`` or ``"linear"``.
        per_class: samples per class of the class-balanced scoring batch.
        num_classes: classes of the scoring batch (inferred when ``None``).
        temperature: logit divisor of the classification loss.
        loss: ``"auto"``, ``"classification"``, ``"training_step"`` or a callable ``loss_fn(model, batch) -> scalar``.
        seed: seed of the scoring batch, dropout and random scorers; same seed → same masks.
        include: glob pattern(s) of parameter names to prune (default: every conv/linear ``weight``).
        exclude: glob pattern(s) of parameter names to leave dense.
        masked_data_scores: SNIP/GraSP at the masked network (Algorithm 1) or at the unmasked one (authors' code);
            ``None`` for the method's own.
        shuffle_masks: shuffle the kept positions within each layer after pruning (layer-wise sanity check).
        dataloader: data for scoring (a DataLoader or Dataset) instead of the one ``fit`` receives.
        log_figure: log the per-layer density figure.
        verbose: show the progress bar and an info line.
    """

    def __init__(
        self,
        target: float = 0.98,
        rounds: int = 100,
        *,
        normalization: str | None = "rms",
        schedule: str = "exponential",
        per_class: int = 10,
        num_classes: int | None = None,
        temperature: float = 200.0,
        loss: str | Callable[[nn.Module, Any], Tensor] = "auto",
        seed: int = 0,
        include: str | list[str] | None = None,
        exclude: str | list[str] | None = None,
        masked_data_scores: bool | None = True,
        shuffle_masks: bool = False,
        dataloader: DataLoader | Dataset | None = None,
        log_figure: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        try:
            self.target = validate_target(target)
        except TypeError as err:
            raise ValueError(str(err)) from None
        self.rounds = _check_int("rounds", rounds, 1)
        if normalization is not None and normalization not in NORMALIZATIONS:
            raise _fail("normalization", normalization, f"None or one of {list(NORMALIZATIONS)}")
        self.normalization = normalization
        if schedule not in SCHEDULES:
            raise _fail("schedule", schedule, f"one of {sorted(SCHEDULES)}")
        self.schedule = schedule
        self.per_class = _check_int("per_class", per_class, 1)
        self.num_classes = None if num_classes is None else _check_int("num_classes", num_classes, 1)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise _fail("temperature", temperature, "a finite number > 0")
        self.temperature = float(temperature)
        if not (callable(loss) or loss in LOSSES):
            raise _fail("loss", loss, f"one of {list(LOSSES)} or a callable loss_fn(model, batch) -> scalar tensor")
        self.loss = loss
        self.seed = _check_int("seed", seed, 0)
        self.include = _check_patterns("include", include)
        self.exclude = _check_patterns("exclude", exclude)
        self.masked_data_scores = (
            None if masked_data_scores is None else _check_bool("masked_data_scores", masked_data_scores)
        )
        self.shuffle_masks = _check_bool("shuffle_masks", shuffle_masks)
        if dataloader is not None and not isinstance(dataloader, (DataLoader, Dataset)):
            raise _fail("dataloader", dataloader, "None, a torch DataLoader or a Dataset")
        self.dataloader = dataloader
        self.log_figure = _check_bool("log_figure", log_figure)
        self.verbose = _check_bool("verbose", verbose)

        self.result: PruningResult | None = None
        self.summary: dict[str, Any] = {}
        self._masks: Masks | None = None
        self._restored = False
        self._enforcer: MaskEnforcer | None = None

    # -- the seam for subclasses ----------------------------------------------------------------------------------
    @property
    @abstractmethod
    def method(self) -> str:
        """Method name (logs, summary, state key)."""

    @abstractmethod
    def build_pruner(self, loss_fn: LossFn, progress: bool) -> Panning:
        """A configured :class:`~lightning_panning.core.Panning` scoring with ``loss_fn``."""

    def round_weights(self, session: PanningSession) -> dict[str, float] | None:
        """Metric weights ``{scorer: p_k}`` for the session's next round; ``None`` uses the pruner's schedule."""
        return None

    def on_round(self, record: RoundRecord, session: PanningSession) -> None:
        """Called after every pruning round (on every rank)."""

    def extra_summary(self) -> dict[str, Any]:
        """Entries added to :attr:`summary` (plain values)."""
        return {}

    def hparams(self) -> dict[str, Any]:
        """The callback's configuration as plain values (logged with ``log_hyperparams``)."""
        return {
            "target": self.target,
            "method": self.method,
            "rounds": self.rounds,
            "normalization": self.normalization,
            "schedule": self.schedule,
            "per_class": self.per_class,
            "num_classes": self.num_classes,
            "temperature": self.temperature,
            "loss": self.loss if isinstance(self.loss, str) else repr(self.loss),
            "seed": self.seed,
            "include": self.include,
            "exclude": self.exclude,
            "masked_data_scores": self.masked_data_scores,
            "shuffle_masks": self.shuffle_masks,
        }

    def _state_key_fields(self) -> dict[str, Any]:
        return {"target": self.target, "method": self.method}

    def compute_masks(
        self, pl_module: pl.LightningModule, batch: Any, loss_fn: LossFn, example_input: Tensor | None, progress: bool
    ) -> PruningResult:
        """Run the pruning and return its result (the default steps a session, asking :meth:`round_weights`).

        Args:
            pl_module: the module, on the Trainer's device; it must not be modified.
            batch: the scoring batch on that device, or ``None`` for data-free scorers.
            loss_fn: the resolved ``loss_fn(model, batch)``.
            example_input: an input tensor ``(B, ...)`` for the input shape, if known.
            progress: whether to show a progress bar (already ``False`` off rank zero).
        """
        pruner = self.build_pruner(loss_fn, progress=False)
        session = pruner.start(pl_module, batch, self.target, example_input=example_input)
        bar = None
        if progress:
            bar = tqdm(total=len(session.schedule), desc=f"{self.method} → {self.target:g}", unit="round")
        try:
            while not session.done:
                record = session.step(self.round_weights(session))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(sparsity=f"{record.sparsity:.4f}", refresh=False)
                self.on_round(record, session)
        finally:
            if bar is not None:
                bar.close()
        return session.result()

    # -- public state ---------------------------------------------------------------------------------------------
    @property
    def masks(self) -> Masks | None:
        """``{parameter name: bool mask}`` (``True`` = kept) once pruned or restored, else ``None``."""
        return self._masks

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(**self._state_key_fields())

    @override
    def state_dict(self) -> dict[str, Any]:
        if self._masks is None:
            return {}
        return {"version": 1, "masks": pack_masks(self._masks), "summary": dict(self.summary)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        packed = state_dict.get("masks")
        if not packed:
            return
        self._masks = unpack_masks(packed)
        self.summary = dict(state_dict.get("summary", {}))
        self._restored = True
        if self._enforcer is not None:  # restored after setup (DeepSpeed/FSDP): re-install the restored masks
            self._enforcer.detach()
            self._enforcer = None

    # -- hooks ----------------------------------------------------------------------------------------------------
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.ckpt_path is not None and trainer.strategy.restore_checkpoint_after_setup and self._masks is None:
            return  # this callback's state is restored after on_fit_start: decide in on_train_start
        self._setup(trainer, pl_module)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enforcer is None:
            self._setup(trainer, pl_module)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enforcer is not None and not self._enforcer.attached_to(trainer.optimizers):
            self._enforcer.attach(trainer.optimizers)  # optimizers were re-created (e.g. by another callback)
            self._enforcer.apply()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._enforcer is not None:
            self._enforcer.detach()
            self._enforcer = None

    # -- orchestration --------------------------------------------------------------------------------------------
    def _setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._masks is None:
            self._prune(trainer, pl_module)
        else:
            self._check_restored(pl_module)
            if self._restored:
                rank_zero_info(f"{type(self).__name__}: masks restored from the checkpoint; not pruning again.")
        assert self._masks is not None
        self._masks = {n: m.to(pl_module.get_parameter(n).device) for n, m in self._masks.items()}
        self._enforcer = MaskEnforcer(pl_module, self._masks)
        self._enforcer.apply()
        self._enforcer.attach(trainer.optimizers)

    def _check_restored(self, pl_module: pl.LightningModule) -> None:
        assert self._masks is not None
        params = dict(pl_module.named_parameters())
        for name, mask in self._masks.items():
            if name not in params:
                raise ValueError(
                    f"The restored pruning masks name layer {name!r}, which {type(pl_module).__name__} does not have. "
                    "Resume with the model the checkpoint was made from."
                )
            if tuple(mask.shape) != tuple(params[name].shape):
                raise ValueError(
                    f"The restored pruning mask of layer {name!r} has shape {tuple(mask.shape)}, but the model's "
                    f"parameter has shape {tuple(params[name].shape)}. Resume with the model the checkpoint was "
                    "made from."
                )

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = prunable_parameters(pl_module, self.include, self.exclude)  # clear error if nothing is prunable
        device = next(iter(params.values())).device
        probe = self.build_pruner(ClassificationLoss(self.temperature), progress=False)
        loader = self._resolve_data(trainer, pl_module)
        first = self._first_batch(loader) if loader is not None else None
        example_input = self._example_input(pl_module, first)
        batch: Any = None
        loss_fn: LossFn = ClassificationLoss(self.temperature)
        if probe.needs_data:
            if loader is None:
                raise ValueError(
                    f"Method {self.method!r} scores with data, but no training data was found: give `fit` a "
                    "datamodule or train dataloader, or pass `dataloader=` to the callback, or choose a data-free "
                    "method ('synflow', 'magnitude', 'random')."
                )
            loss_fn = self.resolve_loss(pl_module, first)
            if _is_xy(first):
                batch = balanced_batch(loader, self.per_class, self.num_classes, self.seed)
            else:
                batch = first
            batch = _to_device(batch, device)
        if example_input is not None:
            example_input = example_input.to(device)
        show = self.verbose and trainer.is_global_zero and trainer.progress_bar_callback is not None
        with muted_logging(pl_module):
            result = self.compute_masks(pl_module, batch, loss_fn, example_input, show)
        masks = result.masks
        if self.shuffle_masks:
            masks = shuffle_masks(masks, seed=self.seed)
        # every rank computed the same; rank 0's masks are the ones used everywhere (bit-identical by construction)
        payload: dict[str, Any] = {"masks": pack_masks(masks), "history": [r.to_dict() for r in result.history],
                   "seconds": result.seconds}
        payload = trainer.strategy.broadcast(payload, src=0)
        masks = {n: m.to(device) for n, m in unpack_masks(payload["masks"]).items()}
        result = PruningResult(
            masks=masks, target=result.target, method=result.method,
            history=[RoundRecord(**r) for r in payload["history"]], seconds=float(payload["seconds"]),
        )
        self.result = result
        self._masks = masks
        effective = self._effective(pl_module, masks, example_input)
        extra = {"shuffled": self.shuffle_masks, "loss": repr(loss_fn) if batch is not None else None}
        self.summary = build_summary(result, masks, effective, {**extra, **self.extra_summary()})
        files = log_summary(trainer, self.summary, self.hparams(), figure=self.log_figure)
        if files:
            self.summary["figure_files"] = files
        if self.verbose:
            eff = self.summary["effective_sparsity"]
            total, kept = self.summary["total_weights"], self.summary["kept_weights"]
            rank_zero_info(
                f"{type(self).__name__}: {self.method} pruned {total - kept}/{total} weights "
                f"(nominal sparsity {self.summary['nominal_sparsity']:.6f}, "
                f"effective {'n/a' if eff is None else f'{eff:.6f}'}) in {result.seconds:.2f}s."
            )

    def _effective(self, pl_module: nn.Module, masks: Masks, example_input: Tensor | None) -> EffectiveSparsity | None:
        if example_input is None or not example_input.is_floating_point():
            rank_zero_warn(
                f"{type(self).__name__}: effective sparsity needs a floating-point example input (from the data or "
                "the module's `example_input_array`); it is not reported."
            )
            return None
        try:
            return effective_sparsity(pl_module, masks, example_input)
        except (RuntimeError, TypeError, ValueError) as err:
            rank_zero_warn(f"{type(self).__name__}: effective sparsity could not be computed ({err}); not reported.")
            return None

    def _resolve_data(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any:
        if self.dataloader is not None:
            return self.dataloader
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            return _first_loader(datamodule.train_dataloader())
        source = getattr(trainer.fit_loop, "_data_source", None)
        if source is not None and source.is_defined():
            return _first_loader(source.dataloader())
        return None

    def _first_batch(self, loader: Any) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if isinstance(loader, Dataset) and not isinstance(loader, DataLoader):
                loader = DataLoader(loader, batch_size=max(self.per_class, 2))
            try:
                return next(iter(loader))
            except StopIteration:
                raise ValueError("The training data given for pruning is empty.") from None

    @staticmethod
    def _example_input(pl_module: pl.LightningModule, first: Any) -> Tensor | None:
        if first is not None:
            try:
                x = batch_inputs(first)
            except TypeError:
                x = None
            if isinstance(x, Tensor):
                return x
        example = getattr(pl_module, "example_input_array", None)
        return example if isinstance(example, Tensor) else None

    def resolve_loss(self, pl_module: pl.LightningModule, batch: Any) -> LossFn:
        """The ``loss_fn(model, batch)`` that ``loss`` stands for, checked against a sample batch.

        Raises:
            ValueError: ``loss="classification"`` on data without integer labels; ``"training_step"`` (or
                ``"auto"`` falling back to it) with manual optimization, whose ``training_step`` steps optimizers.
        """
        if callable(self.loss):
            return self.loss
        if self.loss == "classification":
            if batch_labels(batch) is None:
                raise ValueError(
                    "loss='classification' needs (x, y) batches with integer labels y of shape (B,), but the training "
                    f"data gives {type(batch).__name__} batches without them. Use loss='training_step', a callable "
                    "loss, or a data-free method ('synflow', 'magnitude', 'random')."
                )
            return ClassificationLoss(self.temperature)
        if self.loss == "auto" and _is_xy(batch) and self._returns_logits(pl_module, batch):
            return ClassificationLoss(self.temperature)
        if not pl_module.automatic_optimization:
            raise ValueError(
                f"loss={self.loss!r} would score with `training_step`, but {type(pl_module).__name__} uses manual "
                "optimization (its training_step steps the optimizers). Pass `loss=` a callable "
                "`loss_fn(model, batch)`, or give (x, y) data with a logits-returning forward."
            )
        return TrainingStepLoss()

    @staticmethod
    def _returns_logits(pl_module: pl.LightningModule, batch: Any) -> bool:
        x, y = batch_inputs(batch), batch_labels(batch)
        assert y is not None
        device = next(pl_module.parameters()).device
        try:
            with torch.no_grad(), preserved_modes(pl_module, False), muted_logging(pl_module):
                out = pl_module(_to_device(x, device))
        except Exception:
            return False
        return (
            isinstance(out, Tensor)
            and out.ndim == 2
            and out.shape[0] == y.shape[0]
            and out.is_floating_point()
            and out.shape[1] > int(y.max())
        )


def _to_device(batch: Any, device: torch.device) -> Any:
    return move_to_device(batch, device)
