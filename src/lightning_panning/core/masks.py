"""Masks: application, density, effective sparsity, the output-spread probe and compact storage."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lightning_panning.core.inputs import model_input, output_logits, single_device
from lightning_panning.core.probe import path_saliency
from lightning_panning.core.scorers import ScoringContext

__all__ = [
    "EffectiveSparsity",
    "Masks",
    "apply_masks",
    "check_masks",
    "density",
    "effective_masks",
    "effective_sparsity",
    "output_spread",
    "pack_masks",
    "shuffle_masks",
    "unpack_masks",
    "untrainable_reason",
    "zero_pruned_",
]

#: ``{qualified parameter name: bool tensor of the parameter's shape}``; ``True`` = kept.
Masks = dict[str, Tensor]


def check_masks(params: Mapping[str, nn.Parameter | Tensor], masks: Mapping[str, Tensor]) -> None:
    """Raise a clear error unless ``masks`` has one boolean-compatible tensor of the right shape per parameter."""
    unknown = [n for n in masks if n not in params]
    if unknown:
        raise ValueError(f"Masks name parameters the model does not have (or that are not prunable): {unknown}.")
    for name, mask in masks.items():
        if not isinstance(mask, Tensor):
            raise TypeError(f"Mask {name!r} must be a tensor, got {type(mask).__name__}.")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise ValueError(
                f"Mask {name!r} has shape {tuple(mask.shape)} but the parameter has shape {tuple(params[name].shape)}."
            )


def _named_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> nn.Module:
    """Zero the pruned weights of ``model`` in place (``w ← c ⊙ w``) and return it.

    Args:
        model: the network.
        masks: ``{qualified name: bool tensor W_n}``, as returned by :func:`lightning_panning.prune`.

    Raises:
        ValueError: on unknown names or mismatched shapes.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 2)
        >>> _ = apply_masks(net, {"weight": torch.tensor([[True, False], [False, True]])})
        >>> int((net.weight == 0).sum())
        2
    """
    params = _named_parameters(model)
    check_masks(params, masks)
    for name, mask in masks.items():
        params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))
    return model


@torch.no_grad()
def zero_pruned_(params: list[Tensor], masks: list[Tensor]) -> None:
    """Multiply each tensor by its mask in place with one fused ``_foreach_mul_`` (the training-time enforcement).

    ``masks`` must already have the parameters' dtype and device (``{0., 1.}`` values).
    """
    if params:
        torch._foreach_mul_(params, masks)


def density(masks: Mapping[str, Tensor]) -> tuple[float, dict[str, float]]:
    """Overall and per-layer fraction of kept weights.

    Returns:
        ``(overall density, {name: layer density})``; sparsity is ``1 - density``.
    """
    counts = {n: int(torch.count_nonzero(m)) for n, m in masks.items()}  # one pass per mask, exact
    per_layer = {n: counts[n] / max(m.numel(), 1) for n, m in masks.items()}
    total = sum(m.numel() for m in masks.values())
    return sum(counts.values()) / max(total, 1), per_layer


@dataclass
class EffectiveSparsity:
    """Nominal and effective sparsity of a masked network (Vysogorets & Kempe 2021; METHOD §4).

    Attributes:
        nominal: ``1 - kept / m``.
        effective: ``1 - effective kept / m``; ``1.0`` means the network is dead (layer collapse).
        layer_density: per-layer fraction of weights that are kept.
        layer_effective_density: per-layer fraction of weights that are kept *and* on an input-output path.
        dead_units: per layer, ``(units with no effective weight, units)``; units are output channels/neurons
            (dim 0 of the weight).
    """

    nominal: float
    effective: float
    layer_density: dict[str, float] = field(default_factory=dict)
    layer_effective_density: dict[str, float] = field(default_factory=dict)
    dead_units: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def dead(self) -> bool:
        """Whether no path from input to output survives."""
        return self.effective >= 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-value dictionary (for loggers and JSON)."""
        return {
            "nominal_sparsity": self.nominal,
            "effective_sparsity": self.effective,
            "layer_density": dict(self.layer_density),
            "layer_effective_density": dict(self.layer_effective_density),
            "dead_units": {k: list(v) for k, v in self.dead_units.items()},
        }


def effective_masks(model: nn.Module, masks: Mapping[str, Tensor], example_input: Any = None) -> Masks:
    """Which kept weights lie on some input-to-output path: a SynFlow-style pass on the mask itself.

    Prunable weights are replaced by their mask (0/1), biases by 0, other parameters by 1, BatchNorm statistics by
    mean 0 / variance 1; an all-ones input is fed (float32, or float64 where float32 would overflow) and a weight
    is effective iff ``mask × ∂R/∂w ≠ 0``. Token-input models get the signal at their embeddings, and
    normalisation layers pass their input through (connectivity only; see :mod:`~lightning_panning.core.probe`), as
    do clamping activations (``ReLU6``, ``Hardtanh``, ``Hardsigmoid``), which the pass's growing values would
    otherwise saturate.

    Args:
        model: the network (not modified).
        masks: ``{name: bool tensor W_n}`` for every pruned parameter.
        example_input: a tensor ``(B, ...)`` whose per-sample shape the ones input copies, or a batch, a dict of
            keyword arguments or a ModelInput (see :func:`~lightning_panning.core.inputs.model_input`).

    Returns:
        ``{name: bool tensor W_n}``.
    """
    if example_input is None:
        raise ValueError(
            "Effective sparsity feeds a data-free input and needs its shape: pass `example_input` "
            "(a tensor of shape (B, ...), a batch, a dict of keyword arguments or a ModelInput)."
        )
    single_device(model)
    params = {n: p for n, p in model.named_parameters() if n in masks}
    check_masks(params, masks)
    device = next(iter(params.values())).device
    values = {n: masks[n].to(device=device, dtype=torch.float32) for n in params}
    with _unsaturated(model):
        saliency = path_saliency(model, params, values, values, example_input, abs_rest=False)
    return {n: s != 0 for n, s in saliency.items()}


#: Activation modules that clamp their input, so that a large enough value has an exactly zero gradient.
_CLAMPING = (nn.Hardtanh, nn.Hardsigmoid)  # nn.ReLU6 is a Hardtanh


@contextmanager
def _unsaturated(model: nn.Module) -> Iterator[None]:
    """Let clamping activations (``ReLU6``, ``Hardtanh``, ``Hardsigmoid``) pass their input through, inside the block.

    The connectivity pass feeds sums of ones through 0/1 weights: its values grow with every layer and, past 6 (or
    3), a ``ReLU6`` (or ``Hardsigmoid``) gives them a zero gradient, which would report every weight before it as
    on no path (torchvision's MobileNetV2: 52 of 53 layers). The pass's values are never negative, so for
    connectivity a clamping activation is the identity. Activations called as functions (``F.relu6``) are not seen.
    """
    inputs: dict[int, Tensor] = {}

    def keep_input(module: nn.Module, args: tuple[Any, ...]) -> Any:
        if args and isinstance(args[0], Tensor):
            inputs[id(module)] = args[0]
            return (args[0].clone(), *args[1:])  # the module may work in place (``inplace=True``)
        return None

    def pass_input(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        kept = inputs.pop(id(module), None)
        return kept if isinstance(output, Tensor) and kept is not None and kept.shape == output.shape else None

    handles = []
    for module in model.modules():
        if isinstance(module, _CLAMPING):
            handles.append(module.register_forward_pre_hook(keep_input))
            handles.append(module.register_forward_hook(pass_input))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def effective_sparsity(model: nn.Module, masks: Mapping[str, Tensor], example_input: Any = None) -> EffectiveSparsity:
    """Nominal and effective sparsity, per-layer densities and dead-unit counts of ``model`` under ``masks``.

    Args:
        model: the network (not modified).
        masks: ``{name: bool tensor W_n}``.
        example_input: a tensor ``(B, ...)``, an ``(x, y)`` batch, a dict of keyword arguments or a ModelInput
            giving the input's shape and layout.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
        >>> masks = {"0.weight": torch.tensor([[True, True], [False, False]]),
        ...          "1.weight": torch.tensor([[False, True]])}
        >>> effective_sparsity(net, masks, torch.zeros(1, 2)).effective  # unit 0 feeds nothing; unit 1 gets nothing
        1.0
    """
    eff = effective_masks(model, masks, example_input)
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    eff_kept = sum(int(e.sum()) for e in eff.values())
    dead: dict[str, tuple[int, int]] = {}
    for n, e in eff.items():
        units = e.reshape(e.shape[0], -1).any(dim=1) if e.ndim > 0 else e.reshape(1)
        dead[n] = (int((~units).sum()), int(units.numel()))
    return EffectiveSparsity(
        nominal=1.0 - kept / total,
        effective=1.0 - eff_kept / total,
        layer_density={n: float(m.float().mean()) for n, m in masks.items()},
        layer_effective_density={n: float(e.float().mean()) for n, e in eff.items()},
        dead_units=dead,
    )


#: Effective density below this fraction of the nominal density counts as "far" above the target (a warning).
FAR_ABOVE_TARGET = 0.5

_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def untrainable_reason(
    model: nn.Module, masks: Mapping[str, Tensor], target: float, effective: EffectiveSparsity | None = None
) -> str | None:
    """Why ``masks`` may leave ``model`` unable to train, with what to try, in words; ``None`` when nothing is wrong.

    Two signs are looked for: a pruned layer left without a weight (without an *effective* weight, one on an
    input-output path, when ``effective`` is given), and an effective density below :data:`FAR_ABOVE_TARGET` times
    the nominal one (most kept weights lie on no path, as in layer collapse). Normalisation layers whose weights are
    all zero (zero-initialised residual branches) are named as the likely cause: every saliency of the layers
    before them is 0.

    Args:
        model: the network.
        masks: ``{name: bool tensor W_n}``.
        target: the requested sparsity.
        effective: the masks' :func:`effective_sparsity`, if measured (else only emptied layers are looked for).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> masks = {"0.weight": torch.zeros(4, 4, dtype=torch.bool), "2.weight": torch.ones(2, 4, dtype=torch.bool)}
        >>> print(untrainable_reason(net, masks, 0.5))  # doctest: +ELLIPSIS
        1 of 2 pruned layers keep no weight: 0.weight. Try a lower `target`, fewer `rounds`, ...
    """
    if effective is not None:
        densities = dict(effective.layer_effective_density)
    else:
        densities = {n: float(m.float().mean()) for n, m in masks.items()}
    empty = [n for n in masks if densities.get(n, 1.0) == 0.0 and masks[n].numel() > 0]
    problems: list[str] = []
    if effective is not None and effective.nominal < 1.0:
        share = (1.0 - effective.effective) / (1.0 - effective.nominal)
        if share < FAR_ABOVE_TARGET:
            problems.append(
                f"effective sparsity {effective.effective:.4f} against the target {target:g} (only {share:.1%} of "
                "the kept weights lie on an input-output path)"
            )
    if empty:
        shown = ", ".join(empty[:5]) + (f", ... ({len(empty) - 5} more)" if len(empty) > 5 else "")
        kind = "effective weight" if effective is not None else "weight"
        problems.append(f"{len(empty)} of {len(masks)} pruned layers keep no {kind}: {shown}")
    if not problems:
        return None
    text = "; ".join(problems) + "."
    zero_norms = [
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, _NORM_TYPES)
        and isinstance(getattr(module, "weight", None), Tensor)
        and module.weight.numel() > 0
        and not module.weight.is_meta
        and not bool(module.weight.detach().any())
    ]
    if zero_norms:
        shown = ", ".join(zero_norms[:3]) + (", ..." if len(zero_norms) > 3 else "")
        text += (
            f" {len(zero_norms)} normalisation layers have all-zero weights ({shown}): zero-initialised residual "
            "branches (timm's `zero_init_last=True`, torchvision's `zero_init_residual=True`) give every layer "
            "before them a saliency of 0, so those layers are removed or kept arbitrarily. Prune the model built "
            "without that option (timm: `zero_init_last=False`), or set those weights to 1 while pruning."
        )
    return (
        text + f" {'Otherwise, try' if zero_norms else 'Try'} a lower `target`, fewer `rounds`, another method "
        "('synflow' is designed against layer collapse; 'magnitude'), or leave the emptied layers dense with "
        "`exclude=`."
    )


def _spread(output: Any) -> float | None:
    logits = output_logits(output)
    if isinstance(logits, (tuple, list)) and logits and isinstance(logits[0], Tensor):
        logits = logits[0]  # e.g. a Hugging Face model called with return_dict=False: logits come first
    if not isinstance(logits, Tensor) or logits.ndim == 0:
        raise ValueError(
            f"the output spread needs a tensor output of shape (B, ...) (or `.logits`), got {type(logits).__name__}"
            f"{'' if not isinstance(logits, Tensor) else ' of shape ()'}"
        )
    if logits.shape[0] < 2:
        return None  # one sample has no spread
    flat = logits.detach().float().reshape(logits.shape[0], -1)
    return float(flat.std(dim=0).mean())


def output_spread(model: nn.Module, masks: Mapping[str, Tensor], example_input: Any) -> tuple[float, float] | None:
    """How much the output varies over the samples of a real batch, without and with ``masks``.

    The spread of an output of shape ``(B, ...)`` (or its ``logits``, or the first tensor of a tuple) is the
    standard deviation over the ``B`` samples of each output entry, averaged over the entries: 0 when every sample
    gets the same output. A pruned network can keep input-output paths (effective sparsity below 1) and still have
    spread 0 on real data, when the activations on every remaining path are zero for every sample (dead ReLUs):
    then no gradient reaches a kept weight through them, and training fits a constant output. Measured in eval mode
    without gradients, through the scoring context's public pass
    (:meth:`~lightning_panning.core.scorers.ScoringContext.forward`: ``weight × mask`` swapped in for the call, one
    masked copy of the pruned parameters, buffers copied, the RNG untouched), so ``model`` is not modified, shared
    modules included.

    Args:
        model: the network.
        masks: ``{name: bool tensor W_n}`` for pruned parameters of ``model``.
        example_input: real samples: a tensor ``(B, ...)``, a batch, a dict of keyword arguments or a ModelInput
            (see :func:`~lightning_panning.core.inputs.model_input`).

    Returns:
        ``(dense spread, pruned spread)``, or ``None`` when the batch has a single sample (``B = 1``: no spread).

    Raises:
        ValueError: when the output is not a tensor of shape ``(B, ...)`` (nor has one as ``logits`` or first).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
        >>> dense, pruned = output_spread(net, {"0.weight": torch.zeros(4, 3, dtype=torch.bool)}, x)
        >>> dense > 0, pruned   # no weight left into the hidden layer: every sample gets the same output
        (True, 0.0)
    """
    inputs = model_input(model, example_input)
    params = dict(model.named_parameters())
    check_masks(params, masks)
    # the scoring context's public pass: eval mode, buffers copied, the RNG untouched, the model never modified
    ctx = ScoringContext(model, {n: params[n] for n in masks}, masks, train_mode=False)
    with torch.no_grad():
        dense = _spread(ctx.forward(lambda m, inp: inp(m), inputs, ctx.theta))
        if dense is None:
            return None
        pruned = _spread(ctx.forward(lambda m, inp: inp(m), inputs))
    return None if pruned is None else (dense, pruned)


def pack_masks(masks: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    """Compact masks (1 bit per weight) for checkpoints: ``{name: {"shape": [...], "bits": uint8 tensor}}``.

    Example:
        >>> import torch
        >>> m = {"w": torch.rand(3, 5) > 0.5}
        >>> torch.equal(unpack_masks(pack_masks(m))["w"], m["w"])
        True
    """
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)
    packed: dict[str, dict[str, Any]] = {}
    for name, mask in masks.items():
        flat = mask.detach().reshape(-1).to("cpu", torch.uint8)
        pad = (-flat.numel()) % 8
        if pad:
            flat = torch.cat([flat, flat.new_zeros(pad)])
        bits = (flat.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)
        packed[name] = {"shape": list(mask.shape), "bits": bits}
    return packed


def unpack_masks(packed: Mapping[str, Mapping[str, Any]]) -> Masks:
    """Inverse of :func:`pack_masks`: ``{name: bool tensor of the stored shape}`` on the CPU."""
    shifts = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)
    out: Masks = {}
    for name, entry in packed.items():
        shape = [int(s) for s in entry["shape"]]
        numel = 1
        for s in shape:
            numel *= s
        bits = entry["bits"].to("cpu", torch.uint8)
        flat = ((bits.unsqueeze(1) >> shifts) & 1).reshape(-1)[:numel].bool()
        out[name] = flat.view(shape)
    return out


def shuffle_masks(masks: Mapping[str, Tensor], seed: int = 0) -> Masks:
    """Randomly permute the kept positions within each layer (same per-layer densities, shuffled positions).

    The sanity check of Frankle et al. (2021): if accuracy survives this, the method chose layer-wise densities,
    not individual weights.

    Example:
        >>> import torch
        >>> m = {"w": torch.tensor([True, True, False, False, False])}
        >>> int(shuffle_masks(m, seed=1)["w"].sum())
        2
    """
    generator = torch.Generator().manual_seed(seed)
    out: Masks = {}
    for name, mask in masks.items():
        perm = torch.randperm(mask.numel(), generator=generator).to(mask.device)
        out[name] = mask.reshape(-1)[perm].view(mask.shape)
    return out
