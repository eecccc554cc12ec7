"""Calling a model with substituted tensors, leaving the model itself untouched.

Every scorer evaluates the model at weights it does not own (``c ⊙ w``, ``|w|`` in float64, the mask itself).
:func:`torch.func.functional_call` swaps those tensors in for the duration of one call, so the model's parameters,
buffers, ``requires_grad`` flags and ``.grad`` are never written; :func:`preserved_modes` restores train/eval flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["call_with", "output_sum", "preserved_modes", "seeded", "twice_differentiable_attention"]


class _Closure(nn.Module):
    """Wraps ``fn(model, *args)`` as a module so :func:`functional_call` can reparametrise ``model`` inside it."""

    def __init__(self, model: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.model, *args)


def call_with(model: nn.Module, tensors: Mapping[str, Tensor], fn: Callable[..., Any], *args: Any) -> Any:
    """Evaluate ``fn(model, *args)`` with the named parameters/buffers of ``model`` replaced by ``tensors``.

    Args:
        model: the module; it is not modified.
        tensors: ``{qualified name: tensor}`` overrides (any subset of ``model``'s parameters and buffers).
        fn: ``fn(model, *args)``; it may call ``model`` any way it likes (``forward``, ``training_step``, ...).
        *args: forwarded to ``fn``.
    """
    closure = _Closure(model, fn)
    return functional_call(closure, {f"model.{k}": v for k, v in tensors.items()}, args, strict=False)


@contextmanager
def preserved_modes(model: nn.Module, training: bool | None = None) -> Iterator[None]:
    """Optionally switch ``model`` to train/eval mode, and restore every submodule's own flag on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        if training is not None:
            model.train(training)
        yield
    finally:
        for module, mode in modes:
            module.training = mode


@contextmanager
def twice_differentiable_attention(enabled: bool = True) -> Iterator[None]:
    """Run ``scaled_dot_product_attention`` with its math kernel, whose backward can itself be differentiated.

    GraSP's Hessian-gradient product differentiates the gradient again; the fused flash and memory-efficient
    attention kernels (used by ``nn.MultiheadAttention``, torchvision's ViT and Hugging Face's ``sdpa`` attention)
    have no double backward. A no-op when ``enabled`` is ``False`` or the running torch has no kernel selection.
    """
    if not enabled:
        yield
        return
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: only the math kernel is twice differentiable there too, nothing to select
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork the global RNG (CPU and ``device``) and seed it, so dropout and friends are reproducible."""
    if seed is None:
        yield
        return
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def output_sum(output: Any) -> Tensor:
    """Sum of every floating-point tensor in a model output (tensor, tuple/list, dict or dataclass-like).

    An output with a ``logits`` tensor (Hugging Face's ``ModelOutput``) contributes its logits only, not its
    key/value caches or hidden states.
    """
    if isinstance(output, Tensor):
        return output.sum()
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output_sum(output["logits"])
    if isinstance(output, Mapping):
        items: list[Any] = list(output.values())
    elif isinstance(output, (tuple, list)):
        items = list(output)
    elif hasattr(output, "__dict__"):
        items = list(vars(output).values())
    else:
        items = []
    parts = [output_sum(v) for v in items if isinstance(v, (Tensor, Mapping, tuple, list))]
    parts = [p for p in parts if p.is_floating_point()]
    if not parts:
        raise TypeError(f"The model output ({type(output).__name__}) contains no floating-point tensor to sum.")
    return torch.stack([p.to(parts[0].dtype) for p in parts]).sum()
