"""The summary's tests: Welch's and the paired t-test against scipy, Holm's correction, and the readings."""

from __future__ import annotations

import pytest
from scipy import stats

from benchmarks.sweep.stats import ALPHA, Comparison, adjust, compare, holm, one_sample_p, paired_p, welch_p

A = {0: 98.10, 1: 97.42, 2: 98.35, 3: 97.90}
B = {0: 96.02, 1: 96.71, 2: 95.88}


def test_welch_matches_scipy() -> None:
    expected = stats.ttest_ind(list(A.values()), list(B.values()), equal_var=False).pvalue
    assert welch_p(list(A.values()), list(B.values())) == pytest.approx(expected, rel=1e-12)
    # one sample at chance in every seed (no spread) is still a test; two constant samples are not
    constant = [11.35, 11.35, 11.35]
    assert welch_p(constant, list(B.values())) == pytest.approx(
        stats.ttest_ind(constant, list(B.values()), equal_var=False).pvalue, rel=1e-9
    )
    assert welch_p(constant, [10.0, 10.0]) is None and welch_p([1.0], [2.0, 3.0]) is None


def test_one_sample_test_against_a_published_mean() -> None:
    values = [94.1, 95.3, 94.6]
    assert one_sample_p(values, 95.51) == pytest.approx(stats.ttest_1samp(values, 95.51).pvalue, rel=1e-12)
    assert one_sample_p([11.35, 11.35, 11.35], 40.0) is None  # no spread: no test
    assert one_sample_p([94.0], 95.0) is None


def test_paired_test_uses_the_seeds_both_ran() -> None:
    p, n = paired_p(A, B)  # seed 3 has no partner
    assert n == 3
    assert p == pytest.approx(stats.ttest_rel([A[s] for s in range(3)], [B[s] for s in range(3)]).pvalue, rel=1e-12)
    assert paired_p({0: 1.0, 1: 2.0}, {0: 0.0, 1: 1.0}) == (None, 2)  # the same difference in every seed
    assert paired_p({0: 1.0}, {0: 0.0, 1: 1.0}) == (None, 1)


def test_holm_on_a_known_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    adjusted = holm(p)
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # the step-down procedure itself: reject while p_(i) <= α / (m − i)
    rejected, m = set(), len(p)
    for rank, i in enumerate(sorted(range(m), key=lambda i: p[i])):
        if p[i] > ALPHA / (m - rank):
            break
        rejected.add(i)
    assert rejected == {i for i, a in enumerate(adjusted) if a < ALPHA} == {0, 3}
    assert holm([0.9, 0.8]) == [1.0, 1.0] and holm([]) == []


def test_readings_shown_contested_and_family_size() -> None:
    clear = compare({0: 95.0, 1: 95.2, 2: 95.1}, {0: 90.0, 1: 90.3, 2: 90.1})
    close = compare({0: 95.0, 1: 96.5, 2: 93.9}, {0: 93.4, 1: 93.6, 2: 92.9})
    untestable = compare({0: 95.0}, {0: 90.0, 1: 91.0})
    assert adjust([clear, close, untestable]) == 2  # only testable comparisons count
    assert untestable.adj_welch is None and not untestable.shown and not untestable.contested
    assert clear.shown and clear.delta == pytest.approx(4.9667, abs=1e-4) and clear.wins == 3
    raw = [clear.p_welch, close.p_welch]
    assert [clear.adj_welch, close.adj_welch] == pytest.approx(holm(raw))  # type: ignore[arg-type]
    assert not close.shown
    worst = max(close.p_welch or 1.0, close.p_paired or 1.0)
    assert close.contested == (worst < 0.2 and abs(close.delta) >= 1.0)
    assert Comparison(2.0, 3, 3, 0.1, 0.1, 0.3, 0.3).contested
    assert Comparison(2.0, 3, 3, 0.01, 0.02, 0.06, 0.06).contested  # below 0.05 only before the correction
    assert not Comparison(2.0, 3, 3, 0.01, 0.02, 0.02, 0.04).contested  # shown
    assert not Comparison(0.5, 3, 3, 0.1, 0.1, 0.3, 0.3).contested  # a small difference is not contested
    assert not Comparison(2.0, 3, 3, 0.1, 0.3, 0.3, 0.6).contested
    assert not Comparison(2.0, 5, 5, 0.1, 0.1, 0.3, 0.3).contested  # seeds 3 and 4 ran: settled, not shown
