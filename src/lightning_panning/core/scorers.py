"""Saliency scorers: one small class each behind :class:`Scorer`, with a name registry.

Every score is a synaptic saliency ``S(θ) = ∂R/∂θ ⊙ θ`` (METHOD §2) taken at the *masked* network ``c ⊙ w`` and
multiplied by the *original* weights ``w``, so a removed weight keeps a score and can come back (resurrection).
The expensive parts (gradient of the loss, Hessian-gradient product, SynFlow path gradient) are computed lazily by
:class:`ScoringContext` and shared, so SNIP and GraSP in one round cost one forward and one double backward.

A new metric is one subclass::

    @register_scorer("grad_norm")
    class GradNorm(Scorer):
        needs = Needs.GRAD

        def saliency(self, ctx):
            return {n: ctx.grad[n] for n in ctx.theta}

A scorer states what it needs by :class:`Needs` flags — the scoring set (``DATA``), the shared gradient (``GRAD``),
the Hessian-gradient product (``HVP``), the data-free path pass (``PATHS``), passes of its own (``OWN_PASSES``,
through :meth:`ScoringContext.forward` over :attr:`ScoringContext.chunks`) — and the loop reads nothing else. Its own
expensive intermediate results can be shared through :meth:`ScoringContext.cached`.

**Chunks and ranks.** The scoring set reaches the context as a :class:`ScoringSet`: a sequence of chunks and a
``reduce`` function (e.g. an all-reduce across processes). Every data pass accumulates size-weighted chunk results,
``Σ_c (n_c / N) ∂L_c/∂θ`` with ``L_c`` the chunk's mean loss, then reduces them; GraSP's ``Hg`` takes the whole
set's ``g``: a second pass accumulates ``∂(gᵀ∇L_c)/∂θ`` with ``g`` held fixed. With one chunk and no ``reduce`` the
context computes exactly the single-batch result; with several it equals it up to floating-point summation order on
networks whose layers treat samples independently. BatchNorm in train mode normalises each chunk by its own
statistics (as the GraSP authors' code does when it iterates over batches). Each chunk's dropout is seeded by the
chunk's index in the whole set's chunking, so a chunk's pass is the same whichever process scores it. A scorer with
passes of its own sums ``share × result`` over :attr:`ScoringContext.chunks` and hands the sums to
:meth:`ScoringContext.reduce` (see :mod:`~lightning_panning.core.distributed` for data-parallel scoring).
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from lightning_panning.core.batch import ClassificationLoss, LossFn, batch_labels, batch_size, split_batch
from lightning_panning.core.functional import call_with, preserved_modes, seeded, twice_differentiable
from lightning_panning.core.inputs import ModelInput, model_input
from lightning_panning.core.phew import layer_graph, phew_order
from lightning_panning.core.probe import path_saliency, warn_if_all_zero

__all__ = [
    "PHEW",
    "SCORERS",
    "SNIP",
    "GraSP",
    "GraSPOriginal",
    "Magnitude",
    "Needs",
    "Random",
    "Scorer",
    "ScorerOutput",
    "ScoringContext",
    "ScoringSet",
    "SynFlow",
    "get_scorer",
    "register_scorer",
]


class Needs(enum.Flag):
    """What a scorer needs from the scoring context (combine with ``|``)."""

    NOTHING = 0
    #: the scoring set (implied by GRAD, HVP and, for data passes, OWN_PASSES)
    DATA = enum.auto()
    #: the shared gradient ``∂L/∂θ`` of the masked network (one forward + backward, shared by SNIP-like scorers)
    GRAD = enum.auto()
    #: the shared Hessian-gradient product ``Hg`` (one double backward, shared with the gradient)
    HVP = enum.auto()
    #: the data-free path pass (SynFlow): calls ``forward`` on an all-ones input
    PATHS = enum.auto()
    #: passes of the scorer's own, through :meth:`ScoringContext.forward` (over :attr:`ScoringContext.chunks`, which
    #: ``micro_batch`` splits; without ``DATA`` the passes are data-free and read at most the inputs' shape)
    OWN_PASSES = enum.auto()


#: Flags that read the scoring set.
DATA_NEEDS = Needs.DATA | Needs.GRAD | Needs.HVP

#: ``reduce(tensors) -> tensors``: sums each tensor over the processes sharing the scoring work (identity alone).
Reduce = Callable[[list[Tensor]], list[Tensor]]


class ScoringSet:
    """The scoring set as chunks scored one after another, and how per-chunk sums are combined across processes.

    Args:
        chunks: batches (each ``(x, y)`` with ``x`` of shape ``(n_c, ...)``, or any layout the loss reads).
        reduce: sums a list of tensors over the processes that share the scoring work (each process scoring its
            own chunks), returning the sums; ``None`` for one process.
        size: samples over all processes' chunks, when known (else :meth:`total` asks ``reduce``).
        indices: each chunk's index in the whole set's chunking (default ``0, 1, ...``): a chunk's dropout is seeded
            by it, so the passes do not depend on which process scores which chunk.

    Example:
        >>> import torch
        >>> data = ScoringSet.split((torch.randn(10, 3), torch.arange(10) % 2), micro_batch=4)
        >>> data.sizes
        [4, 4, 2]
    """

    def __init__(
        self,
        chunks: list[Any],
        reduce: Reduce | None = None,
        *,
        size: int | None = None,
        indices: list[int] | None = None,
    ) -> None:
        if not chunks:
            raise ValueError("A scoring set needs at least one chunk.")
        self.chunks = list(chunks)
        self.reduce = reduce
        self.indices = list(range(len(self.chunks))) if indices is None else list(indices)
        if len(self.indices) != len(self.chunks):
            raise ValueError(f"`indices` has {len(self.indices)} entries for {len(self.chunks)} chunks.")
        self._size = size

    @property
    def sizes(self) -> list[int]:
        """Samples in each chunk."""
        return [batch_size(c) for c in self.chunks]

    @classmethod
    def split(cls, batch: Any, micro_batch: int | None = None, reduce: Reduce | None = None) -> ScoringSet:
        """``batch`` as chunks of at most ``micro_batch`` samples (``None``: one chunk)."""
        if isinstance(batch, ScoringSet):
            return batch
        if micro_batch is None:
            return cls([batch], reduce)
        return cls(split_batch(batch, micro_batch), reduce)

    @property
    def exact(self) -> bool:
        """One chunk in one process: the passes are the single-batch passes, bit for bit."""
        return len(self.chunks) == 1 and self.reduce is None

    def total(self) -> int:
        """Samples over all chunks of all processes (asked of ``reduce`` once when not given as ``size``)."""
        if self._size is None:
            local = sum(self.sizes)
            if self.reduce is None:
                return local
            self._size = int(self.reduce([torch.tensor([float(local)], dtype=torch.float64)])[0].item())
        return self._size

    def __repr__(self) -> str:
        return f"ScoringSet(chunks={len(self.chunks)}, sizes={self.sizes}, reduced={self.reduce is not None})"


def chunk_seed(seed: int, index: int) -> int:
    """The dropout seed of chunk ``index`` of a chunked pass: ``seed`` for the first chunk (as the one-batch pass)."""
    return seed + (index << 32)


@dataclass
class Gradients:
    """One gradient pass over the scoring batch: loss, ``gᵀg``, ``g`` and (when asked) ``Hg``, keyed by name."""

    loss: float
    grad_norm: float
    grad: dict[str, Tensor]
    hvp: dict[str, Tensor] | None


class ScoringContext:
    """The state one scoring round sees, with the shared gradient computations cached.

    Args:
        model: the network; never modified (parameters, buffers, modes, ``requires_grad``, ``.grad``).
        params: ``{name: parameter}`` of the prunable weights, each of shape ``W_n``.
        masks: ``{name: bool tensor of shape W_n}``, or ``None`` for the dense network.
        batch: the scoring batch (``(x, y)`` with ``x`` of shape ``(B, ...)``), a :class:`ScoringSet` of chunks, or
            ``None`` for data-free scoring. ``loss_fn`` must return the mean over a chunk's samples (as the default
            cross-entropy does) so that size-weighted chunk results make the whole set's.
        loss_fn: ``loss_fn(model, batch) -> scalar``; default: cross-entropy with logit temperature 200.
        resurrect: multiply gradients by the original ``w`` (``True``, removed weights can return) or by ``c ⊙ w``.
        masked_data_scores: evaluate the loss (SNIP/GraSP) at ``c ⊙ w`` (``True``, Algorithm 1) or at the unmasked
            ``w`` as the authors' code does (``False``).
        needs_hvp: compute the Hessian-gradient product together with the gradient (one shared graph).
        example_input: a model input whose first sample SynFlow's data-free input copies (a tensor ``(B, ...)``,
            a dict of keyword arguments, a batch or a ModelInput); default: the batch.
        train_mode: run the data-driven scorers with the model in train mode (batch statistics, as the authors).
        seed: seed for dropout and the Random scorer.
        shared: a store for results that do not depend on the mask (with ``masked_data_scores=False``: the loss,
            gradient and Hessian-gradient product of the unmasked network). Contexts given the same store compute
            them once; a :class:`~lightning_panning.core.session.PanningSession` passes one store to all its rounds.
        keep: the round's keep count (the session passes it); read by scorers that choose their own keep set.
    """

    def __init__(
        self,
        model: nn.Module,
        params: Mapping[str, nn.Parameter],
        masks: Mapping[str, Tensor] | None = None,
        batch: Any = None,
        loss_fn: LossFn | None = None,
        *,
        resurrect: bool = True,
        masked_data_scores: bool = True,
        needs_hvp: bool = False,
        example_input: Any = None,
        train_mode: bool = True,
        seed: int = 0,
        shared: MutableMapping[str, Any] | None = None,
        keep: int | None = None,
    ) -> None:
        self.model = model
        self.params = dict(params)
        self.masks = dict(masks) if masks is not None else None
        self.batch = batch
        self.scoring_set: ScoringSet | None = None if batch is None else ScoringSet.split(batch)
        self.loss_fn: LossFn = loss_fn if loss_fn is not None else ClassificationLoss()
        self.resurrect = resurrect
        self.masked_data_scores = masked_data_scores
        self.needs_hvp = needs_hvp
        self.example_input = example_input
        self.train_mode = train_mode
        self.seed = seed
        #: the round's keep count, for scorers that build their keep set themselves (PHEW); ``None`` outside a run
        self.keep = keep
        # where the passes run: the prunable weights' device (the model's, or the CPU, when none is given)
        first = next(iter(self.params.values()), None)
        if first is None:
            first = next(iter(model.parameters()), None)
        self.device = first.device if first is not None else torch.device("cpu")
        self._cache: dict[str, Any] = {}
        self._shared: MutableMapping[str, Any] = shared if shared is not None else {}
        self._masked: dict[str, Tensor] | None = None  # built on first use: a scorer with its own passes never reads it

    @property
    def masked(self) -> dict[str, Tensor]:
        """The masked weights ``c ⊙ w``, detached, ``{name: tensor of shape W_n}`` (``w`` itself without a mask)."""
        if self._masked is None:
            with torch.no_grad():
                self._masked = {
                    n: (p.detach() * self.masks[n] if self.masks is not None else p.detach())
                    for n, p in self.params.items()
                }
        return self._masked

    @property
    def theta(self) -> dict[str, Tensor]:
        """``θ`` multiplying each gradient, ``{name: W_n}``: the original weights (resurrection) or the masked ones."""
        if self.resurrect:
            return {n: p.detach() for n, p in self.params.items()}
        return self.masked

    # -- shared computations -------------------------------------------------------------------------------------
    def cached(self, key: str, compute: Callable[[], Any], *, mask_independent: bool = False) -> Any:
        """``compute()`` once per context (once per ``shared`` store when ``mask_independent``), then its result.

        The seam through which scorers share work: SNIP and GraSP read one gradient pass, and a custom scorer can
        cache its own intermediate results the same way (``ctx.cached("my_jacobian", lambda: ...)``).

        Args:
            key: the result's name (``"gradients"`` and ``"synflow"`` are used by the built-in scorers).
            compute: builds the result.
            mask_independent: the result does not depend on the mask, so contexts of later rounds sharing this
                context's ``shared`` store reuse it.
        """
        store = self._shared if mask_independent else self._cache
        if key not in store:
            store[key] = compute()
        return store[key]

    def _buffers(self) -> dict[str, Tensor]:
        return {n: b.clone() for n, b in self.model.named_buffers()}

    def require_labels(self, scorer: str) -> None:
        """Raise a clear error if the loss needs labels and the batch has none."""
        if self.batch is None:
            raise ValueError(
                f"Scorer {scorer!r} needs data, but no batch was given. Pass data (a DataLoader, Dataset or (x, y) "
                "batch), or use a data-free scorer ('synflow', 'magnitude', 'random')."
            )
        assert self.scoring_set is not None
        if getattr(self.loss_fn, "needs_labels", False) and batch_labels(self.scoring_set.chunks[0]) is None:
            raise ValueError(
                f"Scorer {scorer!r} uses the classification loss, which needs integer labels, but the batch has "
                "none. Give labelled (x, y) data or a `loss_fn(model, batch)` that needs no labels."
            )

    @property
    def chunks(self) -> list[Any]:
        """The scoring set's chunks (``[batch]`` for a single batch); empty without data."""
        return [] if self.scoring_set is None else self.scoring_set.chunks

    def chunk_shares(self) -> list[float]:
        """Each chunk's share ``n_c / N`` of the whole scoring set (all processes), in :attr:`chunks` order."""
        assert self.scoring_set is not None
        total = self.scoring_set.total()
        return [n / total for n in self.scoring_set.sizes]

    def reduce(self, tensors: list[Tensor]) -> list[Tensor]:
        """Sums over the processes sharing the scoring set (the tensors themselves in one process).

        What a scorer with passes of its own calls on its share-weighted sums over :attr:`chunks`, so that it gives
        the whole set's result under data-parallel scoring too (every process calls it, in the same order).

        Args:
            tensors: the local sums, any shapes.
        """
        if self.scoring_set is None or self.scoring_set.reduce is None:
            return list(tensors)
        return self.scoring_set.reduce(list(tensors))

    def forward(
        self,
        fn: Callable[[nn.Module, Any], Any],
        chunk: Any,
        tensors: Mapping[str, Tensor] | None = None,
        *,
        training: bool | None = None,
    ) -> Any:
        """``fn(model, chunk)`` with the prunable weights replaced by ``tensors`` (default: the masked ``c ⊙ w``).

        The pass every data computation of the context makes, for scorers with passes of their own
        (:attr:`Needs.OWN_PASSES`): the model in the context's train/eval mode, buffers copied (BatchNorm's running
        statistics are not touched), dropout seeded from the context's seed, the model itself never modified.
        Gradients flow to ``tensors`` if they require them (in the caller's grad mode).

        Args:
            fn: e.g. ``lambda model, batch: model(batch[0])`` or the context's ``loss_fn``.
            chunk: one of :attr:`chunks` (or any input ``fn`` reads).
            tensors: ``{name: tensor W_n}`` for some or all prunable weights; other parameters or buffers may be
                given too (a buffer given here is used, and updated in place by a train-mode pass, instead of a copy).
            training: the mode of this pass (default: the context's ``train_mode``).
        """
        overrides = {**self._buffers(), **(self.masked if tensors is None else tensors)}
        mode = self.train_mode if training is None else training
        with preserved_modes(self.model, mode), seeded(self.seed, self.device):
            return call_with(self.model, overrides, fn, chunk)

    def _loss_and_grads(self, leaves: dict[str, Tensor], chunk: Any, create_graph: bool) -> tuple[Tensor, list[Tensor]]:
        """The chunk's scalar loss and its gradients with respect to ``leaves`` (zeros where unused)."""
        loss = call_with(self.model, {**self._buffers(), **leaves}, self.loss_fn, chunk)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError(f"`loss_fn` must return a scalar tensor, got {type(loss).__name__} {loss!r:.80}.")
        names = list(leaves)
        grads = torch.autograd.grad(loss, [leaves[n] for n in names], create_graph=create_graph, allow_unused=True)
        return loss, [torch.zeros_like(leaves[n]) if g is None else g for n, g in zip(names, grads, strict=True)]

    def _compute_gradients(self) -> Gradients:
        self.require_labels("snip/grasp")
        assert self.scoring_set is not None
        source = self.masked if self.masked_data_scores else {n: p.detach() for n, p in self.params.items()}
        leaves = {n: t.detach().requires_grad_(True) for n, t in source.items()}
        names = list(leaves)
        hvp: dict[str, Tensor] | None = None
        with (
            preserved_modes(self.model, self.train_mode),
            seeded(self.seed, self.device),
            torch.enable_grad(),
            twice_differentiable(self.needs_hvp),
        ):
            if not self.scoring_set.exact:
                return self._chunked_gradients(leaves)
            loss, grads = self._loss_and_grads(leaves, self.scoring_set.chunks[0], create_graph=self.needs_hvp)
            if self.needs_hvp:
                # z = g(θ)ᵀ stop_grad(g)  ⇒  ∂z/∂θ = H g   (GraSP; one double backward, graph freed right after)
                hvps = self._hvp_terms(leaves, grads, [g.detach() for g in grads])
                hvp = {n: torch.zeros_like(leaves[n]) if h is None else h for n, h in zip(names, hvps, strict=True)}
        return Gradients(
            loss=float(loss.detach()),
            grad_norm=float(sum((g.detach().double() ** 2).sum() for g in grads)),
            grad={n: g.detach() for n, g in zip(names, grads, strict=False)},
            hvp=hvp,
        )

    def _chunked_gradients(self, leaves: dict[str, Tensor]) -> Gradients:
        """``g = Σ_c (n_c/N) ∇L_c`` (reduced), then ``Hg = Σ_c (n_c/N) ∂(gᵀ∇L_c)/∂θ`` with ``g`` fixed (reduced).

        The last local chunk's first pass keeps its graph when ``Hg`` is needed, and its ``∂(gᵀ∇L_c)/∂θ`` is taken
        from that graph as soon as ``g`` is reduced (the graph is freed before the next chunk is run again): one
        forward and backward fewer per round, and under data-parallel scoring without ``micro_batch`` (one chunk per
        rank) each rank makes the passes of a whole-set round. Peak memory stays one chunk's graph; the sum runs over
        the chunks in their order, as before (``create_graph`` does not change the gradient's values).
        """
        assert self.scoring_set is not None
        names = list(leaves)
        shares = self.chunk_shares()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        grad = [torch.zeros_like(leaves[n]) for n in names]
        indices = self.scoring_set.indices
        last = len(self.scoring_set.chunks) - 1
        kept: list[Tensor] | None = None  # the last chunk's gradients, with their graph (only when Hg is needed)
        for i, (chunk, share, index) in enumerate(zip(self.scoring_set.chunks, shares, indices, strict=True)):
            keep = self.needs_hvp and i == last
            with seeded(chunk_seed(self.seed, index), self.device):
                loss, grads = self._loss_and_grads(leaves, chunk, create_graph=keep)
            if keep:
                kept = grads
            loss_sum += loss.detach().double() * share
            for acc, g in zip(grad, grads, strict=True):
                acc.add_(g.detach(), alpha=share)
            # the kept chunk's graph must live in `kept` only: `loss` and `grads` would hold it (and its forward
            # activations) through every Hg pass below, one more chunk's graph at the peak
            del loss, grads
        if self.scoring_set.reduce is not None:
            loss_sum, *grad = self.scoring_set.reduce([loss_sum, *grad])
        hvp: dict[str, Tensor] | None = None
        if self.needs_hvp:
            assert kept is not None
            last_h = self._hvp_terms(leaves, kept, grad)  # frees the kept graph before any other chunk runs again
            kept = None
            acc_h = [torch.zeros_like(leaves[n]) for n in names]
            for i, (chunk, share, index) in enumerate(zip(self.scoring_set.chunks, shares, indices, strict=True)):
                hs = last_h if i == last else self._chunk_hvp_terms(leaves, chunk, index, grad)
                for a, h in zip(acc_h, hs, strict=True):
                    if h is not None:
                        a.add_(h, alpha=share)
            if self.scoring_set.reduce is not None:
                acc_h = self.scoring_set.reduce(acc_h)
            hvp = dict(zip(names, acc_h, strict=True))
        return Gradients(
            loss=float(loss_sum),
            grad_norm=float(sum((g.double() ** 2).sum() for g in grad)),
            grad=dict(zip(names, grad, strict=True)),
            hvp=hvp,
        )

    def _chunk_hvp_terms(
        self, leaves: dict[str, Tensor], chunk: Any, index: Any, fixed: list[Tensor]
    ) -> list[Tensor | None]:
        """One chunk's ``∂(gᵀ∇L_c)/∂θ``: its graph-carrying gradient pass, then :meth:`_hvp_terms`.

        The pass draws the same dropout as the chunk's first pass. The chunk's graph is freed when this returns,
        before the next chunk's pass starts (a loop variable holding it would keep two chunks' graphs alive at once).
        """
        with seeded(chunk_seed(self.seed, index), self.device):
            _, grads = self._loss_and_grads(leaves, chunk, create_graph=True)
        return self._hvp_terms(leaves, grads, fixed)

    @staticmethod
    def _hvp_terms(leaves: dict[str, Tensor], grads: list[Tensor], fixed: list[Tensor]) -> list[Tensor | None]:
        """``∂(gᵀ∇L_c)/∂θ`` for one chunk's graph-carrying gradients ``∇L_c`` and the fixed ``g`` (``None``: unused)."""
        z = sum((g * f).sum() for g, f in zip(grads, fixed, strict=True) if g.requires_grad)
        if not (isinstance(z, Tensor) and z.requires_grad):
            return [None] * len(leaves)
        hs = torch.autograd.grad(z, list(leaves.values()), allow_unused=True)
        return [None if h is None else h.detach() for h in hs]

    def _gradients(self, hvp: bool = False) -> Gradients:
        """The (cached) gradient pass; recomputed once with the Hessian-gradient product if that is asked later."""
        if hvp:
            self.needs_hvp = True
        store = self._cache if self.masked_data_scores else self._shared  # unmasked: the same every round
        found = store.get("gradients")
        if not isinstance(found, Gradients) or (hvp and found.hvp is None):
            found = store["gradients"] = self._compute_gradients()
        return found

    def _computed_gradients(self) -> Gradients | None:
        found = (self._cache if self.masked_data_scores else self._shared).get("gradients")
        return found if isinstance(found, Gradients) else None

    @property
    def loss(self) -> float | None:
        """The scoring loss of the network the data scorers saw, or ``None`` if no data scorer has run."""
        found = self._computed_gradients()
        return None if found is None else found.loss

    @property
    def grad_norm(self) -> float | None:
        """``gᵀg`` of that loss, or ``None`` if no data scorer has run."""
        found = self._computed_gradients()
        return None if found is None else found.grad_norm

    @property
    def grad(self) -> dict[str, Tensor]:
        """``∂L/∂θ`` at the (masked) network, ``{name: tensor of shape W_n}``."""
        return self._gradients().grad

    @property
    def hvp(self) -> dict[str, Tensor]:
        """The Hessian-gradient product ``H g`` (``= ½ ∂(gᵀg)/∂θ``), ``{name: tensor of shape W_n}``."""
        found = self._gradients(hvp=True).hvp
        assert found is not None
        return found

    def model_input(self) -> ModelInput:
        """The call of ``forward`` whose one-sample, data-free form SynFlow feeds (see :mod:`.probe`).

        Taken from ``example_input`` if given, else from the batch (:func:`~lightning_panning.core.inputs.model_input`).
        """
        example = self.example_input
        if example is None and self.scoring_set is not None:
            example = self.scoring_set.chunks[0]
        if example is None:
            raise ValueError(
                "SynFlow and effective sparsity feed a data-free input through `forward` and need its shape: pass "
                "data or `example_input` (a tensor of shape (B, ...), a dict of keyword arguments, or a ModelInput)."
            )
        try:
            return model_input(self.model, example)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"SynFlow and effective sparsity feed a data-free input through `forward` and need its shape: {err}"
            ) from None

    @property
    def synflow(self) -> dict[str, Tensor]:
        """SynFlow saliency ``∂R/∂|θ| ⊙ |θ|`` of ``R = Σ f(1; |c ⊙ w|)``, norm layers in eval mode, ``{name: W_n}``.

        ``θ`` is :attr:`weights`; the pass is float32 or float64 (see :func:`path_saliency`).
        """

        def compute() -> dict[str, Tensor]:
            multipliers = {n: w.abs() for n, w in self.theta.items()}
            scores = path_saliency(self.model, self.params, self.masked, multipliers, self.model_input(), abs_rest=True)
            warn_if_all_zero(self.model, scores)
            return scores

        result: dict[str, Tensor] = self.cached("synflow", compute)
        return result


class ScorerOutput(NamedTuple):
    """What :meth:`Scorer.scores` returns: ``{name: tensor W_n}`` each."""

    saliency: dict[str, Tensor]
    keep: dict[str, Tensor]


class Scorer(ABC):
    """Base class of all scorers: turns a :class:`ScoringContext` into one keep-score per prunable weight.

    Subclasses implement :meth:`saliency` (the signed ``∂R/∂θ ⊙ θ``) and may override :meth:`keep_score`
    (default ``|S|``). Larger keep-scores survive. The base class validates the result (shapes, finite values).
    """

    #: Registry name (set by :func:`register_scorer`).
    name: ClassVar[str] = ""
    #: What the scorer needs from the context (:class:`Needs` flags); the loop reads nothing else.
    needs: ClassVar[Needs] = Needs.NOTHING

    @property
    def needs_data(self) -> bool:
        """Whether the scorer reads the scoring set (:data:`Needs.DATA`, ``GRAD`` or ``HVP``)."""
        return bool(self.needs & DATA_NEEDS)

    @abstractmethod
    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """Signed saliency ``{name: tensor W_n}``."""

    def keep_score(self, saliency: Tensor) -> Tensor:
        """Map a signed saliency tensor to a keep-score tensor of the same shape (larger = keep)."""
        return saliency.abs()

    def scores(self, ctx: ScoringContext, check_finite: bool = True) -> ScorerOutput:
        """The validated signed saliency and the keep-scores (what the Panning loop calls every round).

        Args:
            ctx: the round's scoring context.
            check_finite: also check that every saliency is finite (the loop leaves it to the normalisation when
                that already reduces over the scores).
        """
        saliency = check_scores(self.label, self.saliency(ctx), ctx.params, finite=check_finite)
        return ScorerOutput(saliency, {n: self.keep_score(s) for n, s in saliency.items()})

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """Keep-scores ``{name: tensor W_n}``, checked to be finite."""
        return self.scores(ctx).keep

    @property
    def label(self) -> str:
        """Name used in logs and error messages."""
        return self.name or type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def add_grads(total: dict[str, Tensor], names: Sequence[str], grads: Sequence[Tensor | None]) -> None:
    """Add ``autograd.grad``'s results into ``total`` in place: ``{name: tensor W_n}``, ``None`` (unused) skipped.

    A name's first gradient is kept as it is (autograd's fresh tensor, so adding into it later is safe): no zeroed
    accumulator is allocated and filled. Names never reached stay absent (:func:`summed_grads` fills them).
    """
    for n, g in zip(names, grads, strict=True):
        if g is None:
            continue
        if n in total:
            total[n].add_(g)
        else:
            total[n] = g


def summed_grads(total: Mapping[str, Tensor], like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``total`` for every name of ``like``, in its order, with zeros of ``like[name]``'s shape where none arrived."""
    return {n: total[n] if n in total else torch.zeros_like(t) for n, t in like.items()}


def check_scores(
    scorer: str, scores: Mapping[str, Tensor], params: Mapping[str, nn.Parameter], finite: bool = True
) -> dict[str, Tensor]:
    """Validate a scorer's output: one tensor per prunable parameter, same shape, and (if ``finite``) all finite."""
    missing = [n for n in params if n not in scores]
    if missing:
        raise ValueError(f"Scorer {scorer!r} returned no scores for {missing}.")
    out: dict[str, Tensor] = {}
    for name, param in params.items():
        s = scores[name]
        if s.shape != param.shape:
            raise ValueError(
                f"Scorer {scorer!r} returned shape {tuple(s.shape)} for {name!r}, expected {tuple(param.shape)}."
            )
        if finite and not math.isfinite(float(s.sum(dtype=torch.float64))):  # one reduction; NaN/inf propagate
            nan, inf = int(torch.isnan(s).sum()), int(torch.isinf(s).sum())
            raise ValueError(
                f"Scorer {scorer!r} produced non-finite scores in layer {name!r} ({nan} NaN, {inf} inf of "
                f"{s.numel()}). {_nonfinite_hint(scorer)}"
            )
        out[name] = s
    return out


def _nonfinite_hint(scorer: str) -> str:
    """What to try after non-finite scores, by what the scorer computes (data-free passes use no loss)."""
    found = SCORERS.get(scorer)
    if found is not None and Needs.PATHS in found.needs:
        return (
            "Check the model's weights and buffers for NaN/inf. SynFlow's data-free pass uses no data and no loss; "
            "with SynFlow(dtype='auto') (the default) it falls back to float64 and then to a normalised pass that "
            "cannot overflow, so a non-finite score there comes from NaN/inf in the model itself, or from "
            "dtype='float32'/'float64' forcing one precision: use dtype='auto', or a data-driven method "
            "(method='snip')."
        )
    if found is not None and not found.needs & DATA_NEEDS:
        return "Check the model's weights for NaN/inf."
    return "Check the model and data for NaN/inf, or lower the loss temperature."


SCORERS: dict[str, type[Scorer]] = {}
_S = TypeVar("_S", bound=type[Scorer])


def register_scorer(name: str) -> Callable[[_S], _S]:
    """Class decorator adding a :class:`Scorer` subclass to :data:`SCORERS` under ``name``."""

    def decorator(cls: _S) -> _S:
        if name in SCORERS and SCORERS[name] is not cls:
            raise ValueError(f"A scorer named {name!r} is already registered ({SCORERS[name].__name__}).")
        cls.name = name
        SCORERS[name] = cls
        return cls

    return decorator


def get_scorer(scorer: str | Scorer, **kwargs: Any) -> Scorer:
    """Resolve a scorer given by registry name (``"snip"``) or as an instance."""
    if isinstance(scorer, Scorer):
        return scorer
    if not isinstance(scorer, str) or scorer not in SCORERS:
        raise ValueError(f"Unknown scorer {scorer!r}; allowed: {sorted(SCORERS)} or a Scorer instance.")
    return SCORERS[scorer](**kwargs)


@register_scorer("snip")
class SNIP(Scorer):
    """SNIP, the paper's form: ``|∂L/∂θ ⊙ θ|``.

    Example:
        >>> import torch
        >>> from lightning_panning.core.params import prunable_parameters
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> batch = (torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
        >>> scores = SNIP()(ScoringContext(net, prunable_parameters(net), batch=batch))
        >>> {n: tuple(s.shape) for n, s in scores.items()}
        {'0.weight': (8, 4), '2.weight': (3, 8)}
    """

    needs = Needs.GRAD

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``∂L/∂θ ⊙ θ``."""
        return {n: ctx.grad[n] * w for n, w in ctx.theta.items()}


@register_scorer("grasp")
class GraSP(Scorer):
    """GraSP with the Hessian-gradient product ``Hg`` (one double backward).

    Args:
        variant: ``"improved"`` (the paper's, used by Panning): keep the largest ``|Hg ⊙ θ|``. ``"original"``
            (Wang et al. 2020): GraSP removes the weights with the largest signed ``-Hg ⊙ θ``; the keep-score
            returned is therefore ``Hg ⊙ θ`` (signed, its negation), so keeping the top scores removes exactly what
            GraSP removes.
        factor: multiplies ``Hg``. The GraSP and authors' code differentiate ``gᵀg`` itself, which gives ``2 Hg``
            (``factor=2.0``, exact in floating point). Rankings and every scale-free normalisation are unchanged; it
            matters only where a constant is added to a statistic of the scores (``normalization="sum"``'s ε).
    """

    needs = Needs.GRAD | Needs.HVP

    def __init__(self, variant: Literal["improved", "original"] = "improved", factor: float = 1.0) -> None:
        if variant not in ("improved", "original"):
            raise ValueError(f"`variant` must be 'improved' or 'original', got {variant!r}.")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"`factor` must be a finite number > 0, got {factor!r}.")
        self.variant = variant
        self.factor = float(factor)

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``factor · Hg ⊙ θ``."""
        if self.factor == 1.0:
            return {n: ctx.hvp[n] * w for n, w in ctx.theta.items()}
        return {n: (ctx.hvp[n] * self.factor) * w for n, w in ctx.theta.items()}

    def keep_score(self, saliency: Tensor) -> Tensor:
        """``|Hg ⊙ θ|`` (improved) or ``Hg ⊙ θ`` (original)."""
        return saliency.abs() if self.variant == "improved" else saliency

    @property
    def label(self) -> str:
        """``grasp`` or ``grasp_original``."""
        return "grasp" if self.variant == "improved" else "grasp_original"

    def __repr__(self) -> str:
        factor = "" if self.factor == 1.0 else f", factor={self.factor!r}"
        return f"GraSP(variant={self.variant!r}{factor})"


@register_scorer("synflow")
class SynFlow(Scorer):
    """SynFlow (data-free): ``∂R/∂θ ⊙ θ`` with ``R = Σ f(1; |θ|)``, norm layers in eval mode.

    Only the input *shape* is taken from the data (or ``example_input``); labels are never used. By default the pass
    switches to float64 whenever float32 would overflow (VGG19 and deeper networks), and to a normalised pass with
    each layer's magnitudes divided by a power of two (the same ranking on networks homogeneous in each layer's
    weights) when float64 would too (gated and attention blocks), see :func:`path_saliency`.
    Token-input models (an ``nn.Embedding`` reading integer ids) get the all-ones signal at the embedding, which is
    scored like an input layer fed every token at once (:mod:`~lightning_panning.core.probe`). The keep-score is
    ``|S|`` whatever the options; they matter for ``normalization="authors"`` and trained nets.

    Args:
        signed: the saliency is ``θ · ∂R/∂|θ|`` (sign of ``θ``), as the authors' Panning hands it to their
            normalisation ``|S − μ| / σ``; by default the non-negative ``|θ| · ∂R/∂|θ|``.
        abs_buffers: linearise with ``|·|`` of the floating-point buffers too (BatchNorm's running mean), as the
            authors' and Synaptic-Flow's ``linearize``; no effect at initialisation (running mean 0).
        dtype: ``"auto"`` (float32, float64 when float32 would overflow or underflow, the normalised float64 pass
            when that would too), ``"float32"`` (the authors' plain pass; non-finite scores then raise an error) or
            ``"float64"`` (plain float64 only).

    Example:
        >>> SynFlow(signed=True, abs_buffers=True, dtype="float32")
        SynFlow(signed=True, abs_buffers=True, dtype='float32')
    """

    needs = Needs.PATHS

    def __init__(
        self, signed: bool = False, abs_buffers: bool = False, dtype: Literal["auto", "float32", "float64"] = "auto"
    ) -> None:
        if dtype not in _SYNFLOW_DTYPES:
            raise ValueError(f"`dtype` must be one of {list(_SYNFLOW_DTYPES)}, got {dtype!r}.")
        self.signed = bool(signed)
        self.abs_buffers = bool(abs_buffers)
        self.dtype = dtype

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``∂R/∂|θ| ⊙ |θ|`` (non-negative), or ``∂R/∂|θ| ⊙ θ`` when ``signed``."""
        if not self.abs_buffers and self.dtype == "auto":
            scores = ctx.synflow
        else:
            scores = path_saliency(
                ctx.model,
                ctx.params,
                ctx.masked,
                {n: w.abs() for n, w in ctx.theta.items()},
                ctx.model_input(),
                abs_rest=True,
                abs_buffers=self.abs_buffers,
                dtypes=_SYNFLOW_DTYPES[self.dtype],
                scaling="auto" if self.dtype == "auto" else "plain",
            )
            warn_if_all_zero(ctx.model, scores)
        if not self.signed:
            return scores
        # |θ|·g carries the sign of θ exactly: -(|θ|·g) == θ·g in floating point
        return {n: torch.where(ctx.theta[n] < 0, -s, s) for n, s in scores.items()}

    def __repr__(self) -> str:
        return f"SynFlow(signed={self.signed!r}, abs_buffers={self.abs_buffers!r}, dtype={self.dtype!r})"


_SYNFLOW_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "auto": (torch.float32, torch.float64),
    "float32": (torch.float32,),
    "float64": (torch.float64,),
}


@register_scorer("magnitude")
class Magnitude(Scorer):
    """Magnitude baseline: ``|θ|``."""

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``θ`` itself."""
        return dict(ctx.theta)


@register_scorer("random")
class Random(Scorer):
    """Random baseline: i.i.d. uniform scores drawn from a CPU generator seeded by the context's seed."""

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """Uniform ``[0, 1)`` per weight, reproducible across devices."""
        generator = torch.Generator().manual_seed(ctx.seed)
        return {n: torch.rand(w.shape, generator=generator).to(w.device) for n, w in ctx.theta.items()}

    def keep_score(self, saliency: Tensor) -> Tensor:
        """The uniform draws themselves (already in ``[0, 1)``: no ``abs`` pass)."""
        return saliency

    def scores(self, ctx: ScoringContext, check_finite: bool = True) -> ScorerOutput:
        """As :meth:`Scorer.scores`, without the finiteness pass (uniform draws are finite)."""
        return super().scores(ctx, check_finite=False)


@register_scorer("grasp_original")
class GraSPOriginal(GraSP):
    """GraSP as published (Wang et al. 2020): removes the largest ``-Hg ⊙ θ``; same as ``GraSP("original")``."""

    def __init__(self) -> None:
        super().__init__("original")


@register_scorer("phew")
class PHEW(Scorer):
    """PHEW (Patil & Dovrolis 2021): the weights on biased random walks from input to output (data-free).

    The walks (:mod:`~lightning_panning.core.phew`) run until exactly the round's keep count of weights is reached;
    the keep-score of the ``r``-th weight reached is ``1 − (r − 1) / keep`` and every other weight scores 0, so the
    top-``keep`` selection is PHEW's mask. The walks read the magnitudes of :attr:`ScoringContext.theta` and the
    layer graph traced from the data-free input (the input's shape only), and draw from ``seed``. The mask of an
    earlier round is not used (PHEW is one-shot: ``method="phew"``).

    Example:
        >>> import torch
        >>> from lightning_panning.core.params import prunable_parameters
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> ctx = ScoringContext(net, prunable_parameters(net), example_input=torch.randn(2, 4), keep=6)
        >>> sum(int((s > 0).sum()) for s in PHEW()(ctx).values())
        6
    """

    needs = Needs.PATHS

    def saliency(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """``1 − (r − 1) / keep`` for the ``r``-th weight the walks keep, 0 for the others."""
        if ctx.keep is None:
            raise ValueError(
                "Scorer 'phew' needs the round's keep count (`ScoringContext(keep=...)`); run it through "
                "Panning/prune(method='phew'), which passes it."
            )
        graph = ctx.cached(
            "phew_graph", lambda: layer_graph(ctx.model, ctx.theta, ctx.model_input()), mask_independent=True
        )
        order = phew_order(graph, ctx.keep, ctx.seed)
        keep = max(ctx.keep, 1)
        out: dict[str, Tensor] = {}
        for name, w in ctx.theta.items():
            ranks = torch.from_numpy(order[name]).to(w.device)
            out[name] = torch.where(ranks > 0, 1.0 - (ranks - 1).to(torch.float32) / keep, 0.0)
        return out
