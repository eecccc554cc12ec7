"""Keeping a network sparse while it trains: :class:`MaskEnforcer`, pure PyTorch (no Lightning needed).

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
enforcer = MaskEnforcer(model, masks)
enforcer.attach([optimizer])
enforcer.apply()          # w <- c * w now; re-zeroed after every optimizer.step() from here on
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from lightning_panning.core.masks import check_masks, zero_pruned_

__all__ = ["MaskEnforcer"]


class MaskEnforcer:
    """Re-zero the pruned weights of a module after every step of the given optimizers.

    The masks are kept as float ``{0., 1.}`` tensors with each parameter's dtype and device, and every optimizer gets
    a :meth:`torch.optim.Optimizer.register_step_post_hook` that runs :func:`~lightning_panning.core.zero_pruned_`
    (one fused ``torch._foreach_mul_``) over the masked parameters that optimizer updates. The hook fires on every
    real parameter update whoever triggers it, so it is right for automatic and manual optimization, gradient
    accumulation (the step happens once per accumulation window), gradient clipping (before the step), AMP's
    ``GradScaler`` (a skipped step changes nothing) and bf16-mixed (parameters stay float32). Momentum and Adam
    buffers may hold non-zero values for pruned entries; that is harmless because the weights are re-zeroed after
    every step, and decoupled weight decay (AdamW) of a zero weight is zero.

    Unlike ``torch.nn.utils.prune`` (forward pre-hooks, ``weight_orig``/``weight_mask``), nothing is added to the
    forward pass or to the module's ``state_dict``: checkpoints keep the plain keys.

    Args:
        module: the module whose parameters are masked.
        masks: ``{qualified parameter name: bool tensor of the parameter's shape}``; ``True`` = kept.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(3, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> enforcer = MaskEnforcer(net, {"weight": torch.tensor([[True, False, True], [False, True, False]])})
        >>> enforcer.attach([opt])
        >>> enforcer.apply()
        >>> net(torch.randn(4, 3)).sum().backward(); opt.step()
        >>> int((net.weight == 0).sum())
        3
        >>> enforcer.detach()
    """

    def __init__(self, module: nn.Module, masks: Mapping[str, Tensor]) -> None:
        params = {n: p for n, p in module.named_parameters(remove_duplicate=False) if n in masks}
        check_masks(params, masks)
        missing = [n for n in masks if n not in params]
        if missing:
            raise ValueError(f"Masks name parameters that {type(module).__name__} does not have: {missing}.")
        self.names = list(masks)
        self.params: list[nn.Parameter] = [params[n] for n in self.names]
        self.bool_masks: list[Tensor] = [masks[n].detach().bool() for n in self.names]
        #: layers whose mask keeps everything need no re-zeroing
        self._dense = [bool(m.all()) for m in self.bool_masks]
        self.float_masks: list[Tensor] = []
        self._handles: list[RemovableHandle] = []
        self._attached_ids: list[int] = []
        self._sync_masks()

    def _sync_masks(self) -> None:
        """(Re)build the float masks on each parameter's current device and dtype."""
        pairs = zip(self.bool_masks, self.params, strict=True)
        self.float_masks = [m.to(device=p.device, dtype=p.dtype) for m, p in pairs]

    def _check_placement(self) -> None:
        for mask, param in zip(self.float_masks, self.params, strict=True):
            if mask.device != param.device or mask.dtype != param.dtype:
                self._sync_masks()
                return

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight now (``w ← c ⊙ w``)."""
        self._check_placement()
        zero_pruned_([p.data for p in self.params], self.float_masks)

    def attach(self, optimizers: Iterable[Optimizer]) -> None:
        """Register the post-step hook on each optimizer (replacing any earlier registration)."""
        self.detach()
        for optimizer in optimizers:
            optimizer = getattr(optimizer, "optimizer", optimizer)  # unwrap LightningOptimizer
            self._attached_ids.append(id(optimizer))
            updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
            indices = [i for i, p in enumerate(self.params) if id(p) in updated and not self._dense[i]]
            if not indices:
                continue
            self._handles.append(optimizer.register_step_post_hook(self._make_hook(indices)))

    def _make_hook(self, indices: list[int]) -> Any:
        def hook(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
            self._check_placement()
            zero_pruned_([self.params[i].data for i in indices], [self.float_masks[i] for i in indices])

        return hook

    def attached_to(self, optimizers: Iterable[Optimizer]) -> bool:
        """Whether the hooks are registered on exactly these optimizers (unwrapped)."""
        return [id(getattr(o, "optimizer", o)) for o in optimizers] == self._attached_ids

    def detach(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._attached_ids = []
