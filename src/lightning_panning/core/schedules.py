"""Sparsity schedules: plain functions ``(target, rounds) -> list[float]`` and the keep-count rule."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Literal

__all__ = [
    "KEEP_RULES",
    "SCHEDULES",
    "KeepRule",
    "Schedule",
    "authors_keep_count",
    "authors_keep_fractions",
    "exponential",
    "get_schedule",
    "keep_count",
    "linear",
    "validate_target",
]

Schedule = Callable[[float, int], list[float]]
KeepRule = Literal["exact", "authors"]
#: ``"exact"``: keep exactly :func:`keep_count` weights; ``"authors"``: :func:`authors_keep_count` and ties kept.
KEEP_RULES: tuple[str, ...] = ("exact", "authors")


def validate_target(target: float, argument: str = "target") -> float:
    """Check that a sparsity target lies in the open interval (0, 1) and return it as ``float``.

    Raises:
        TypeError: if ``target`` is not a real number (``bool`` is refused; NumPy scalars are accepted).
        ValueError: if ``target`` is outside (0, 1) or not finite.

    Example:
        >>> import numpy as np
        >>> validate_target(np.float32(0.5))
        0.5
    """
    if isinstance(target, bool) or not isinstance(target, numbers.Real):
        raise TypeError(
            f"`{argument}` must be a real number in (0, 1) (the fraction of weights removed), got {target!r}."
        )
    target = float(target)
    if not math.isfinite(target) or not 0.0 < target < 1.0:
        raise ValueError(
            f"`{argument}` must be in the open interval (0, 1) (the fraction of weights removed, e.g. 0.98), "
            f"got {target!r}."
        )
    return target


def _validate_rounds(rounds: int) -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"`rounds` must be a positive integer, got {rounds!r}.")
    return rounds


def exponential(target: float, rounds: int) -> list[float]:
    """Algorithm 1's schedule ``rho_i = 1 - (1 - target) ** (i / T)`` for ``i = 1..T``; the last value is ``target``.

    Example:
        >>> [round(r, 4) for r in exponential(0.99, 2)]
        [0.9, 0.99]
    """
    target = validate_target(target)
    rounds = _validate_rounds(rounds)
    values = [1.0 - (1.0 - target) ** (i / rounds) for i in range(1, rounds + 1)]
    values[-1] = target
    return values


def linear(target: float, rounds: int) -> list[float]:
    """Linear schedule ``rho_i = target * i / T`` for ``i = 1..T``; the last value is ``target``.

    Example:
        >>> linear(0.9, 3)
        [0.3, 0.6, 0.9]
    """
    target = validate_target(target)
    rounds = _validate_rounds(rounds)
    values = [target * i / rounds for i in range(1, rounds + 1)]
    values[-1] = target
    return values


SCHEDULES: dict[str, Schedule] = {"exponential": exponential, "linear": linear}


def get_schedule(schedule: str | Schedule) -> Schedule:
    """Resolve a schedule given by name (``"exponential"``, ``"linear"``) or as a callable."""
    if callable(schedule):
        return schedule
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown `schedule` {schedule!r}; allowed: {sorted(SCHEDULES)} or a callable.")
    return SCHEDULES[schedule]


def keep_count(total: int, sparsity: float) -> int:
    """How many of ``total`` weights survive at ``sparsity``: ``floor(total * (1 - sparsity) + 1e-6)``.

    This is "at most ``m (1 - rho)``" (METHOD §1). The ``1e-6`` absorbs floating-point error in ``1 - sparsity``
    (``1 - 0.9`` is ``0.09999999999999998``) — float64 error on ``total * (1 - sparsity)`` stays below ``1e-8`` for
    any network under 10**8 weights — so that ``keep_count(1000, 0.9) == 100``.

    Example:
        >>> keep_count(1000, 0.9), keep_count(430500, 0.9999), keep_count(10, 0.05)
        (100, 43, 9)
    """
    return math.floor(total * (1.0 - sparsity) + 1e-6)


def authors_keep_count(total: int, keep_fraction: float) -> int:
    """The authors' keep count ``int(total · keep_fraction)`` (truncation, no tolerance).

    Their loop computes the keep fraction ``κ_i = (1 − ρ_T)^(i/T)`` directly (:func:`authors_keep_fractions`), so at
    a round where ``κ_i`` is mathematically 0.1 but computes as ``0.09999999999999724``, 430,500 weights keep 43,049,
    not the 43,050 of :func:`keep_count`.

    Example:
        >>> authors_keep_count(430500, 0.09999999999999724), keep_count(430500, 1 - 0.09999999999999724)
        (43049, 43050)
    """
    return int(total * keep_fraction)


def authors_keep_fractions(schedule: Schedule, target: float, rounds: int) -> tuple[list[float], list[float]]:
    """Round sparsities ``ρ_i`` and keep fractions ``κ_i`` computed as the authors' loop computes them.

    For the exponential schedule their code computes ``κ_i = (1 − ρ_T) ** (i / T)`` and takes ``ρ_i = 1 − κ_i``
    for the stage table (the last ``ρ_T`` is therefore ``1 − (1 − ρ_T)``, not pinned to the target); for any other
    schedule ``κ_i = 1 − ρ_i``.

    Returns:
        ``(sparsities, keep_fractions)``, two lists of length ``rounds``.

    Example:
        >>> rho, kappa = authors_keep_fractions(exponential, 0.9999, 100)
        >>> rho[24], kappa[24]
        (0.9000000000000028, 0.09999999999999724)
    """
    target = validate_target(target)
    rounds = _validate_rounds(rounds)
    if schedule is exponential:
        kappa = [(1.0 - target) ** (i / rounds) for i in range(1, rounds + 1)]
        return [1.0 - k for k in kappa], kappa
    sparsities = list(schedule(target, rounds))
    return sparsities, [1.0 - r for r in sparsities]
