"""Which parameters are prunable.

By default the ``weight`` of every ``Conv1d/2d/3d`` and ``Linear`` module anywhere in the module tree is prunable
(METHOD §1). Parameters are keyed by their qualified name, e.g. ``"features.0.weight"``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence

from torch import nn

__all__ = ["DEFAULT_PRUNABLE_TYPES", "ParamPredicate", "prunable_parameters"]

#: Module types whose ``weight`` is pruned by default.
DEFAULT_PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: ``predicate(qualified_name, owning_module, parameter) -> bool``.
ParamPredicate = Callable[[str, nn.Module, nn.Parameter], bool]


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


def prunable_parameters(
    model: nn.Module,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    predicate: ParamPredicate | None = None,
) -> dict[str, nn.Parameter]:
    """Select the prunable parameters of ``model``, keyed by qualified name, in module-tree order.

    Args:
        model: any ``nn.Module`` (nested containers, torchvision models and residual blocks included).
        include: glob pattern(s) over qualified parameter names (``fnmatch``, e.g. ``"features.*"``). When given,
            only matching parameters are kept; any parameter of any module may be included this way (biases, norm
            weights, embeddings), not only the default conv/linear weights.
        exclude: glob pattern(s) of parameters to leave dense, applied after ``include``.
        predicate: ``predicate(name, module, param) -> bool`` replacing the default type rule (the ``weight`` of
            ``Conv1d/2d/3d`` and ``Linear``); ``include``/``exclude`` still apply.

    Returns:
        ``{qualified name: parameter}``; tied (shared) parameters appear once, under their first name.

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
    selected: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            name = f"{module_name}.{param_name}" if module_name else param_name
            if includes:
                chosen = any(fnmatch.fnmatchcase(name, p) for p in includes)
                if chosen and predicate is not None:
                    chosen = predicate(name, module, param)
            elif predicate is not None:
                chosen = predicate(name, module, param)
            else:
                chosen = param_name == "weight" and isinstance(module, DEFAULT_PRUNABLE_TYPES)
            if chosen and any(fnmatch.fnmatchcase(name, p) for p in excludes):
                chosen = False
            if chosen:
                seen.add(id(param))
                selected[name] = param
    if not selected:
        rule = (
            f"include={includes!r}, exclude={excludes!r}, predicate={'given' if predicate else None}"
            if includes or excludes or predicate
            else "the default rule (the `weight` of every Conv1d/2d/3d and Linear module)"
        )
        raise ValueError(
            f"{type(model).__name__} has no prunable parameters under {rule}. "
            "Pass `include=` patterns (qualified names such as 'encoder.*.weight') or a `predicate` to choose some."
        )
    return selected

