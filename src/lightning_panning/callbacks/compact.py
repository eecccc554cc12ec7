"""Export the compacted network at the end of ``fit``, and optionally train the compacted network itself."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from lightning_panning.callbacks.enforce import EnforcingCallback
from lightning_panning.compaction import MEMORY_FORMATS, SPARSE, Compaction, compaction
from lightning_panning.core.enforce import MaskEnforcer

__all__ = ["CompactionCallback"]


def _fail(argument: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"`{argument}` must be {allowed}, got {value!r}.")


def _first_input(batch: Any) -> Tensor | None:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    return None


class CompactionCallback(EnforcingCallback):
    """Turn the pruned LightningModule into a smaller, faster exact network (:func:`lightning_panning.compact`).

    **Export** (``export=True``): at the end of ``fit`` (rank zero), the trained network is compacted for inference
    (dead channels removed, constant ones folded into biases, CSR ``Linear`` layers where timed faster) and saved
    next to the checkpoints as ``<dirpath>/<filename>.pt`` (the whole module: ``torch.load(path,
    weights_only=False)``) with a ``<filename>.json`` report (removed channels, parameters and MACs before and
    after). The LightningModule itself is not changed by the export.

    **Training the compacted network** (``train_compacted=True``): in ``on_train_start``, after the pruning
    callback has pruned, the channels that reach no output are removed from the module before the first step, the
    optimizers are rebuilt from ``configure_optimizers`` and the remaining masks are enforced after every optimizer
    step. This is exact: a channel with no path to the output influences neither the loss nor, through it, the
    gradient of any other weight, and its own weights receive zero gradient (weight decay or momentum only move
    weights that never reach the output); BatchNorm statistics are per channel, so the others' are unchanged. Only
    channels *dead towards the output* are removed in training; constant channels (no input path) are kept, since
    their biases and BatchNorm shifts still learn. With Dropout the kept units see different random masks than in
    the uncompacted run (the same distribution). Limits: single-device strategies only (DDP wraps the module before
    the masks exist); checkpoints then hold the compacted weights, so resuming with ``ckpt_path`` is refused — use
    the exported model, or train uncompacted to resume.

    Masks come from ``masks=`` or from the pruning callback in the Trainer (any callback with a non-``None``
    ``masks`` attribute, e.g. :class:`~lightning_panning.callbacks.PanningCallback`); the example input from
    ``example_input=``, the module's ``example_input_array`` or the first training batch.

    Args:
        export: compact and save the network at the end of ``fit``.
        train_compacted: remove the dead channels before training and train the smaller network.
        submodule: attribute path of the network inside the LightningModule to compact and export (e.g.
            ``"backbone"``); ``None`` = the LightningModule itself.
        dirpath: where to save; default: the checkpoint callback's directory, else ``trainer.default_root_dir``.
        filename: file stem of the exported model and its report.
        sparse: ``"auto"``, ``"never"`` or ``"always"``: CSR ``Linear`` layers in the export (see
            :func:`~lightning_panning.compact`).
        memory_format: ``"auto"``, ``"preserve"`` or ``"channels_last"`` for the export (see
            :func:`~lightning_panning.compact`).
        align: keep a multiple of this many channels per group where possible (see :func:`~lightning_panning.compact`).
        masks: ``{parameter name of the LightningModule: bool mask}`` instead of the pruning callback's.
        example_input: an input batch ``(B, ...)``; its batch size is the one ``sparse="auto"`` optimises for.
        verbose: log what was removed.

    Example:
        >>> from lightning_panning.callbacks import PanningCallback
        >>> callbacks = [PanningCallback(target=0.99), CompactionCallback(submodule="backbone")]
    """

    def __init__(
        self,
        *,
        export: bool = True,
        train_compacted: bool = False,
        submodule: str | None = None,
        dirpath: str | Path | None = None,
        filename: str = "compact",
        sparse: Literal["auto", "never", "always"] = "auto",
        memory_format: Literal["auto", "preserve", "channels_last"] = "auto",
        align: int = 1,
        masks: Mapping[str, Tensor] | None = None,
        example_input: Tensor | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        for argument, value in (("export", export), ("train_compacted", train_compacted), ("verbose", verbose)):
            if not isinstance(value, bool):
                raise _fail(argument, value, "True or False")
        if not export and not train_compacted:
            raise ValueError("`export` and `train_compacted` are both False: the callback would do nothing.")
        if submodule is not None and (not isinstance(submodule, str) or not submodule):
            raise _fail("submodule", submodule, "None or an attribute path such as 'backbone'")
        if not isinstance(filename, str) or not filename or "/" in filename:
            raise _fail("filename", filename, "a non-empty file stem without '/'")
        if sparse not in SPARSE:
            raise _fail("sparse", sparse, f"one of {list(SPARSE)}")
        if memory_format not in MEMORY_FORMATS:
            raise _fail("memory_format", memory_format, f"one of {list(MEMORY_FORMATS)}")
        if isinstance(align, bool) or not isinstance(align, int) or align < 1:
            raise _fail("align", align, "an integer ≥ 1")
        if masks is not None and not isinstance(masks, Mapping):
            raise _fail("masks", type(masks).__name__, "None or a mapping {parameter name: bool tensor}")
        if example_input is not None and not isinstance(example_input, Tensor):
            raise _fail("example_input", type(example_input).__name__, "None or a tensor (B, ...)")
        self.export = export
        self.train_compacted = train_compacted
        self.submodule = submodule
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.filename = filename
        self.sparse = sparse
        self.memory_format = memory_format
        self.align = align
        self.given_masks = None if masks is None else dict(masks)
        self.example_input = example_input
        self.verbose = verbose

        #: the export's :class:`~lightning_panning.compaction.Compaction` (rank zero), after ``fit``
        self.result: Compaction | None = None
        #: the training compaction's result, when ``train_compacted``
        self.training_result: Compaction | None = None
        #: path of the exported model, after ``fit``
        self.export_path: Path | None = None
        self._masks: dict[str, Tensor] | None = None
        self._enforcer: MaskEnforcer | None = None

    @property
    def masks(self) -> dict[str, Tensor] | None:
        """Masks of the compacted LightningModule while ``train_compacted`` is active (else ``None``)."""
        return self._masks

    # -- sources --------------------------------------------------------------------------------------------------
    def _source_masks(self, trainer: pl.Trainer) -> dict[str, Tensor]:
        if self._masks is not None:
            return self._masks
        if self.given_masks is not None:
            return self.given_masks
        callbacks: list[Callback] = getattr(trainer, "callbacks", [])
        found = [cb for cb in callbacks if cb is not self and isinstance(getattr(cb, "masks", None), Mapping)]
        if len(found) > 1:
            raise ValueError(
                f"CompactionCallback found masks in several callbacks ({[type(cb).__name__ for cb in found]}); "
                "pass `masks=` to choose."
            )
        if not found:
            raise ValueError(
                "CompactionCallback needs pruning masks: put a pruning callback (PanningCallback, RLPanningCallback) "
                "in the Trainer's callbacks, or pass `masks=`."
            )
        masks = getattr(found[0], "masks")  # noqa: B009 - any callback exposing a public `masks` attribute
        return dict(masks)

    def _target(self, pl_module: pl.LightningModule) -> nn.Module:
        if self.submodule is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.submodule)
        except AttributeError:
            raise ValueError(
                f"`submodule={self.submodule!r}`: {type(pl_module).__name__} has no such submodule."
            ) from None

    def _relative(self, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if self.submodule is None:
            return dict(masks)
        prefix = self.submodule + "."
        relative = {n[len(prefix) :]: m for n, m in masks.items() if n.startswith(prefix)}
        if not relative:
            raise ValueError(f"None of the masks names a parameter under `submodule={self.submodule!r}`.")
        return relative

    def _absolute(self, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if self.submodule is None:
            return dict(masks)
        return {f"{self.submodule}.{n}": m for n, m in masks.items()}

    def _example(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Tensor:
        x: Tensor | None = self.example_input
        array = getattr(pl_module, "example_input_array", None)
        if x is None and isinstance(array, Tensor):
            x = array
        if x is None:
            loader = trainer.train_dataloader
            if loader is not None:
                with torch.random.fork_rng(devices=[]):
                    x = _first_input(next(iter(loader)))
            if x is None:
                raise ValueError(
                    "CompactionCallback needs an example input: pass `example_input=`, set the module's "
                    "`example_input_array`, or train on (x, ...) batches of tensors."
                )
        return x.to(pl_module.device)

    # -- training the compacted network ---------------------------------------------------------------------------
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.train_compacted or self._masks is not None:
            return
        if not isinstance(trainer.strategy, SingleDeviceStrategy):
            raise ValueError(
                f"CompactionCallback(train_compacted=True) needs a single-device strategy, got "
                f"{type(trainer.strategy).__name__}: the channels can only be removed once the masks exist, after "
                "the strategy has wrapped the module. Use train_compacted=False (the export still works)."
            )
        if trainer.ckpt_path is not None:
            raise ValueError(
                "CompactionCallback(train_compacted=True) cannot resume from a checkpoint (`ckpt_path` given): the "
                "checkpoint holds compacted weights that the freshly built model cannot load."
            )
        target = self._target(pl_module)
        masks = self._relative(self._source_masks(trainer))
        example = self._example(trainer, pl_module)
        result = compaction(target, masks, example, mode="training", sparse="never")
        self._transplant(target, result.model)
        trainer.strategy.setup_optimizers(trainer)
        self._masks = self._absolute(result.masks)
        self._enforcer = MaskEnforcer(pl_module, self._masks)
        self._enforcer.apply()
        self._enforcer.attach(trainer.optimizers)
        self.training_result = result
        if self.verbose:
            assert result.before is not None and result.after is not None
            rank_zero_info(
                f"CompactionCallback: training the compacted network: {result.removed_channels} dead channels "
                f"removed, {result.before.parameters} -> {result.after.parameters} parameters, "
                f"{result.before.macs} -> {result.after.macs} MACs per sample."
            )

    @staticmethod
    def _transplant(live: nn.Module, compacted: nn.Module) -> None:
        """Put the compacted copy's changed layers into the live module (unchanged layers keep their parameters)."""
        live_modules = dict(live.named_modules())
        for name, module in compacted.named_modules():
            old = live_modules.get(name)
            if old is None or not name or next(module.children(), None) is not None:
                continue
            shapes_new = [t.shape for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))]
            shapes_old = [t.shape for t in (*old.parameters(recurse=False), *old.buffers(recurse=False))]
            if shapes_new != shapes_old:
                parent, _, child = name.rpartition(".")
                setattr(live.get_submodule(parent) if parent else live, child, module)

    # -- export ---------------------------------------------------------------------------------------------------
    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.export or not trainer.is_global_zero:
            return
        target = self._target(pl_module)
        masks = self._relative(self._source_masks(trainer))
        example = self._example(trainer, pl_module)
        modes = [(m, m.training) for m in target.modules()]
        try:
            target.eval()
            result = compaction(
                target,
                masks,
                example,
                mode="inference",
                sparse=self.sparse,
                memory_format=self.memory_format,
                align=self.align,
            )
        finally:
            for m, mode in modes:
                m.training = mode
        directory = self.dirpath
        if directory is None:
            checkpoint = trainer.checkpoint_callback
            dirpath = getattr(checkpoint, "dirpath", None)
            directory = Path(dirpath) if dirpath else Path(trainer.default_root_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.filename}.pt"
        torch.save(copy.deepcopy(result.model).cpu(), path)
        report = {"masks_from": "given" if self.given_masks is not None else "callbacks", **result.to_dict()}
        (directory / f"{self.filename}.json").write_text(json.dumps(report, indent=2, default=float))
        self.result = result
        self.export_path = path
        assert result.before is not None and result.after is not None
        for logger in trainer.loggers:
            logger.log_metrics(
                {
                    "compact/parameters": float(result.after.parameters),
                    "compact/macs": float(result.after.macs),
                    "compact/mac_ratio": result.before.macs / max(result.after.macs, 1),
                },
                step=trainer.global_step,
            )
        if self.verbose:
            rank_zero_info(
                f"CompactionCallback: exported {path} ({result.removed_channels} dead and {result.folded_channels} "
                f"constant channels removed; {result.before.macs} -> {result.after.macs} MACs per sample, "
                f"ideal {result.before.nonzero_macs})."
            )
