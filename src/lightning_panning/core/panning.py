"""The Panning loop (Algorithm 1), the baselines built on the same machinery, and :func:`prune`."""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightning_panning.core.batch import ClassificationLoss, Data, LossFn, move_to_device, scoring_batch
from lightning_panning.core.fusion import (
    NORMALIZATIONS,
    FixedWeights,
    NonFiniteScores,
    Normalization,
    StageTable,
    WeightSchedule,
    fuse,
    normalize,
)
from lightning_panning.core.inputs import ModelInput, check_forward, single_device
from lightning_panning.core.masks import (
    Masks,
    density,
    effective_sparsity,
    select_at_threshold,
    select_top_k,
    untrainable_reason,
)
from lightning_panning.core.params import ParamPredicate, prunable_parameters, selection_report
from lightning_panning.core.schedules import (
    KEEP_RULES,
    KeepRule,
    Schedule,
    authors_keep_count,
    authors_keep_fractions,
    get_schedule,
    keep_count,
    validate_target,
)
from lightning_panning.core.scorers import GraSP, Scorer, ScoringContext, SynFlow, check_scores, get_scorer

__all__ = [
    "METHODS",
    "Panning",
    "PanningSession",
    "PruningResult",
    "RoundRecord",
    "make_pruner",
    "plain",
    "prune",
    "register_method",
]

log = logging.getLogger(__name__)

#: ``round_weights(session) -> {scorer: p_k}`` for the session's next round, or ``None`` for the pruner's schedule.
RoundWeights = Callable[["PanningSession"], Mapping[str, float] | None]


@dataclass
class RoundRecord:
    """What happened in one round.

    Attributes:
        round: 1-based round index.
        sparsity: the round's sparsity ``ρ_i``.
        keep: number of weights kept after the round.
        weights: the metric weights ``p_k`` used.
        loss: loss of the network the round scored (``c_{i-1} ⊙ w``), if a data scorer ran.
        grad_norm: its ``gᵀg``.
        resurrected: weights kept now that the previous mask had removed.
        effective_sparsity: effective sparsity of the new mask (when tracked).
        seconds: wall time of the round.
    """

    round: int
    sparsity: float
    keep: int
    weights: dict[str, float]
    loss: float | None = None
    grad_norm: float | None = None
    resurrected: int = 0
    effective_sparsity: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values."""
        return asdict(self)


@dataclass
class PruningResult:
    """Masks and the record of a pruning run.

    Attributes:
        masks: ``{name: bool tensor W_n}``.
        target: the requested sparsity.
        method: method name.
        history: one :class:`RoundRecord` per round.
        seconds: total wall time.
    """

    masks: Masks
    target: float
    method: str
    history: list[RoundRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def sparsity(self) -> float:
        """Achieved nominal sparsity."""
        return 1.0 - density(self.masks)[0]


#: ``stage_rule`` → how Panning builds its stage table: the paper's (row by the round's sparsity, bounds with a
#: float tolerance) or the authors' (at most one row per round, plain ``ρ_i > bound``).
STAGE_RULES: dict[str, dict[str, Any]] = {
    "paper": {},
    "authors": {"one_row_per_round": True, "tolerance": 0.0},
}


def _resolve_weights(
    weights: WeightSchedule | Mapping[str, float] | Sequence[Any] | None, stage_rule: str = "paper"
) -> WeightSchedule:
    if weights is None:
        return StageTable(**STAGE_RULES[stage_rule])
    if isinstance(weights, WeightSchedule):
        if stage_rule != "paper":
            raise ValueError(
                f"`stage_rule`={stage_rule!r} configures the stage table Panning builds from `weights`=None or a list "
                f"of rows; with a ready {type(weights).__name__} configure it directly, e.g. "
                "StageTable(one_row_per_round=True, tolerance=0.0)."
            )
        return weights
    if isinstance(weights, Mapping):
        return FixedWeights(weights)
    if isinstance(weights, Sequence) and not isinstance(weights, str):
        return StageTable(weights, **STAGE_RULES[stage_rule])
    raise TypeError(
        f"`weights` must be None (Table 3), a {{scorer: weight}} mapping, a table of (bound, weights) rows, or a "
        f"WeightSchedule; got {weights!r}."
    )


class PanningSession:
    """One pruning run, advanced a round at a time (the Gymnasium environment drives it step by step).

    Use :meth:`Panning.start` to create one. ``masks`` is ``None`` (dense) before the first round.
    """

    def __init__(
        self,
        pruner: Panning,
        model: nn.Module,
        params: dict[str, nn.Parameter],
        batch: Any,
        target: float,
        example_input: Any,
    ) -> None:
        self.pruner = pruner
        self.model = model
        self.params = params
        self.batch = batch
        self.target = target
        # what SynFlow and effective sparsity take their data-free input from (resolved against forward when used)
        self.example_input = example_input if example_input is not None else batch
        self.total = sum(p.numel() for p in params.values())
        #: the values the scorers see (the parameters, or re-initialised copies with ``reinit_linear``)
        self.scoring_params: dict[str, Tensor] = pruner.scoring_weights(model, params)
        self.keep_fractions: list[float] | None = None
        if pruner.keep_rule == "authors":
            self.schedule, self.keep_fractions = authors_keep_fractions(pruner.schedule_fn, target, pruner.rounds)
            final_keep = authors_keep_count(self.total, self.keep_fractions[-1])
            rule = f"int({self.total} × (1 − target))"
        else:
            self.schedule = pruner.schedule_fn(target, pruner.rounds)
            final_keep = keep_count(self.total, target)
            rule = f"floor({self.total} × (1 − target))"
        if final_keep < 1:
            raise ValueError(
                f"`target`={target!r} leaves no weight of the {self.total} prunable ones "
                f"(keep = {rule} = 0); the largest allowed target is {1 - 1 / self.total:.10g}."
            )
        self.masks: Masks | None = None
        self.round = 0
        self.history: list[RoundRecord] = []
        self._ctx: ScoringContext | None = None
        self._shared: dict[str, Any] = {}  # mask-independent results (the unmasked SNIP/GraSP pass), every round
        self._warned_zero = False  # the all-zero fused scores warning was given
        self.seconds = 0.0
        pruner.weight_schedule.reset()

    @property
    def done(self) -> bool:
        """Whether all rounds have run."""
        return self.round >= len(self.schedule)

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
            )
        return self._ctx

    def step(self, weights: Mapping[str, float] | None = None) -> RoundRecord:
        """Run the next round and return its record.

        Args:
            weights: metric weights ``{scorer: p_k}`` for this round (e.g. an agent's action); default: the
                pruner's weight schedule.
        """
        if self.done:
            raise RuntimeError(f"All {len(self.schedule)} rounds have run.")
        start = time.perf_counter()
        p = self.pruner
        sparsity = self.schedule[self.round]
        if self.keep_fractions is not None:
            keep = authors_keep_count(self.total, self.keep_fractions[self.round])
        else:
            keep = keep_count(self.total, sparsity)
        used = dict(weights) if weights is not None else p.weight_schedule(self.round, sparsity)
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
        if self.keep_fractions is not None:  # the authors' rule: every score >= the keep-th largest
            new_masks = select_at_threshold(fused, keep)
            keep = sum(int(torch.count_nonzero(m)) for m in new_masks.values())
        else:
            new_masks = select_top_k(fused, keep)
        del fused
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
        record.seconds = time.perf_counter() - start
        self.seconds += record.seconds
        self.history.append(record)
        return record

    def result(self) -> PruningResult:
        """The masks and history so far."""
        if self.masks is None:
            raise RuntimeError("No round has run yet.")
        return PruningResult(
            masks=self.masks,
            target=self.target,
            method=self.pruner.name,
            history=list(self.history),
            seconds=self.seconds,
        )


class Panning:
    """Neural Network Panning (Algorithm 1) and, with other settings, the iterative and one-shot baselines.

    Each round ``i`` of ``T``: take the round's sparsity ``ρ_i`` from the schedule, score every weight at the masked
    network ``c ⊙ w`` (times the original ``w``, so removed weights can come back), normalise each metric, fuse
    ``S = Σ_k p_k N(S_k)``, and keep exactly ``floor(m (1 - ρ_i) + 1e-6)`` weights with the largest fused scores
    (ties to the lower index in module order).

    Args:
        scorers: scorer names or instances (default SynFlow, SNIP, improved GraSP).
        weights: ``None`` (Table 3 by the round's sparsity), a fixed ``{scorer: weight}`` mapping, a table of
            ``(upper bound, {scorer: weight})`` rows, or any :class:`~lightning_panning.core.fusion.WeightSchedule`.
        rounds: ``T``.
        schedule: ``"exponential"`` (Algorithm 1), ``"linear"`` or a function ``(target, rounds) -> list``.
        normalization: ``"rms"`` (default, order-preserving), ``"authors"`` (``|S - μ| / σ``, the authors' Panning),
            ``"sum"`` (``S / (|Σ S| + 1e-10)``, the authors' one-shot SNIP/GraSP) or ``"none"``.
        resurrect: score removed weights too (Panning, FORCE) or give them 0 (iterative SynFlow).
        masked_data_scores: SNIP/GraSP at the masked network (Algorithm 1) or at the unmasked one every round (the
            authors' code).
        loss_fn: ``loss_fn(model, batch) -> scalar``; default cross-entropy with logits divided by ``temperature``.
        temperature: logit temperature of the default loss (authors: 200).
        train_mode: run data scorers in train mode (batch statistics).
        per_class: ``k`` samples per class of the class-balanced batch.
        num_classes: classes of the balanced batch (inferred when possible).
        seed: seed for the batch, dropout and the Random scorer; same seed → bit-identical masks.
        progress: show a progress bar over the rounds.
        track_effective: record the effective sparsity after every round (one extra cheap pass per round).
        include: glob pattern(s) of parameter names to prune (default: :class:`~.params.DefaultRule`, the
            conv/linear weights and the weight matrices of ``nn.MultiheadAttention``).
        exclude: glob pattern(s) of parameter names to leave dense.
        predicate: ``predicate(name, module, param) -> bool`` replacing the default selection rule, e.g.
            ``DefaultRule(embeddings=True)``.
        name: method name for logs.
        stage_rule: how the Table 3 (or given rows) stage table picks a round's row: ``"paper"`` (the row whose
            interval holds ``ρ_i``, with a ``1e-12`` float tolerance on the bounds) or ``"authors"`` (their code: the
            row advances at most one per round, when ``ρ_i > bound`` in plain floating point).
        keep_rule: ``"exact"`` (keep exactly ``floor(m (1 - ρ_i) + 1e-6)``, ties to the lower index) or
            ``"authors"`` (their code: ``int(m κ_i)`` with ``κ_i = (1 - ρ_T)^(i/T)`` computed directly, keeping every
            score ``≥`` that rank's score, ties included; see
            :func:`~lightning_panning.core.schedules.authors_keep_fractions`).
        reinit_linear: score a copy whose prunable ``nn.Linear`` weights are re-drawn with Xavier-normal from
            ``seed`` (the authors' one-shot SNIP/GraSP, inherited from the GraSP code); the model is not modified.

    Every setting is declared and validated here, once; the Lightning callbacks and the RL environment take a
    ``Panning`` (or a method name and these options) whole. :meth:`replace` copies it with some settings changed and
    :meth:`settings` gives them as plain values (for logs and for checking a resumed run).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
        >>> batch = (torch.randn(40, 8), torch.arange(4).repeat(10))
        >>> result = Panning(rounds=5, progress=False).prune(net, batch, target=0.9)
        >>> sum(int(m.sum()) for m in result.masks.values())  # floor(192 * 0.1 + 1e-6)
        19
    """

    def __init__(
        self,
        scorers: Sequence[str | Scorer] = ("synflow", "snip", "grasp"),
        weights: WeightSchedule | Mapping[str, float] | Sequence[Any] | None = None,
        *,
        rounds: int = 100,
        schedule: str | Schedule = "exponential",
        normalization: Normalization = "rms",
        resurrect: bool = True,
        masked_data_scores: bool = True,
        loss_fn: LossFn | None = None,
        temperature: float = 200.0,
        train_mode: bool = True,
        per_class: int = 10,
        num_classes: int | None = None,
        seed: int = 0,
        progress: bool = True,
        track_effective: bool = False,
        include: str | Sequence[str] | None = None,
        exclude: str | Sequence[str] | None = None,
        predicate: ParamPredicate | None = None,
        name: str = "panning",
        stage_rule: str = "paper",
        keep_rule: KeepRule = "exact",
        reinit_linear: bool = False,
    ) -> None:
        arguments = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 10_000:  # 100 in the paper
            raise ValueError(f"`rounds` must be an integer from 1 to 10000 (the paper uses 100), got {rounds!r}.")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown `normalization` {normalization!r}; allowed: {list(NORMALIZATIONS)}.")
        if stage_rule not in STAGE_RULES:
            raise ValueError(f"Unknown `stage_rule` {stage_rule!r}; allowed: {list(STAGE_RULES)}.")
        if keep_rule not in KEEP_RULES:
            raise ValueError(f"Unknown `keep_rule` {keep_rule!r}; allowed: {list(KEEP_RULES)}.")
        if not isinstance(reinit_linear, bool):
            raise ValueError(f"`reinit_linear` must be True or False, got {reinit_linear!r}.")
        if isinstance(scorers, str) or not scorers:
            raise ValueError(f"`scorers` must be a non-empty list of scorer names or instances, got {scorers!r}.")
        resolved = [get_scorer(s) for s in scorers]
        self.scorers: dict[str, Scorer] = {s.label: s for s in resolved}
        if len(self.scorers) != len(resolved):
            raise ValueError(f"`scorers` has duplicates: {[s.label for s in resolved]}.")
        self.weight_schedule = _resolve_weights(weights, stage_rule)
        if weights is None and set(self.scorers) != {"synflow", "snip", "grasp"}:
            if len(self.scorers) != 1:
                raise ValueError(
                    f"Table 3's default weights are for synflow/snip/grasp; with scorers {list(self.scorers)} give "
                    "`weights` explicitly."
                )
            self.weight_schedule = FixedWeights({next(iter(self.scorers)): 1.0})
        _check_weight_names(self.weight_schedule, self.scorers)
        self.rounds = rounds
        self.schedule_fn = get_schedule(schedule)
        self.normalization: Normalization = normalization
        self.resurrect = _check_bool("resurrect", resurrect)
        self.masked_data_scores = _check_bool("masked_data_scores", masked_data_scores)
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"`loss_fn` must be None or a callable loss_fn(model, batch) -> scalar, got {loss_fn!r}.")
        self.temperature = ClassificationLoss(temperature).temperature  # validated even when loss_fn is given
        self.loss_fn: LossFn = loss_fn if loss_fn is not None else ClassificationLoss(temperature)
        self.train_mode = _check_bool("train_mode", train_mode)
        self.per_class = _check_int("per_class", per_class, 1)
        self.num_classes = None if num_classes is None else _check_int("num_classes", num_classes, 1)
        self.seed = _check_int("seed", seed, 0)
        self.progress = _check_bool("progress", progress)
        self.track_effective = _check_bool("track_effective", track_effective)
        self.include, self.exclude = _check_patterns("include", include), _check_patterns("exclude", exclude)
        if predicate is not None and not callable(predicate):
            raise ValueError(
                f"`predicate` must be None or a callable (name, module, param) -> bool, got {predicate!r}."
            )
        self.predicate = predicate
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
        self.name = name
        self.stage_rule = stage_rule
        self.keep_rule: KeepRule = keep_rule
        self.reinit_linear = reinit_linear
        self._arguments = arguments

    def scoring_weights(self, model: nn.Module, params: Mapping[str, nn.Parameter]) -> dict[str, Tensor]:
        """The prunable weights the scorers see, ``{name: tensor W_n}``.

        ``params`` themselves, or with ``reinit_linear`` a copy in which every ``nn.Linear`` weight is re-drawn with
        :func:`torch.nn.init.xavier_normal_` (module order, a CPU generator seeded with ``seed``: the same values as
        the authors' code after ``torch.manual_seed(seed)``). The model is not modified.
        """
        if not self.reinit_linear:
            return dict(params)
        generator = torch.Generator().manual_seed(self.seed)
        linear = {f"{prefix}.weight".lstrip(".") for prefix, m in model.named_modules() if isinstance(m, nn.Linear)}
        out: dict[str, Tensor] = {}
        for name, param in params.items():
            if name in linear:
                fresh = torch.empty(param.shape, dtype=param.dtype)
                nn.init.xavier_normal_(fresh, generator=generator)
                out[name] = fresh.to(param.device)
            else:
                out[name] = param
        return out

    @property
    def needs_hvp(self) -> bool:
        """Whether any scorer uses the Hessian-gradient product."""
        return any("hvp" in s.requires for s in self.scorers.values())

    @property
    def needs_data(self) -> bool:
        """Whether any scorer needs a data batch (each scorer declares it, see :attr:`Scorer.needs_data`)."""
        return any(s.needs_data for s in self.scorers.values())

    def replace(self, **changes: Any) -> Panning:
        """A new pruner with the same settings except ``changes`` (validated like the constructor's).

        Example:
            >>> Panning(rounds=10).replace(seed=3).rounds
            10
        """
        return type(self)(**{**self._arguments, **changes})

    def settings(self) -> dict[str, Any]:
        """Every setting as plain values (scorers, weights, schedule and loss as resolved), e.g. for logs.

        Example:
            >>> Panning(["snip"], rounds=2).settings()["weights"]
            {'type': 'FixedWeights', 'weights': {'snip': 1.0}}
        """
        out = {k: plain(v) for k, v in self._arguments.items()}
        out.update(
            scorers=[plain(s) for s in self.scorers.values()],
            weights=plain(self.weight_schedule),
            schedule=plain(self.schedule_fn),
            loss_fn=plain(self.loss_fn),
        )
        return out

    def parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The prunable parameters of ``model`` under this pruner's ``include``/``exclude``/``predicate``.

        Raises:
            ValueError: if nothing is prunable, or if they are on the ``meta`` device (no values to score).
        """
        params = prunable_parameters(model, self.include, self.exclude, self.predicate)
        meta = [n for n, p in params.items() if p.is_meta]
        if meta:
            raise ValueError(
                f"{type(model).__name__} has parameters on the meta device ({', '.join(meta[:3])}"
                f"{', ...' if len(meta) > 3 else ''}): they hold no values to score. Materialise the model first "
                "(e.g. `model.to_empty(device='cpu')` and initialise its weights), then prune it."
            )
        return params

    def scoring_batch(
        self,
        data: Data,
        device: torch.device | str | None = None,
        generator: np.random.Generator | None = None,
        require_labels: bool | None = None,
    ) -> Any:
        """The scoring batch of ``data`` with this pruner's ``per_class``, ``num_classes`` and ``seed``.

        See :func:`~lightning_panning.core.batch.scoring_batch` for the rule; ``D^b`` is built only when a scorer
        needs data (else the first batch gives the input shape). ``require_labels`` defaults to whether the loss
        needs labels.
        """
        needs_labels = self.needs_data and bool(getattr(self.loss_fn, "needs_labels", False))
        if require_labels is not None:
            needs_labels = require_labels
        return scoring_batch(
            data, self.per_class, self.num_classes, self.seed, balanced=self.needs_data, require_labels=needs_labels,
            generator=generator, device=device,
        )

    def start(
        self,
        model: nn.Module,
        data: Data,
        target: float,
        example_input: Any = None,
        *,
        generator: np.random.Generator | None = None,
    ) -> PanningSession:
        """Validate inputs, build the scoring batch and return a session positioned before round 1.

        Logs a one-line report of the prunable parameters and warns about large weights the rule leaves dense
        (:func:`~lightning_panning.core.params.selection_report`).

        Args:
            model: the network (not modified).
            data: what :meth:`scoring_batch` accepts.
            target: final sparsity in (0, 1).
            example_input: the input's shape and layout for data-free scorers: a tensor ``(B, ...)``, a dict of
                keyword arguments or a ModelInput (default: the scoring batch).
            generator: the RNG for drawing from a :class:`~lightning_panning.core.batch.SamplePool`.
        """
        target = validate_target(target)
        params = self.parameters(model)
        report = selection_report(model, params, self.exclude)
        log.info("%s: %s", self.name, report.line)
        report.warn(stacklevel=2)
        single_device(model)
        users = [s.label for s in self.scorers.values() if "synflow" in s.requires]
        if self.track_effective:
            users.append("effective sparsity (track_effective=True)")
        if self.needs_data and isinstance(self.loss_fn, ClassificationLoss):
            users.append("the classification loss")
        if users:
            check_forward(model, " and ".join(users))
        device = next(iter(params.values())).device
        if data is None and self.needs_data:
            needing = [s.label for s in self.scorers.values() if s.needs_data]
            raise ValueError(
                f"Scorers {needing} need data, but `data` is None. Pass a DataLoader, Dataset or (x, y) batch, or use "
                "a data-free method ('synflow', 'magnitude', 'random')."
            )
        batch = self.scoring_batch(data, device, generator)
        if isinstance(example_input, (Tensor, ModelInput)):
            example_input = example_input.to(device)
        elif example_input is not None:
            example_input = move_to_device(example_input, device)
        return PanningSession(self, model, params, batch, target, example_input)

    def prune(
        self,
        model: nn.Module,
        data: Data,
        target: float,
        *,
        example_input: Any = None,
        on_round: Callable[[RoundRecord, PanningSession], None] | None = None,
        progress: Any = None,
        round_weights: RoundWeights | None = None,
    ) -> PruningResult:
        """Run all rounds and return the masks with the per-round history.

        Args:
            model: the network; it is not modified (use :func:`apply_masks` on the result).
            data: a DataLoader or Dataset (a class-balanced batch is drawn), a batch, or ``None`` (data-free).
            target: final sparsity in (0, 1).
            example_input: the input's shape and layout for data-free scorers: a tensor ``(B, ...)``, a dict of
                keyword arguments or a ModelInput (default: the batch).
            on_round: called after every round with its record and the session.
            progress: ``None`` (a tqdm bar when ``self.progress``), ``True``/``False``, or a tqdm-like object to
                update.
            round_weights: ``round_weights(session)`` gives the next round's ``{scorer: p_k}`` (e.g. an agent's
                action), or ``None`` to use the weight schedule.
        """
        session = self.start(model, data, target, example_input)
        bar = progress
        own_bar = bar is True or (bar is None and self.progress)
        if own_bar:
            bar = tqdm(total=len(session.schedule), desc=f"{self.name} → {target:g}", unit="round")
        try:
            while not session.done:
                record = session.step(round_weights(session) if round_weights is not None else None)
                if bar:
                    bar.update(1)
                    bar.set_postfix(sparsity=f"{record.sparsity:.4f}", refresh=False)
                if on_round is not None:
                    on_round(record, session)
        finally:
            if own_bar:
                bar.close()
        result = session.result()
        log.info(
            "%s pruned %d/%d weights to sparsity %.6f in %d rounds (%.2fs)",
            self.name,
            session.total - sum(int(m.sum()) for m in result.masks.values()),
            session.total,
            result.sparsity,
            len(result.history),
            result.seconds,
        )
        return result

    def __repr__(self) -> str:
        return f"Panning(name={self.name!r}, scorers={list(self.scorers)}, rounds={self.rounds})"


def _check_int(argument: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{argument}` must be an integer ≥ {minimum}, got {value!r}.")
    return value


def _check_bool(argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{argument}` must be True or False, got {value!r}.")
    return value


def _check_patterns(argument: str, value: Any) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"`{argument}` must be None, a glob pattern (str) or a list of glob patterns, got {value!r}.")


def _check_weight_names(schedule: WeightSchedule, scorers: Mapping[str, Scorer]) -> None:
    """Weights given as a mapping or a table may only name the pruner's scorers."""
    tables = [schedule.weights] if isinstance(schedule, FixedWeights) else []
    if isinstance(schedule, StageTable):
        tables = [row for _, row in schedule.table]
    unknown = sorted({k for table in tables for k in table} - set(scorers))
    if unknown:
        raise ValueError(f"`weights` names scorers {unknown} that this pruner does not use; allowed: {list(scorers)}.")


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain, comparable data (JSON types): callables by qualified name, objects by type and fields.

    Example:
        >>> plain({"w": FixedWeights({"snip": 1}), "f": len, "x": (1, "a")})
        {'w': {'type': 'FixedWeights', 'weights': {'snip': 1.0}}, 'f': 'builtins.len', 'x': [1, 'a']}
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value) or inspect.ismethod(value):
        return f"{value.__module__}.{value.__qualname__}"
    fields = vars(value) if hasattr(value, "__dict__") and not isinstance(value, (Tensor, nn.Module)) else {}
    out: dict[str, Any] = {"type": type(value).__qualname__}
    if depth < 4:
        out.update({k: plain(v, depth + 1) for k, v in fields.items() if not k.startswith("_")})
    return out


#: Method name → keyword arguments of :class:`Panning`; ``"rounds": 1`` marks one-shot methods. Add entries with
#: :func:`register_method`.
METHODS: dict[str, dict[str, Any]] = {
    "panning": {"scorers": ("synflow", "snip", "grasp")},
    "synflow": {"scorers": ("synflow",), "resurrect": False},  # iterative SynFlow (Tanaka et al. 2020)
    "iterative_snip": {"scorers": ("snip",)},  # FORCE-style (de Jorge et al. 2021), with resurrection
    "iterative_grasp": {"scorers": ("grasp",)},
    "synflow_oneshot": {"scorers": ("synflow",), "rounds": 1},
    "snip": {"scorers": ("snip",), "rounds": 1},
    "grasp": {"scorers": ("grasp",), "rounds": 1},
    "grasp_original": {"scorers": ("grasp_original",), "rounds": 1},
    "magnitude": {"scorers": ("magnitude",), "rounds": 1},
    "random": {"scorers": ("random",), "rounds": 1},
    # The authors' code (github kangxiatao/RLPanning), reproduced bit for bit given the same model and batch
    # (benchmarks/authors_parity.py); docs/differences.md lists each difference to the paper and its option.
    "panning_authors": {  # their pruner/panning.py `Panning`
        "scorers": (SynFlow(signed=True, abs_buffers=True, dtype="float32"), "snip", "grasp"),
        "masked_data_scores": False,
        "normalization": "authors",
        "stage_rule": "authors",
        "keep_rule": "authors",
    },
    "snip_authors": {  # their pruner/pruning.py `Single_ranking_pruning`, rank_algo=snip
        "scorers": ("snip",),
        "rounds": 1,
        "normalization": "sum",
        "keep_rule": "authors",
        "reinit_linear": True,
    },
    "grasp_authors": {  # the same, rank_algo=grasp (|∂(gᵀg)/∂θ ⊙ θ|, i.e. the improved GraSP with 2Hg)
        "scorers": (GraSP(factor=2.0),),
        "rounds": 1,
        "normalization": "sum",
        "keep_rule": "authors",
        "reinit_linear": True,
    },
    "synflow_authors": {  # their pruner/pruning.py `SynFlow` (iterative, dynamic=0)
        "scorers": (SynFlow(abs_buffers=True, dtype="float32"),),
        "resurrect": False,
        "normalization": "none",
        "keep_rule": "authors",
    },
}
METHODS["force"] = METHODS["iterative_snip"]


def register_method(name: str, *, overwrite: bool = False, **panning_kwargs: Any) -> None:
    """Add a named method to :data:`METHODS`: a preset of :class:`Panning` arguments.

    The preset is validated by building a :class:`Panning` from it once. The name then works everywhere a method
    name does: :func:`prune`, :func:`make_pruner`, ``PanningCallback(method=...)`` and YAML configs.

    Args:
        name: the method name.
        overwrite: replace an existing method of that name (else that is an error).
        **panning_kwargs: :class:`Panning` arguments; ``rounds=1`` marks a one-shot method.

    Example:
        >>> register_method("snip_grasp_fixed", scorers=("snip", "grasp"), weights={"snip": 0.5, "grasp": 0.5})
        >>> make_pruner("snip_grasp_fixed", rounds=20).rounds
        20
        >>> del METHODS["snip_grasp_fixed"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
    if name in METHODS and not overwrite:
        raise ValueError(f"A method named {name!r} is already registered; pass `overwrite=True` to replace it.")
    if "name" in panning_kwargs:
        raise ValueError("`name` is set from the method name; leave it out of the preset.")
    Panning(**panning_kwargs, name=name)  # every setting is validated now, not at first use
    METHODS[name] = dict(panning_kwargs)


def make_pruner(method: str = "panning", rounds: int = 100, **kwargs: Any) -> Panning:
    """A :class:`Panning` configured as ``method`` (see :data:`METHODS`); ``rounds`` is ignored by one-shot methods.

    Args:
        method: a key of :data:`METHODS`.
        rounds: ``T`` of iterative methods.
        **kwargs: any other :class:`Panning` argument; it overrides the method's preset, except that ``None`` keeps
            the method's own setting (so an adapter can pass "not set" through, e.g. ``normalization=None`` keeps
            ``panning_authors``' ``"authors"``).

    Example:
        >>> make_pruner("snip").rounds, make_pruner("synflow", rounds=20).resurrect
        (1, False)
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"Unknown `method` {method!r}; allowed: {sorted(METHODS)}.")
    config: dict[str, Any] = {"rounds": rounds, **METHODS[method], "name": method}
    for key, value in kwargs.items():
        if key == "rounds" or value is None:
            continue  # None keeps the method's own setting (or Panning's default, which is None or the same)
        config[key] = value
    return Panning(**config)


def prune(
    model: nn.Module,
    data: Data = None,
    target: float = 0.98,
    method: str = "panning",
    rounds: int = 100,
    example_input: Any = None,
    **kwargs: Any,
) -> Masks:
    """Prune ``model`` before training and return ``{qualified name: bool mask}`` (``True`` = kept).

    The model is not modified; apply the result with :func:`~lightning_panning.apply_masks`. A ``UserWarning`` says
    when a pruned layer keeps no weight (:func:`~lightning_panning.core.masks.untrainable_reason`: such masks may not
    train, and it names the likely cause and what to try).

    Args:
        model: any ``nn.Module``.
        data: a DataLoader/Dataset of ``(x, y)`` (a class-balanced batch of ``per_class`` per class is drawn), a
            batch, or ``None`` for data-free methods (then pass ``example_input``).
        target: final sparsity in (0, 1), e.g. 0.98.
        method: one of :data:`METHODS` (``"panning"``, ``"synflow"``, ``"snip"``, ``"grasp"``, ...).
        rounds: ``T`` for iterative methods.
        example_input: the input's shape and layout when ``data`` is ``None``: a tensor ``(B, ...)`` (token ids
            for a model that starts with an ``nn.Embedding``), a dict of keyword arguments or a ModelInput.
        **kwargs: any :class:`Panning` argument (``weights``, ``normalization``, ``loss_fn``, ``seed``, ...).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
        >>> batch = (torch.randn(30, 1, 8, 8), torch.arange(3).repeat(10))
        >>> masks = prune(net, batch, target=0.9, rounds=10, progress=False)
        >>> sorted(masks), sum(int(m.sum()) for m in masks.values())
        (['0.weight', '2.weight'], 46)
    """
    masks = make_pruner(method, rounds, **kwargs).prune(model, data, target, example_input=example_input).masks
    reason = untrainable_reason(model, masks, target)  # emptied layers (the callbacks also check effective ones)
    if reason is not None:
        warnings.warn(f"prune: these masks may not train: {reason}", UserWarning, stacklevel=2)
    return masks
