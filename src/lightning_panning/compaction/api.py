""":func:`compact`: the smallest, fastest model that computes exactly what a pruned one computes."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from lightning_panning.compaction.cost import ModelCost, model_cost
from lightning_panning.compaction.reachability import CHANNEL_MODULES, channel_status
from lightning_panning.compaction.sparse import SparseLinear, sparse_is_faster
from lightning_panning.compaction.surgery import (
    SUPPORTED_LAYERS,
    ChannelGroup,
    UnsupportedModelError,
    build_graph,
    check_supported,
    constant_contribution,
    plan_groups,
    remove_channels,
)
from lightning_panning.compaction.timing import seconds_per_call
from lightning_panning.core.masks import apply_masks

__all__ = ["MEMORY_FORMATS", "MODES", "SPARSE", "Compaction", "CompactionError", "compact", "compaction"]

log = logging.getLogger(__name__)

#: What the compacted model is for: ``"inference"`` (everything exact in eval mode) or ``"training"`` (only what is
#: exact while training too).
MODES: tuple[str, ...] = ("inference", "training")
#: Where to use CSR ``Linear`` layers: ``"auto"`` (where timed faster), ``"never"``, ``"always"``.
SPARSE: tuple[str, ...] = ("auto", "never", "always")
#: Memory format of the result: ``"auto"`` (channels-last where timed faster), ``"preserve"``, ``"channels_last"``.
MEMORY_FORMATS: tuple[str, ...] = ("auto", "preserve", "channels_last")
#: ``sparse="auto"`` times only masked ``Linear`` layers at most this dense: dense kernels win well before.
SPARSE_MAX_DENSITY = 0.3
#: Default relative tolerance of the final check, per dtype (scaled by the largest output magnitude).
DEFAULT_RTOL: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.float16: 1e-2,
    torch.bfloat16: 1e-2,
}


class CompactionError(RuntimeError):
    """The compacted model does not reproduce the masked one (a bug or an unsupported structure); nothing returned."""


@dataclass
class Compaction:
    """The result of :func:`compaction`.

    Attributes:
        model: the compacted network (a new module; the original is untouched), in the original's train/eval mode.
        masks: ``{parameter name: bool mask}`` of the compacted model's masked parameters (the sub-masks of the
            kept channels), e.g. to keep training it sparse with
            :class:`~lightning_panning.MaskEnforcer`. Layers turned into :class:`SparseLinear` have no
            entry (their sparsity is their storage).
        mode: ``"inference"`` or ``"training"``.
        groups: one entry per group of coupled channels: its layers, ``channels``, ``dead`` (removed: no path to
            the output), ``constant`` (removed and folded into biases: no path from the input) and ``kept``.
        layers: per ``Conv``/``Linear`` layer: weight shape ``before`` and ``after``, ``kept`` weights, and
            ``sparse`` (whether it became a :class:`SparseLinear`, with the timings that decided it).
        before: cost of the masked model (:class:`ModelCost`; ``nonzero_macs`` is the ideal limit).
        after: cost of the compacted model.
        memory_format: the memory format chosen for the convolutions (``"preserve"`` or ``"channels_last"``) and,
            for ``memory_format="auto"``, the seconds per call of each at ``example_input``'s batch.
        max_abs_error: largest output difference on the check inputs (``nan`` when ``verify=False``).
    """

    model: nn.Module
    masks: dict[str, Tensor]
    mode: str
    groups: list[dict[str, Any]] = field(default_factory=list)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    before: ModelCost | None = None
    after: ModelCost | None = None
    memory_format: dict[str, Any] = field(default_factory=dict)
    max_abs_error: float = float("nan")

    @property
    def removed_channels(self) -> int:
        """Channels removed because they reach no output."""
        return sum(g["dead"] for g in self.groups)

    @property
    def folded_channels(self) -> int:
        """Channels removed because they are constant (their contribution folded into biases)."""
        return sum(g["constant"] for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), without the model and masks."""
        return {
            "mode": self.mode,
            "removed_channels": self.removed_channels,
            "folded_channels": self.folded_channels,
            "groups": self.groups,
            "layers": self.layers,
            "before": None if self.before is None else self.before.to_dict(),
            "after": None if self.after is None else self.after.to_dict(),
            "memory_format": self.memory_format,
            "max_abs_error": self.max_abs_error,
        }


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def _check_arguments(
    model: Any, masks: Any, example_input: Any, mode: Any, sparse: Any, memory_format: Any, align: Any
) -> tuple[dict[str, Tensor], Tensor]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {list(MODES)}, got {mode!r}.")
    if sparse not in SPARSE:
        raise ValueError(f"`sparse` must be one of {list(SPARSE)}, got {sparse!r}.")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"`memory_format` must be one of {list(MEMORY_FORMATS)}, got {memory_format!r}.")
    if isinstance(align, bool) or not isinstance(align, int) or align < 1:
        raise ValueError(f"`align` must be an integer ≥ 1, got {align!r}.")
    if mode == "training" and sparse == "always":
        raise ValueError(
            "`sparse='always'` needs mode='inference': SparseLinear layers are not trainable. Use sparse='auto' or "
            "'never' with mode='training'."
        )
    if not isinstance(example_input, Tensor) or not example_input.is_floating_point() or example_input.ndim < 1:
        raise ValueError(
            "`example_input` must be a floating-point tensor of shape (B, ...), e.g. a batch of inputs; "
            f"got {type(example_input).__name__ if not isinstance(example_input, Tensor) else example_input.dtype}."
        )
    if example_input.shape[0] < 1:
        raise ValueError(f"`example_input` must hold at least one sample, got shape {tuple(example_input.shape)}.")
    if not isinstance(masks, Mapping):
        raise TypeError(f"`masks` must be a mapping {{parameter name: bool tensor}}, got {type(masks).__name__}.")
    params = dict(model.named_parameters())
    if not params:
        raise ValueError(f"`model` ({type(model).__name__}) has no parameters to compact.")
    owners = {
        f"{mn}.{pn}" if mn else pn: m for mn, m in model.named_modules() for pn, _ in m.named_parameters(recurse=False)
    }
    unknown = [n for n in masks if n not in params]
    if unknown:
        raise ValueError(
            f"`masks` names parameters that {type(model).__name__} does not have: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}. Masks must be keyed by qualified parameter names such as "
            f"{list(params)[:3]}."
        )
    out: dict[str, Tensor] = {}
    for name, mask in masks.items():
        if not isinstance(mask, Tensor):
            raise TypeError(f"`masks[{name!r}]` must be a tensor, got {type(mask).__name__}.")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(
                f"`masks[{name!r}]` has shape {tuple(mask.shape)} but the parameter has shape "
                f"{tuple(params[name].shape)}."
            )
        if mask.dtype != torch.bool:
            if bool(((mask != 0) & (mask != 1)).any()):
                raise ValueError(f"`masks[{name!r}]` must be boolean (or hold only 0 and 1), got dtype {mask.dtype}.")
            mask = mask != 0
        if type(owners[name]) not in SUPPORTED_LAYERS:
            raise ValueError(
                f"`masks[{name!r}]` masks a parameter of {type(owners[name]).__name__}; compact() supports masks on "
                "Conv1d/2d/3d, Linear and BatchNorm parameters."
            )
        out[name] = mask.to(params[name].device)
    for name, p in params.items():
        if bool(torch.isnan(p).any()):
            raise ValueError(f"`model` parameter {name!r} holds NaN values; compaction needs finite weights.")
    if mode == "inference" and model.training:
        stateful = [n for n, m in model.named_modules() if isinstance(m, (_BatchNorm, _DropoutNd)) and m.training]
        if stateful:
            raise ValueError(
                f"`model` is in training mode and has layers whose output depends on it ({stateful[:3]}): "
                "mode='inference' compacts the eval-mode network (BatchNorm running statistics folded into "
                "constants). Call model.eval() first, or pass mode='training' to remove only the units with no "
                "path to the output, which is exact in training too."
            )
    return out, example_input


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _fold_constants(model: nn.Module, plans: list[ChannelGroup], inputs: Tensor) -> None:
    """Compute each plan's bias increments from the real inputs of its consumers; drop folds that are not constant."""
    wanted = {id(m): m for plan in plans if plan.constant for m, _, _ in plan.consumers}
    if not wanted:
        return
    seen: dict[int, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        seen[id(module)] = args[0].detach()

    handles = [m.register_forward_pre_hook(hook) for m in wanted.values()]
    try:
        with _eval(model):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    for plan in plans:
        if not plan.constant:
            continue
        constant = set(plan.constant)
        folds: dict[nn.Module, Tensor] = {}
        for consumer, idxs, roots in plan.consumers:
            channels = [i for i, r in zip(idxs, roots, strict=True) if r in constant]
            if not channels:
                continue
            increment = constant_contribution(consumer, seen[id(consumer)], channels)
            if increment is None:
                log.info("compact: constant channels of %s stay (their contribution is not uniform)", plan.layers[0][0])
                plan.constant = []
                break
            folds[consumer] = folds[consumer] + increment if consumer in folds else increment
        else:
            plan.folds = folds


@torch.no_grad()
def _apply_folds(model: nn.Module, plans: list[ChannelGroup], masks: dict[str, Tensor]) -> None:
    names = {m: n for n, m in model.named_modules()}
    for plan in plans:
        for consumer, increment in plan.folds.items():
            weight = cast(Tensor, consumer.weight)
            if consumer.bias is None:
                consumer.bias = nn.Parameter(torch.zeros_like(increment), requires_grad=weight.requires_grad)
            bias = cast(Tensor, consumer.bias)
            bias.add_(increment.to(bias.dtype))
            key = f"{names[consumer]}.bias" if names[consumer] else "bias"
            if key in masks:
                masks[key] = masks[key] | (increment != 0)


@torch.no_grad()
def _remove(model: nn.Module, graph: Any, plans: list[ChannelGroup], masks: dict[str, Tensor]) -> dict[str, Tensor]:
    """Remove the planned channels; the masks follow the weights (pruned entries travel through the surgery as NaN)."""
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].masked_fill_(~mask, float("nan"))
    try:
        remove_channels(graph, plans)
    except Exception as err:  # Torch-Pruning met a structure it cannot handle
        raise CompactionError(
            f"Torch-Pruning could not remove the channels of {type(model).__name__} ({err}); this network's structure "
            "is not supported by compact() (please report it)."
        ) from err
    out: dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        if name in masks:
            pruned = torch.isnan(p)
            out[name] = ~pruned
            p.masked_fill_(pruned, 0.0)
        p.requires_grad_(flags.get(name, True))
        p.grad = None
    return out


def _sparsify(
    model: nn.Module, masks: dict[str, Tensor], example_input: Tensor, always: bool
) -> dict[str, dict[str, Any]]:
    """Replace masked ``Linear`` layers by :class:`SparseLinear` where that is faster (or everywhere if ``always``)."""
    candidates: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if type(module) is nn.Linear and key in masks and name:
            density = float(masks[key].float().mean())
            if density < 1.0 and (always or density <= SPARSE_MAX_DENSITY):
                candidates[name] = module
    if not candidates:
        return {}
    rows: dict[str, int] = {}

    def record(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            rows[name] = args[0].numel() // module.in_features

        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in candidates.items()]
    try:
        with _eval(model):
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    decisions: dict[str, dict[str, Any]] = {}
    for name, linear in candidates.items():
        if always:
            chosen, dense_s, sparse_s = True, float("nan"), float("nan")
        else:
            chosen, dense_s, sparse_s = sparse_is_faster(linear, rows.get(name, example_input.shape[0]))
        decisions[name] = {"sparse": chosen, "dense_seconds": dense_s, "sparse_seconds": sparse_s}
        if chosen:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, SparseLinear.from_linear(linear))
            masks.pop(f"{name}.weight", None)
            masks.pop(f"{name}.bias", None)  # the bias is a buffer of the SparseLinear now
    return decisions


def _choose_memory_format(model: nn.Module, example: Tensor, choice: str) -> dict[str, Any]:
    """Convert the convolutions to channels-last if asked, or if ``"auto"`` and a timing finds it faster."""
    convs = [type(m) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if choice == "preserve" or nn.Conv2d not in convs or any(t is not nn.Conv2d for t in convs):
        return {"chosen": "preserve"}
    if choice == "channels_last":
        model.to(memory_format=torch.channels_last)
        return {"chosen": "channels_last"}
    with _eval(model):
        as_is = seconds_per_call(lambda: model(example), example.device, budget=0.2, repeats=3)
        model.to(memory_format=torch.channels_last)
        channels_last = seconds_per_call(lambda: model(example), example.device, budget=0.2, repeats=3)
        chosen = channels_last < 0.9 * as_is
        if not chosen:
            model.to(memory_format=torch.contiguous_format)
    return {
        "chosen": "channels_last" if chosen else "preserve",
        "preserve_seconds": as_is,
        "channels_last_seconds": channels_last,
    }


def _verify(model: nn.Module, inputs: Tensor, reference: Tensor, rtol: float | None, atol: float | None) -> float:
    try:
        with _eval(model):
            out = model(inputs)
    except RuntimeError as err:
        raise CompactionError(
            f"The compacted {type(model).__name__} fails on the check inputs ({err}); this network's structure is not "
            "supported by compact() (please report it)."
        ) from err
    if not isinstance(out, Tensor) or out.shape != reference.shape:
        raise CompactionError(
            f"The compacted {type(model).__name__} returns shape {getattr(out, 'shape', None)} instead of "
            f"{tuple(reference.shape)}; this network's structure is not supported by compact() (please report it)."
        )
    rtol = DEFAULT_RTOL.get(reference.dtype, 1e-4) if rtol is None else rtol
    scale = max(1.0, float(reference.abs().max()))
    atol = rtol * scale if atol is None else atol
    error = float((out - reference).abs().max())
    if not error <= atol:  # also catches NaN
        raise CompactionError(
            f"The compacted {type(model).__name__} differs from the masked one by up to {error:.3g} (allowed "
            f"{atol:.3g}); this network's structure is not supported by compact() exactly (please report it)."
        )
    return error


def compaction(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    example_input: Tensor | None = None,
    *,
    mode: Literal["inference", "training"] = "inference",
    sparse: Literal["auto", "never", "always"] = "auto",
    memory_format: Literal["auto", "preserve", "channels_last"] = "auto",
    align: int = 1,
    verify: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
) -> Compaction:
    """Compact a pruned network and report what was removed, folded and made sparse (see :func:`compact`).

    Returns:
        A :class:`Compaction` holding the new model, its masks and the report.
    """
    bool_masks, example = _check_arguments(model, masks, example_input, mode, sparse, memory_format, align)
    device = _device(model)
    example = example.to(device)
    sample_shape = tuple(example.shape[1:])
    working = copy.deepcopy(model)
    apply_masks(working, bool_masks)
    generator = torch.Generator().manual_seed(0)
    check_inputs = torch.randn((2, *sample_shape), generator=generator).to(device=device, dtype=example.dtype)
    with _eval(working):
        reference = working(check_inputs)
    if not isinstance(reference, Tensor):
        raise UnsupportedModelError(
            f"compact() supports models that return one tensor; {type(model).__name__} returned "
            f"{type(reference).__name__}."
        )

    status = channel_status(working, bool_masks, sample_shape, device)
    reused = sorted(n for n, calls in status.calls.items() if calls > 1)
    if reused:
        raise UnsupportedModelError(
            f"compact() needs every Conv/Linear/BatchNorm layer to be called once per forward; {reused[:5]} are "
            "called more than once (shared layers). Nothing was changed."
        )
    names = {m: n for n, m in working.named_modules()}
    graph = build_graph(working, example)
    check_supported(graph, names)
    before = model_cost(working, example, bool_masks)
    shapes = {
        n: tuple(cast(Tensor, m.weight).shape) for n, m in working.named_modules() if isinstance(m, CHANNEL_MODULES)
    }

    plans = plan_groups(graph, status, names, fold_constants=mode == "inference", align=align)
    new_masks = dict(bool_masks)
    if mode == "inference":
        _fold_constants(working, plans, check_inputs)
        _apply_folds(working, plans, new_masks)
    new_masks = _remove(working, graph, plans, new_masks)
    del graph

    decisions: dict[str, dict[str, Any]] = {}
    if mode == "inference" and sparse != "never":
        decisions = _sparsify(working, new_masks, example, always=sparse == "always")
    if mode == "training" and memory_format == "auto":
        memory_format = "preserve"
    layout = _choose_memory_format(working, example, memory_format)
    error = _verify(working, check_inputs, reference, rtol, atol) if verify else float("nan")
    after = model_cost(working, example, new_masks)

    layers: dict[str, dict[str, Any]] = {}
    for name, shape in shapes.items():
        module = working.get_submodule(name) if name else working
        key = f"{name}.weight" if name else "weight"
        after_shape: tuple[int, ...]
        if isinstance(module, SparseLinear):
            after_shape, kept = (module.out_features, module.in_features), module.nnz
        else:
            weight = cast(Tensor, module.weight)
            after_shape = tuple(weight.shape)
            kept = int(new_masks[key].sum()) if key in new_masks else int(torch.count_nonzero(weight))
        layers[name] = {"before": list(shape), "after": list(after_shape), "kept": kept, **decisions.get(name, {})}
    groups = [
        {
            "layers": [n for n, _ in plan.layers],
            "channels": plan.size,
            "dead": len(plan.dead),
            "constant": len(plan.constant),
            "kept": plan.size - len(plan.removed),
        }
        for plan in plans
    ]
    result = Compaction(
        model=working,
        masks=new_masks,
        mode=mode,
        groups=groups,
        layers=layers,
        before=before,
        after=after,
        memory_format=layout,
        max_abs_error=error,
    )
    log.info(
        "compact: %d dead and %d constant channels removed; %d -> %d parameters, %d -> %d MACs per sample",
        result.removed_channels,
        result.folded_channels,
        before.parameters,
        after.parameters,
        before.macs,
        after.macs,
    )
    return result


def compact(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    example_input: Tensor | None = None,
    *,
    mode: Literal["inference", "training"] = "inference",
    sparse: Literal["auto", "never", "always"] = "auto",
    memory_format: Literal["auto", "preserve", "channels_last"] = "auto",
    align: int = 1,
    verify: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
) -> nn.Module:
    """The smallest, fastest model that computes exactly what ``model`` computes under ``masks``.

    A mask at high sparsity leaves whole channels with no path from the input to the output. They are removed with
    Torch-Pruning's dependency graph, which keeps coupled layers consistent (BatchNorm, the ``Linear`` behind a
    ``flatten``, every layer of a residual stream: a channel leaves a stream only if it is removable in all of
    them):

    * **dead channels**, which reach no output (every path crosses a pruned weight): removed. Exact in training
      too: they receive no gradient and change nothing.
    * **constant channels**, which reach the output but depend on no input (a unit whose incoming weights are all
      pruned still outputs ``act(BN(bias))``): removed, their contribution added to the next layers' biases
      (through BatchNorm's running statistics and the activation, computed from the real network). Only in
      ``mode="inference"``, and only where the contribution is the same at every position (a constant map through
      a zero-padded convolution is not, at the borders: such channels stay).
    * then, in ``mode="inference"``, masked ``Linear`` layers become :class:`SparseLinear` (CSR) where a timing on
      this machine at ``example_input``'s batch size finds that faster (``sparse="auto"``). Convolutions stay dense:
      PyTorch has no sparse convolution kernel that beats a dense one at these sizes (an im2col + CSR product was
      ~5x slower than the dense convolution for LeNet5's conv2 at 17% density).
    * finally, ``Conv2d`` networks are put in channels-last memory format where a timing finds that faster
      (``memory_format="auto"``): oneDNN's CPU convolutions and pooling run several times faster on it at these
      sizes. This is a layout change only; it would speed up the uncompacted model too, which the benchmark
      reports separately.

    The result is checked against the masked model on random inputs (``verify``); a structure the surgery cannot
    handle raises instead of returning a wrong model. ``model`` itself is never modified.

    Args:
        model: the network (weights need not be masked yet; the masks are applied to a copy). Supported: networks of
            ``Conv1d/2d/3d`` (``groups=1``), ``Linear``, BatchNorm, ReLU/LeakyReLU, pooling, flatten/view, residual
            additions and ``torch.cat``, each layer called once, returning one tensor (LeNet, VGG, ResNet, MLPs).
        masks: ``{qualified parameter name: bool tensor}`` (``True`` = kept), e.g. from
            :func:`~lightning_panning.prune`.
        example_input: a batch ``(B, ...)`` of inputs: the compacted model is exact for inputs of this per-sample
            shape, and ``sparse="auto"`` times layers at batch ``B``.
        mode: ``"inference"`` (eval-mode model; dead and constant channels removed, sparse layers) or
            ``"training"`` (dead channels only; the result trains exactly like the masked model when its masks are
            kept enforced, e.g. with :class:`~lightning_panning.MaskEnforcer` and the returned
            :attr:`Compaction.masks`).
        sparse: ``"auto"``, ``"never"`` or ``"always"`` (every masked ``Linear``; inference only).
        memory_format: ``"auto"`` (timed; ``"preserve"`` in training mode), ``"preserve"`` or ``"channels_last"``.
        align: keep a multiple of this many channels in every group where possible (the extra channels are
            removable ones left in place, so the result stays exact); dense kernels can be faster at such counts,
            e.g. multiples of 16 with AVX-512. ``1`` keeps exactly the needed channels.
        verify: compare the result with the masked model on random inputs and raise :class:`CompactionError` on a
            mismatch.
        rtol: relative tolerance of that check, scaled by the largest output magnitude (default by dtype:
            ``1e-4`` for float32).
        atol: absolute tolerance overriding ``rtol × max(1, max |output|)``.

    Returns:
        The compacted network (a new module, in ``model``'s train/eval mode). :func:`compaction` also returns its
        masks and a report.

    Raises:
        ValueError: bad arguments (masks that do not match the parameters, a model in training mode with BatchNorm
            or Dropout for ``mode="inference"``, ...).
        UnsupportedModelError: an operation or layer the surgery cannot handle (nothing is changed).
        CompactionError: the result would not reproduce the masked model.
        ImportError: Torch-Pruning is not installed (``pip install 'lightning-panning[compact]'``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
        >>> masks = {"0.weight": torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]).bool(),
        ...          "2.weight": torch.tensor([[1, 0, 1], [0, 0, 1]]).bool()}
        >>> small = compact(net, masks, example_input=torch.randn(8, 4), sparse="never")
        >>> small[0].weight.shape, small[2].weight.shape  # unit 1 reaches no output; unit 2 is a constant
        (torch.Size([1, 4]), torch.Size([2, 1]))
        >>> x = torch.randn(5, 4)
        >>> from lightning_panning import apply_masks
        >>> import copy
        >>> torch.testing.assert_close(small(x), apply_masks(copy.deepcopy(net), masks)(x))
    """
    return compaction(
        model,
        masks,
        example_input,
        mode=mode,
        sparse=sparse,
        memory_format=memory_format,
        align=align,
        verify=verify,
        rtol=rtol,
        atol=atol,
    ).model
