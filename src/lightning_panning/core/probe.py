"""The data-free input of SynFlow and effective sparsity, for image-like and token-input models alike.

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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_panning.core.functional import output_sum
from lightning_panning.core.inputs import ModelInput, forward_parameters, model_input

__all__ = ["PathProbe", "with_decoder_inputs"]

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
