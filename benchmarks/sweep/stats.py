"""The tests behind the summary's verdicts: Welch's t-test, a t-test paired by seed, and Holm's correction.

Two runs with the same seed share their initial weights and their data order, so a method's accuracy in seed ``s``
is compared with another's in the same seed by the paired t-test on the per-seed differences; Welch's t-test
(unequal variances) compares the two samples without the pairing. Both are two-sided. Across the comparisons of
one table, Holm's step-down correction keeps the chance of any false "shown" at 5%. A difference is *shown* when
both tests' Holm-adjusted p-values are below :data:`ALPHA`; it is *contested* when it is not shown, the larger of
the two adjusted p-values is below :data:`CONTESTED_P` and the difference of the means is at least
:data:`CONTESTED_DELTA` points — a cell for which more seeds (3 and 4) decide more than argument does.

Example:
    >>> r = compare({0: 98.0, 1: 97.5, 2: 98.2}, {0: 96.0, 1: 95.9, 2: 96.5})
    >>> round(r.delta, 2), r.n_pairs, round(r.p_welch, 4), round(r.p_paired, 4)
    (1.77, 3, 0.0033, 0.0046)
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

import contextlib
import math
import statistics
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ALPHA",
    "CONTESTED_DELTA",
    "CONTESTED_P",
    "Comparison",
    "adjust",
    "compare",
    "holm",
    "one_sample_p",
    "paired_p",
    "welch_p",
]

#: Significance level of every test in the summaries (two-sided).
ALPHA = 0.05
#: Seeds run by both methods from which a comparison is no longer contested (seeds 0–4 ran: the rule's extra seeds).
SETTLED_PAIRS = 5
#: Upper end of the unadjusted p-values for which a large difference that is not shown counts as contested.
CONTESTED_P = 0.2
#: Smallest difference of the mean accuracies (percentage points) that counts as large.
CONTESTED_DELTA = 1.0


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) for the means of ``a`` and ``b``.

    Returns:
        ``None`` when either sample has fewer than two values, or when neither varies (the statistic is 0/0 or
        infinite: no test).
    """
    if len(a) < 2 or len(b) < 2 or not (_varies(a) or _varies(b)):
        return None
    from scipy import stats

    with _constant_sample_ok():
        return _finite(float(stats.ttest_ind(a, b, equal_var=False).pvalue))


def paired_p(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float | None, int]:
    """Two-sided p-value of the paired t-test on the seed-matched differences ``a[s] - b[s]``, and the pair count.

    Returns:
        ``(None, n)`` when fewer than two seeds are shared or the differences do not vary.
    """
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    if len(diffs) < 2 or not _varies(diffs):
        return None, len(diffs)
    from scipy import stats

    return _finite(float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)), len(diffs)


def one_sample_p(values: Sequence[float], reference: float) -> float | None:
    """Two-sided p-value of the one-sample t-test of ``values``' mean against the fixed number ``reference``.

    Used for a published mean whose own spread is not published: the test treats ``reference`` as exact, so it
    ignores the published runs' noise and its p-value is smaller than a test of two samples would give.

    Returns:
        ``None`` when there are fewer than two values or they do not vary.
    """
    if len(values) < 2 or not _varies(values):
        return None
    from scipy import stats

    return _finite(float(stats.ttest_1samp(values, reference).pvalue))


@contextlib.contextmanager
def _constant_sample_ok() -> Iterator[None]:
    """Silence scipy's precision warning for a sample that does not vary (a method at chance in every seed).

    Its variance is 0 up to rounding, which is what Welch's statistic should use.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


def _varies(values: Sequence[float]) -> bool:
    """Whether ``values`` spread by more than float rounding (runs at chance repeat 11.35 up to the last bits)."""
    return max(values) - min(values) > 1e-9 * max(1.0, max(abs(v) for v in values))


def _finite(p: float) -> float | None:
    return None if math.isnan(p) else p


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (``m = len(pvalues)`` comparisons).

    The ``i``-th smallest p-value (from 0) is multiplied by ``m - i``, made non-decreasing along the sorted order and
    capped at 1; a comparison is rejected at level α exactly when its adjusted p-value is below α.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class Comparison:
    """Method ``a`` against method ``b`` at one sparsity.

    Attributes:
        delta: mean accuracy of ``a`` minus that of ``b`` (percentage points).
        n_pairs: seeds both ran.
        wins: of those seeds, how many ``a`` is ahead in.
        p_welch: Welch's two-sided p-value (``None``: not testable).
        p_paired: the paired t-test's two-sided p-value (``None``: not testable).
        adj_welch: ``p_welch`` after Holm's correction over the table (set by :func:`adjust`).
        adj_paired: ``p_paired`` after Holm's correction over the table (set by :func:`adjust`).
    """

    delta: float
    n_pairs: int
    wins: int
    p_welch: float | None
    p_paired: float | None
    adj_welch: float | None = None
    adj_paired: float | None = None

    @property
    def testable(self) -> bool:
        """Whether both tests gave a p-value."""
        return self.p_welch is not None and self.p_paired is not None

    @property
    def shown(self) -> bool:
        """Both Holm-adjusted p-values below :data:`ALPHA`."""
        return (
            self.adj_welch is not None and self.adj_paired is not None and max(self.adj_welch, self.adj_paired) < ALPHA
        )

    @property
    def contested(self) -> bool:
        """Not shown, yet both unadjusted p-values below :data:`CONTESTED_P` and ``|delta| >= CONTESTED_DELTA``,
        with fewer than :data:`SETTLED_PAIRS` seeds run by both (seeds 3 and 4 settle it: not shown stays not shown).
        """
        if self.shown or self.p_welch is None or self.p_paired is None or self.n_pairs >= SETTLED_PAIRS:
            return False
        return max(self.p_welch, self.p_paired) < CONTESTED_P and abs(self.delta) >= CONTESTED_DELTA


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """Welch's and the paired t-test of the accuracies of two methods at one sparsity, keyed by seed."""
    p_pair, n_pairs = paired_p(a, b)
    shared = set(a) & set(b)
    return Comparison(
        delta=statistics.fmean(a.values()) - statistics.fmean(b.values()),
        n_pairs=n_pairs,
        wins=sum(a[s] > b[s] for s in shared),
        p_welch=welch_p(list(a.values()), list(b.values())),
        p_paired=p_pair,
    )


def adjust(comparisons: Sequence[Comparison]) -> int:
    """Holm-correct the p-values of the testable ``comparisons`` in place, as one family per test.

    Returns:
        The number of comparisons ``m`` in the family (the testable ones).
    """
    family = [c for c in comparisons if c.testable]
    welch = holm([c.p_welch for c in family if c.p_welch is not None])
    paired = holm([c.p_paired for c in family if c.p_paired is not None])
    for c, w, p in zip(family, welch, paired, strict=True):
        c.adj_welch, c.adj_paired = w, p
    return len(family)
