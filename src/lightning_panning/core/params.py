"""Which parameters are prunable, and a report of the large weights the choice leaves dense.

The default rule (:class:`DefaultRule`, METHOD §1 extended to modern layers) prunes, anywhere in the module tree,

* the ``weight`` of every convolution (``Conv1d/2d/3d``, ``ConvTranspose1d/2d/3d``) and every ``Linear``
  (subclasses included, e.g. ``nn.MultiheadAttention.out_proj``), and of Hugging Face's ``Conv1D`` (GPT-2's
  transposed linear layer);
* the weight matrices of ``nn.MultiheadAttention``: the packed Q/K/V projection ``in_proj_weight``, or
  ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when key and value dimensions differ.

Weights that are entirely zero when pruning starts (zero-initialised layers, e.g. the head of torchvision's ViT)
stay dense: every saliency is proportional to the weight, so they would score 0 and be removed completely.
Embeddings (``nn.Embedding``, ``nn.EmbeddingBag``) stay dense unless chosen: ``DefaultRule(embeddings=True)`` adds
them all, ``include``/``exclude`` glob patterns pick them (or leave an output head dense) by name. A parameter shared
by several modules (tied weights, e.g. an input embedding and a language-model head) is one parameter: it is pruned
once, under the name ``model.named_parameters()`` gives it, if the rule or a pattern chooses it under *any* of its
names, and left dense if ``exclude`` matches any of them. Parameters are keyed by qualified name, e.g.
``"features.0.weight"``.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn

__all__ = [
    "ATTENTION_WEIGHTS",
    "DEFAULT_PRUNABLE_TYPES",
    "DefaultRule",
    "ParamPredicate",
    "SelectionReport",
    "prunable_parameters",
    "selection_report",
]

#: Module types whose ``weight`` is pruned by default.
DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)

#: Weight matrices of ``nn.MultiheadAttention`` pruned by default (packed, or separate when kdim/vdim differ).
ATTENTION_WEIGHTS: tuple[str, ...] = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")

#: Module types whose ``weight`` :class:`DefaultRule` adds with ``embeddings=True``.
EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)

#: ``predicate(qualified_name, owning_module, parameter) -> bool``.
ParamPredicate = Callable[[str, nn.Module, nn.Parameter], bool]

#: A dense weight of two or more dimensions holding at least this fraction of all such weights is "large": it is
#: named in a warning, since the target sparsity does not cover it.
LARGE_FRACTION = 0.01


def _is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's ``transformers.pytorch_utils.Conv1D`` (a linear layer with a transposed weight)."""
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


class DefaultRule:
    """The default parameter rule, as a predicate ``rule(name, module, param) -> bool``.

    Args:
        embeddings: also prune the ``weight`` of every ``nn.Embedding`` and ``nn.EmbeddingBag``.
        attention: prune the weight matrices of ``nn.MultiheadAttention`` (:data:`ATTENTION_WEIGHTS`); its
            ``out_proj`` is a ``Linear`` and follows the linear rule.
        zeros: also prune weights that are entirely zero (by default they stay dense: a saliency ``∝ θ`` scores
            them 0, so a zero-initialised output layer would be removed whole and the network would be dead).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Embedding(10, 8), nn.TransformerEncoderLayer(8, 2, 16, batch_first=True))
        >>> list(prunable_parameters(net))
        ['1.self_attn.in_proj_weight', '1.self_attn.out_proj.weight', '1.linear1.weight', '1.linear2.weight']
        >>> list(prunable_parameters(net, predicate=DefaultRule(embeddings=True)))[0]
        '0.weight'
    """

    def __init__(self, embeddings: bool = False, attention: bool = True, zeros: bool = False) -> None:
        for argument, value in (("embeddings", embeddings), ("attention", attention), ("zeros", zeros)):
            if not isinstance(value, bool):
                raise ValueError(f"`{argument}` must be True or False, got {value!r}.")
        self.embeddings = embeddings
        self.attention = attention
        self.zeros = zeros

    def __call__(self, name: str, module: nn.Module, param: nn.Parameter) -> bool:
        """Whether ``param``, registered on ``module`` under the qualified ``name``, is prunable."""
        local = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.MultiheadAttention):
            chosen = self.attention and local in ATTENTION_WEIGHTS
        elif local != "weight":
            chosen = False
        elif isinstance(module, DEFAULT_PRUNABLE_TYPES) or _is_hf_conv1d(module):
            chosen = True
        else:
            chosen = self.embeddings and isinstance(module, EMBEDDING_TYPES)
        return chosen and (self.zeros or not _all_zero(param))

    def __repr__(self) -> str:
        return f"DefaultRule(embeddings={self.embeddings}, attention={self.attention}, zeros={self.zeros})"


def _all_zero(param: nn.Parameter) -> bool:
    return param.device.type != "meta" and param.numel() > 0 and not bool(param.detach().any())


def _as_patterns(value: str | Iterable[str] | None, argument: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    patterns = list(value)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(f"`{argument}` must be a glob pattern or a list of glob patterns, got {pattern!r}.")
    return patterns


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def parameter_aliases(model: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
    """Every name under which each parameter is registered: ``{canonical name: [(qualified name, module), ...]}``.

    The canonical name is the one ``model.named_parameters()`` gives (the first in module-tree order); tied
    parameters have more than one entry.
    """
    canonical = {id(p): n for n, p in model.named_parameters()}
    aliases: dict[str, list[tuple[str, nn.Module]]] = {n: [] for n in canonical.values()}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for param_name, param in module.named_parameters(recurse=False):
            name = f"{module_name}.{param_name}" if module_name else param_name
            uses = aliases[canonical[id(param)]]
            if all(n != name for n, _ in uses):
                uses.append((name, module))
    return aliases


def prunable_parameters(
    model: nn.Module,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    predicate: ParamPredicate | None = None,
) -> dict[str, nn.Parameter]:
    """Select the prunable parameters of ``model``, keyed by qualified name, in module-tree order.

    Args:
        model: any ``nn.Module`` (nested containers, torchvision and Hugging Face models, residual blocks).
        include: glob pattern(s) over qualified parameter names (``fnmatch``, e.g. ``"features.*"``). When given,
            only matching parameters are kept; any parameter of any module may be included this way (biases, norm
            weights, embeddings), not only those of the default rule.
        exclude: glob pattern(s) of parameters to leave dense, applied after ``include`` (e.g. ``"lm_head.*"``).
        predicate: ``predicate(name, module, param) -> bool`` replacing the default rule (:class:`DefaultRule`);
            ``include``/``exclude`` still apply. ``DefaultRule(embeddings=True)`` adds the embeddings.

    Returns:
        ``{qualified name: parameter}``; a tied (shared) parameter appears once, under the name
        ``model.named_parameters()`` gives it, and is chosen if any of its names is chosen.

    Raises:
        ValueError: if nothing is prunable.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
        >>> list(prunable_parameters(net))
        ['0.weight', '3.weight']
        >>> list(prunable_parameters(net, exclude="3.*"))
        ['0.weight']
    """
    includes = _as_patterns(include, "include")
    excludes = _as_patterns(exclude, "exclude")
    rule: ParamPredicate = predicate if predicate is not None else DefaultRule()
    params = dict(model.named_parameters())
    selected: dict[str, nn.Parameter] = {}
    for canonical, uses in parameter_aliases(model).items():
        param = params[canonical]
        names = [n for n, _ in uses]
        if includes:
            chosen = any(
                _matches(n, includes) and (predicate is None or predicate(n, m, param)) for n, m in uses
            )
        else:
            chosen = any(rule(n, m, param) for n, m in uses)
        if chosen and not any(_matches(n, excludes) for n in names):
            selected[canonical] = param
    if not selected:
        description = (
            f"include={includes!r}, exclude={excludes!r}, predicate={'given' if predicate else None}"
            if includes or excludes or predicate
            else "the default rule (the `weight` of every Conv/Linear module and the weight matrices of "
            "nn.MultiheadAttention)"
        )
        raise ValueError(
            f"{type(model).__name__} has no prunable parameters under {description}. "
            "Pass `include=` patterns (qualified names such as 'encoder.*.weight') or a `predicate` to choose some."
        )
    return selected


@dataclass
class SelectionReport:
    """What a parameter selection covers, in one line, and which large weights it leaves dense.

    Attributes:
        pruned_tensors: number of prunable parameters.
        pruned_weights: their number of scalar weights ``m``.
        dense: ``{name: numel}`` of the parameters with two or more dimensions left dense (canonical names).
        large: the names in ``dense`` with at least :data:`LARGE_FRACTION` of all weights of two or more
            dimensions that ``exclude`` did not name (the user did not choose to leave them dense).
        tied: ``{canonical name: [other names]}`` of the prunable parameters shared by several modules.
        zero: the names in ``dense`` whose weights are all zero (left dense by the default rule).
    """

    pruned_tensors: int
    pruned_weights: int
    dense: dict[str, int] = field(default_factory=dict)
    large: list[str] = field(default_factory=list)
    tied: dict[str, list[str]] = field(default_factory=dict)
    zero: list[str] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        """Fraction of the model's weights of two or more dimensions that are prunable."""
        total = self.pruned_weights + sum(self.dense.values())
        return self.pruned_weights / total if total else 1.0

    @property
    def line(self) -> str:
        """The one-line report."""
        text = (
            f"prunable: {self.pruned_tensors} tensors, {self.pruned_weights:,} weights "
            f"({self.coverage:.1%} of the weights with 2+ dimensions)"
        )
        if self.dense:
            largest = sorted(self.dense.items(), key=lambda kv: -kv[1])
            names = ", ".join(f"{n} ({k:,})" for n, k in largest[:3]) + (", ..." if len(largest) > 3 else "")
            count, size = len(self.dense), sum(self.dense.values())
            text += f"; left dense: {count} tensors with 2+ dimensions, {size:,} weights: {names}"
        if self.zero:
            text += f"; all zero (left dense): {', '.join(self.zero)}"
        if self.tied:
            ties = ", ".join(f"{' = '.join([*others, name])}" for name, others in self.tied.items())
            text += f"; tied, pruned once: {ties}"
        return text

    def warning(self) -> str | None:
        """The warning about large dense weights, or ``None`` when there are none."""
        if not self.large:
            return None
        sizes = ", ".join(f"{n} ({self.dense[n]:,})" for n in self.large)
        return (
            f"The parameter rule leaves {len(self.large)} large weight tensor(s) with 2+ dimensions dense, outside "
            f"the target sparsity: {sizes}. Prune them with `include=` patterns or "
            "`predicate=DefaultRule(embeddings=True)` (embeddings), or name them in `exclude=` to keep them dense "
            "without this warning."
        )

    def warn(self, stacklevel: int = 2) -> None:
        """Issue :meth:`warning` as a ``UserWarning`` (Python shows each distinct text once)."""
        message = self.warning()
        if message is not None:
            warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)


def selection_report(
    model: nn.Module, params: Mapping[str, nn.Parameter], exclude: str | Sequence[str] | None = None
) -> SelectionReport:
    """Describe a selection made by :func:`prunable_parameters`.

    Args:
        model: the network.
        params: the selected ``{name: parameter}``.
        exclude: the ``exclude`` patterns used; dense parameters they name are not called "large".

    Example:
        >>> from torch import nn
        >>> lm = nn.Sequential(nn.Embedding(1000, 16), nn.Linear(16, 16))
        >>> report = selection_report(lm, prunable_parameters(lm))
        >>> for part in report.line.split("; "):
        ...     print(part)
        prunable: 1 tensors, 256 weights (1.6% of the weights with 2+ dimensions)
        left dense: 1 tensors with 2+ dimensions, 16,000 weights: 0.weight (16,000)
        >>> report.large
        ['0.weight']
    """
    excludes = _as_patterns(exclude, "exclude")
    aliases = parameter_aliases(model)
    selected = {id(p) for p in params.values()}
    dense = {
        n: p.numel() for n, p in model.named_parameters() if p.ndim >= 2 and id(p) not in selected
    }
    total = sum(p.numel() for p in params.values()) + sum(dense.values())
    large = [
        n
        for n, k in dense.items()
        if k >= LARGE_FRACTION * total and not any(_matches(a, excludes) for a, _ in aliases.get(n, [(n, model)]))
    ]
    tied = {n: [a for a, _ in aliases[n] if a != n] for n in params if len(aliases.get(n, [])) > 1}
    named = dict(model.named_parameters())
    zero = [n for n in dense if _all_zero(named[n])]
    return SelectionReport(
        pruned_tensors=len(params),
        pruned_weights=sum(p.numel() for p in params.values()),
        dense=dense,
        large=large,
        tied=tied,
        zero=zero,
    )
