"""Which channels of a masked network depend on the input, and which can still change the output.

Two passes over a *probe* (a copy of the network in which every weight is replaced by its 0/1 mask) give, for the
output channels of every ``Conv*d`` / ``Linear`` layer:

* **input-reachable** (pass A): biases 0, BatchNorm reduced to the identity, an all-ones input. Every supported
  operation (sums of non-negative terms, ReLU, max/average pooling, reshapes, concatenation) maps non-negative
  values to non-negative values and is positive wherever one of its inputs is, so a channel is non-zero exactly when
  some chain of kept weights connects it to the input. A channel that is zero here computes the same value for
  every input: it is a constant (biases and BatchNorm shifts only).
* **output-reaching** (pass B): every bias and BatchNorm shift set to 1, so every unit with any source of signal is
  strictly positive and every ReLU passes gradient; ``R = sum(output)`` is differentiated. A channel whose gradient
  is zero here influences no output for any weights consistent with the mask and any input: either every path from
  it crosses a pruned weight, or it has no source at all and is identically zero. Removing it cannot change the
  output, nor the gradient of any other parameter, so it is exact for training too.

Each layer's output is re-binarised (values and gradients), so the passes cannot overflow however deep the network
is. Both passes are conservative: they may keep a channel that could have gone, never the reverse.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["CHANNEL_MODULES", "ChannelStatus", "channel_dim", "channel_status", "per_channel_any"]

#: Layers whose output channels (``weight`` dim 0) can be removed, and whose input channels follow their producer.
CHANNEL_MODULES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def channel_dim(module: nn.Module) -> int:
    """The channel dimension of a layer's input and output tensors: 1 for convolutions, -1 for ``Linear``."""
    return -1 if isinstance(module, nn.Linear) else 1


def per_channel_any(tensor: Tensor, dim: int) -> Tensor:
    """``(C,)`` bool: whether channel ``c`` (along ``dim``) of ``tensor`` holds any non-zero value."""
    moved = tensor.detach().movedim(dim, 0)
    return (moved != 0).reshape(moved.shape[0], -1).any(dim=1)


@dataclass
class ChannelStatus:
    """Per-channel reachability of every ``Conv*d``/``Linear`` layer's output, keyed by qualified module name.

    Attributes:
        from_input: ``{name: (C_out,) bool}``: the channel depends on the input (pass A).
        to_output: ``{name: (C_out,) bool}``: the channel can change the output (pass B).
        calls: ``{name: number of forward calls}`` of every channel layer and BatchNorm during one forward.
    """

    from_input: dict[str, Tensor]
    to_output: dict[str, Tensor]
    calls: dict[str, int]


class _Shift(nn.Module):
    """Stands in for a BatchNorm layer in the probe: ``x + shift`` (the identity in pass A, ``+1`` in pass B)."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x: Tensor) -> Tensor:
        return x + self.shift if self.shift else x


def _build_probe(model: nn.Module, masks: Mapping[str, Tensor], source: float) -> nn.Module:
    """A float32 eval-mode copy of ``model``: weights ← mask (1 where unmasked), biases ← ``source``, BN → shift."""
    probe = copy.deepcopy(model).float().eval()
    replacements: list[tuple[str, nn.Module]] = []
    with torch.no_grad():
        for name, module in probe.named_modules():
            if hasattr(module, "inplace"):
                module.inplace = False  # tensor hooks must see the tensors the next layer consumes
            if isinstance(module, CHANNEL_MODULES):
                mask = masks.get(_qualified(name, "weight"))
                weight = cast(Tensor, module.weight)
                weight.copy_(mask.to(weight.device, weight.dtype) if mask is not None else torch.ones_like(weight))
                bias = cast(Tensor | None, module.bias)
                if bias is not None:
                    bias.fill_(source)
            elif isinstance(module, _BatchNorm):
                replacements.append((name, _Shift(source)))
    for name, replacement in replacements:
        parent, _, child = name.rpartition(".")
        setattr(probe.get_submodule(parent) if parent else probe, child, replacement)
    for p in probe.parameters():
        p.requires_grad_(False)
    return probe


def _qualified(module_name: str, param: str) -> str:
    return f"{module_name}.{param}" if module_name else param


def channel_status(
    model: nn.Module, masks: Mapping[str, Tensor], sample_shape: tuple[int, ...], device: torch.device
) -> ChannelStatus:
    """Run both reachability passes on probes of ``model`` (which is not modified).

    Args:
        model: the network.
        masks: ``{parameter name: bool mask}``; unmasked ``Conv``/``Linear`` weights count as fully kept.
        sample_shape: shape of one input sample (the probe input is ``ones(1, *sample_shape)``).
        device: where to run the probes.

    Returns:
        The :class:`ChannelStatus` of every ``Conv*d``/``Linear`` layer that the forward pass calls.
    """
    from_input: dict[str, Tensor] = {}
    to_output: dict[str, Tensor] = {}
    calls: dict[str, int] = {}

    def run(source: float, backward: bool) -> None:
        probe = _build_probe(model, masks, source)
        handles = []
        for name, module in probe.named_modules():
            layer: nn.Module = module
            if isinstance(layer, CHANNEL_MODULES):
                handles.append(layer.register_forward_hook(_binarise_hook(name, layer, backward)))
            if not backward and (isinstance(layer, CHANNEL_MODULES) or isinstance(layer, _Shift)):
                handles.append(layer.register_forward_hook(_count_hook(name)))
        x = torch.ones((1, *sample_shape), device=device, requires_grad=backward)
        try:
            with torch.enable_grad():
                out = probe(x)
                if not isinstance(out, Tensor):
                    raise TypeError(
                        f"compact() supports models that return one tensor, but {type(model).__name__} returned "
                        f"{type(out).__name__}."
                    )
                if backward and out.requires_grad:
                    out.sum().backward()
        finally:
            for handle in handles:
                handle.remove()

    def _binarise_hook(name: str, module: nn.Module, backward: bool) -> Callable[..., Tensor]:
        dim = channel_dim(module)

        def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
            binary = (output != 0).to(output.dtype)
            if not backward:
                from_input[name] = per_channel_any(output, dim)
                return binary
            out = output + (binary - output).detach()  # value 0/1, gradient passes straight through

            def grad_hook(grad: Tensor) -> Tensor:
                to_output[name] = per_channel_any(grad, dim)
                return (grad != 0).to(grad.dtype)

            if out.requires_grad:
                out.register_hook(grad_hook)
            return out

        return hook

    def _count_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1

        return hook

    run(0.0, backward=False)
    run(1.0, backward=True)
    for name, reach in from_input.items():
        to_output.setdefault(name, torch.zeros_like(reach))  # never reached by the backward pass
    return ChannelStatus(from_input=from_input, to_output=to_output, calls=calls)
