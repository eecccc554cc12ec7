"""ProsPr (Alizadeh et al., ICLR 2022): the meta-gradient of the loss after a few SGD steps, one scorer.

Prospect Pruning scores each weight by how much a multiplicative mask ``c`` on it at initialisation changes the loss
*after* ``M`` steps of SGD from ``c ⊙ w``::

    θ_0 = c ⊙ w,   θ_{k+1} = θ_k − η ∇L(θ_k)   (k = 0..M−1),   S = |∂L(θ_M)/∂c|  at c = 1

By the chain rule ``∂L(θ_M)/∂c = w ⊙ ∂L(θ_M)/∂θ_0``, so the score is a synaptic saliency like SNIP's, with the
gradient taken through the unrolled training steps (second order: each step's gradient is differentiated again).
All trainable parameters take the steps (biases and normalisation parameters too), as in the authors' code
(github ``mil-ad/prospr``, ``prospr/prospr.py``); only the prunable weights are scored.

Defaults are the authors' ``cli.py`` defaults: ``M = 3`` steps, inner learning rate ``0.1``, no momentum, the full
meta-gradient, the same batch in every step (``new_data_in_inner=False``), one-shot (the method ``"prospr"``
prunes in a single round) and the plain cross-entropy (the preset sets ``temperature=1``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_panning.core.functional import twice_differentiable
from lightning_panning.core.scorers import Needs, Scorer, ScoringContext, register_scorer

__all__ = ["ProsPr"]


@register_scorer("prospr")
class ProsPr(Scorer):
    """ProsPr: ``w ⊙ ∂L(θ_M)/∂θ_0``, the mask's meta-gradient after ``steps`` SGD steps on the scoring set.

    Each step uses the loss of the whole scoring set (with ``micro_batch``, the size-weighted sum of the chunks'
    losses, so the result is the whole set's up to summation order; the graph of every chunk of every step is kept
    for the meta-gradient, so chunks do not lower the peak memory of the full meta-gradient). The steps run from
    the masked network ``c ⊙ w`` of the round; the model itself is never modified.

    Args:
        steps: ``M``, SGD steps in the inner loop (authors: 3).
        lr: inner learning rate ``η`` (authors' ``cli.py``: 0.1; their README's example uses 0.5 with momentum 0.9).
        momentum: inner SGD momentum (authors: 0). As in their ``functional_sgd``, the first step's momentum buffer
            is a detached copy of the gradient.
        first_order: the first-order approximation (their ``meta_grads_mode="first_order"``): ``w ⊙ ∇L(θ_M)``,
            the steps not differentiated; default: the full meta-gradient (their default).

    Example:
        >>> from lightning_panning.core.params import prunable_parameters
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> batch = (torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
        >>> scores = ProsPr(steps=2)(ScoringContext(net, prunable_parameters(net), batch=batch))
        >>> {n: tuple(s.shape) for n, s in scores.items()}
        {'0.weight': (8, 4), '2.weight': (3, 8)}
    """

    needs = Needs.DATA | Needs.OWN_PASSES

    def __init__(self, steps: int = 3, lr: float = 0.1, momentum: float = 0.0, first_order: bool = False) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"ProsPr: `steps` must be an integer ≥ 1 (SGD steps of the inner loop), got {steps!r}.")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"ProsPr: `lr` must be a finite number > 0 (the inner learning rate), got {lr!r}.")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"ProsPr: `momentum` must be a number in [0, 1), got {momentum!r}.")
        if not isinstance(first_order, bool):
            raise ValueError(f"ProsPr: `first_order` must be True or False, got {first_order!r}.")
        self.steps = steps
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.first_order = first_order

    def _loss(self, ctx: ScoringContext, tensors: dict[str, Tensor]) -> Tensor:
        """The scoring set's loss at ``tensors``: ``Σ_c (n_c / N) L_c`` (the single batch's loss for one chunk)."""
        assert ctx.scoring_set is not None
        if ctx.scoring_set.exact:
            parts = [ctx.forward(ctx.loss_fn, ctx.chunks[0], tensors)]
        else:
            parts = [
                ctx.forward(ctx.loss_fn, chunk, tensors) * share
                for chunk, share in zip(ctx.chunks, ctx.chunk_shares(), strict=True)
            ]
        for loss in parts:
            if not isinstance(loss, Tensor) or loss.ndim != 0:
                raise TypeError(f"ProsPr: `loss_fn` must return a scalar tensor, got {type(loss).__name__}.")
        total: Tensor = parts[0] if len(parts) == 1 else torch.stack(parts).sum()
        return total

    def _start(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``θ_0``: the masked prunable weights and every other trainable floating-point parameter, as leaves."""
        start: dict[str, Tensor] = dict(ctx.masked)
        prunable = {id(p) for p in ctx.params.values()}
        for name, param in ctx.model.named_parameters():
            if name in start or id(param) in prunable or not param.requires_grad or not param.is_floating_point():
                continue
            start[name] = param.detach()
        return {n: t.detach().requires_grad_(True) for n, t in start.items()}

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``w ⊙ ∂L(θ_M)/∂θ_0`` per prunable weight (``θ`` of the context: ``w``, or ``c ⊙ w`` without resurrection)."""
        ctx.require_labels(self.label)
        assert ctx.scoring_set is not None
        if ctx.scoring_set.reduce is not None:
            raise ValueError(
                "ProsPr differentiates through SGD steps on the whole scoring set, which cannot be split across "
                "processes (the reduce of each step's gradient would have to be differentiated): score on one "
                "process (micro_batch chunks within it work), or use method='snip' or 'panning'."
            )
        leaves = self._start(ctx)
        fast = dict(leaves)
        state: dict[str, Tensor | None] = dict.fromkeys(fast)
        create_graph = not self.first_order
        with torch.enable_grad(), twice_differentiable(create_graph):
            for _ in range(self.steps):
                names = list(fast)
                grads = torch.autograd.grad(
                    self._loss(ctx, fast), [fast[n] for n in names], create_graph=create_graph, allow_unused=True
                )
                updated: dict[str, Tensor] = {}
                for name, grad in zip(names, grads, strict=True):
                    if grad is None:  # unused by the loss: this parameter does not move
                        updated[name] = fast[name]
                        continue
                    if self.momentum:
                        buffer = state[name]
                        buffer = grad.clone().detach() if buffer is None else buffer.mul(self.momentum).add(grad)
                        state[name] = buffer
                        grad = buffer
                    updated[name] = fast[name].add(grad, alpha=-self.lr)
                fast = updated
            final = self._loss(ctx, fast)
            prunable = list(ctx.masked)
            wrt = [fast[n] for n in prunable] if self.first_order else [leaves[n] for n in prunable]
            meta = torch.autograd.grad(final, wrt, allow_unused=True)
        return {
            n: (torch.zeros_like(ctx.theta[n]) if g is None else g.detach() * ctx.theta[n])
            for n, g in zip(prunable, meta, strict=True)
        }

    def __repr__(self) -> str:
        return (
            f"ProsPr(steps={self.steps!r}, lr={self.lr!r}, momentum={self.momentum!r}, "
            f"first_order={self.first_order!r})"
        )

