"""What every prune-before-training callback shares: the Lightning side of pruning (data, loss, DDP, state, logs)."""

from __future__ import annotations

import inspect
import weakref
from abc import ABC
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_panning.callbacks.data import example_input, find_train_data, unsharded
from lightning_panning.callbacks.enforce import EnforcingCallback
from lightning_panning.callbacks.loss import LOSSES, TrainingStepLoss, muted_logging, resolve_loss
from lightning_panning.callbacks.reporting import (
    build_summary,
    log_summary,
    measure_effective_sparsity,
    measure_output_spread,
    summary_line,
)
from lightning_panning.callbacks.strategies import (
    check_new_parameters,
    check_strategy,
    check_whole_before_sharding,
    prunes_before_sharding,
    sharded_masks,
)
from lightning_panning.core.batch import LossFn
from lightning_panning.core.enforce import MaskEnforcer
from lightning_panning.core.masks import Masks, apply_masks, pack_masks, unpack_masks, untrainable_reason
from lightning_panning.core.methods import get_pruner
from lightning_panning.core.params import selection_report
from lightning_panning.core.pruner import Panning, plain
from lightning_panning.core.results import PruningResult, RoundRecord
from lightning_panning.core.schedules import validate_target
from lightning_panning.core.session import PanningSession

__all__ = [
    "LOSSES", "BasePruningCallback", "TrainingStepLoss", "callback_pruner", "muted_logging", "scoring_process_group",
]

#: ``Panning`` arguments that a callback sets itself: the method name, the progress bar (``verbose``) and the loss.
RESERVED_OPTIONS = ("name", "progress", "loss_fn")
#: Settings that do not change the masks (left out of the resume check).
_NOT_MASK_SETTINGS = ("progress", "track_effective")


def callback_pruner(
    method: str | Panning, options: Mapping[str, Any] | None = None, **settings: Any
) -> Panning:
    """The pruner of a callback: :func:`~lightning_panning.core.methods.get_pruner` with the callback's arguments.

    ``settings`` (the callback's typed keyword arguments; ``None`` = not given) override ``options`` (any other
    :class:`Panning` argument), which override the method's preset. Every error names the callback argument.

    Args:
        method: a method name or a configured :class:`Panning`.
        options: ``Panning`` arguments, e.g. ``{"rounds": 20, "weights": {"snip": 1.0}}``.
        **settings: further ``Panning`` arguments the callback sets (typed keyword arguments, name, progress).
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"`options` must be None or a dict of lightning_panning.Panning arguments, got {options!r}.")
    reserved = sorted(set(options) & set(RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"`options` may not set {reserved}: the callback sets `name` from the method, the progress bar from "
            "`verbose` and the loss from `loss=`."
        )
    allowed = set(inspect.signature(Panning).parameters)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"`options` has unknown keys {unknown}; allowed: {sorted(allowed - set(RESERVED_OPTIONS))} (the "
            "arguments of lightning_panning.Panning)."
        )
    if not isinstance(method, (str, Panning)):
        raise ValueError(f"`method` must be a method name or a lightning_panning.Panning, got {method!r}.")
    given = {k: v for k, v in settings.items() if v is not None}
    try:
        return get_pruner(method, **{**options, **given})
    except (TypeError, ValueError) as err:
        raise ValueError(f"Invalid pruning settings (`options` or arguments): {err}") from None


#: Floating-point dtypes that a module is scored in float32 for (``precision="bf16-true"`` / ``"16-true"``).
HALF_DTYPES = (torch.float16, torch.bfloat16)


@contextmanager
def float32_scoring(module: nn.Module) -> Iterator[bool]:
    """Hold ``module``'s float16/bfloat16 parameters and buffers in float32 inside the block, then cast them back.

    Scoring a module held in half precision (``Trainer(precision="bf16-true")`` or ``"16-true"``) in its own dtype
    would rank bfloat16 scores (8 significant bits: ties everywhere), and it fails on the float32 batches the data
    gives (the Trainer converts batches only for its own steps). Inside the block each half-precision tensor's data
    is its exact float32 value (the same ``nn.Parameter`` objects, so optimizers keep them); on exit it is cast
    back, which is exact, so the module is left bit for bit as found. Peak memory while pruning is that of the
    float32 module.

    Yields:
        Whether anything was upcast (then give the scorers float32 data: :func:`float32_batch`).

    Example:
        >>> net = torch.nn.Linear(2, 2).to(torch.bfloat16)
        >>> with float32_scoring(net) as upcast:
        ...     upcast, net.weight.dtype
        (True, torch.float32)
        >>> net.weight.dtype
        torch.bfloat16
    """
    held = [(t, t.dtype) for t in (*module.parameters(), *module.buffers()) if t.dtype in HALF_DTYPES]
    try:
        for tensor, _ in held:
            tensor.data = tensor.data.float()
        yield bool(held)
    finally:
        for tensor, dtype in held:
            tensor.data = tensor.data.to(dtype)


def float32_batch(batch: Any) -> Any:
    """``batch`` with its float16/bfloat16 tensors in float32 (other tensors and values unchanged)."""
    if isinstance(batch, Tensor):
        return batch.float() if batch.dtype in HALF_DTYPES else batch
    if isinstance(batch, Mapping):
        return type(batch)({k: float32_batch(v) for k, v in batch.items()})  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(float32_batch(v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(float32_batch(v) for v in batch)
    return batch


def scoring_process_group(trainer: pl.Trainer) -> Any:
    """The process group through which the ranks of ``trainer`` share the scoring work, or ``None`` for one process.

    Under a strategy with a ``torch.distributed`` process group (DDP, DDP-spawn, multi-node) every rank scores its
    own chunks of the same scoring set and the sums are all-reduced over the group
    (:mod:`~lightning_panning.core.distributed`).

    Raises:
        ValueError: for several processes without a ``torch.distributed`` process group (naming the strategy).
    """
    if trainer.world_size == 1:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            f"The {type(trainer.strategy).__name__} runs {trainer.world_size} processes without a torch.distributed "
            "process group, which data-parallel pruning reduces its scores through; it is not supported. Use a "
            "strategy with one (strategy='ddp' or 'ddp_spawn'), or a single device."
        )
    return dist.group.WORLD


class MetaDeviceError(ValueError):
    """The module is on the meta device (raised at ``setup``, before the strategy tries to copy it)."""


class BasePruningCallback(EnforcingCallback, ABC):
    """Prune a LightningModule once before training and keep it sparse through training, checkpoints and resume.

    The engine and every one of its settings is the :class:`~lightning_panning.core.Panning` given to the
    constructor; this class adds only what is Lightning's:

    1. **When.** In :meth:`on_fit_start`: after the checkpoint's weights and this callback's state are restored and
       after the strategy has moved the module to its device, wrapped it (DDP) and created the optimizers, before
       the first optimizer step. Under ``ModelParallelStrategy`` (FSDP2), which shards the model in
       ``configure_model`` and restores checkpoints only after ``on_fit_start``, the whole model is pruned in
       :meth:`setup` instead and the masks (the checkpoint's, on resume) are installed in :meth:`on_train_start`.
    2. **Data.** The callback's ``dataloader`` if given, else the datamodule's, else the ``train_dataloaders`` given
       to ``fit``, else the module's ``train_dataloader()`` hook. The pruner builds the scoring batch from it
       (:func:`~lightning_panning.core.batch.scoring_batch`: class-balanced when labelled, seeded). Data-free scorers
       take only the input shape (or ``example_input_array``).
    3. **Loss.** :func:`~lightning_panning.callbacks.loss.resolve_loss`: ``"classification"``, ``"training_step"``
       (the module's own loss; its ``self.log`` calls are muted), a callable ``loss_fn(model, batch)``, or
       ``"auto"``.
    4. **DDP.** The ranks share the scoring work (:func:`scoring_process_group`): each draws the same scoring set,
       scores its own chunks, and the sums are all-reduced, so every rank computes the same masks with ``1/N`` of
       the data work; an all-gathered hash verifies that they are bit-identical (a mismatch is an error naming the
       ranks). The summary records the world size and each rank's share and seconds.
    5. **Sparse training.** :class:`~lightning_panning.callbacks.enforce.MaskEnforcer` re-zeroes the pruned weights
       after every optimizer step (no forward hooks), so checkpoints load into the plain model with ``strict=True``.
    6. **State.** :meth:`state_dict` holds the packed masks (1 bit per weight), the summary and the settings that
       made them. Resuming re-installs the masks and never prunes again; resuming with settings that would make
       other masks is an error that names them. A callback reused for another ``fit`` prunes the new model (and
       keeps its masks when it is the same model, continuing its training).
    7. **Observability.** A rank-zero tqdm bar over the rounds (off with ``verbose=False`` or
       ``Trainer(enable_progress_bar=False)``); the summary and density figure go to every logger. Masks that may
       not train (effective sparsity far above the target, a layer without an effective weight) are flagged once
       with what to try (:func:`~lightning_panning.core.masks.untrainable_reason`, ``summary["untrainable"]``).
    8. **Checks at the door.** At ``setup``: one pruning callback per Trainer, a strategy that keeps whole
       parameters on each device (FSDP, model parallel and DeepSpeed are refused:
       :mod:`~lightning_panning.callbacks.strategies`), no tensor on the ``meta`` device;
       before pruning: something to train (not every parameter frozen). A module held in float16/bfloat16
       (``precision="bf16-true"``/``"16-true"``) is scored as its exact float32 twin (:func:`float32_scoring`).

    **Subclassing.** Pass the configured pruner to ``__init__`` (each round's ``{scorer: p_k}`` comes from its
    :class:`~lightning_panning.core.weights.WeightSchedule`, which sees the live session), or override
    :meth:`compute_masks` entirely; :meth:`on_round` is called after every round and :meth:`extra_summary` adds
    entries to the summary. Settings that change the masks belong in
    :meth:`settings`.

    Args:
        target: final sparsity in (0, 1).
        pruner: the engine, with all its settings.
        loss: ``"auto"``, ``"classification"``, ``"training_step"`` or a callable ``loss_fn(model, batch) -> scalar``.
        dataloader: data for scoring (a DataLoader or Dataset) instead of the one ``fit`` receives.
        shuffle_masks: ``True`` sets the pruner's ``shuffle_masks`` (the kept positions shuffled within each layer
            after pruning: the layer-wise sanity check; ``method="panning_shuffled"`` is Panning with it); ``False``
            keeps the pruner's own setting.
        log_figure: log the per-layer density figure.
        verbose: show the progress bar and an info line.
    """

    def __init__(
        self,
        target: float,
        pruner: Panning,
        *,
        loss: str | LossFn = "auto",
        dataloader: DataLoader | Dataset | None = None,
        shuffle_masks: bool = False,
        log_figure: bool = True,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        try:
            self.target = validate_target(target)
        except TypeError as err:
            raise ValueError(str(err)) from None
        if not isinstance(pruner, Panning):
            raise ValueError(f"`pruner` must be a lightning_panning.Panning, got {type(pruner).__name__}.")
        if not isinstance(shuffle_masks, bool):
            raise ValueError(f"`shuffle_masks` must be True or False, got {shuffle_masks!r}.")
        self.pruner = pruner.replace(shuffle_masks=True) if shuffle_masks and not pruner.shuffle_masks else pruner
        if not (callable(loss) or loss in LOSSES):
            raise ValueError(
                f"`loss` must be one of {list(LOSSES)} or a callable loss_fn(model, batch) -> scalar tensor, got "
                f"{loss!r}."
            )
        self.loss = loss
        if dataloader is not None and not isinstance(dataloader, (DataLoader, Dataset)):
            raise ValueError(f"`dataloader` must be None, a torch DataLoader or a Dataset, got {dataloader!r}.")
        self.dataloader = dataloader
        for name, value in (("log_figure", log_figure), ("verbose", verbose)):
            if not isinstance(value, bool):
                raise ValueError(f"`{name}` must be True or False, got {value!r}.")
        self.log_figure, self.verbose = log_figure, verbose

        self.result: PruningResult | None = None
        self.summary: dict[str, Any] = {}
        self._masks: Masks | None = None
        self._made_with: dict[str, Any] | None = None  # the settings that made the masks
        self._restored = False
        self._enforcer: MaskEnforcer | None = None
        self._pruned: weakref.ref[nn.Module] | None = None
        self._names_before_sharding: list[str] | None = None  # parameter names when pruned at setup (FSDP2)

    # -- the seam for subclasses ----------------------------------------------------------------------------------
    @property
    def method(self) -> str:
        """Method name (logs, summary, state key)."""
        return self.pruner.name

    @property
    def shuffle_masks(self) -> bool:
        """Whether the masks are shuffled within each layer after pruning (the pruner's ``shuffle_masks``)."""
        return self.pruner.shuffle_masks

    def on_round(self, record: RoundRecord, session: PanningSession) -> None:
        """Called after every pruning round (on every rank)."""

    def extra_summary(self) -> dict[str, Any]:
        """Entries added to :attr:`summary` (plain values)."""
        return {}

    def settings(self) -> dict[str, Any]:
        """Everything that decides the masks, as plain values (saved with them and compared on resume)."""
        pruner = {k: v for k, v in self.pruner.settings().items() if k not in _NOT_MASK_SETTINGS}
        return {"target": self.target, "method": self.method, **pruner, "loss": plain(self.loss)}

    def hparams(self) -> dict[str, Any]:
        """The callback's configuration as plain values (logged with ``log_hyperparams``)."""
        return self.settings()

    def _state_key_fields(self) -> dict[str, Any]:
        return {"target": self.target, "method": self.method}

    def compute_masks(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, pruner: Panning, batch: Any,
        example_input: Any,
    ) -> PruningResult:
        """Run the pruning and return its result (the default runs ``pruner``).

        Args:
            trainer: the trainer.
            pl_module: the module, on the Trainer's device; it must not be modified.
            pruner: :attr:`pruner` with the resolved loss.
            batch: the scoring batch on that device (or ``None`` without data).
            example_input: the call of ``forward`` (a ModelInput) the data-free scorers copy, if known.
        """
        return pruner.prune(
            pl_module, batch, self.target, example_input=example_input, on_round=self.on_round,
            progress=self._show_progress(trainer), process_group=scoring_process_group(trainer),
        )

    def _show_progress(self, trainer: pl.Trainer) -> bool:
        return self.verbose and trainer.is_global_zero and trainer.progress_bar_callback is not None

    def _reset(self) -> None:
        """Forget a previous ``fit``'s masks and results."""
        self.result, self.summary = None, {}
        self._masks, self._made_with, self._restored, self._pruned = None, None, False, None
        self._names_before_sharding = None

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
        return {"version": 2, "masks": pack_masks(self._masks), "summary": dict(self.summary),
                "settings": self._made_with}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        packed = state_dict.get("masks")
        if not packed:
            return
        self._refuse_other_settings(state_dict.get("settings"))
        self._masks = unpack_masks(packed)
        self.summary = dict(state_dict.get("summary", {}))
        self._made_with = state_dict.get("settings")
        self._restored = True
        self.result = None  # any result is of masks made before the restore (pruned at setup: FSDP2)
        if self._enforcer is not None:  # restored after setup (DeepSpeed/FSDP): re-install the restored masks
            self._enforcer.detach()
            self._enforcer = None

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("callbacks") or {}
        if self.state_key in states:
            return  # load_state_dict gets it
        for key, state in states.items():  # masks saved under another key: made with another target/method/policy
            if isinstance(state, Mapping) and state.get("masks") and "summary" in state:
                self._refuse_other_settings(state.get("settings"), key)

    def _refuse_other_settings(self, saved: Mapping[str, Any] | None, key: str | None = None) -> None:
        """Raise if the checkpoint's masks were made with settings other than this callback's (naming them).

        Args:
            saved: the settings saved with the masks (``None`` in checkpoints from before they were saved).
            key: the state key the masks were saved under, when it is not this callback's.
        """
        current = self.settings()
        changed = [
            f"`{k}` is {saved[k]!r} in the checkpoint but {current[k]!r} here"
            for k in current
            if saved is not None and k in saved and saved[k] != current[k]
        ]
        if key is not None and not changed:
            changed = [f"they were saved as {key!r}, this callback is {self.state_key!r}"]
        if changed:
            raise ValueError(
                f"{type(self).__name__}: the checkpoint's pruning masks were made with other settings: "
                f"{'; '.join(changed)}. A resumed run never prunes again: resume with the checkpoint's settings, or "
                "start a new `fit` without `ckpt_path` to prune anew."
            )

    def __getstate__(self) -> dict[str, Any]:
        """The callback's state for pickling (``ddp_spawn``, ``copy.deepcopy``, saving the callback after ``fit``).

        The reference to the pruned model (a weak reference) and the optimizer hooks stay behind: a copy knows the
        masks, the result and the summary, and installs its hooks when it is used in a ``fit``.
        """
        state = self.__dict__.copy()
        state["_pruned"] = None
        state["_enforcer"] = None
        return state

    # -- hooks ----------------------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._refuse_other_pruners(trainer)
        check_strategy(trainer.strategy, type(self).__name__)  # FSDP, model parallel, DeepSpeed: a clear error
        self._refuse_meta_device(trainer, pl_module)
        if self._pruned is not None and self._pruned() is not pl_module:
            self._reset()  # reused for another model: prune that one (a checkpoint restored after this may fill it)
        if prunes_before_sharding(trainer.strategy) and self._masks is None:
            self._prune_before_sharding(trainer, pl_module)

    def _prune_before_sharding(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Prune the whole model now, before ``configure_model`` shards it (ModelParallelStrategy / FSDP2).

        Lightning tells no hook before this one whether a checkpoint will be restored (``trainer.ckpt_path`` is set
        only when it is, after ``on_fit_start`` under this strategy), so a resumed run prunes here too; the
        checkpoint's masks then replace these in :meth:`load_state_dict` and are the ones trained with.
        """
        check_whole_before_sharding(pl_module, trainer.strategy, type(self).__name__)
        self._refuse_frozen(pl_module)
        self._prune(trainer, pl_module, may_defer=False)
        assert self._masks is not None
        apply_masks(pl_module, self._masks)  # sharded with its zeros; on_fit_start installs the sharded masks
        self._names_before_sharding = [n for n, _ in pl_module.named_parameters()]

    def _refuse_other_pruners(self, trainer: pl.Trainer) -> None:
        """Raise if the Trainer holds another pruning callback: each would prune, and neither target would hold."""
        callbacks = trainer.callbacks  # type: ignore[attr-defined]  # public, set in the Trainer's __init__ (untyped)
        pruners = [cb for cb in callbacks if isinstance(cb, BasePruningCallback)]
        if len(pruners) > 1:
            names = ", ".join(f"{type(cb).__name__}(target={cb.target:g}, method={cb.method!r})" for cb in pruners)
            raise ValueError(
                f"The Trainer has {len(pruners)} pruning callbacks: {names}. Each would prune the model before "
                "training (the later ones scoring what the earlier ones left) and each keeps its pruned weights at "
                "zero, so the sparsity would be none of the targets. Give the Trainer one pruning callback."
            )

    def _refuse_meta_device(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Raise if the module holds meta tensors that the strategy would try to copy to its device."""
        if not isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy)) or isinstance(
            trainer.strategy, DeepSpeedStrategy
        ):
            return  # FSDP and model-parallel strategies materialise meta tensors themselves
        meta = [n for n, t in (*pl_module.named_parameters(), *pl_module.named_buffers()) if t.is_meta]
        if meta:
            raise MetaDeviceError(
                f"{type(self).__name__}: {type(pl_module).__name__} has tensors on the meta device "
                f"({', '.join(meta[:3])}{', ...' if len(meta) > 3 else ''}): they hold no values, so there is nothing "
                f"to score, and the {type(trainer.strategy).__name__} cannot copy them to its device ('Cannot copy "
                "out of meta tensor'). Materialise the model before `fit` (e.g. `model.to_empty(device='cpu')`, then "
                "initialise its weights, e.g. with each layer's `reset_parameters()`)."
            )

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, MetaDeviceError):
            # The Trainer's teardown moves the module to the CPU, which fails on meta tensors and would replace this
            # error by "Cannot copy out of meta tensor". That one call is made a no-op, which then removes itself.
            def cpu_once(*args: Any, **kwargs: Any) -> nn.Module:
                pl_module.__dict__.pop("cpu", None)
                return pl_module

            pl_module.__dict__["cpu"] = cpu_once

    def _refuse_frozen(self, pl_module: pl.LightningModule) -> None:
        """Raise if no parameter of the module requires a gradient: ``fit`` would have nothing to train."""
        params = list(pl_module.parameters())
        if params and not any(p.requires_grad for p in params):
            raise ValueError(
                f"{type(self).__name__}: every parameter of {type(pl_module).__name__} has requires_grad=False, so "
                "`fit` has nothing to train (its first backward would fail with 'element 0 of tensors does not "
                "require grad'). Unfreeze what should train before `fit` (e.g. `model.requires_grad_(True)`, or "
                "`requires_grad_(True)` on the layers to fine-tune), or fit without the pruning callback."
            )

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if prunes_before_sharding(trainer.strategy):
            # pruned at setup; a checkpoint may still be restored, and its optimizer-state load takes a step that
            # the hooks would answer with these masks: install the final masks in on_train_start
            return
        if trainer.ckpt_path is not None and trainer.strategy.restore_checkpoint_after_setup and self._masks is None:
            return  # this callback's state is restored after on_fit_start: decide in on_train_start
        self._setup(trainer, pl_module, may_defer=True)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enforcer is None:
            self._setup(trainer, pl_module, may_defer=False)

    # -- orchestration --------------------------------------------------------------------------------------------
    def _setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, may_defer: bool) -> None:
        self._refuse_frozen(pl_module)
        if self._masks is None and prunes_before_sharding(trainer.strategy):
            raise ValueError(
                f"{type(self).__name__}: under {type(trainer.strategy).__name__} the model is pruned whole at `setup`, "
                f"before it is sharded, or its masks come from the checkpoint; {trainer.ckpt_path!r} has none for "
                f"this callback ({self.state_key!r}). Resume from a checkpoint saved with this callback, or start a "
                "new `fit` without `ckpt_path` to prune anew."
            )
        if self._masks is None:
            if not self._prune(trainer, pl_module, may_defer):
                return  # no data found before the fit loop attaches it: on_train_start prunes
        elif self._restored:
            replaced = " (they replace the ones pruned at setup)" if self._names_before_sharding is not None else ""
            rank_zero_info(f"{type(self).__name__}: masks restored from the checkpoint{replaced}; not pruning again.")
        assert self._masks is not None
        if self._names_before_sharding is not None:
            check_new_parameters(pl_module, self._names_before_sharding, type(self).__name__)
        try:
            self._enforcer = MaskEnforcer(pl_module, sharded_masks(pl_module, self._masks))
        except ValueError as err:
            raise ValueError(
                f"{type(self).__name__}: the pruning masks do not fit {type(pl_module).__name__}: {err} Resume with "
                "the model the checkpoint was made from."
            ) from None
        self._masks = {n: m.to(pl_module.get_parameter(n).device) for n, m in self._masks.items()}
        self._enforcer.apply()
        self._enforcer.attach(trainer.optimizers)
        self._pruned = weakref.ref(pl_module)

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, may_defer: bool) -> bool:
        params = self.pruner.parameters(pl_module)  # nothing prunable, meta device: clear errors before any work
        device = next(iter(params.values())).device
        data = unsharded(self.dataloader if self.dataloader is not None else find_train_data(trainer))
        if data is None and self.pruner.needs_data:
            if may_defer:
                return False  # on_train_start looks again, in the public `trainer.train_dataloader`
            raise ValueError(
                f"Method {self.method!r} scores with data, but no training data was found: give `fit` a "
                "datamodule or train dataloader, or pass `dataloader=` to the callback, or choose a data-free "
                "method ('synflow', 'magnitude', 'random')."
            )
        batch = self.pruner.scoring_batch(data, device, require_labels=False)
        with float32_scoring(pl_module) as upcast:  # bf16-true / 16-true: score the exact float32 twin
            if upcast:
                batch = float32_batch(batch)
            loss_fn = self.resolve_loss(pl_module, batch) if self.pruner.needs_data else None
            pruner = self.pruner if loss_fn is None else self.pruner.replace(loss_fn=loss_fn)
            example = example_input(batch, pl_module)
            example = None if example is None else example.to(device)
            with muted_logging(pl_module):
                result = self.compute_masks(trainer, pl_module, pruner, batch, example)
            self.result = result
            self._masks, self._made_with = self.result.masks, self.settings()
            self._report(trainer, pl_module, example, loss_fn)
        return True

    def _report(self, trainer: pl.Trainer, pl_module: nn.Module, example: Any, loss_fn: LossFn | None) -> None:
        assert self.result is not None and self._masks is not None
        effective = measure_effective_sparsity(pl_module, self._masks, example, type(self).__name__)
        spread = measure_output_spread(pl_module, self._masks, example, type(self).__name__)
        selection = selection_report(pl_module, self.pruner.parameters(pl_module), self.pruner.exclude)
        extra = {
            "shuffled": self.shuffle_masks,
            "loss": repr(loss_fn) if loss_fn is not None else None,
            "left_dense": dict(selection.dense),
            "output_spread_dense": None if spread is None else spread[0],
            "output_spread": None if spread is None else spread[1],
        }
        reason = untrainable_reason(pl_module, self._masks, self.target, effective)
        if reason is not None:  # once per fit: the masks are made once
            rank_zero_warn(f"{type(self).__name__}: these masks may not train: {reason}")
        extra["untrainable"] = reason
        self.summary = build_summary(self.result, self._masks, effective, {**extra, **self.extra_summary()})
        files = log_summary(trainer, self.summary, self.hparams(), figure=self.log_figure)
        if files:
            self.summary["figure_files"] = files
        if self.verbose:
            rank_zero_info(f"{type(self).__name__}: {summary_line(self.summary)} {selection.line}.")

    def resolve_loss(self, pl_module: pl.LightningModule, batch: Any) -> LossFn:
        """The ``loss_fn(model, batch)`` that ``loss`` stands for (see :func:`.loss.resolve_loss`)."""
        return resolve_loss(self.loss, pl_module, batch, self.pruner.temperature)
