"""``Panning``: every setting of a pruning run, declared and validated once, and the run itself."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lightning_panning.core.batch import ClassificationLoss, Data, LossFn, move_to_device, scoring_batch
from lightning_panning.core.distributed import DataParallel
from lightning_panning.core.fusion import NORMALIZATIONS, Normalization
from lightning_panning.core.inputs import ModelInput, check_forward, single_device
from lightning_panning.core.params import ParamPredicate, prunable_parameters, selection_report
from lightning_panning.core.results import PruningResult, RoundRecord
from lightning_panning.core.schedules import Schedule, get_schedule, validate_target
from lightning_panning.core.scorers import Needs, Scorer, get_scorer
from lightning_panning.core.selection import Selector, get_selector
from lightning_panning.core.session import PanningSession
from lightning_panning.core.weights import FixedWeights, StageTable, WeightSchedule, resolve_weights

__all__ = ["MAX_ROUNDS", "Panning", "plain"]

log = logging.getLogger(__name__)
#: The most rounds a run may have: every round scores the whole network, so more is a mistake, not a setting.
MAX_ROUNDS = 10_000


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
        selector: which weights a round keeps (:mod:`~lightning_panning.core.selection`): ``"top_k"`` (exactly
            ``floor(m (1 - ρ_i) + 1e-6)`` over all layers, ties to the lower index), ``"authors"`` (their code:
            ``int(m κ_i)`` with ``κ_i = (1 - ρ_T)^(i/T)`` computed directly, every score ``≥`` that rank's kept, ties
            included), ``"top_k_ceil"`` (``ceil(m (1 - ρ_i))``, ProsPr's code), ``"synaptic_flow"`` (the
            Synaptic-Flow/NTK-SAP code's threshold), ``"erk"``, ``"er"``, ``"uniform"`` (per-layer quotas), or a
            :class:`~lightning_panning.core.selection.Selector` such as ``LayerQuotas({name: density})``.
        reinit_linear: score a copy whose prunable ``nn.Linear`` weights are re-drawn with Xavier-normal from
            ``seed`` (the authors' one-shot SNIP/GraSP, inherited from the GraSP code); the model is not modified.
        micro_batch: score the scoring set in chunks of at most this many samples (peak memory set by the chunk,
            not the set; results equal the whole set's up to floating-point summation order, except that BatchNorm
            in train mode normalises each chunk by its own statistics); ``None``: the whole set at once, or a
            number at least the set's size. Under data-parallel scoring (:meth:`prune`'s ``process_group``) the
            ranks take the chunks in turn; without ``micro_batch`` each rank's share of the set is its one chunk.
        shuffle_masks: after the last round, keep the same number of weights in each layer at uniformly random
            positions (:func:`~lightning_panning.core.masks.shuffle_masks`, seeded by ``seed``): random pruning at
            this method's layer densities, the layer-wise shuffle of Frankle et al. (2021).
            ``method="panning_shuffled"`` is Panning with it; any method takes it
            (``prune(..., method="snip", shuffle_masks=True)``).

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
        selector: str | Selector = "top_k",
        reinit_linear: bool = False,
        micro_batch: int | None = None,
        shuffle_masks: bool = False,
    ) -> None:
        arguments = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
            raise ValueError(
                f"`rounds` must be an integer in [1, {MAX_ROUNDS}] (each round scores the whole network), got "
                f"{rounds!r}."
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown `normalization` {normalization!r}; allowed: {list(NORMALIZATIONS)}.")
        if not isinstance(reinit_linear, bool):
            raise ValueError(f"`reinit_linear` must be True or False, got {reinit_linear!r}.")
        if isinstance(scorers, str) or not scorers:
            raise ValueError(f"`scorers` must be a non-empty list of scorer names or instances, got {scorers!r}.")
        resolved = [get_scorer(s) for s in scorers]
        self.scorers: dict[str, Scorer] = {s.label: s for s in resolved}
        if len(self.scorers) != len(resolved):
            raise ValueError(f"`scorers` has duplicates: {[s.label for s in resolved]}.")
        self.weights: WeightSchedule = resolve_weights(weights, stage_rule)
        if weights is None and set(self.scorers) != {"synflow", "snip", "grasp"}:
            if len(self.scorers) != 1:
                raise ValueError(
                    f"Table 3's default weights are for synflow/snip/grasp; with scorers {list(self.scorers)} give "
                    "`weights` explicitly."
                )
            self.weights = FixedWeights({next(iter(self.scorers)): 1.0})
        _check_weight_names(self.weights, self.scorers)
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
        self.selector: Selector = get_selector(selector)
        self.reinit_linear = reinit_linear
        self.micro_batch = None if micro_batch is None else _check_int("micro_batch", micro_batch, 1)
        self.shuffle_masks = _check_bool("shuffle_masks", shuffle_masks)
        self._arguments = arguments

    def scoring_params(self, model: nn.Module, params: Mapping[str, nn.Parameter]) -> dict[str, Tensor]:
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
        return any(Needs.HVP in s.needs for s in self.scorers.values())

    @property
    def needs_data(self) -> bool:
        """Whether any scorer needs a data batch (each scorer declares it, see :attr:`Scorer.needs_data`)."""
        return any(s.needs_data for s in self.scorers.values())

    @property
    def scores_in_chunks(self) -> bool:
        """Whether ``micro_batch`` applies: a scorer reads the scoring set or makes passes of its own over it."""
        return any(s.needs_data or Needs.OWN_PASSES in s.needs for s in self.scorers.values())

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
            weights=plain(self.weights),
            selector=plain(self.selector),
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
        process_group: Any = "auto",
    ) -> PanningSession:
        """Validate inputs, build the scoring batch and return a session positioned before round 1.

        Logs a one-line report of the prunable parameters and warns about large weights the rule leaves dense
        (:func:`~lightning_panning.core.params.selection_report`). Under data-parallel scoring the ranks first
        compare their prunable parameters and their scoring sets (an error names the first difference).

        Args:
            model: the network (not modified).
            data: what :meth:`scoring_batch` accepts.
            target: final sparsity in (0, 1).
            example_input: the input's shape and layout for data-free scorers: a tensor ``(B, ...)``, a dict of
                keyword arguments or a ModelInput (default: the scoring batch).
            generator: the RNG for drawing from a :class:`~lightning_panning.core.batch.SamplePool`.
            process_group: data-parallel scoring (:mod:`~lightning_panning.core.distributed`): ``"auto"`` (across
                the default group when ``torch.distributed`` is initialised with several processes), ``None`` (this
                process alone) or a ``torch.distributed.ProcessGroup``.
        """
        target = validate_target(target)
        parallel = DataParallel.resolve(process_group)
        params = self.parameters(model)
        report = selection_report(model, params, self.exclude)
        log.info("%s: %s", self.name, report.line)
        report.warn(stacklevel=2)
        single_device(model)
        if parallel is not None:
            parallel.check_same_model(params)
        users = [s.label for s in self.scorers.values() if Needs.PATHS in s.needs]
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
        if parallel is not None and batch is not None and self.needs_data:
            parallel.check_same_data(batch)
        if isinstance(example_input, (Tensor, ModelInput)):
            example_input = example_input.to(device)
        elif example_input is not None:
            example_input = move_to_device(example_input, device)
        return PanningSession(self, model, params, batch, target, example_input, parallel)

    def prune(
        self,
        model: nn.Module,
        data: Data,
        target: float,
        *,
        example_input: Any = None,
        on_round: Callable[[RoundRecord, PanningSession], None] | None = None,
        progress: Any = None,
        process_group: Any = "auto",
    ) -> PruningResult:
        """Run all rounds and return the masks with the per-round history.

        Under ``torch.distributed`` (or with a ``process_group``) the ranks share the scoring work: each scores its
        own chunks of the same scoring set and the sums are all-reduced, so every rank computes the same masks
        (verified by an all-gather of their hash; a mismatch raises an error naming the ranks). See
        :mod:`~lightning_panning.core.distributed`.

        Args:
            model: the network; it is not modified (use :func:`apply_masks` on the result).
            data: a DataLoader or Dataset (a class-balanced batch is drawn), a batch, or ``None`` (data-free).
            target: final sparsity in (0, 1).
            example_input: the input's shape and layout for data-free scorers: a tensor ``(B, ...)``, a dict of
                keyword arguments or a ModelInput (default: the batch).
            on_round: called after every round with its record and the session.
            progress: ``None`` (a tqdm bar when ``self.progress``, on rank zero only), ``True``/``False``, or a
                tqdm-like object to update.
            process_group: ``"auto"``, ``None`` (this process alone) or a ``torch.distributed.ProcessGroup``, as in
                :meth:`start`.

        Returns:
            The result; its ``scoring`` entry says how the work was shared (world size, scoring-set size,
            ``micro_batch``, samples per rank, each rank's seconds).

        Raises:
            RuntimeError: when the ranks end with different masks.
        """
        session = self.start(model, data, target, example_input, process_group=process_group)
        parallel = session.parallel
        bar = progress
        own_bar = (bar is True or (bar is None and self.progress)) and (parallel is None or parallel.rank == 0)
        if bar is True and not own_bar:
            bar = None
        if own_bar:
            bar = tqdm(total=len(session.schedule), desc=f"{self.name} → {target:g}", unit="round")
        try:
            while not session.done:
                record = session.step()
                if bar:
                    bar.update(1)
                    bar.set_postfix(sparsity=f"{record.sparsity:.4f}", refresh=False)
                if on_round is not None:
                    on_round(record, session)
        finally:
            if own_bar:
                bar.close()
        result = session.result()
        if parallel is not None:
            parallel.check_same_masks(result.masks)
            result.scoring["rank_seconds"] = [float(s) for s in parallel.gather(result.seconds)]
        if log.isEnabledFor(logging.INFO):  # the counts are a pass over every mask
            log.info(
                "%s pruned %d/%d weights to sparsity %.6f in %d rounds (%.2fs)",
                self.name,
                session.total - sum(int(torch.count_nonzero(m)) for m in result.masks.values()),
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


