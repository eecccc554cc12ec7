"""NTK-SAP (Wang, Li, Sun, ICLR 2023): data-free saliency of the NTK spectrum, one scorer.

NTK-SAP keeps the weights that most affect the trace of the network's neural tangent kernel, estimated by finite
differences of the outputs under a random weight perturbation on random inputs::

    J(c) = Σ_x ‖ f(x; c ⊙ θ) − f(x; c ⊙ (θ + ε δ)) ‖²,   x ~ N(0, I),  δ ~ N(0, I),   S = |∂J/∂c|

with the weights ``θ`` themselves re-drawn from the initialisation distribution for every estimate
("multi-sampling"), so the score belongs to the architecture and the mask rather than to one draw of weights. As in
the authors' code (github ``YiteWang/NTK-SAP``, ``Pruners/pruners.py`` ``NTKSAP``): BatchNorm statistics come from
a train-mode pass over the random inputs (their BatchNorm momentum 1), both outputs are then taken in eval mode with
those statistics, the perturbation is on the prunable weights only, the scores of removed weights are zero (the
method ``"ntk_sap"`` sets ``resurrect=False``) and the draws — weights, inputs, perturbation, in that order — come
from one random stream that continues from round to round. Only the input's shape (and any integer inputs such as
token ids, which are kept) is read from the data.

Defaults are the authors' (``main.py`` and ``scripts/run.sh``): ``ε = 0.01``, one weight draw per round
(``--ntksap_R 1``; they use 5 for CIFAR-10 only), Kaiming-normal weights (their models' ``_initialize_weights``),
train-mode statistics (``--prune-train-mode True``); they prune in 20 rounds (``rounds=20``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from lightning_panning.core.inputs import ModelInput, call_input, float_logits, model_input
from lightning_panning.core.scorers import Needs, Scorer, ScoringContext, add_grads, register_scorer, summed_grads

__all__ = ["NTKSAP", "NTK_SAP_INITS"]

#: ``init(name, weight, generator) -> tensor of weight's shape``: a re-drawn prunable weight.
Init = Callable[[str, Tensor, torch.Generator], Tensor]


def _kaiming_normal(name: str, weight: Tensor, generator: torch.Generator) -> Tensor:
    """Kaiming-normal (fan-in, ReLU gain), the NTK-SAP authors' models' ``_initialize_weights``."""
    if weight.ndim < 2:
        raise ValueError(
            f"NTK-SAP's init='kaiming_normal' needs weights of two or more dimensions, but the prunable parameter "
            f"{name!r} has shape {tuple(weight.shape)}: use NTKSAP(init='scaled_normal') (N(0, σ²) with the layer's "
            "own standard deviation), or leave that parameter out with `exclude`."
        )
    fresh = torch.empty(weight.shape, dtype=weight.dtype)
    nn.init.kaiming_normal_(fresh, generator=generator)
    return fresh


def _scaled_normal(name: str, weight: Tensor, generator: torch.Generator) -> Tensor:
    """``N(0, σ²)`` with ``σ`` the standard deviation of the layer's own weights (any zero-mean i.i.d. init)."""
    std = float(weight.detach().double().std(unbiased=False)) if weight.numel() > 1 else 0.0
    return torch.randn(weight.shape, generator=generator, dtype=weight.dtype) * std


#: Names of the built-in weight re-drawing rules.
NTK_SAP_INITS: dict[str, Init] = {"kaiming_normal": _kaiming_normal, "scaled_normal": _scaled_normal}


class _BatchStatistics(TorchFunctionMode):
    """Runs ``F.batch_norm`` with momentum 1, so a train-mode pass leaves the batch's statistics in the buffers."""

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is F.batch_norm:
            if len(args) > 6:
                args = (*args[:6], 1.0, *args[7:])
            else:
                kwargs["momentum"] = 1.0
        return func(*args, **kwargs)


@contextmanager
def _batch_statistics() -> Iterator[None]:
    with _BatchStatistics():
        yield


@register_scorer("ntk_sap")
class NTKSAP(Scorer):
    """NTK-SAP: ``∂J/∂c`` of the finite-difference NTK-trace estimate ``J``, summed over ``samples`` weight draws.

    The random inputs have the scoring batch's shape (its chunks with ``micro_batch``; ``example_input`` when there
    is no data): every floating-point input tensor is replaced by ``N(0, 1)`` noise, drawn for the whole set at once
    so that chunks see the same inputs; integer inputs (token ids, attention masks) are kept. ``J`` sums over the
    samples, so the chunks' results add up to the whole set's (BatchNorm statistics are then per chunk).

    Args:
        epsilon: ``ε``, the scale of the weight perturbation (authors: 0.01).
        samples: weight draws per round (their ``R``; authors: 1, and 5 for CIFAR-10).
        init: how the prunable weights are re-drawn for each sample: ``"kaiming_normal"`` (the authors' models,
            fan-in with ReLU gain), ``"scaled_normal"`` (``N(0, σ_n²)`` with each layer's own standard deviation:
            the scale of whatever zero-mean initialisation the model has) or a callable
            ``init(name, weight, generator) -> tensor`` of the weight's shape drawing from ``generator``.
            Parameters that are not pruned keep their values.

    Example:
        >>> from lightning_panning.core.params import prunable_parameters
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> ctx = ScoringContext(net, prunable_parameters(net), example_input=torch.zeros(5, 4))
        >>> {n: tuple(s.shape) for n, s in NTKSAP()(ctx).items()}
        {'0.weight': (8, 4), '2.weight': (3, 8)}
    """

    needs = Needs.OWN_PASSES

    def __init__(self, epsilon: float = 0.01, samples: int = 1, init: str | Init = "kaiming_normal") -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon):
            raise ValueError(f"NTK-SAP: `epsilon` must be a finite number > 0, got {epsilon!r}.")
        if epsilon <= 0:
            raise ValueError(f"NTK-SAP: `epsilon` must be a finite number > 0, got {epsilon!r}.")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"NTK-SAP: `samples` must be an integer ≥ 1 (weight draws per round), got {samples!r}.")
        if isinstance(init, str):
            if init not in NTK_SAP_INITS:
                raise ValueError(f"NTK-SAP: unknown `init` {init!r}; allowed: {sorted(NTK_SAP_INITS)} or a callable.")
        elif not callable(init):
            raise ValueError(f"NTK-SAP: `init` must be one of {sorted(NTK_SAP_INITS)} or a callable, got {init!r}.")
        self.epsilon = float(epsilon)
        self.samples = samples
        self.init = init

    def _draw(self, name: str, weight: Tensor, generator: torch.Generator) -> Tensor:
        rule = NTK_SAP_INITS[self.init] if isinstance(self.init, str) else self.init
        fresh = rule(name, weight, generator)
        if not isinstance(fresh, Tensor) or fresh.shape != weight.shape:
            raise ValueError(
                f"NTK-SAP: `init` must return a tensor of shape {tuple(weight.shape)} for {name!r}, got "
                f"{type(fresh).__name__} {tuple(getattr(fresh, 'shape', ()))}."
            )
        return fresh.to(device=weight.device, dtype=weight.dtype)

    def _inputs(self, ctx: ScoringContext) -> list[ModelInput]:
        """One model call per chunk of the scoring set, or the ``example_input`` without data."""
        if ctx.chunks:
            return [model_input(ctx.model, chunk) for chunk in ctx.chunks]
        if ctx.example_input is None:
            raise ValueError(
                "NTK-SAP feeds random inputs of the scoring batch's shape through `forward` and needs that shape: "
                "pass data or `example_input` (a tensor of shape (B, ...) gives B random inputs)."
            )
        return [ctx.model_input()]

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``Σ_samples ∂J/∂c`` per prunable weight (times the mask without resurrection: removed weights score 0)."""
        if ctx.scoring_set is not None and ctx.scoring_set.reduce is not None:
            raise ValueError(
                "NTK-SAP draws its random inputs for the whole scoring set on one process; it cannot split them "
                "across processes. Score on one process (micro_batch chunks within it work), or use "
                "method='synflow'."
            )
        calls = self._inputs(ctx)
        # one stream for every draw, continuing from round to round (the authors' global RNG)
        generator: torch.Generator = ctx.cached(
            "ntk_sap.generator", lambda: torch.Generator().manual_seed(ctx.seed), mask_independent=True
        )
        names = list(ctx.params)
        # without a mask (round 1) every c is 1: c ⊙ θ is θ itself and nothing is multiplied by the mask
        masks = None if ctx.masks is None else {n: ctx.masks[n].to(p.dtype).detach() for n, p in ctx.params.items()}
        leaves = {
            n: (torch.ones_like(p) if masks is None else masks[n].clone()).requires_grad_(True)
            for n, p in ctx.params.items()
        }
        total: dict[str, Tensor] = {}
        for _ in range(self.samples):
            theta = {n: self._draw(n, ctx.params[n].detach(), generator) for n in names}
            noisy = _noisy_inputs(calls, generator)
            perturbed = {
                n: theta[n]
                + self.epsilon * torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device)
                for n, t in theta.items()
            }
            masked = theta if masks is None else {n: masks[n] * theta[n] for n in names}
            for call in noisy:
                buffers = self._statistics(ctx, call, masked)
                with torch.enable_grad():
                    weights = {n: leaves[n] * theta[n] for n in names}
                    moved = {n: leaves[n] * perturbed[n] for n in names}
                    out = self._logits(ctx.forward(call_input, call, {**buffers, **weights}, training=False))
                    out_moved = self._logits(ctx.forward(call_input, call, {**buffers, **moved}, training=False))
                    estimate = (torch.norm(out - out_moved, dim=-1) ** 2).sum()
                    grads = torch.autograd.grad(estimate, [leaves[n] for n in names], allow_unused=True)
                del weights, moved, out, out_moved, estimate
                add_grads(total, names, grads)
        total = summed_grads(total, leaves)
        if not ctx.resurrect and masks is not None:
            return {n: total[n] * masks[n] for n in names}
        return total

    def _statistics(self, ctx: ScoringContext, call: ModelInput, weights: dict[str, Tensor]) -> dict[str, Tensor]:
        """The buffers for the eval-mode passes: the batch's BatchNorm statistics (train mode), else the model's."""
        buffers = {n: b.clone() for n, b in ctx.model.named_buffers()}
        if ctx.train_mode:
            with torch.no_grad(), _batch_statistics():
                ctx.forward(call_input, call, {**buffers, **weights}, training=True)
        return buffers

    def _logits(self, output: Any) -> Tensor:
        return float_logits(output, "NTK-SAP", "compares the model's outputs")

    def __repr__(self) -> str:
        init = self.init if isinstance(self.init, str) else getattr(self.init, "__qualname__", repr(self.init))
        return f"NTKSAP(epsilon={self.epsilon!r}, samples={self.samples!r}, init={init!r})"


def _noisy_inputs(calls: list[ModelInput], generator: torch.Generator) -> list[ModelInput]:
    """``calls`` with every floating-point tensor replaced by ``N(0, 1)`` noise drawn for all calls at once.

    The noise of each argument is drawn once with shape ``(Σ n_c, ...)`` and split along the first dimension, so the
    chunks of a set get exactly the inputs the whole set would.
    """
    slots = [call.tensors() for call in calls]
    if any(len(s) != len(slots[0]) for s in slots):
        raise ValueError("NTK-SAP: the chunks of the scoring set call `forward` with different arguments.")
    noise: list[list[Tensor] | None] = []
    for i, first in enumerate(slots[0]):
        if not first.is_floating_point() or first.ndim == 0:
            noise.append(None)
            continue
        trailing = first.shape[1:]
        if any(s[i].shape[1:] != trailing for s in slots):
            raise ValueError(
                "NTK-SAP draws one random input for the whole scoring set, but its chunks have inputs of different "
                f"shapes ({sorted({tuple(s[i].shape) for s in slots})}); score without `micro_batch`."
            )
        sizes = [s[i].shape[0] for s in slots]
        full = torch.randn((sum(sizes), *trailing), generator=generator, dtype=first.dtype).to(first.device)
        noise.append(list(full.split(sizes)))
    out: list[ModelInput] = []
    for c, call in enumerate(calls):
        position = iter(range(len(slots[0])))

        def swap(tensor: Tensor, c: int = c, position: Iterator[int] = position) -> Tensor:
            found = noise[next(position)]
            return tensor if found is None else found[c]

        out.append(call.map(swap))
    return out
