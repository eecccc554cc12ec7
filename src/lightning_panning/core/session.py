"""The Panning loop (Algorithm 1) as a session advanced one round at a time.

Each round: ask the weight schedule for ``p_k`` (:mod:`.weights`), score the masked network through one shared
:class:`~lightning_panning.core.scorers.ScoringContext`, normalise and fuse (:mod:`.fusion`), and let the selector
(:mod:`.selection`) keep the round's weights. The loop has no rule of its own: every choice is one of those seams.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lightning_panning.core.batch import batch_size
from lightning_panning.core.distributed import DataParallel
from lightning_panning.core.fusion import NonFiniteScores, fuse, normalize
from lightning_panning.core.masks import Masks, effective_sparsity, shuffle_masks
from lightning_panning.core.results import PruningResult, RoundRecord
from lightning_panning.core.scorers import ScoringContext, ScoringSet, check_scores

if TYPE_CHECKING:
    from lightning_panning.core.pruner import Panning

__all__ = ["PanningSession"]


class PanningSession:
    """One pruning run, advanced a round at a time (the Gymnasium environment drives it step by step).

    Use :meth:`Panning.start <lightning_panning.core.pruner.Panning.start>` to create one. ``masks`` is ``None``
    (dense) before the first round. A :class:`~lightning_panning.core.weights.WeightSchedule` reads the session
    before each round: :attr:`round`, :attr:`sparsity`, :attr:`keep`, :attr:`masks` and :attr:`generator`.

    Args:
        pruner: the configuration.
        model: the network (never modified).
        params: ``{name: parameter W_n}`` of the prunable weights.
        batch: the scoring set: a batch, a :class:`~lightning_panning.core.scorers.ScoringSet` of chunks, or
            ``None`` for data-free methods.
        target: final sparsity in (0, 1).
        example_input: what SynFlow and effective sparsity take the input's layout from (default: the batch).
        parallel: the processes sharing the scoring work (:class:`~lightning_panning.core.distributed.DataParallel`:
            this process scores its own chunks of the set and the sums are all-reduced), or ``None`` for one process.
    """

    def __init__(
        self,
        pruner: Panning,
        model: nn.Module,
        params: dict[str, nn.Parameter],
        batch: Any,
        target: float,
        example_input: Any,
        parallel: DataParallel | None = None,
    ) -> None:
        self.pruner = pruner
        self.model = model
        self.params = params
        self.parallel = parallel
        #: how the scoring set is shared (plain values for logs): ``world_size``, ``scoring_set_size`` (samples, or
        #: ``None`` without data), ``micro_batch`` and ``shard_sizes`` (samples each rank scores)
        self.layout: dict[str, Any] = self._layout(batch)
        self.batch = self._chunked(batch)
        self.target = target
        # what SynFlow and effective sparsity take their data-free input from (resolved against forward when used)
        self.example_input = example_input if example_input is not None else batch
        self.total = sum(p.numel() for p in params.values())
        #: the values the scorers see (the parameters, or re-initialised copies with ``reinit_linear``)
        self.scoring_params: dict[str, Tensor] = pruner.scoring_params(model, params)
        #: every round's sparsity ``ρ_i`` and keep count, as the selector plans them
        self.schedule, self.keeps = pruner.selector.plan(pruner.schedule_fn, target, pruner.rounds, self.total)
        self.masks: Masks | None = None
        self.round = 0
        self.history: list[RoundRecord] = []
        self.generator = torch.Generator().manual_seed(pruner.seed)
        self._ctx: ScoringContext | None = None
        self._shared: dict[str, Any] = {}  # mask-independent results (the unmasked SNIP/GraSP pass), every round
        self._warned_zero = False  # the all-zero fused scores warning was given
        self.seconds = 0.0
        pruner.weights.reset()

    def _chunked(self, batch: Any) -> Any:
        """The scoring set as the pruner's ``micro_batch`` chunks it (the batch itself without ``micro_batch``).

        Under data-parallel scoring: this rank's chunks (one per rank without ``micro_batch``), reduced over the ranks.
        A ready :class:`ScoringSet` is used as given.
        """
        if batch is None or not self.pruner.scores_in_chunks or isinstance(batch, ScoringSet):
            return batch
        if self.parallel is not None:
            return self.parallel.shard(batch, self.pruner.micro_batch)
        if self.pruner.micro_batch is None:
            return batch
        return ScoringSet.split(batch, self.pruner.micro_batch)

    def _layout(self, batch: Any) -> dict[str, Any]:
        """How ``batch`` is shared among the ranks (see :attr:`layout`)."""
        micro_batch = self.pruner.micro_batch
        size: int | None = None
        if isinstance(batch, ScoringSet):
            size = sum(batch.sizes) if batch.reduce is None else None
        elif batch is not None and self.pruner.needs_data:
            try:
                size = batch_size(batch)
            except TypeError:  # a layout only a custom loss reads
                size = None
        shards: list[int] | None = None
        if size is not None:
            shards = [size] if self.parallel is None else self.parallel.shard_sizes(size, micro_batch)
        world = 1 if self.parallel is None else self.parallel.world_size
        return {"world_size": world, "scoring_set_size": size, "micro_batch": micro_batch, "shard_sizes": shards}

    @property
    def done(self) -> bool:
        """Whether all rounds have run."""
        return self.round >= len(self.schedule)

    @property
    def sparsity(self) -> float:
        """The sparsity ``ρ_i`` of the round about to run (the last round's once done)."""
        return self.schedule[min(self.round, len(self.schedule) - 1)]

    @property
    def keep(self) -> int:
        """The keep count of the round about to run (the last round's once done)."""
        return self.keeps[min(self.round, len(self.keeps) - 1)]

    def set_batch(self, batch: Any) -> None:
        """Score with a new scoring set from now on (its cached scoring contexts, masked and unmasked, are dropped).

        The batch is chunked by the pruner's ``micro_batch`` (and shared among the ranks) as at :meth:`Panning.start`.
        """
        self.layout = self._layout(batch)
        self.batch = self._chunked(batch)
        self._ctx = None
        self._shared = {}

    def context(self, needs_hvp: bool | None = None) -> ScoringContext:
        """The scoring context of the current mask (created once per mask and shared by all scorers)."""
        if self._ctx is None:
            p = self.pruner
            self._ctx = ScoringContext(
                self.model,
                self.scoring_params,  # type: ignore[arg-type]
                self.masks,
                self.batch,
                p.loss_fn,
                resurrect=p.resurrect,
                masked_data_scores=p.masked_data_scores,
                needs_hvp=p.needs_hvp if needs_hvp is None else needs_hvp,
                example_input=self.example_input,
                train_mode=p.train_mode,
                seed=p.seed + self.round,
                shared=self._shared,
                keep=self.keep,
            )
        return self._ctx

    def step(self, weights: Mapping[str, float] | None = None) -> RoundRecord:
        """Run the next round and return its record.

        Args:
            weights: metric weights ``{scorer: p_k}`` chosen outside for this round (a driver such as the
                Gymnasium environment, whose agent's action arrives with the step); default: ask the pruner's
                weight schedule with this session.
        """
        if self.done:
            raise RuntimeError(f"All {len(self.schedule)} rounds have run.")
        start = time.perf_counter()
        p = self.pruner
        sparsity, keep = self.sparsity, self.keep
        used = dict(weights if weights is not None else p.weights(self))
        unknown = [k for k in used if k not in p.scorers]
        if unknown:
            raise ValueError(
                f"Weights name scorers {unknown} that this pruner does not use; it uses {list(p.scorers)}."
            )
        ctx = self.context()
        fused: dict[str, Tensor] | None = None
        for name, scorer in p.scorers.items():
            weight = float(used.get(name, 0.0))
            if weight <= 0.0:
                continue
            # finiteness is checked through the normalisation's own reductions (one pass fewer per metric)
            saliency, keep_scores = scorer.scores(ctx, check_finite=p.normalization == "none")
            try:
                normalized = normalize(keep_scores, saliency, p.normalization)
            except NonFiniteScores:
                check_scores(scorer.label, saliency, self.params)  # raises the error that names the layer
                raise
            except ValueError as err:
                raise ValueError(f"Scorer {scorer.label!r}, round {self.round + 1}: {err}") from None
            del saliency, keep_scores
            fused = fuse(normalized, weight, fused)
            del normalized
        if fused is None:
            raise ValueError(f"Round {self.round + 1}: every metric weight is 0 ({used}); at least one must be > 0.")
        if not self._warned_zero and not any(bool(f.any()) for f in fused.values()):
            self._warned_zero = True  # once per run, not once per round
            warnings.warn(
                f"Round {self.round + 1}: every fused score of {type(self.model).__name__} is zero, so the mask keeps "
                "the lowest-indexed weights, an arbitrary choice. Saliencies (∝ θ, and gradients through θ) vanish "
                "when an output layer is initialised to zero (e.g. torchvision's ViT head): initialise it before "
                "pruning (e.g. `nn.init.normal_(model.heads.head.weight, std=0.01)`), or use method='magnitude' or "
                "'random'. (Said once per run.)",
                UserWarning,
                stacklevel=2,
            )
        new_masks = p.selector.select(fused, keep)
        del fused
        if not p.selector.exact_count:
            keep = sum(int(torch.count_nonzero(m)) for m in new_masks.values())
        resurrected = 0
        if self.masks is not None:
            resurrected = sum(int(torch.count_nonzero(new_masks[n] > self.masks[n])) for n in new_masks)
        record = RoundRecord(
            round=self.round + 1,
            sparsity=sparsity,
            keep=keep,
            weights={k: float(v) for k, v in used.items()},
            loss=ctx.loss,
            grad_norm=ctx.grad_norm,
            resurrected=resurrected,
        )
        self.masks = new_masks
        self.round += 1
        self._ctx = None
        if p.track_effective:
            record.effective_sparsity = effective_sparsity(self.model, new_masks, self.example_input).effective
        self.history.append(record)
        update = getattr(p.weights, "update", None)
        if weights is None and callable(update):
            update(record, self)  # e.g. RLPanning's policy measuring the new masks: part of the round's cost
        record.seconds = time.perf_counter() - start
        self.seconds += record.seconds
        return record

    def result(self) -> PruningResult:
        """The masks and history so far (shuffled within each layer when the pruner's ``shuffle_masks`` is set).

        The history and :attr:`masks` describe the method's own masks; only the returned masks are shuffled. Its
        ``scoring`` entry is :attr:`layout` with ``rank_seconds``: this process's seconds in one process, ``None``
        under data-parallel scoring (gathering the ranks' needs them all; :meth:`Panning.prune` does it).
        """
        if self.masks is None:
            raise RuntimeError("No round has run yet.")
        masks = shuffle_masks(self.masks, seed=self.pruner.seed) if self.pruner.shuffle_masks else self.masks
        return PruningResult(
            masks=masks,
            target=self.target,
            method=self.pruner.name,
            history=list(self.history),
            seconds=self.seconds,
            scoring={**self.layout, "rank_seconds": [self.seconds] if self.parallel is None else None},
        )
