"""Gold accuracy and the gold records' share of the dashboard's counts (reports.gold_tally), and the
projector's leaderboard weighted by gold accuracy (issue 17). Pure: no store, no server."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from annotator.gold import GoldAnswer
from annotator.model import Record, Response
from annotator.projector import rank
from annotator.reports import _less, gold_tally

AT = datetime(2026, 1, 1)


def record(rid: int, extra: int = 0) -> Record:
    return Record(rid, f"k{rid}", f"{rid}.png", "0" * 64, 8, 8, 100, {}, None, rid, extra)


def response(rid: int, user: str, label: str | None) -> Response:
    status, answer = ("submitted", {"label": label}) if label else ("skipped", {})
    return Response(rid, user, status, answer, None, None, AT, AT)


def test_gold_tally_counts_accuracy_and_the_share_to_take_out():
    gold = {1: GoldAnswer({"label": "cat"}), 2: GoldAnswer({"label": "dog"}, "floppy ears")}
    responses = {1: [response(1, "ann", "cat"), response(1, "bob", "dog"), response(1, "cid", None)],
                 2: [response(2, "ann", "cat")]}
    tally = gold_tally(gold, {1: record(1), 2: record(2, extra=1)}, responses)
    assert {u: (r.value, r.n_records) for u, r in tally.accuracy.items()} == {"ann": (0.5, 2), "bob": (0.0, 1)}
    assert tally.answers == Counter({"ann": 2, "bob": 1}) and tally.skips == Counter({"cid": 1})
    assert tally.groups == Counter({(0, 2, 1): 1, (1, 1, 0): 1})
    assert tally.labels == Counter({("label", "cat"): 2, ("label", "dog"): 1})
    groups = [(0, 2, 1, 3), (1, 1, 0, 1), (0, 0, 0, 10)]
    assert _less(groups, tally.groups) == [(0, 2, 1, 2), (0, 0, 0, 10)]


def test_lists_match_as_sets():
    assert GoldAnswer({"tags": ["a", "b"]}).matches({"tags": ["b", "a"]})
    assert not GoldAnswer({"tags": ["a", "b"]}).matches({"tags": ["a"]})
    assert GoldAnswer({"q": 3}).feedback({"q": 2}) == {"correct": False, "expected": {"q": 3}, "explanation": ""}


def test_the_leaderboard_ranks_by_gold_accuracy_when_given_it():
    tally = gold_tally({1: GoldAnswer({"label": "cat"}), 2: GoldAnswer({"label": "dog"})},
                       {1: record(1), 2: record(2)},
                       {1: [response(1, "fast", "dog"), response(1, "careful", "cat")],
                        2: [response(2, "fast", "cat"), response(2, "careful", "dog")]})
    board = rank({"fast": 30, "careful": 20}, tally.accuracy, {"fast": "F", "careful": "C"})
    assert [s.name for s in board.standings] == ["C", "F"]  # more answers, all wrong at gold: ranked lower
