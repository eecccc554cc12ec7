"""The data-free path pass (:func:`path_saliency`) of SynFlow and effective sparsity, and its input, for any model.

SynFlow (METHOD §2) feeds an all-ones input; effective sparsity (§4) does the same with the mask as weights. A
model whose input is integer token ids has no "all-ones" input, so the probe moves the all-ones signal to the
first layer that turns ids into vectors:

* **Token embeddings are the input layer.** An ``nn.Embedding`` (or ``nn.EmbeddingBag``) that reads the model's
  integer input is treated as what it is mathematically, a linear layer on one-hot token vectors, and is fed the
  all-ones vector over the vocabulary: its output at every position is the column sum ``Σ_v W[v, :]`` of its
  (linearised) weight — ``|W|`` for SynFlow, the 0/1 mask for effective sparsity. Every embedding row then gets a
  score exactly like the weights of a first ``Linear`` layer under an all-ones input. Other embeddings (positions,
  token types — they read ids the model makes itself) look their rows up as usual. An embedding is recognised as
  reading the model input when its index tensor shares storage with, or equals, an integer tensor of the model
  input. (When embeddings are pruned too, rows of a position table beyond the example's length are on no path of
  the probe: give an example as long as the table.)
* **Other integer inputs** (``attention_mask``, ``token_type_ids``, padding masks) keep the values of the first
  sample of the example; floating-point inputs become ones. The probe is one sample: ``(1, ...)``.
* **Encoder-decoders** (a ``forward`` taking ``decoder_input_ids``, as Hugging Face's T5 and BART) get decoder token
  ids of the encoder input's shape when the example has none (:func:`with_decoder_inputs`); the embedding reading
  them receives the all-ones signal too.
* **Effective sparsity is pure connectivity**: on top of the above, normalisation layers (``LayerNorm``,
  ``GroupNorm``, ``RMSNorm``, and any module class named ``*LayerNorm``/``*RMSNorm``/``*GroupNorm``) pass their input
  through unchanged, the outputs of these layers and of the embeddings are scaled by a (constant, detached) factor
  to the mean ``1 / width``, the token positions are scaled by distinct positive factors in [1, 1.1], and the
  outputs are summed with fixed positive random weights. All of these are positive constants, so the set of weights
  with a non-zero gradient is exactly the set on an input-output path, without the cancellations a per-sample
  normalisation (``Σ LayerNorm(x) = 0``), identical attention values at every position, a saturated attention
  softmax or a softmax output would cause. Networks without such layers and with a floating-point input
  (convolutional networks with BatchNorm) see exactly the pass of METHOD §4, up to the output weights.

A model with integer inputs that no embedding reads (it one-hot encodes them itself, or indexes a raw tensor) has
no place for the signal: the probe raises an error naming the scorers that do not need it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_panning.core.functional import call_with, output_sum, preserved_modes
from lightning_panning.core.inputs import ModelInput, forward_parameters, model_input

__all__ = ["FLOAT32_SAFE_BAND", "PathProbe", "layer_scales", "path_saliency", "warn_if_all_zero", "with_decoder_inputs"]

_NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
_NORM_SUFFIXES = ("LayerNorm", "RMSNorm", "GroupNorm")
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith(_NORM_SUFFIXES)


def _is_integer(t: Tensor) -> bool:
    return not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool


def _same_ids(ids: Tensor, candidates: list[Tensor]) -> bool:
    if not _is_integer(ids):
        return False
    storage = ids.untyped_storage().data_ptr()
    for t in candidates:
        if t.untyped_storage().data_ptr() == storage:
            return True
        if t.shape == ids.shape and t.device == ids.device and torch.equal(t, ids):
            return True
    return False


class PathProbe:
    """The one-sample, data-free input of a SynFlow-style pass, with the hooks that token-input models need.

    Args:
        model: the network.
        example: a shape ``(C, H, W)`` of one sample (all-ones tensor input), or anything :func:`model_input`
            takes (a tensor or batch of shape ``(B, ...)``, a dict, a :class:`ModelInput`).
        connectivity: effective-sparsity mode (see the module docstring); ``False`` for SynFlow.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> lm = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 50))
        >>> probe = PathProbe(lm, torch.randint(0, 50, (4, 6)))
        >>> probe.tokens
        True
        >>> with probe.installed(lm, torch.float32) as inp:
        ...     out = inp(lm)
        >>> out.shape  # one sample; every position saw the embedding's column sums
        torch.Size([1, 6, 50])
    """

    def __init__(self, model: nn.Module, example: Any, connectivity: bool = False) -> None:
        if isinstance(example, tuple) and all(isinstance(s, int) for s in example):
            sample = ModelInput((torch.ones((1, *example)),))
        else:
            sample = with_decoder_inputs(model, model_input(model, example).first_sample())
        self.sample = sample
        self.connectivity = connectivity
        tensors = sample.tensors()
        #: whether the input has integer tensors (token ids) for the embeddings to read
        self.tokens = any(_is_integer(t) for t in tensors)
        #: whether it also has a floating-point input (which carries the all-ones signal itself)
        self.floats = any(t.is_floating_point() for t in tensors)
        self._token_hits = 0

    def _input(self, dtype: torch.dtype, device: torch.device) -> ModelInput:
        def convert(t: Tensor) -> Tensor:
            return torch.ones(t.shape, dtype=dtype, device=device) if t.is_floating_point() else t.to(device).clone()

        return self.sample.map(convert)

    @contextmanager
    def installed(
        self, model: nn.Module, dtype: torch.dtype, device: torch.device | None = None
    ) -> Iterator[ModelInput]:
        """Install the probe's hooks on ``model`` and yield the input to call it with (hooks removed on exit)."""
        if device is None:
            device = next(model.parameters()).device
        inp = self._input(dtype, device)
        ids = [t for t in inp.tensors() if _is_integer(t)] if self.tokens else []
        self._token_hits = 0
        handles: list[RemovableHandle] = []
        for module in model.modules():
            if isinstance(module, _EMBEDDINGS) and ids:
                handles.append(module.register_forward_hook(self._embedding_hook(ids)))
            elif isinstance(module, _EMBEDDINGS) and self.connectivity:
                handles.append(module.register_forward_hook(_rescale))
            elif self.connectivity and _is_norm(module):
                handles.append(module.register_forward_hook(_norm_identity))
        try:
            yield inp
        finally:
            for handle in handles:
                handle.remove()

    def _embedding_hook(self, ids: list[Tensor]) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            if not args or not isinstance(args[0], Tensor) or not _same_ids(args[0], ids):
                return _rescale(module, args, output) if self.connectivity else None
            self._token_hits += 1
            weight = cast(Tensor, module.weight)
            signal = weight.sum(0).to(output.dtype)  # the all-ones one-hot input: Σ_v W[v, :]
            signal = signal.expand(output.shape).contiguous()
            if self.connectivity:  # distinct positive scales per position break the symmetry of attention
                steps = torch.arange(1, signal[..., 0].numel() + 1, dtype=signal.dtype, device=signal.device)
                scale = 1.0 + 0.1 * steps.view(signal.shape[:-1]) / steps.numel()
                signal = _rescaled(signal * scale.unsqueeze(-1))
            return signal

        return hook

    def reduce(self, model: nn.Module, output: Any) -> Tensor:
        """``R``: the sum of the model output (SynFlow), or its positively weighted sum (connectivity).

        Raises:
            ValueError: when the model input is integer-only and no embedding read it.
        """
        if self.tokens and not self.floats and self._token_hits == 0:
            dtypes = sorted({str(t.dtype).replace("torch.", "") for t in self.sample.tensors()})
            raise ValueError(
                f"{type(model).__name__} takes integer input ({', '.join(dtypes)}) but no nn.Embedding or "
                "nn.EmbeddingBag reads it, so SynFlow and effective sparsity have no input layer to feed their "
                "all-ones signal to (the embedding output is where token-input models receive it). Choose scorers "
                "that do not need it: method='snip', 'grasp', 'iterative_snip', 'magnitude' or 'random' (or "
                "Panning(scorers=['snip', 'grasp'], weights={'snip': 0.5, 'grasp': 0.5})), or give a "
                "floating-point `example_input` if the model also accepts one."
            )
        if not self.connectivity:
            return output_sum(output)
        return _weighted_sum(output)


#: Keyword arguments through which an encoder-decoder's ``forward`` receives the decoder's input.
_DECODER_INPUTS = ("decoder_input_ids", "decoder_inputs_embeds")


def _decoder_start(model: nn.Module) -> int:
    """``config.decoder_start_token_id`` of the model or a sub-module (Hugging Face), else 0."""
    for module in model.modules():
        start = getattr(getattr(module, "config", None), "decoder_start_token_id", None)
        if isinstance(start, int):
            return start
    return 0


def with_decoder_inputs(model: nn.Module, sample: ModelInput) -> ModelInput:
    """``sample`` with ``decoder_input_ids`` added when ``forward`` takes them and the sample has no decoder input.

    An encoder-decoder (Hugging Face's T5, BART, ...) called without labels needs its decoder's input too; the data-free
    probe gives it token ids of the encoder input's shape, all ``decoder_start_token_id``. They are token input
    like the encoder's, so the embedding that reads them receives the all-ones signal as well.

    Args:
        model: the network.
        sample: the one-sample call of ``forward``.

    Raises:
        ValueError: when ``forward`` takes decoder inputs, the sample has none, and it has no integer token input
            whose shape they could copy.
    """
    names = forward_parameters(model)
    if "decoder_input_ids" not in names or any(k in sample.kwargs for k in _DECODER_INPUTS):
        return sample
    if len(sample.args) > names.index("decoder_input_ids"):
        return sample  # given positionally
    tokens = [t for t in sample.tensors() if _is_integer(t) and t.ndim >= 2]
    if not tokens:
        raise ValueError(
            f"{type(model).__name__}.forward takes `decoder_input_ids` (an encoder-decoder), but the example input "
            f"{sample.describe()} has no decoder input and no integer token ids whose shape the data-free pass could "
            "copy. Pass `example_input=ModelInput(kwargs={'input_ids': ..., 'decoder_input_ids': ...})` (token ids "
            "of shape (1, length) each), or give batches with a `decoder_input_ids` entry."
        )
    decoder = torch.full_like(tokens[0], _decoder_start(model))
    return ModelInput(sample.args, {**sample.kwargs, "decoder_input_ids": decoder})


def _norm_identity(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    if args and isinstance(args[0], Tensor) and isinstance(output, Tensor) and args[0].shape == output.shape:
        return _rescaled(args[0])
    return None


def _rescaled(t: Tensor) -> Tensor:
    """``t`` times a positive constant that makes its mean ``1 / width`` (``width``: size of the last dimension).

    Small values keep attention logits (``q·k`` over ``width`` features of mask-valued weights) far from softmax
    saturation, where the gradient of a connected Q/K weight would underflow to exactly zero.
    """
    if not t.is_floating_point() or t.numel() == 0:
        return t
    mean = t.detach().abs().mean()
    target = 1.0 / t.shape[-1] if t.ndim > 0 else 1.0
    return t * torch.where(mean > 0, target / mean, torch.ones_like(mean))


def _rescale(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    return _rescaled(output) if isinstance(output, Tensor) else None


def _weighted_sum(output: Any) -> Tensor:
    """``Σ c ⊙ out`` over the output's floating-point tensors, ``c`` fixed positive numbers in [0.5, 1.5)."""
    generator = torch.Generator().manual_seed(0)
    parts: list[Tensor] = []

    def collect(value: Any) -> None:
        if isinstance(value, Tensor):
            if value.is_floating_point():
                weights = torch.rand(value.shape, generator=generator, dtype=value.dtype) + 0.5
                parts.append((value * weights.to(value.device)).sum())
        elif isinstance(value, dict) or hasattr(value, "keys"):
            logits = value.get("logits") if hasattr(value, "get") else None
            for v in [logits] if isinstance(logits, Tensor) else list(value.values()):
                collect(v)
        elif isinstance(value, (tuple, list)):
            for v in value:
                collect(v)

    collect(output)
    if not parts:
        raise TypeError(f"The model output ({type(output).__name__}) contains no floating-point tensor to sum.")
    return torch.stack([p.to(parts[0].dtype) for p in parts]).sum()


#: Float32 is used for a SynFlow-style pass when its path sum ``R`` lies in this band and every score is finite,
#: else float64 (exact either way up to rounding; float32 is several times faster on CPUs, float64 keeps VGG19-scale
#: products finite).
FLOAT32_SAFE_BAND = (1e-30, 1e30)

#: How a SynFlow-style pass treats magnitudes: ``"auto"`` (plain passes, then the normalised one if they were not
#: finite), ``"plain"`` (plain passes only) or ``"normalized"`` (the normalised pass only); see :func:`path_saliency`.
Scaling = Literal["auto", "plain", "normalized"]
SCALINGS: tuple[str, ...] = ("auto", "plain", "normalized")

#: Modules whose weight is laid out ``(inputs, outputs, ...)`` (their output units are along dimension 1).
_INPUT_FIRST = (nn.Embedding, nn.EmbeddingBag, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def layer_scales(model: nn.Module, values: Mapping[str, Tensor]) -> dict[str, float]:
    """The power of two nearest to each prunable tensor's gain ``Σ|v| / (output units)``.

    The gain is the mean output of the layer for an all-ones input with weights ``|v|``: the mean row sum of ``|W|``
    for a ``Linear``/``Conv`` weight ``(out, in, ...)``, the mean column sum for an embedding fed every token or a
    weight stored ``(in, out)`` (transposed convolutions, Hugging Face's ``Conv1D``), the mean for a 1-D tensor.
    Dividing a layer's weights by its scale keeps the data-free signal near 1 from layer to layer, and a power of
    two divides exactly.

    Args:
        model: the network (its module types decide the layout).
        values: ``{name: tensor W_n}``.

    Returns:
        ``{name: 2^k}``, ``1.0`` for an all-zero or non-finite tensor.
    """
    scales: dict[str, float] = {}
    for name, v in values.items():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        try:
            module: nn.Module | None = model.get_submodule(owner)
        except AttributeError:
            module = None
        if v.ndim < 2:
            units = max(v.numel(), 1)
        elif isinstance(module, _INPUT_FIRST) or type(module).__name__ == "Conv1D":
            units = v.shape[1]
        else:
            units = v.shape[0]
        gain = float(v.detach().abs().sum(dtype=torch.float64)) / max(units, 1)
        if gain > 0 and math.isfinite(gain):
            scales[name] = math.ldexp(1.0, min(max(round(math.log2(gain)), -1000), 1000))
        else:
            scales[name] = 1.0
    return scales


def _all_finite(scores: Mapping[str, Tensor]) -> bool:
    """Whether every score is finite, by one sum per layer (NaN and inf propagate through it; no mask tensor)."""
    return all(math.isfinite(float(s.sum())) for s in scores.values())


def path_saliency(
    model: nn.Module,
    params: Mapping[str, nn.Parameter],
    values: Mapping[str, Tensor],
    multipliers: Mapping[str, Tensor],
    example: tuple[int, ...] | Any,
    abs_rest: bool,
    abs_buffers: bool = False,
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
    scaling: Scaling = "auto",
) -> dict[str, Tensor]:
    """``∂R/∂v ⊙ multiplier`` for ``R = sum(model(ones))`` with the prunable weights set to ``|values|``, eval mode.

    **Plain passes.** With the default ``dtypes`` the pass runs in float32 when its path sum stays within
    :data:`FLOAT32_SAFE_BAND` and every score is finite, and is repeated in float64 otherwise (VGG19's SynFlow sum
    exceeds float32's range once weights grow; the squeeze-excitation gates of EfficientNet overflow float32 in their
    gradients while ``R`` is still small).

    **The normalised pass** (``scaling="auto"`` when the last plain pass is still not finite, or
    ``scaling="normalized"``) cannot overflow: every prunable tensor ``v_l`` enters as ``|v_l| / c_l``, where
    ``c_l`` is the power of two nearest to its gain (:func:`layer_scales`), so the all-ones signal stays near 1
    from layer to layer, and the result is ``∂R/∂v'_l ⊙ multiplier_l / c_l``. On a network that is positively
    homogeneous in each layer's weights (bias-free or zero-bias ReLU/max-pool networks, BatchNorm at initialisation:
    LeNet5, VGG) this is today's score divided by the one factor ``∏ c_l`` — the same ranking, bit for bit while no
    value under- or overflows, since powers of two scale exactly. Elsewhere (residual sums, sigmoid/SiLU gates,
    softmax attention, LayerNorm, non-zero biases) it is SynFlow of the network whose layers have unit gain: gates
    and attention work in their active range instead of saturating (``docs/differences.md``). Token-input models get
    the all-ones signal at their embeddings (:class:`~lightning_panning.core.probe.PathProbe`).

    Args:
        model: the network; not modified.
        params: the prunable parameters (names and shapes).
        values: ``{name: tensor W_n}`` to put in place of the prunable weights (their absolute value is used).
        multipliers: ``{name: tensor W_n}`` multiplying each gradient (``|θ|`` for SynFlow, the mask for
            effective sparsity).
        example: shape of one input sample (the input is ``ones(1, *shape)``), or an example model input (a
            tensor or batch ``(B, ...)``, a dict of keyword arguments, a ModelInput) whose first sample the probe
            copies: floating-point tensors become ones, token ids feed the embeddings' all-ones signal.
        abs_rest: other parameters enter as ``|p|`` (SynFlow's linearisation). If ``False`` they enter as a pure
            path indicator instead: biases 0, other parameters 1, BatchNorm running mean 0 and variance 1, mask
            buffers (``*_mask``: ``torch.nn.utils.prune``'s ``weight_mask``, Synaptic-Flow-style masked layers)
            as they are, other floating-point buffers 0, and the probe runs in connectivity mode (used by effective
            sparsity, where only connectivity from input to output matters).
        abs_buffers: with ``abs_rest``, floating-point buffers enter as ``|b|`` too (BatchNorm's running mean), as
            the authors' and Synaptic-Flow's ``linearize`` do; by default they enter unchanged.
        dtypes: the precisions of the plain passes, tried in order; every one but the last is used only while ``R``
            lies in :data:`FLOAT32_SAFE_BAND` and the scores are finite. ``(torch.float32,)`` is the authors' plain
            float32 pass. The normalised pass runs in the last of them.
        scaling: ``"auto"`` (plain passes, then the normalised one if the last is not finite), ``"plain"`` (the
            last plain pass is returned as it is, finite or not) or ``"normalized"`` (only the normalised pass).

    Returns:
        ``{name: tensor W_n}`` in the dtype of the pass that was used.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"`scaling` must be one of {list(SCALINGS)}, got {scaling!r}.")
    device = next(iter(params.values())).device
    probe = PathProbe(model, example, connectivity=not abs_rest)
    passes: list[tuple[torch.dtype, bool]] = []
    if scaling != "normalized":
        passes += [(dtype, False) for dtype in dtypes]
    if scaling != "plain":
        passes.append((dtypes[-1], True))
    for i, (dtype, normalized) in enumerate(passes):
        last = i == len(passes) - 1
        overrides: dict[str, Tensor] = {}
        for name, buf in model.named_buffers():
            if not buf.is_floating_point():
                overrides[name] = buf.clone()
            elif abs_rest:
                overrides[name] = (buf.detach().abs() if abs_buffers else buf.detach()).to(dtype)
            elif name.endswith("running_var"):
                overrides[name] = torch.ones_like(buf, dtype=dtype)
            elif name.endswith("_mask"):  # a mask the module multiplies its weights by: part of the connectivity
                overrides[name] = (buf.detach() != 0).to(dtype)
            else:
                overrides[name] = torch.zeros_like(buf, dtype=dtype)
        for name, p in model.named_parameters():
            if name in params:
                continue
            if abs_rest:
                overrides[name] = p.detach().abs().to(dtype)
            else:
                fill = 0.0 if name.rsplit(".", 1)[-1] == "bias" else 1.0
                overrides[name] = torch.full_like(p, fill, dtype=dtype)
        magnitudes = {n: values[n].detach().abs().to(dtype) for n in params}
        scales = layer_scales(model, magnitudes) if normalized else dict.fromkeys(params, 1.0)
        leaves = {n: (m / scales[n] if normalized else m).requires_grad_(True) for n, m in magnitudes.items()}
        overrides.update(leaves)
        with preserved_modes(model, False), torch.enable_grad(), probe.installed(model, dtype, device) as inputs:
            r = probe.reduce(model, call_with(model, overrides, lambda m, inp: inp(m), inputs))
            r_value = float(r.detach())
            in_band = FLOAT32_SAFE_BAND[0] <= abs(r_value) <= FLOAT32_SAFE_BAND[1]
            if not last and not normalized and dtype != dtypes[-1] and not in_band:
                continue
            if not last and not math.isfinite(r_value):
                continue
            if not r.requires_grad:  # no path reaches any prunable weight
                return {n: torch.zeros_like(leaves[n]) for n in params}
            grads = torch.autograd.grad(r, list(leaves.values()), allow_unused=True)
        scores = {
            n: torch.zeros_like(leaves[n]) if g is None else g * multipliers[n].to(dtype)
            for n, g in zip(leaves, grads, strict=False)
        }
        if normalized:
            scores = {n: s / scales[n] for n, s in scores.items()}
        if last or (_all_finite(scores) and (r_value != 0.0 or scaling == "plain")):
            return scores
    raise AssertionError("unreachable")


def warn_if_all_zero(model: nn.Module, scores: Mapping[str, Tensor]) -> None:
    """Warn when every SynFlow score is zero: the output does not depend on the weights at the data-free input."""
    if not any(bool(s.any()) for s in scores.values()):
        warnings.warn(
            f"SynFlow scores of {type(model).__name__} are all zero: its output does not depend on the prunable "
            "weights at the data-free input (an all-zero output layer or mask, or an output that ends in a "
            "normalisation, whose sum is constant). SynFlow then ranks nothing; use data-driven scorers "
            "(method='snip', 'grasp', 'iterative_snip') or keep such layers dense.",
            UserWarning,
            stacklevel=4,
        )
