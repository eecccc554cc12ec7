"""Parameter and multiply-accumulate counts of a network, dense and counting only its non-zero weights."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import cast

import torch
from torch import Tensor, nn

from lightning_panning.compaction.reachability import CHANNEL_MODULES
from lightning_panning.compaction.sparse import SparseLinear

__all__ = ["ModelCost", "model_cost"]


@dataclass
class ModelCost:
    """Size and arithmetic of one forward pass of one sample.

    Attributes:
        parameters: stored parameter values (a :class:`SparseLinear` counts its non-zeros, not its index arrays).
        nonzero_parameters: of those, the kept (non-zero, or ``True`` in the given masks) ones.
        macs: multiply-accumulates of the ``Conv*d``/``Linear``/``SparseLinear`` layers as stored (a dense layer
            multiplies every weight, zeros included).
        nonzero_macs: multiply-accumulates of their kept weights only: what an ideal unstructured-sparse kernel
            would compute, the limit of any speed-up from the mask.
        layers: ``{layer name: (macs, nonzero_macs)}``.
    """

    parameters: int
    nonzero_parameters: int
    macs: int
    nonzero_macs: int
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain values (for JSON)."""
        out = asdict(self)
        out["layers"] = {k: list(v) for k, v in self.layers.items()}
        return out


@torch.no_grad()
def model_cost(model: nn.Module, example_input: Tensor, masks: Mapping[str, Tensor] | None = None) -> ModelCost:
    """Count the parameters and per-sample multiply-accumulates (MACs) of ``model`` on one sample of ``example_input``.

    Args:
        model: the network (run once in eval mode; its train/eval flags are restored).
        example_input: a batch ``(B, ...)``; only its first sample is fed.
        masks: ``{parameter name: bool mask}``; kept weights are counted from the masks where given, else from the
            non-zero entries of each weight.

    Returns:
        A :class:`ModelCost`.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, bias=False), torch.nn.Flatten(), torch.nn.Linear(8, 1))
        >>> diagonal = {"0.weight": torch.eye(3, dtype=torch.bool).expand(2, 1, 3, 3)}
        >>> cost = model_cost(net, torch.zeros(1, 1, 4, 4), diagonal)
        >>> cost.macs, cost.nonzero_macs  # conv: 18 weights x 4 positions; linear: 8
        (80, 32)
    """
    masks = masks or {}
    named = dict(model.named_parameters())
    parameters = sum(p.numel() for p in named.values())
    nonzero = 0
    for name, p in named.items():
        nonzero += int(masks[name].sum()) if name in masks else int(torch.count_nonzero(p))
    for module in model.modules():
        if isinstance(module, SparseLinear):
            parameters += module.nnz + (0 if module.bias is None else module.bias.numel())
            nonzero += int(torch.count_nonzero(module.values)) + (
                0 if module.bias is None else int(torch.count_nonzero(module.bias))
            )

    layers: dict[str, tuple[int, int]] = {}
    handles = []

    def hook_for(name: str, module: nn.Module) -> Callable[..., None]:
        def hook(mod: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if isinstance(mod, SparseLinear):
                positions = output.numel() // mod.out_features  # rows of the matrix product
                stored = kept = mod.nnz
            else:
                channels = output.shape[-1] if isinstance(mod, nn.Linear) else output.shape[1]
                positions = output.numel() // channels  # output positions (rows for Linear) of one sample
                weight = cast(Tensor, mod.weight)
                stored = weight.numel()  # = C_out x C_in / groups x kernel: the MACs of one position
                key = f"{name}.weight" if name else "weight"
                kept = int(masks[key].sum()) if key in masks else int(torch.count_nonzero(weight))
            before = layers.get(name, (0, 0))
            layers[name] = (before[0] + stored * positions, before[1] + kept * positions)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (*CHANNEL_MODULES, SparseLinear)):
            handles.append(module.register_forward_hook(hook_for(name, module)))
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        model(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in modes:
            m.training = mode
    return ModelCost(
        parameters=parameters,
        nonzero_parameters=nonzero,
        macs=sum(v[0] for v in layers.values()),
        nonzero_macs=sum(v[1] for v in layers.values()),
        layers=layers,
    )
