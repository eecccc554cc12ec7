"""How a batch becomes a call of the model's ``forward``, and the checks that a model can be called at all.

A batch (or an ``example_input``) is turned into a :class:`ModelInput` — the positional and keyword arguments of
one ``forward`` call — by reading ``forward``'s signature (:func:`model_input`):

* a tensor is the single positional input;
* a dict whose keys name ``forward``'s parameters (``input_ids``, ``attention_mask``, ``token_type_ids``, ...) is
  passed as ``**kwargs``; label keys (``labels``, ``y``, ``target``, ...) are left out unless ``forward`` requires
  them. A dict that names none of them gives its ``x``/``input``/``inputs``/``image``/``input_ids`` entry as the
  single positional input;
* a tuple or list gives its first element, or its first ``n`` elements when ``forward`` requires ``n ≥ 2``
  positional arguments (e.g. ``forward(inputs, target)`` of an encoder-decoder).

A :class:`ModelInput` passes through unchanged, so ``example_input=ModelInput((batch_dict,))`` calls a
``forward(batch)`` that wants the whole dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lightning_panning.core.batch import LABEL_KEYS, batch_inputs

__all__ = [
    "ModelInput",
    "call_input",
    "check_forward",
    "float_logits",
    "forward_parameters",
    "model_input",
    "output_logits",
    "single_device",
]

#: Methods the scorers can run without calling ``forward`` (they need the loss only, or no data).
_WITHOUT_FORWARD = "method='snip', 'grasp', 'iterative_snip', 'magnitude' or 'random'"


@dataclass
class ModelInput:
    """The arguments of one ``forward`` call: ``model(*args, **kwargs)``.

    Attributes:
        args: positional arguments (tensors of shape ``(B, ...)`` or anything ``forward`` takes).
        kwargs: keyword arguments.

    Example:
        >>> import torch
        >>> inp = ModelInput(kwargs={"input_ids": torch.zeros(4, 7, dtype=torch.long)})
        >>> inp.first_sample().kwargs["input_ids"].shape
        torch.Size([1, 7])
    """

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: nn.Module) -> Any:
        """``model(*args, **kwargs)``."""
        return model(*self.args, **self.kwargs)

    def map(self, fn: Callable[[Tensor], Tensor]) -> ModelInput:
        """A copy with ``fn`` applied to every tensor (in nested tuples, lists and dicts too)."""
        return ModelInput(tuple(_map(fn, a) for a in self.args), {k: _map(fn, v) for k, v in self.kwargs.items()})

    def tensors(self) -> list[Tensor]:
        """Every tensor of the call, in argument order."""
        found: list[Tensor] = []
        self.map(lambda t: found.append(t) or t)  # type: ignore[func-returns-value]
        return found

    def first_sample(self) -> ModelInput:
        """The call for the first sample only: every tensor ``t`` of one or more dimensions becomes ``t[:1]``."""
        return self.map(lambda t: t[:1] if t.ndim > 0 else t)

    def to(self, device: torch.device | str) -> ModelInput:
        """A copy with every tensor on ``device``."""
        return self.map(lambda t: t.to(device))

    def describe(self) -> str:
        """Short text for error messages, e.g. ``"(Tensor(2, 8) int64), {attention_mask: Tensor(2, 8) int64}"``."""
        args = ", ".join(_describe(a) for a in self.args)
        kwargs = ", ".join(f"{k}: {_describe(v)}" for k, v in self.kwargs.items())
        return f"({args}), {{{kwargs}}}"


def _map(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, Mapping):
        return type(value)({k: _map(fn, v) for k, v in value.items()})  # type: ignore[call-arg]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_map(fn, v) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map(fn, v) for v in value)
    return value


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"Tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, Mapping):
        return f"dict with keys {list(value)}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _has_forward(model: nn.Module) -> bool:
    forward = getattr(type(model), "forward", None)
    qualname = getattr(forward, "__qualname__", "")
    # nn.Module's placeholder, and LightningModule's, which only calls it (the core does not import Lightning)
    return forward is not None and qualname not in ("_forward_unimplemented", "LightningModule.forward")


def check_forward(model: nn.Module, needed_by: str) -> None:
    """Raise a clear error if ``model`` defines no ``forward``.

    Args:
        model: the network.
        needed_by: what needs the call, for the message (e.g. ``"SynFlow"``).
    """
    if not _has_forward(model):
        raise ValueError(
            f"{type(model).__name__} has no `forward` method, but {needed_by} calls the model. Define `forward` "
            "(e.g. `def forward(self, x): return self.net(x)`), or score without calling it: pass a "
            f"`loss_fn(model, batch)` (callbacks: loss='training_step') and choose {_WITHOUT_FORWARD}."
        )


@dataclass
class _ForwardSpec:
    names: list[str]
    required: list[str]
    required_positional: list[str]
    var_keyword: bool


def _forward_spec(model: nn.Module) -> _ForwardSpec:
    check_forward(model, "pruning")
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # builtins or C extensions without a signature: assume forward(x)
        return _ForwardSpec(["input"], ["input"], ["input"], False)
    names: list[str] = []
    required: list[str] = []
    positional: list[str] = []
    var_keyword = False
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_keyword = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        names.append(p.name)
        if p.default is p.empty:
            required.append(p.name)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                positional.append(p.name)
    return _ForwardSpec(names, required, positional, var_keyword)


def forward_parameters(model: nn.Module) -> list[str]:
    """The names of the parameters of ``model.forward``, in order (``*args`` and ``**kwargs`` left out).

    Example:
        >>> import torch
        >>> forward_parameters(torch.nn.Linear(2, 2))
        ['input']
    """
    return list(_forward_spec(model).names)


def _missing(model: nn.Module, what: str, batch: Any) -> ValueError:
    return ValueError(
        f"{type(model).__name__}.forward needs {what}, but the batch ({_describe(batch)}) does not have it. Give "
        "batches that do (a dict keyed by forward's argument names, or a tuple of its positional inputs), or pass "
        "`example_input=` (a tensor, a dict of keyword arguments, or ModelInput(args, kwargs))."
    )


def model_input(model: nn.Module, batch: Any) -> ModelInput:
    """The arguments of ``model``'s ``forward`` that ``batch`` holds (see the module docstring for the rules).

    Args:
        model: the network; its ``forward`` signature decides how the batch is passed.
        batch: a tensor ``(B, ...)``, a tuple/list, a dict, or a :class:`ModelInput` (returned as is).

    Raises:
        ValueError: when ``model`` has no ``forward``, or ``forward`` needs arguments the batch does not have.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class Tagger(nn.Module):
        ...     def forward(self, input_ids, attention_mask=None):
        ...         return input_ids
        >>> batch = {"input_ids": torch.zeros(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5),
        ...          "labels": torch.zeros(2, dtype=torch.long)}
        >>> sorted(model_input(Tagger(), batch).kwargs)
        ['attention_mask', 'input_ids']
        >>> len(model_input(nn.Linear(3, 1), (torch.zeros(2, 3), torch.zeros(2))).args)
        1
    """
    if isinstance(batch, ModelInput):
        return batch
    spec = _forward_spec(model)
    if isinstance(batch, Tensor):
        if len(spec.required) > 1:
            raise _missing(model, f"the arguments {spec.required}", batch)
        return ModelInput((batch,))
    if isinstance(batch, Mapping):
        explicit = {
            k: v for k, v in batch.items() if k in spec.names and (k not in LABEL_KEYS or k in spec.required)
        }
        if not explicit and spec.var_keyword:
            explicit = {k: v for k, v in batch.items() if isinstance(k, str) and k not in LABEL_KEYS}
        if explicit:
            absent = [r for r in spec.required if r not in explicit]
            if absent:
                raise _missing(model, f"the argument(s) {absent}", batch)
            return ModelInput(kwargs=dict(explicit))
        if len(spec.required) <= 1:
            try:
                return ModelInput((batch_inputs(batch),))
            except TypeError:
                pass
        raise _missing(model, f"the argument(s) {spec.required or spec.names[:1]}", batch)
    if isinstance(batch, (tuple, list)):
        needed = max(len(spec.required_positional), 1)
        if len(batch) < needed or len(spec.required) > needed:
            raise _missing(model, f"the argument(s) {spec.required}", batch)
        return ModelInput(tuple(batch[:needed]))
    raise TypeError(
        f"Cannot call {type(model).__name__}.forward with a batch of type {type(batch).__name__}; expected a "
        "tensor, a tuple/list, a dict or a ModelInput."
    )


def output_logits(output: Any) -> Any:
    """The logits of a model output: the output itself, or its ``logits`` entry (Hugging Face's ``ModelOutput``)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping) and "logits" in output:
        return output["logits"]
    logits = getattr(output, "logits", None)
    return logits if isinstance(logits, Tensor) else output


def call_input(model: nn.Module, inputs: ModelInput) -> Any:
    """``inputs(model)``: the function a scorer's own passes give :meth:`ScoringContext.forward` with a ModelInput."""
    return inputs(model)


def float_logits(output: Any, scorer: str, uses: str, error: type[Exception] = TypeError) -> Tensor:
    """The floating-point logits of a model output (:func:`output_logits`), else a clear ``error``.

    Args:
        output: what ``forward`` returned.
        scorer: the scorer's name, for the message.
        uses: what the scorer does with the outputs, e.g. ``"compares the model's outputs"``.
        error: the exception type to raise.
    """
    logits = output_logits(output)
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise error(
            f"{scorer} {uses}, but the model returned {type(output).__name__}; it needs a floating-point tensor (or "
            "an output with `.logits`). Use method='synflow' or 'snip' for this model."
        )
    return logits


def single_device(model: nn.Module) -> torch.device | None:
    """The one device holding every parameter and buffer of ``model`` (``None`` for a model without tensors).

    Raises:
        ValueError: when they are spread over several devices (model parallelism, ``device_map="auto"``).
    """
    devices = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(devices) > 1:
        names = sorted(str(d) for d in devices)
        raise ValueError(
            f"The parameters of {type(model).__name__} are on several devices ({', '.join(names)}); pruning scores "
            "the whole model on one device. Move it to one device first (e.g. `model.to('cuda:0')`, or load a "
            "Hugging Face model without `device_map`), prune, then shard it: the masks are keyed by parameter name "
            "and apply to the sharded model with `apply_masks`."
        )
    return next(iter(devices), None)
