"""PX (Iurada, Ciccone, Tommasi, CVPR 2024): Path eXclusion, data-driven spectral foresight pruning, one scorer.

PX keeps the weights that most preserve the trace of the network's path kernel weighted by the data's activation
patterns. A ReLU network's output is a sum over input-output paths; PX splits it into three passes of the same
network (github ``iurada/px-ntk-pruning``, ``lib/pruners.py`` ``PX.score``):

* **gates** — the network as it is (masked weights ``c ⊙ θ``, eval mode) on the data ``x``: every ReLU's on/off
  pattern ``1[u > 0]`` is recorded, call by call;
* **activation paths** ``z₁`` — every weight and bias set to 1 (masked: ``c``), each ReLU replaced by multiplication
  with the recorded gate, on ``x²`` (train mode, no gradient);
* **path kernel** ``z₂`` — every weight and bias squared (``c ⊙ θ²``), ReLUs removed, on an all-ones input of ``x``'s
  shape (train mode).

The saliency is ``|∂ Σ (z₁ ⊙ z₂) / ∂θ²| ⊙ θ²``, summed over the scoring set before the absolute value (their
``.backward()`` accumulates over batches). Normalisation layers' parameters and the output layer's keep their values
in both the all-ones and the squared copies (the authors skip parameters whose names contain ``'bn'`` or ``'fc'``;
here by default by type — every ``BatchNorm``/``LayerNorm``/``GroupNorm``/``InstanceNorm`` — and the output layer is
the last layer with a prunable weight that ``forward`` calls; ``untouched=("bn", "fc")`` selects their rule).

**Activations.** Every call of ``F.relu``/``torch.relu``/``Tensor.relu`` (``nn.ReLU`` too) and ``F.leaky_relu`` is
gated as above (their code treats leaky ReLU as ReLU too). PX's decomposition holds for those positively homogeneous
activations only: a forward pass that calls GELU, SiLU, tanh, sigmoid, ReLU6/hardtanh, softmax or attention raises a
clear error naming the function (the Hugging Face transformers, MobileNet's ReLU6). Max-pooling and everything else
run unchanged in all three passes, as in their code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase
from torch.overrides import TorchFunctionMode

from lightning_panning.core.inputs import ModelInput, call_input, float_logits, model_input
from lightning_panning.core.scorers import Needs, Scorer, ScoringContext, add_grads, register_scorer, summed_grads

__all__ = ["PX"]

#: The gated activations: ``relu`` in every spelling, and ``leaky_relu`` (gated as ReLU, as the authors do).
_GATED: frozenset[Callable[..., Any]] = frozenset(
    {F.relu, F.relu_, torch.relu, torch.relu_, Tensor.relu, Tensor.relu_, F.leaky_relu, F.leaky_relu_}
)
#: Nonlinearities that PX's path decomposition does not cover: named in the error.
_UNSUPPORTED: dict[Callable[..., Any], str] = {
    F.gelu: "gelu", F.silu: "silu", F.mish: "mish", F.elu: "elu", F.selu: "selu", F.celu: "celu",
    F.softplus: "softplus", F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.hardtanh: "hardtanh",
    F.relu6: "relu6", F.prelu: "prelu", F.rrelu: "rrelu", F.glu: "glu", F.logsigmoid: "logsigmoid",
    torch.tanh: "tanh", Tensor.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid", Tensor.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid", F.softmax: "softmax", Tensor.softmax: "softmax", torch.softmax: "softmax",
    F.scaled_dot_product_attention: "scaled_dot_product_attention",
}  # fmt: skip
_NORMS: tuple[type[nn.Module], ...] = (_NormBase, nn.LayerNorm, nn.GroupNorm)


class PXError(ValueError):
    """PX cannot score this model (an activation outside ReLU/leaky ReLU, no data, a model output it cannot use)."""


class _Gates(TorchFunctionMode):
    """The three ways PX runs the gated activations, and the check for the others.

    ``record``: keep each gated activation's ``1[u > 0]``; ``apply``: ``u ⊙ gate`` in the same order; ``remove``: the
    identity. Any mode: an unsupported nonlinearity raises :class:`PXError`.
    """

    def __init__(self, mode: str, gates: list[Tensor]) -> None:
        super().__init__()
        self.mode = mode
        self.gates = gates
        self.used = 0

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in _GATED:
            u = args[0] if args else kwargs["input"]
            if self.mode == "record":
                self.gates.append(torch.where(u > 0, 1.0, 0.0).to(u.dtype))
                return func(*args, **kwargs)
            if self.mode == "apply":
                if self.used >= len(self.gates):
                    raise PXError(
                        "PX: the forward pass called ReLU more often with all-ones weights than with the model's own "
                        "(a data-dependent control flow); PX needs the same calls in every pass: use "
                        "method='synflow' for this model."
                    )
                gate = self.gates[self.used]
                self.used += 1
                return u * gate
            return u
        if func in _UNSUPPORTED:
            raise PXError(
                f"PX supports networks whose nonlinearities are ReLU or leaky ReLU (its path decomposition needs "
                f"positively homogeneous activations), but the forward pass calls {_UNSUPPORTED[func]!r}. Use "
                "method='synflow', 'snip' or 'panning' for this model."
            )
        return func(*args, **kwargs)


def _logits(output: Any) -> Tensor:
    return float_logits(output, "PX", "multiplies the model's outputs of two passes", PXError)


@register_scorer("px")
class PX(Scorer):
    """PX: ``|∂ Σ z₁ ⊙ z₂ / ∂θ²| ⊙ θ²`` (module docstring), summed over the scoring set's chunks and processes.

    Args:
        untouched: which parameters keep their values in the all-ones and squared copies: ``"auto"`` (every
            normalisation layer's and the output layer's: the last layer with a prunable weight that ``forward``
            calls) or a sequence of name fragments (a parameter whose name contains one; the authors':
            ``("bn", "fc")``).

    Example:
        >>> from lightning_panning.core.params import prunable_parameters
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> batch = (torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
        >>> ctx = ScoringContext(net, prunable_parameters(net), batch=batch)
        >>> {n: tuple(s.shape) for n, s in PX()(ctx).items()}
        {'0.weight': (8, 4), '2.weight': (3, 8)}
    """

    needs = Needs.DATA | Needs.OWN_PASSES

    def __init__(self, untouched: str | Sequence[str] = "auto") -> None:
        if isinstance(untouched, str):
            if untouched != "auto":
                raise ValueError(
                    f"PX: `untouched` must be 'auto' or a sequence of parameter-name fragments (e.g. ('bn', 'fc')), "
                    f"got {untouched!r}."
                )
            self.untouched: str | tuple[str, ...] = "auto"
        else:
            fragments = tuple(untouched)
            if not all(isinstance(f, str) and f for f in fragments):
                raise ValueError(
                    f"PX: `untouched` must be 'auto' or a sequence of non-empty name fragments, got {untouched!r}."
                )
            self.untouched = fragments

    # -- which parameters keep their values ------------------------------------------------------------------------
    def _untouched_names(self, model: nn.Module, output_layer: str | None) -> set[str]:
        names = {n for n, _ in model.named_parameters()}
        if self.untouched != "auto":
            return {n for n in names if any(f in n for f in self.untouched)}
        kept = set()
        for module_name, module in model.named_modules():
            if isinstance(module, _NORMS) or (output_layer is not None and module_name == output_layer):
                kept |= {f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False)}
        return kept & names

    def _record_gates(self, ctx: ScoringContext, call: ModelInput) -> tuple[list[Tensor], str | None]:
        """The gates of the masked model (eval mode), and the last module holding a prunable weight it called."""
        owners = {name.rpartition(".")[0] for name in ctx.params}
        called: list[str] = []
        handles = [
            module.register_forward_hook(lambda *_args, name=name: called.append(name))
            for name, module in ctx.model.named_modules()
            if name in owners
        ]
        gates: list[Tensor] = []
        try:
            with torch.no_grad(), _Gates("record", gates):
                ctx.forward(call_input, call, training=False)
        finally:
            for handle in handles:
                handle.remove()
        return gates, (called[-1] if called else None)

    def _copies(
        self, ctx: ScoringContext, masks: dict[str, Tensor], squares: dict[str, Tensor], output_layer: str | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The parameters of the all-ones copy, and of the squared copy with its prunable weights as leaves."""
        kept = self._untouched_names(ctx.model, output_layer)
        others = {n: p.detach() for n, p in ctx.model.named_parameters() if n not in ctx.params}
        # the masked weights c ⊙ w of the untouched layers only (ctx.masked would build every layer's)
        untouched = {n: ctx.params[n].detach() * masks[n] for n in ctx.params if n in kept}
        ones = {n: untouched[n] if n in kept else masks[n] for n in ctx.params}
        ones |= {n: p if n in kept else torch.ones_like(p) for n, p in others.items()}
        squared = {n: p if n in kept else p.pow(2) for n, p in others.items()}
        squared |= {
            n: (
                untouched[n] if n in kept else masks[n] * squares[n] if ctx.masks is not None else squares[n].clone()
            ).requires_grad_(True)
            for n in ctx.params
        }
        return ones, squared

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``∂ Σ z₁ ⊙ z₂ / ∂(c ⊙ θ²)`` times ``θ²`` (times ``c`` without resurrection: removed weights score 0)."""
        if not ctx.chunks:
            raise PXError(
                "PX reads the data's ReLU activation patterns and needs a scoring set: pass data (a DataLoader, "
                "Dataset or (x, y) batch), or use a data-free method (method='synflow', 'ntk_sap' or 'phew')."
            )
        params = ctx.params
        names = list(params)
        masks = {n: torch.ones_like(p) if ctx.masks is None else ctx.masks[n].to(p.dtype) for n, p in params.items()}
        squares = {n: p.detach().pow(2) for n, p in params.items()}
        total: dict[str, Tensor] = {}
        copies: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None
        for chunk in ctx.chunks:
            call = model_input(ctx.model, chunk)
            gates, output_layer = self._record_gates(ctx, call)
            if copies is None:  # the same for every chunk: the output layer is found by the first chunk's pass
                copies = self._copies(ctx, masks, squares, output_layer)
            ones, squared = copies
            with torch.no_grad(), _Gates("apply", gates):
                z1 = _logits(ctx.forward(call_input, call.map(_squared_floats), ones, training=True))
            with torch.enable_grad():
                with _Gates("remove", []):
                    z2 = _logits(ctx.forward(call_input, call.map(_ones_floats), squared, training=True))
                if z1.shape != z2.shape:
                    raise PXError(
                        f"PX: the two passes' outputs differ in shape ({tuple(z1.shape)}, {tuple(z2.shape)}); use "
                        "method='synflow' for this model."
                    )
                grads = torch.autograd.grad((z1 * z2).sum(), [squared[n] for n in names], allow_unused=True)
            add_grads(total, names, grads)
        total = summed_grads(total, squares)
        summed = dict(zip(names, ctx.reduce([total[n] for n in names]), strict=True))
        scores = {n: summed[n].abs() * squares[n] for n in names}
        if not ctx.resurrect and ctx.masks is not None:  # without a mask every c is 1
            return {n: scores[n] * masks[n] for n in names}
        return scores

    def __repr__(self) -> str:
        return f"PX(untouched={self.untouched!r})"


def _squared_floats(tensor: Tensor) -> Tensor:
    return tensor.pow(2) if tensor.is_floating_point() else tensor


def _ones_floats(tensor: Tensor) -> Tensor:
    return torch.ones_like(tensor) if tensor.is_floating_point() else tensor
