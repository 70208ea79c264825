"""Tests for annotator.metrics against published worked examples and hand-computed cases."""

from __future__ import annotations

import math
import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator import metrics
from annotator.metrics import (
    AgreementResult,
    LatencyWindow,
    Majority,
    annotator_agreement,
    fleiss_kappa,
    krippendorff_alpha_multilabel,
    krippendorff_alpha_nominal,
    majority,
    percentiles,
    record_agreement,
    record_agreement_multi,
)

# ---------------------------------------------------------------------------
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
# nominal example: 4 observers x 12 units with missing values ("." = None).
#
#   unit:        1  2  3  4  5  6  7  8  9 10 11 12
#   Observer A:  1  2  3  3  2  1  4  1  2  .  .  .
#   Observer B:  1  2  3  3  2  2  4  1  2  5  .  3
#   Observer C:  .  3  3  3  2  3  4  2  2  5  1  .
#   Observer D:  1  2  3  3  2  4  4  1  2  5  1  .
#
# Unit 12 has a single value, so it is not pairable and drops out (some
# reproductions put that lone "3" under observer C; it makes no difference).
# Published: n = 40 pairable values, coincidence diagonal 7, 10, 8, 4, 3
# (sum 32, so 8 off-diagonal), marginals n_c = 9, 13, 10, 5, 3, and
# alpha = 1 - (n-1) * 8 / (n^2 - sum n_c^2) = 1 - 39*8/(1600-384) = 0.743.
# ---------------------------------------------------------------------------
_ = None
KRIPPENDORFF_2011 = {
    "A": ["1", "2", "3", "3", "2", "1", "4", "1", "2", _, _, _],
    "B": ["1", "2", "3", "3", "2", "2", "4", "1", "2", "5", _, "3"],
    "C": [_, "3", "3", "3", "2", "3", "4", "2", "2", "5", "1", _],
    "D": ["1", "2", "3", "3", "2", "4", "4", "1", "2", "5", "1", _],
}


def _by_unit(rows: dict[str, list]) -> dict[int, list]:
    """Turn observer rows into {unit: [values...]} (missing values kept as None)."""
    n_units = len(next(iter(rows.values())))
    return {u + 1: [row[u] for row in rows.values()] for u in range(n_units)}


def test_krippendorff_2011_nominal_example() -> None:
    result = krippendorff_alpha_nominal(_by_unit(KRIPPENDORFF_2011))
    assert result.n_records == 11  # unit 12 not pairable
    assert result.n_answers == 40
    assert result.value == pytest.approx(1 - 39 * 8 / (1600 - 384), abs=1e-12)
    assert round(result.value, 3) == 0.743


def test_krippendorff_ignores_missing_and_single_value_units() -> None:
    units = _by_unit(KRIPPENDORFF_2011)
    # Dropping the None entries and adding more lone-value units changes nothing.
    cleaned = {u: [v for v in vals if v is not None] for u, vals in units.items()}
    cleaned["lonely"] = ["4"]
    cleaned["empty"] = []
    assert krippendorff_alpha_nominal(cleaned) == krippendorff_alpha_nominal(units)


def test_krippendorff_none_cases() -> None:
    assert krippendorff_alpha_nominal({}) == AgreementResult(None, 0, 0)
    assert krippendorff_alpha_nominal({"a": ["x"], "b": []}) == AgreementResult(None, 0, 0)
    # Expected disagreement is zero: alpha undefined, not 1.
    assert krippendorff_alpha_nominal({"a": ["x", "x"], "b": ["x", "x", "x"]}) == (
        AgreementResult(None, 2, 5)
    )


def test_krippendorff_perfect_and_systematic_disagreement() -> None:
    perfect = krippendorff_alpha_nominal({1: ["a", "a"], 2: ["b", "b"]})
    assert perfect.value == pytest.approx(1.0)
    # Two units, each one "a" and one "b": o_cc = 0, n = 4, n_a = n_b = 2:
    # alpha = 1 - 3 * 4 / (16 - 8) = -0.5.
    worst = krippendorff_alpha_nominal({1: ["a", "b"], 2: ["b", "a"]})
    assert worst.value == pytest.approx(-0.5)


# ---------------------------------------------------------------------------
# Fleiss' kappa: Wikipedia worked example (14 raters, 10 subjects, 5
# categories). Rows give how many raters put the subject in category 1..5.
# Published: P-bar = 0.378, P_e = 0.213, kappa = 0.210.
# ---------------------------------------------------------------------------
WIKIPEDIA_FLEISS = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def _expand(rows: list[list[int]]) -> dict[int, list[str]]:
    return {
        i: [str(cat + 1) for cat, n in enumerate(row) for _ in range(n)]
        for i, row in enumerate(rows)
    }


def test_fleiss_wikipedia_example() -> None:
    result = fleiss_kappa(_expand(WIKIPEDIA_FLEISS))
    assert result.n_records == 10
    assert result.n_answers == 140
    assert round(result.value, 3) == 0.210


def test_fleiss_unequal_raters_is_none_but_counts_records() -> None:
    units = {"a": ["x", "x"], "b": ["x", "y", "y"], "c": ["y"]}
    # "c" has one answer and is not eligible; "a" and "b" differ in raters.
    assert fleiss_kappa(units) == AgreementResult(None, 2, 5)


def test_fleiss_none_cases() -> None:
    assert fleiss_kappa({}) == AgreementResult(None, 0, 0)
    assert fleiss_kappa({"a": ["x"]}) == AgreementResult(None, 0, 0)
    # A single category everywhere: P_e = 1, kappa undefined.
    assert fleiss_kappa({"a": ["x", "x"], "b": ["x", "x"]}) == AgreementResult(None, 2, 4)


def test_fleiss_ignores_single_answer_units() -> None:
    units = _expand(WIKIPEDIA_FLEISS)
    units["solo"] = ["3"]
    assert fleiss_kappa(units) == fleiss_kappa(_expand(WIKIPEDIA_FLEISS))


# Complete data with m raters on N units (n = N*m values): both statistics
# share observed agreement P-bar, and alpha's expected disagreement is
# n/(n-1) * (1 - P_e), hence 1 - alpha = (n-1)/n * (1 - kappa).
@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=2, max_value=6).flatmap(
        lambda m: st.lists(
            st.lists(st.sampled_from("abcd"), min_size=m, max_size=m),
            min_size=1,
            max_size=12,
        )
    )
)
def test_alpha_and_fleiss_relation_on_complete_data(rows: list[list[str]]) -> None:
    units = dict(enumerate(rows))
    alpha = krippendorff_alpha_nominal(units)
    kappa = fleiss_kappa(units)
    assert alpha.n_records == kappa.n_records == len(rows)
    assert alpha.n_answers == kappa.n_answers
    assert (alpha.value is None) == (kappa.value is None)
    if alpha.value is not None:
        n = alpha.n_answers
        assert 1 - alpha.value == pytest.approx((n - 1) / n * (1 - kappa.value))
        assert alpha.value <= 1 + 1e-12


# ---------------------------------------------------------------------------
# Majority and per-record agreement
# ---------------------------------------------------------------------------


def test_majority_clear_winner() -> None:
    assert majority(["cat", "dog", "cat"]) == Majority("cat", (), 2, 3)
    assert not majority(["cat"]).is_tie


def test_majority_tie_is_reported() -> None:
    vote = majority(["dog", "cat", "bird", "cat", "dog"])
    assert vote == Majority(None, ("cat", "dog"), 2, 5)
    assert vote.is_tie


def test_majority_empty() -> None:
    assert majority([]) == Majority(None, (), 0, 0)


def test_record_agreement_values() -> None:
    assert record_agreement([]) is None
    assert record_agreement(["a"]) is None
    assert record_agreement(["a", "a"]) == 1.0
    assert record_agreement(["a", "b"]) == 0.0
    # n = 3: counts a=2, b=1 -> 2*1 / (3*2) = 1/3
    assert record_agreement(["a", "b", "a"]) == pytest.approx(1 / 3)
    # n = 5: counts a=3, b=2 -> (6 + 2) / 20 = 0.4
    assert record_agreement(["a", "a", "a", "b", "b"]) == pytest.approx(0.4)


def test_record_agreement_multi_values() -> None:
    labels = ["cat", "dog"]
    assert record_agreement_multi([["cat"]], labels) is None
    assert record_agreement_multi([["cat"], ["cat"]], []) is None
    # cat: both present -> 1; dog: present/absent -> 0; mean 0.5
    assert record_agreement_multi([["cat", "dog"], ["cat"]], labels) == pytest.approx(0.5)
    # cat: {1,1,0} -> 2/6; dog: {0,0,0} -> 1 (agreeing on absence); mean 2/3
    assert record_agreement_multi([["cat"], ["cat"], []], labels) == pytest.approx(2 / 3)


@given(st.lists(st.sampled_from("abc"), max_size=20))
def test_record_agreement_bounds_and_majority_count(answers: list[str]) -> None:
    value = record_agreement(answers)
    if len(answers) < 2:
        assert value is None
    else:
        assert 0.0 <= value <= 1.0
    vote = majority(answers)
    counts = Counter(answers)
    assert vote.total == len(answers)
    assert vote.count == (max(counts.values()) if counts else 0)
    if vote.label is not None:
        assert counts[vote.label] == vote.count and not vote.tied
    else:
        assert vote.tied == tuple(sorted(k for k, c in counts.items() if c == vote.count))


# ---------------------------------------------------------------------------
# Multi-label alpha, hand-computed
#
#   r1: {cat}, {cat}
#   r2: {cat, dog}, {cat}
#   r3: {dog}, {dog}
#   r4: {cat}                (single answer: not pairable, ignored)
#
# cat -> r1 (1,1), r2 (1,1), r3 (0,0): no disagreement, both values used
#        -> alpha = 1.
# dog -> r1 (0,0), r2 (1,0), r3 (1,1): n = 6, n_0 = n_1 = 3,
#        o_00 = 2 (r1), o_11 = 2 (r3), off-diagonal = 6 - 4 = 2,
#        alpha = 1 - 5 * 2 / (36 - 9 - 9) = 1 - 10/18 = 4/9.
# bird -> never used: expected disagreement 0 -> None.
# ---------------------------------------------------------------------------


def test_multilabel_alpha_hand_example() -> None:
    units = {
        "r1": [["cat"], ["cat"]],
        "r2": [["cat", "dog"], ["cat"]],
        "r3": [["dog"], ["dog"]],
        "r4": [["cat"]],
    }
    result = krippendorff_alpha_multilabel(units, ["cat", "dog", "bird"])
    assert list(result) == ["cat", "dog", "bird"]
    assert result["cat"] == AgreementResult(pytest.approx(1.0), 3, 6)
    assert result["dog"].value == pytest.approx(4 / 9)
    assert (result["dog"].n_records, result["dog"].n_answers) == (3, 6)
    assert result["bird"] == AgreementResult(None, 3, 6)


def test_multilabel_alpha_no_units() -> None:
    assert krippendorff_alpha_multilabel({}, ["cat"]) == {"cat": AgreementResult(None, 0, 0)}
    assert krippendorff_alpha_multilabel({"r": [["cat"], ["cat"]]}, []) == {}


# ---------------------------------------------------------------------------
# Annotator agreement (others' majority; tie counts as agreement when the
# annotator's label is among the tied labels)
#
#   r1: alice a, bob a, carol b
#   r2: alice a, bob b
#   r3: alice a, bob b, carol c
#   r4: alice a                   (nobody else: no comparison)
#   r5: alice x, bob x, carol x
#
# alice: r1 others {a, b} tie, a in tie -> agree; r2 others {b} -> no;
#        r3 others {b, c} tie, a not in -> no; r5 -> agree: 2/4, 5 answers
# bob:   r1 others {a, b} tie, a in -> agree; r2 others {a} -> no;
#        r3 others {a, c} tie, b not in -> no; r5 -> agree: 2/4, 4 answers
# carol: r1 others {a, a} -> a != b no; r3 others {a, b} tie, c not in -> no;
#        r5 -> agree: 1/3, 3 answers
# ---------------------------------------------------------------------------


def test_annotator_agreement_hand_example() -> None:
    units = {
        "r1": {"alice": "a", "bob": "a", "carol": "b"},
        "r2": {"alice": "a", "bob": "b"},
        "r3": {"alice": "a", "bob": "b", "carol": "c"},
        "r4": {"alice": "a"},
        "r5": {"alice": "x", "bob": "x", "carol": "x"},
    }
    result = annotator_agreement(units)
    assert result == {
        "alice": AgreementResult(0.5, 4, 5),
        "bob": AgreementResult(0.5, 4, 4),
        "carol": AgreementResult(pytest.approx(1 / 3), 3, 3),
    }


def test_annotator_agreement_without_comparisons() -> None:
    assert annotator_agreement({}) == {}
    assert annotator_agreement({"r1": {"alice": "a"}, "r2": {"bob": "b"}}) == {
        "alice": AgreementResult(None, 0, 1),
        "bob": AgreementResult(None, 0, 1),
    }


# ---------------------------------------------------------------------------
# Percentiles (nearest rank) and LatencyWindow
# ---------------------------------------------------------------------------


def test_percentiles_empty() -> None:
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_percentiles_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]  # 1..100, shuffled below
    samples = samples[::2] + samples[1::2]
    assert percentiles(samples) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    # n = 20: ranks ceil(10) = 10, ceil(19) = 19, ceil(19.8) = 20
    twenty = [i / 100 for i in range(1, 21)]
    assert percentiles(twenty) == {"p50": 0.10, "p95": 0.19, "p99": 0.20}
    assert percentiles([0.3]) == {"p50": 0.3, "p95": 0.3, "p99": 0.3}
    assert percentiles([5.0, 1.0], qs=(0, 50, 100, 99.9)) == {
        "p0": 1.0,
        "p50": 1.0,
        "p100": 5.0,
        "p99.9": 5.0,
    }


def test_percentiles_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentiles([1.0], qs=(101,))
    with pytest.raises(ValueError):
        percentiles([1.0, math.nan])


@given(
    st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200),
    st.floats(min_value=0, max_value=100),
)
def test_percentiles_matches_definition(samples: list[float], q: float) -> None:
    value = percentiles(samples, qs=(q,))[f"p{q:g}"]
    ordered = sorted(samples)
    # Nearest-rank: the smallest sample with at least q% of samples <= it.
    expected = next(x for x in ordered if sum(s <= x for s in ordered) * 100 >= q * len(ordered))
    assert value == expected
    out = percentiles(samples)
    assert out["p50"] <= out["p95"] <= out["p99"]


def test_latency_window_basics() -> None:
    window = LatencyWindow(maxlen=4)
    assert window.count == 0
    assert window.percentiles() == {"p50": None, "p95": None, "p99": None}
    for s in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]:
        window.add(s)
    window.add(math.nan)  # dropped: a bad timer reading must not raise
    window.add(math.inf)
    assert window.count == 4
    assert window.snapshot() == [3.0, 4.0, 5.0, 6.0]
    assert window.percentiles() == {"p50": 4.0, "p95": 6.0, "p99": 6.0}
    with pytest.raises(ValueError):
        LatencyWindow(maxlen=0)
    assert LatencyWindow().maxlen == 2048


def test_latency_window_concurrent_adds() -> None:
    window = LatencyWindow(maxlen=10_000)
    per_thread, n_threads = 1000, 8
    barrier = threading.Barrier(n_threads + 1)

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            window.add(k + i / per_thread)

    seen: list[dict[str, float | None]] = []

    def reader() -> None:
        barrier.wait()
        for _ in range(200):
            seen.append(window.percentiles())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.count == per_thread * n_threads
    assert len(seen) == 200
    assert all(r["p50"] is None or 0 <= r["p50"] < n_threads for r in seen)


# --- ordinal alpha, the rating consensus and per-annotator agreement on ratings ----------------

def test_ordinal_alpha_against_hand_computed_tables() -> None:
    """Worked by hand with delta_ck^2 = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2 over the coincidence matrix.

    Units (1, 2) and (2, 3): n_1 = 1, n_2 = 2, n_3 = 1; o_12 = o_21 = o_23 = o_32 = 1;
    delta_12^2 = delta_23^2 = (3 - 1.5)^2 = 2.25, delta_13^2 = (4 - 1)^2 = 9.
    Observed sum o*delta = 4 * 2.25 = 9; expected sum n_c n_k delta = 2*(2*2.25) + 2*(2*2.25) + 2*9 = 36;
    alpha = 1 - (4 - 1) * 9 / 36 = 0.25 (nominal alpha sees only disagreement: -0.2).
    Units (5, 1) and (1, 5): n_1 = n_5 = 2, o_15 = o_51 = 2, delta_15^2 = (4 - 2)^2 = 4;
    alpha = 1 - 3 * 16 / (2 * 2 * 2 * 4) = -0.5.
    """
    near = metrics.krippendorff_alpha_ordinal({1: [1, 2], 2: [2, 3]})
    assert near.value == pytest.approx(0.25) and (near.n_records, near.n_answers) == (2, 4)
    assert metrics.krippendorff_alpha_nominal({1: ["1", "2"], 2: ["2", "3"]}).value == pytest.approx(-0.2)
    assert metrics.krippendorff_alpha_ordinal({1: [5, 1], 2: [1, 5]}).value == pytest.approx(-0.5)
    # one value used throughout: no expected disagreement, alpha undefined; lone answers are not pairable
    assert metrics.krippendorff_alpha_ordinal({1: [3, 3], 2: [3, None, 3]}).value is None
    assert metrics.krippendorff_alpha_ordinal({1: [4], 2: []}) == metrics.AgreementResult(None, 0, 0)


def test_ordinal_alpha_reproduces_krippendorffs_published_example() -> None:
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the 4 observers x 12 units
    example with missing values: nominal 0.743, ordinal 0.815 (the `krippendorff` package agrees)."""
    rows = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
            [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]
    units = {u: [row[u] for row in rows] for u in range(12)}
    assert metrics.krippendorff_alpha_ordinal(units).value == pytest.approx(0.8154, abs=1e-4)
    assert metrics.krippendorff_alpha_nominal(units).value == pytest.approx(0.7434, abs=1e-4)


def test_rating_consensus_and_label_set_majority() -> None:
    assert metrics.median([4, 1, 5]) == 4.0 and metrics.median([2, 3]) == 2.5 and metrics.median([None]) is None
    assert metrics.label_set_majority([["a", "b"], ["a"], ["b", "c"], ["a"]]) == (["a"], ["b"])  # b: 2 of 4, a tie
    assert metrics.label_set_majority([]) == ([], [])


def test_annotator_agreement_ordinal_compares_with_the_others_median() -> None:
    units = {1: {"ana": 4, "bo": 4, "cy": 1}, 2: {"ana": 3, "bo": 2, "cy": 4}, 3: {"ana": 5}}
    got = metrics.annotator_agreement_ordinal(units)
    # ana: others' median 2.5 on record 1 (4 is off), 3.0 on record 2 (matches); record 3 not compared
    assert got["ana"] == metrics.AgreementResult(0.5, 2, 3)
    assert got["bo"] == metrics.AgreementResult(0.0, 2, 2)  # others' median 2.5 on record 1, 3.5 on record 2
    assert got["cy"] == metrics.AgreementResult(0.0, 2, 2)
