"""Calling a model with substituted tensors, leaving the model itself untouched.

Every scorer evaluates the model at weights it does not own (``c ⊙ w``, ``|w|`` in float64, the mask itself).
:func:`torch.func.functional_call` swaps those tensors in for the duration of one call, so the model's parameters,
buffers, ``requires_grad`` flags and ``.grad`` are never written; :func:`preserved_modes` restores train/eval flags.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.overrides import TorchFunctionMode

__all__ = [
    "TWICE_DIFFERENTIABLE",
    "call_with",
    "output_sum",
    "preserved_modes",
    "seeded",
    "twice_differentiable",
    "twice_differentiable_activations",
    "twice_differentiable_attention",
]


class _Closure(nn.Module):
    """Wraps ``fn(model, *args)`` as a module so :func:`functional_call` can reparametrise ``model`` inside it."""

    def __init__(self, model: nn.Module, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.model, *args)


def _slot_names(model: nn.Module) -> tuple[dict[str, Tensor], dict[int, list[str]]]:
    """Every name of every parameter/buffer of ``model``, and one name per attribute slot that holds each tensor.

    A slot is one entry of one module's ``_parameters``/``_buffers``. A module registered under two names
    (``m.fc3 = m.fc2``) gives two names to one slot; a parameter shared by two modules (tied weights) fills two
    slots.

    Returns:
        ``({name: tensor}`` over all names, ``{id(tensor): [one name per slot holding it]})``.
    """
    by_name: dict[str, Tensor] = {}
    slots: dict[int, list[str]] = {}
    seen: set[tuple[int, str]] = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        for table in (module._parameters, module._buffers):
            for key, tensor in table.items():
                if tensor is None:
                    continue
                name = f"{prefix}.{key}" if prefix else key
                by_name[name] = tensor
                if (id(module), key) not in seen:
                    seen.add((id(module), key))
                    slots.setdefault(id(tensor), []).append(name)
    return by_name, slots


def call_with(model: nn.Module, tensors: Mapping[str, Tensor], fn: Callable[..., Any], *args: Any) -> Any:
    """Evaluate ``fn(model, *args)`` with the named parameters/buffers of ``model`` replaced by ``tensors``.

    Shared tensors are replaced wherever they are used: an override given under any one name of a parameter that
    several modules share (tied weights), or of a module registered under several names (``m.fc3 = m.fc2``), is
    swapped into every slot that holds it, each slot exactly once, so the gradient with respect to the override is
    the total derivative over all its uses and every slot gets its own ``nn.Parameter`` back afterwards.
    (:func:`torch.func.functional_call` with ``tie_weights=True`` swaps a module registered twice twice and restores
    it to the substitute, leaving a plain tensor where the ``nn.Parameter`` was.)

    Args:
        model: the module; it is not modified.
        tensors: ``{qualified name: tensor}`` overrides (any subset of ``model``'s parameters and buffers, under any
            of their names; two different values for one shared tensor are an error).
        fn: ``fn(model, *args)``; it may call ``model`` any way it likes (``forward``, ``training_step``, ...).
        *args: forwarded to ``fn``.

    Raises:
        ValueError: if ``tensors`` gives two different values for one shared tensor.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
        >>> net.append(net[0])  # the same Linear registered as "0" and "2"
        Sequential(...)
        >>> out = call_with(net, {"0.weight": torch.eye(2)}, lambda m, x: m(x), torch.tensor([[1.0, -2.0]]))
        >>> out.tolist(), type(net[2].weight).__name__
        ([[1.0, 0.0]], 'Parameter')
    """
    by_name, slots = _slot_names(model)
    overrides: dict[str, Tensor] = {}
    given: dict[int, tuple[str, Tensor]] = {}
    for name, value in tensors.items():
        original = by_name.get(name)
        if original is None:  # not a tensor of the model: functional_call decides (ignored with strict=False)
            overrides[f"model.{name}"] = value
            continue
        earlier = given.setdefault(id(original), (name, value))
        if earlier[1] is not value:
            raise ValueError(
                f"`tensors` gives two different values for one shared tensor, under {earlier[0]!r} and {name!r}; "
                "give it once."
            )
        for slot in slots[id(original)]:
            overrides[f"model.{slot}"] = value
    closure = _Closure(model, fn)
    try:
        return functional_call(closure, overrides, args, strict=False, tie_weights=False)
    except ValueError as err:
        if ONE_VALUE_PER_CHANNEL not in str(err):
            raise
        raise ValueError(
            f"{err}: a BatchNorm layer of {type(model).__name__} in train mode got a batch of one sample. The "
            "data-driven scorers run the network in train mode (batch statistics, as the authors do): score on a "
            "batch of two or more samples (raise `per_class`: the scoring batch holds `per_class` samples of each "
            "class), or score with the running statistics (`train_mode=False`; callbacks: "
            "`options={'train_mode': False}`)."
        ) from err


#: The start of the error BatchNorm raises in train mode when a channel holds a single value (``_verify_batch_size``).
ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"


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


def _working_copy(input: Tensor, inplace: bool) -> Tensor:
    """The tensor the stand-ins compute from.

    Float32 for half precisions (as torch's kernels compute them), a copy when the result overwrites ``input`` (so
    that the graph does not save a tensor modified in place).
    """
    if input.dtype in (torch.float16, torch.bfloat16):
        return input.float()
    return input.clone() if inplace else input


def _hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """``relu6(x + 3) / 6`` with ``clamp``, whose backward is differentiable; the same values as torch's kernel."""
    x = _working_copy(input, inplace)
    out = (torch.clamp(x + 3.0, 0.0, 6.0) / 6.0).to(input.dtype)
    return input.copy_(out) if inplace else out


def _hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """``x · relu6(x + 3) / 6`` with ``clamp``; the same values as torch's kernel."""
    x = _working_copy(input, inplace)
    out = (x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0).to(input.dtype)
    return input.copy_(out) if inplace else out


#: Activations whose backward torch cannot differentiate again, and twice-differentiable stand-ins with the same
#: values (checked bit for bit in float32/float64/bfloat16/float16 by the tests); used during GraSP's double backward.
TWICE_DIFFERENTIABLE: dict[Callable[..., Any], Callable[..., Any]] = {
    F.hardsigmoid: _hardsigmoid,  # aten::hardsigmoid_backward has no derivative
    F.hardswish: _hardswish,  # twice differentiable in recent torch, but not in every version
}


class _Substitute(TorchFunctionMode):
    """Routes the functions of :data:`TWICE_DIFFERENTIABLE` (``nn.Hardsigmoid``, ``F.hardswish``, ...) to stand-ins."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        return TWICE_DIFFERENTIABLE.get(func, func)(*args, **kwargs)


_NO_DOUBLE_BACKWARD = re.compile(r"derivative for (\S+) is not implemented")


@contextmanager
def twice_differentiable_activations(enabled: bool = True) -> Iterator[None]:
    """Run the model with twice-differentiable stand-ins for the activations of :data:`TWICE_DIFFERENTIABLE`.

    GraSP's Hessian-gradient product differentiates the gradient again; torch has no derivative for some backward
    kernels (``hardsigmoid_backward``: MobileNetV3's squeeze-excitation gate). Inside this context those
    functions compute the same values with ``clamp``, whose backward is differentiable, whether called as modules
    (``nn.Hardsigmoid``) or functions; the model itself is not touched. Any other operation without a double
    backward raises a ``ValueError`` that names it and the methods that do not need one, instead of torch's error.
    A no-op when ``enabled`` is ``False``.
    """
    if not enabled:
        yield
        return
    try:
        with _Substitute():
            yield
    except RuntimeError as err:
        found = _NO_DOUBLE_BACKWARD.search(str(err))
        if found is None:
            raise
        raise ValueError(
            f"GraSP differentiates the gradient a second time (its Hessian-gradient product), but torch has no "
            f"derivative for {found.group(1)}, which the model uses. Use a method without GraSP: method='snip', "
            "'synflow' or 'iterative_snip', or Panning(scorers=['synflow', 'snip'], weights={'synflow': 0.5, "
            "'snip': 0.5})."
        ) from err


@contextmanager
def twice_differentiable(enabled: bool = True) -> Iterator[None]:
    """The context of a gradient pass that will be differentiated again (a no-op when ``enabled`` is ``False``).

    Both :func:`twice_differentiable_attention` and :func:`twice_differentiable_activations`.
    """
    with twice_differentiable_attention(enabled), twice_differentiable_activations(enabled):
        yield


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork the global RNG (CPU and ``device``) and seed it, so dropout and friends are reproducible.

    Seeds the CPU generator and, on CUDA, ``device``'s generator: the streams ``torch.manual_seed(seed)`` would give
    there. Not ``torch.manual_seed`` itself, which also seeds every other CUDA device (outside the fork, so their state
    would change) and, where CUDA, MTIA or XPU is not initialised, records a stack trace for each (a few milliseconds
    per call: about 2% of an NTK-SAP round on LeNet5).
    """
    if seed is None:
        yield
        return
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
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
