"""Graph surgery with Torch-Pruning's dependency graph: coupled channel groups, which channels go, and removing them.

`Torch-Pruning <https://github.com/VainF/Torch-Pruning>`_ traces the network through autograd and groups every set
of channels that must be removed together: a conv's output channels with its BatchNorm and the next layers' input
channels, the ``C·H·W`` inputs of a ``Linear`` behind a ``flatten``, every layer adding into the same residual
stream, the offsets of a ``torch.cat``. This module decides, per group, which of its channels are removable from the
:class:`~lightning_panning.compaction.reachability.ChannelStatus` of the group's producing layers, and asks
Torch-Pruning to remove them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_panning.compaction.reachability import CHANNEL_MODULES, ChannelStatus

__all__ = ["ChannelGroup", "UnsupportedModelError", "build_graph", "check_supported", "plan_groups", "remove_channels"]

#: Autograd functions that may appear between the supported layers: they keep channels apart, map non-negative
#: values to non-negative values, and are positive wherever an input is (what the reachability passes rely on).
SUPPORTED_FUNCTIONS: frozenset[str] = frozenset(
    {
        "ReluBackward0",
        "ReluBackward1",
        "LeakyReluBackward0",
        "LeakyReluBackward1",
        "MaxPool1DWithIndicesBackward0",
        "MaxPool2DWithIndicesBackward0",
        "MaxPool3DWithIndicesBackward0",
        "AvgPool2DBackward0",
        "AvgPool3DBackward0",
        "AdaptiveAvgPool2DBackward0",
        "AdaptiveAvgPool3DBackward0",
        "AdaptiveMaxPool2DBackward0",
        "AdaptiveMaxPool3DBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "SqueezeBackward2",
        "UnsqueezeBackward0",
        "CloneBackward0",
        "ToCopyBackward0",
        "AddmmBackward0",  # inside nn.Linear
        "MmBackward0",  # inside nn.Linear without bias
    }
)

#: Exact layer types the surgery supports (subclasses may change ``forward`` and are refused).
SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    *CHANNEL_MODULES,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)


class UnsupportedModelError(ValueError):
    """The network holds an operation or layer that compaction cannot handle exactly."""


def _torch_pruning() -> Any:
    try:
        import torch_pruning
    except ImportError as err:  # pragma: no cover - exercised only without the optional dependency
        raise ImportError(
            "compact() uses Torch-Pruning's dependency graph for the surgery: "
            "pip install 'lightning-panning[compact]' (or pip install torch-pruning)."
        ) from err
    return torch_pruning


@contextmanager
def _tracing(model: nn.Module) -> Iterator[None]:
    """Gradients on for every parameter (tracing follows autograd), train/eval flags and ``requires_grad`` restored."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _call(model: nn.Module, x: Tensor) -> Any:
    return model(x)


def build_graph(model: nn.Module, example_input: Tensor) -> Any:
    """Torch-Pruning's ``DependencyGraph`` of ``model``, traced on one sample of ``example_input``.

    The input requires grad, so operations applied to the input itself are traced too; the model's train/eval flags
    and ``requires_grad`` flags are restored.
    """
    tp = _torch_pruning()
    x = example_input[:1].detach().clone().requires_grad_(True)
    with _tracing(model):
        return tp.DependencyGraph().build_dependency(model, example_inputs=x, forward_fn=_call, verbose=False)


def _function_supported(grad_fn: Any) -> bool:
    name = grad_fn.name()
    nexts = [f for f, _ in grad_fn.next_functions]
    if name in ("AddBackward0", "CatBackward0"):
        return all(f is not None for f in nexts)  # only tensors that were traced: no constant added or appended
    if name == "TBackward0":  # a Linear weight's transpose, not an activation's
        return all(f is not None and "AccumulateGrad" in f.name() for f in nexts)
    if name == "MeanBackward1":  # global average pooling: a mean over spatial dimensions only
        rank = len(grad_fn._saved_self_sym_sizes)
        dims = [d % rank for d in grad_fn._saved_dim]
        return rank >= 3 and all(d >= 2 for d in dims)
    return name in SUPPORTED_FUNCTIONS


def check_supported(graph: Any, names: Mapping[nn.Module, str]) -> None:
    """Raise :class:`UnsupportedModelError` naming every traced operation or layer compaction cannot handle."""
    tp = _torch_pruning()
    kinds = tp.ops.OPTYPE
    problems: list[str] = []
    for module, node in graph.module2node.items():
        kind = node.type
        if kind in (kinds.RESHAPE, kinds.CONCAT, kinds.OUTPUT):
            continue
        if kind == kinds.ELEMENTWISE:
            if node.grad_fn is not None and not _function_supported(node.grad_fn):
                problems.append(f"operation {node.grad_fn.name()}")
            continue
        name = names.get(module, str(module)) if isinstance(module, nn.Module) else "an unwrapped parameter"
        if type(module) not in SUPPORTED_LAYERS:
            problems.append(f"layer {name!r} ({type(module).__name__})")
        elif isinstance(module, CHANNEL_MODULES[:3]) and getattr(module, "groups", 1) != 1:
            problems.append(f"layer {name!r} (grouped convolution, groups={module.groups})")
    if problems:
        raise UnsupportedModelError(
            "compact() supports networks built from Conv1d/2d/3d (groups=1), Linear, BatchNorm, ReLU/LeakyReLU, "
            "max/average pooling, flatten/view, residual additions and torch.cat; this model also uses "
            f"{sorted(set(problems))}. Nothing was changed."
        )


@dataclass
class ChannelGroup:
    """One set of coupled channels and what compaction does with it.

    Attributes:
        root: the layer whose output channels index the group (Torch-Pruning's root).
        handler: Torch-Pruning's pruning function for the root's output channels.
        layers: qualified names of the ``Conv``/``Linear``/BatchNorm layers coupled in the group, with their role
            (``"out"``: its output channels, ``"in"``: its input channels).
        size: number of channels.
        dead: channels that reach no output (removed; exact in training too).
        constant: channels that do not depend on the input but do reach the output (removed, their constant
            contribution folded into the consumers' biases; inference only).
        folds: ``{consumer layer: (C_out,) bias increment}`` for the constant channels.
        consumers: ``[(consumer layer, its input-channel indices, their group indices)]``.
    """

    root: nn.Module
    handler: Callable[..., Any]
    layers: list[tuple[str, str]]
    size: int
    dead: list[int] = field(default_factory=list)
    constant: list[int] = field(default_factory=list)
    folds: dict[nn.Module, Tensor] = field(default_factory=dict)
    consumers: list[tuple[nn.Module, list[int], list[int]]] = field(default_factory=list)

    @property
    def removed(self) -> list[int]:
        """Group indices removed, sorted."""
        return sorted({*self.dead, *self.constant})


def plan_groups(
    graph: Any, status: ChannelStatus, names: Mapping[nn.Module, str], fold_constants: bool, align: int = 1
) -> list[ChannelGroup]:
    """Decide, for every coupled group, which channels go.

    A channel of a group is *dead* when no producing layer's channel reaches the output, *constant* when none
    depends on the input but one reaches the output. Groups that reach the network output directly (the logits) or
    feed no ``Conv``/``Linear`` are left whole. At least one channel of every group stays, so that no layer ends up
    with zero channels, and each group keeps a multiple of ``align`` channels where it can (dense kernels are much
    faster at some channel counts; the extra channels are removable ones left in place, which is exact).
    """
    tp = _torch_pruning()
    plans: list[ChannelGroup] = []
    for group in graph.get_all_groups(root_module_types=CHANNEL_MODULES):
        items = list(group.items)
        if any(item.dep.target.type == tp.ops.OPTYPE.OUTPUT or _joins_the_input(item.dep.target) for item in items):
            continue
        size = len(items[0].idxs)
        from_input = torch.zeros(size, dtype=torch.long)  # per group channel: producers that depend on the input
        to_output = torch.zeros(size, dtype=torch.long)  # per group channel: producers that reach the output
        layers: list[tuple[str, str]] = []
        consumers: list[tuple[nn.Module, list[int], list[int]]] = []
        for item in items:
            module = item.dep.target.module
            if not isinstance(module, nn.Module) or type(module) not in SUPPORTED_LAYERS:
                continue
            name = names[module]
            is_out = graph.is_out_channel_pruning_fn(item.dep.handler)
            layers.append((name, "out" if is_out else "in"))
            if isinstance(module, _BatchNorm):
                continue
            idxs = torch.as_tensor(item.idxs, dtype=torch.long)
            roots = torch.as_tensor(item.root_idxs, dtype=torch.long)
            if is_out:
                reach_in = status.from_input.get(name)
                reach_out = status.to_output.get(name)
                if reach_in is None or reach_out is None:  # never called: keep everything
                    reach_in = reach_out = torch.ones(int(idxs.max()) + 1, dtype=torch.bool)
                from_input.index_add_(0, roots, reach_in.cpu()[idxs].long())
                to_output.index_add_(0, roots, reach_out.cpu()[idxs].long())
            else:
                consumers.append((module, list(item.idxs), list(item.root_idxs)))
        if not consumers:
            continue
        dead = to_output == 0
        constant = (to_output > 0) & (from_input == 0) if fold_constants else torch.zeros_like(dead)
        removable = dead | constant
        if bool(removable.all()):  # keep one channel so that every layer keeps a channel
            keep = int(torch.nonzero(constant)[0]) if bool(constant.any()) else 0
            dead[keep] = False
            constant[keep] = False
        kept = size - int((dead | constant).sum())
        extra = min(size, -(-kept // align) * align) - kept
        for candidates in (dead, constant):  # leave dead channels in place first: they need no folding
            if extra <= 0:
                break
            back = torch.nonzero(candidates).flatten()[:extra]
            candidates[back] = False
            extra -= back.numel()
        plans.append(
            ChannelGroup(
                root=items[0].dep.target.module,
                handler=items[0].dep.handler,
                layers=layers,
                size=size,
                dead=torch.nonzero(dead).flatten().tolist(),
                constant=torch.nonzero(constant).flatten().tolist(),
                consumers=consumers,
            )
        )
    return plans


def _joins_the_input(node: Any) -> bool:
    """Whether a traced addition or concatenation takes the network's input itself as an operand.

    The input has no producing layer in the graph, so its channels cannot follow a removal: such groups stay whole.
    """
    grad_fn = node.grad_fn
    if grad_fn is None or grad_fn.name() not in ("AddBackward0", "CatBackward0"):
        return False
    return any(f is not None and "AccumulateGrad" in f.name() for f, _ in grad_fn.next_functions)


@torch.no_grad()
def constant_contribution(
    consumer: nn.Module, inputs: Tensor, channels: list[int], rtol: float = 1e-4
) -> Tensor | None:
    """What input ``channels`` add to ``consumer``'s output, if it is one constant per output channel.

    Args:
        consumer: a ``Conv*d`` or ``Linear`` layer (its masked weights).
        inputs: the layer's real inputs ``(B, C_in, ...)`` or ``(B, ..., C_in)`` for a few different samples.
        channels: input channels whose values do not depend on the input.
        rtol: how far (relative to its magnitude) the contribution may vary and still count as constant.

    Returns:
        ``(C_out,)`` tensor, or ``None`` when the contribution varies over the batch or over positions (e.g. a
        constant map through a zero-padded convolution is not constant at the borders): then the channels stay.
    """
    dim = -1 if isinstance(consumer, nn.Linear) else 1
    keep = torch.zeros(inputs.shape[dim], dtype=inputs.dtype, device=inputs.device)
    keep[channels] = 1
    shape = [1] * inputs.ndim
    shape[dim] = -1
    only = inputs * keep.view(shape)
    if isinstance(consumer, nn.Linear):
        out = nn.functional.linear(only, consumer.weight)
    else:
        out = consumer._conv_forward(only, consumer.weight, None)  # type: ignore[operator]
    per_channel = out.movedim(dim, 0).reshape(out.shape[dim], -1)
    spread = per_channel.amax(dim=1) - per_channel.amin(dim=1)
    scale = per_channel.abs().amax(dim=1)
    if bool((spread > rtol * scale + torch.finfo(per_channel.dtype).tiny).any()):
        return None
    return per_channel.mean(dim=1)


@torch.no_grad()
def remove_channels(graph: Any, plans: list[ChannelGroup]) -> None:
    """Remove each plan's channels from every layer of its group, in place, with Torch-Pruning."""
    for plan in plans:
        removed = plan.removed
        if removed:
            graph.get_pruning_group(plan.root, plan.handler, removed).prune(record_history=False)
