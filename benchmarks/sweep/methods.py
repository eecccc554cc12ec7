"""The sweep's methods: every pruning method of :data:`lightning_panning.core.METHODS`, plus two of its own.

The sweep's own methods are ``dense`` (no pruning) and ``rlpanning`` (the ``RLPanningCallback`` with the shipped
agent). Every other name is a key of ``METHODS`` and runs as ``PanningCallback(method=name)`` — among them
``panning_shuffled`` (Panning's masks shuffled within each layer: random at Panning's layer densities, the sanity
check of Frankle et al. 2021), so a method added to ``METHODS`` (for example the authors' preset
``panning_authors``) is a sweep method at once. A few names are known here before they exist in ``METHODS``;
profiles may list them, and the sweep skips them with the reason until the installed package has them
(:func:`method_unavailable_reason`).

Example:
    >>> list(METHOD_LABELS)[:3]
    ['dense', 'panning', 'panning_authors']
    >>> build_callback("panning_shuffled", 0.9, rounds=5).shuffle_masks
    True
"""

from __future__ import annotations

from typing import Any

from lightning_panning.core import METHODS

__all__ = [
    "METHOD_COLORS",
    "METHOD_LABELS",
    "SWEEP_ONLY_METHODS",
    "MethodUnavailableError",
    "build_callback",
    "check_methods",
    "core_methods",
    "method_unavailable_reason",
]

#: Methods of the sweep that are not keys of ``METHODS``.
SWEEP_ONLY_METHODS: tuple[str, ...] = ("dense", "rlpanning")

#: Display labels of the methods known here, in the order tables and plots list them.
_KNOWN_LABELS: dict[str, str] = {
    "dense": "Dense (no pruning)",
    "panning": "Panning (Algorithm 1)",
    "panning_authors": "Panning (authors' code)",
    "rlpanning": "RLPanning",
    "panning_shuffled": "Panning, layer-wise shuffled",
    "synflow": "SynFlow (iterative)",
    "synflow_oneshot": "SynFlow (one-shot)",
    "iterative_snip": "Iterative SNIP (FORCE)",
    "iterative_grasp": "Iterative GraSP",
    "snip": "SNIP",
    "grasp": "GraSP",
    "grasp_original": "GraSP (original, signed)",
    "magnitude": "Magnitude",
    "random": "Random",
    "prospr": "ProsPr",
    "ntk_sap": "NTK-SAP",
    "ntk_sap_authors": "NTK-SAP (their T = 20 and count)",
    "panning_ntk_sap": "Panning + NTK-SAP (4 metrics)",
    "random_erk": "Random (ERK densities)",
    "random_er": "Random (ER densities)",
    "random_uniform": "Random (uniform densities)",
    "phew": "PHEW",
    "px": "PX",
    "px_authors": "PX (their name rule and count)",
}


def core_methods() -> list[str]:
    """The keys of ``METHODS`` without aliases (a key whose configuration object is an earlier key's, e.g. ``force``).

    Example:
        >>> "force" in core_methods(), "iterative_snip" in core_methods()
        (False, True)
    """
    seen: set[int] = set()
    names = []
    for name, config in METHODS.items():
        if id(config) in seen:
            continue
        seen.add(id(config))
        names.append(name)
    return names


#: Method name → display label: the known ones first, then any other method of ``METHODS`` under its own name.
METHOD_LABELS: dict[str, str] = {
    **_KNOWN_LABELS,
    **{name: name for name in core_methods() if name not in _KNOWN_LABELS},
}

_COLORS: dict[str, str] = {
    "panning": "C0",
    "panning_authors": "C7",
    "rlpanning": "C3",
    "panning_shuffled": "C9",
    "synflow": "C1",
    "synflow_oneshot": "C8",
    "iterative_snip": "C4",
    "iterative_grasp": "C5",
    "snip": "C2",
    "grasp": "C6",
    "grasp_original": "tab:olive",
    "magnitude": "tab:brown",
    "random": "k",
    "prospr": "tab:pink",
    "ntk_sap": "tab:cyan",
    "ntk_sap_authors": "#17becf80",
    "panning_ntk_sap": "#9467bd80",
    "random_erk": "tab:gray",
    "random_er": "#8c8c8c",
    "random_uniform": "#bdbdbd",
    "phew": "#17becf80",
    "px": "tab:purple",
    "px_authors": "#9467bd80",
}
#: Line colour of each method in the plot (grey is kept for the dense baselines).
METHOD_COLORS: dict[str, str] = {
    name: _COLORS.get(name, f"C{index % 10}") for index, name in enumerate(METHOD_LABELS) if name != "dense"
}


class MethodUnavailableError(RuntimeError):
    """A sweep method that this installation of lightning_panning cannot run (yet)."""


def check_methods(methods: Any, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if any of ``methods`` is not a sweep method.

    Example:
        >>> check_methods(["dense", "nope"], "--methods")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --methods: unknown method(s) ['nope']; allowed: ['dense', ...
    """
    unknown = [m for m in methods if m not in METHOD_LABELS]
    if unknown:
        raise ValueError(f"{where}: unknown method(s) {unknown}; allowed: {list(METHOD_LABELS)}.")


def method_unavailable_reason(method: str) -> str | None:
    """Why ``method`` cannot run in this installation, or ``None`` when it can.

    Raises:
        ValueError: for a name that is not a sweep method.

    Example:
        >>> method_unavailable_reason("panning") is None
        True
    """
    check_methods([method], "method")
    if method == "rlpanning":
        try:
            from lightning_panning.callbacks import RLPanningCallback  # noqa: F401
        except ImportError as err:
            return f"lightning_panning.callbacks.RLPanningCallback cannot be imported ({type(err).__name__}: {err})"
        return None
    if method in SWEEP_ONLY_METHODS or method in METHODS:
        return None
    import lightning_panning

    return (
        f"{method!r} is not a key of lightning_panning.core.METHODS in this installation "
        f"(lightning_panning {lightning_panning.__version__})"
    )


def build_callback(
    method: str,
    sparsity: float,
    *,
    rounds: int = 100,
    seed: int = 0,
    per_class: int = 10,
    num_classes: int | None = None,
    policy: str | None = None,
) -> Any:
    """The pruning callback of one sweep cell (``None`` for ``dense``).

    Args:
        method: a key of :data:`METHOD_LABELS`.
        sparsity: target sparsity in (0, 1) (ignored for ``dense``).
        rounds: ``T`` of iterative methods.
        seed: seed of the scoring batch and of random scores.
        per_class: samples per class of the scoring batch.
        num_classes: classes of the scoring batch.
        policy: ``rlpanning`` only: path of a TD3 zip (``None``: the policy shipped in lightning_panning).

    Returns:
        A ``PanningCallback``, an ``RLPanningCallback`` or ``None``.

    Raises:
        ValueError: for an unknown method.
        MethodUnavailableError: for a method this installation cannot run.

    Example:
        >>> cb = build_callback("grasp_original", 0.95, rounds=7, seed=4)
        >>> cb.method, cb.target, cb.shuffle_masks
        ('grasp_original', 0.95, False)
    """
    reason = method_unavailable_reason(method)
    if reason is not None:
        raise MethodUnavailableError(reason)
    if method == "dense":
        return None
    common: dict[str, Any] = {
        "rounds": rounds,
        "seed": seed,
        "per_class": per_class,
        "options": {"num_classes": num_classes},
        "log_figure": False,
        "verbose": False,
    }
    if method == "rlpanning":
        from lightning_panning.callbacks import RLPanningCallback

        return RLPanningCallback(sparsity, policy or "default", **common)
    from lightning_panning.callbacks import PanningCallback

    return PanningCallback(sparsity, method, **common)
