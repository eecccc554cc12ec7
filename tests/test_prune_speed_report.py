"""`benchmarks/prune_speed.py`'s speed-up paired by repeat: the test behind "ours no slower" (no authors' code)."""

from __future__ import annotations

import math

import pytest

from benchmarks.prune_speed import markdown, paired_speedup, run_seconds_per_round


def test_paired_speedup_reads_a_consistent_gain_as_faster_and_a_loss_as_slower() -> None:
    theirs = [1.00, 1.20, 0.90, 1.10, 1.05]
    jitter = (0.01, -0.01, 0.0, 0.005, -0.005)
    faster = paired_speedup(theirs, [t / 1.10 * (1 + d) for t, d in zip(theirs, jitter, strict=True)])
    assert faster["reading"] == "faster" and faster["p"] < 0.05
    assert faster["ci95"][0] > 1.0 and 1.09 < faster["geomean"] < 1.11
    slower = paired_speedup([o / 1.10 for o in theirs], theirs)
    assert slower["reading"] == "not testable (fewer than 2 repeats, or no spread)"  # every ratio exactly equal
    slower = paired_speedup(theirs, [t * 1.10 * (1 + d) for t, d in zip(theirs, jitter, strict=True)])
    assert slower["reading"] == "slower" and slower["ci95"][1] < 1.0


def test_paired_speedup_pairs_by_repeat_so_shared_load_cancels() -> None:
    # the load swings each repeat's times by up to 2x; within a repeat ours is 1% faster: the pairing sees it,
    # the unpaired medians would not settle it
    load = [1.0, 2.0, 1.3, 1.8, 1.1, 1.6]
    ours = [0.5 * x for x in load]
    theirs = [0.5 * x * 1.01 * (1 + 0.001 * (-1) ** i) for i, x in enumerate(load)]
    r = paired_speedup(theirs, ours)
    assert r["reading"] == "faster" and r["n"] == 6
    assert r["ci95"][0] < r["geomean"] < r["ci95"][1]
    assert math.isclose(r["geomean"], 1.01, rel_tol=1e-3)


def test_paired_speedup_without_a_difference_is_on_par() -> None:
    r = paired_speedup([1.0, 1.1, 0.9, 1.0], [1.02, 1.08, 0.91, 0.99])
    assert r["reading"] == "on par (not shown faster or slower)"
    assert r["ci95"][0] < 1.0 < r["ci95"][1] and r["p"] >= 0.05


def test_paired_speedup_refuses_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="3 repeats of theirs against 2 of ours"):
        paired_speedup([1.0, 1.0, 1.0], [1.0, 1.0])


def test_amortised_seconds_per_round_only_for_the_panning_preset() -> None:
    run = {"round_seconds": [1.0, 0.1, 0.1, 0.1]}
    assert run_seconds_per_round("ours_authors", "panning", run) == pytest.approx((1.0 + 99 * 0.1) / 100)
    assert run_seconds_per_round("ours_default", "panning", run) == pytest.approx(1.3 / 4)


def test_markdown_adds_the_paired_table_only_when_the_record_has_it() -> None:
    meta = {"command": "python benchmarks/prune_speed.py", "date": "d", "torch": "t", "device": "cpu", "threads": 2,
            "platform": "p", "git_commit": "abc", "load_min": 0.1, "load_mean": 0.2, "load_max": 0.3, "cpus": 2,
            "rounds": 3, "repeats": 5, "authors_repo": "../authors-ntksap"}
    entry = {"method": "ntk_sap", "round1_seconds": 1.0, "steady_seconds": 1.0, "seconds_per_round": 1.0,
             "rss_increment_gb": 1.0, "speedup_vs_theirs": 1.01, "memory_ratio_vs_theirs": 1.0}
    theirs = {"method": "NTKSAP", "round1_seconds": 1.0, "steady_seconds": 1.0, "seconds_per_round": 1.0,
              "rss_increment_gb": 1.0}
    data = {"meta": meta, "results": {"vgg19": {"label": "VGG19-BN", "groups": {"ntk_sap": {
        "theirs": theirs, "ours_default": dict(entry)}}}}}
    assert "paired by repeat" not in markdown(data)  # an older record: unchanged report
    entry["paired_speedup_vs_theirs"] = paired_speedup([1.0, 1.1, 0.9, 1.0], [1.02, 1.08, 0.91, 0.99])
    data["results"]["vgg19"]["groups"]["ntk_sap"]["ours_default"] = entry
    text = markdown(data)
    assert "| VGG19-BN | ntk_sap | ours_default |" in text and "on par (not shown faster or slower)" in text
