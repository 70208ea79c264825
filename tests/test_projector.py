"""The projector's computation (issue 17): the goal and its estimate, the pace, the ranking, the names.

Pure functions first, then `Nicknames` on real stores of both engines (its
two reads and its write through an audit entry), then `Projector` sharing
one computation between many viewers.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Any, Callable, Sequence

import pytest

from annotator.auth import Identity
from annotator.config import ConfigError, load_settings
from annotator.goal import Goal, goal_progress, parse_goal
from annotator.metrics import AgreementResult
from annotator.model import AuditWrite, UserSeen, utcnow
from annotator.nicknames import (MAX_CHANGES, NicknameError, Nicknames, current_nicknames, display_names,
                                 neutral_name)
from annotator.projector import Projector, pace, rank
from annotator.reports import DashboardDeps, TimelinePoint
from annotator.store_protocol import StoreProtocol

NOW = datetime(2026, 12, 7, 10, 0, 0)


# --- the goal -------------------------------------------------------------------------------------

def test_goal_setting_reads_answers_or_records_and_names_a_wrong_value() -> None:
    assert load_settings({}).goal == Goal()  # unset: the whole task
    assert load_settings({"GOAL": "500 answers"}).goal == Goal(500, "answers")
    assert load_settings({"GOAL": " 200 Records "}).goal == Goal(200, "records")
    assert parse_goal("1 record") == Goal(1, "records")
    for bad in ("500", "answers", "0 answers", "-3 records", "5 images", "1e3 answers"):
        with pytest.raises(ConfigError, match="GOAL=.*'500 answers' or '200 records'"):
            load_settings({"GOAL": bad})
    assert load_settings({"GOAL": "500 answers"}).public_items()["GOAL"] == "500 answers"


def test_leaderboard_is_off_by_default_and_a_wrong_value_is_named() -> None:
    assert load_settings({}).leaderboard == "off"
    assert load_settings({"LEADERBOARD": "on"}).leaderboard == "on"
    assert load_settings({}).public_items()["LEADERBOARD"] == "off"
    with pytest.raises(ConfigError, match="LEADERBOARD='yes' is not allowed; use one of: off, on, anonymous"):
        load_settings({"LEADERBOARD": "yes"})


def progress(goal: Goal, **counts: Any):
    base = dict(records=100, complete=0, answers=0, answers_done=0, answers_needed=200, overlap=2,
                per_minute=0.0, now=NOW)
    return goal_progress(goal, **{**base, **counts})


def test_goal_in_answers_estimates_the_finish_at_the_current_pace() -> None:
    g = progress(Goal(150, "answers"), answers=50, answers_done=50, per_minute=10.0)
    assert (g.done, g.target, g.percent, g.remaining_answers) == (50, 150, 33.3, 100)
    assert g.finish_at == NOW + timedelta(minutes=10)
    assert not g.reached and g.reachable


def test_no_pace_yet_means_no_estimate() -> None:
    g = progress(Goal(150, "answers"))
    assert g.finish_at is None and g.per_minute == 0 and g.remaining_answers == 150 and g.percent == 0.0


def test_goal_in_records_counts_complete_records_and_the_answers_partials_already_have() -> None:
    # 10 complete (20 answers), 30 more answers on partly done records: 20 records to go take 40 - 30 = 10
    # answers at the least one each: max(20, 10) = 20
    g = progress(Goal(30, "records"), complete=10, answers=50, answers_done=50, per_minute=5.0)
    assert (g.done, g.target, g.remaining_answers) == (10, 30, 20)
    assert g.finish_at == NOW + timedelta(minutes=4)
    # no partial answers: each record takes the overlap
    g = progress(Goal(30, "records"), complete=10, answers=20, answers_done=20, per_minute=5.0)
    assert g.remaining_answers == 40


def test_the_whole_task_is_the_default_goal_and_a_reached_goal_has_no_estimate() -> None:
    g = progress(Goal(), complete=100, answers=200, answers_done=200, per_minute=3.0)
    assert g.text == "all 100 records complete" and g.reached and g.finish_at is None and g.percent == 100.0


def test_a_goal_larger_than_the_task_says_so() -> None:
    g = progress(Goal(500, "answers"), answers=10)
    assert not g.reachable and g.possible == 200


def test_a_persons_share_is_of_the_answers_the_goal_takes() -> None:
    assert Goal(500, "answers").share(50, records=100, overlap=2) == 0.1
    assert Goal(100, "records").share(50, records=1000, overlap=2) == 0.25
    assert Goal().share(50, records=100, overlap=2) == 0.25


def test_pace_is_over_the_last_ten_minutes_or_since_the_first_answer() -> None:
    minute = timedelta(minutes=1)
    old = [TimelinePoint(NOW - 30 * minute, 100, 0)]
    assert pace(tuple(old), NOW) == 0.0  # nothing recent: no pace
    steady = tuple(TimelinePoint(NOW - i * minute, 6, 0) for i in range(12, 0, -1))
    assert pace(steady, NOW) == pytest.approx(6.0, rel=0.15)
    started = (TimelinePoint(NOW - 2 * minute, 10, 0), TimelinePoint(NOW - minute, 10, 0))
    assert pace(started, NOW) == pytest.approx(10.0)  # over two minutes, not ten


# --- the ranking ------------------------------------------------------------------------------------

def agree(value: float | None, n: int) -> AgreementResult:
    return AgreementResult(value, n, n)


def test_ranking_weighs_answers_by_agreement_never_by_volume_alone() -> None:
    answers = {"fast": 100, "careful": 70, "new": 40, "solo": 200}
    agreement = {"fast": agree(0.4, 50), "careful": agree(0.95, 40), "new": agree(1.0, 1)}
    names = {u: f"N-{u}" for u in answers}
    board = rank(answers, agreement, names)
    order = [s.name for s in board.standings]
    assert order == ["N-careful", "N-fast", "N-new"]  # 70 x 0.9 > 100 x 0.43 > 40 x ~0.7
    assert board.unranked == 1  # "solo" answered most, never compared: not ranked on volume
    new = board.standings[2]
    assert new.agreement == 1.0 and new.score < 40 * 0.8  # one lucky match is shrunk towards the team
    assert [s.rank for s in board.standings] == [1, 2, 3]


def test_nobody_is_ranked_without_comparisons() -> None:
    board = rank({"a": 10, "b": 5}, {}, {"a": "x", "b": "y"})
    assert board.standings == () and board.unranked == 2


def test_a_user_without_a_display_name_is_never_shown_by_user_name() -> None:
    board = rank({"alice": 3}, {"alice": agree(1.0, 3)}, {})
    assert board.standings[0].name != "alice"


# --- names ------------------------------------------------------------------------------------------

def test_names_are_numbers_unless_a_nickname_was_chosen() -> None:
    users = ["zoe", "adam", "mia"]
    assert display_names(users, {"adam": "Owl"}, "on") == {"zoe": "Annotator 1", "adam": "Owl", "mia": "Annotator 3"}
    assert display_names(users, {"adam": "Owl"}, "anonymous")["adam"] == neutral_name(2)
    # a nickname that is another person's user name is not shown, even if chosen before they came
    assert display_names(users, {"adam": "ZOE"}, "on")["adam"] == "Annotator 2"


def test_the_latest_nickname_counts_and_the_first_to_claim_one_keeps_it() -> None:
    t = [NOW + timedelta(seconds=i) for i in range(5)]
    entries = [(t[0], "a", {"nickname": "Owl"}), (t[1], "b", {"nickname": "owl"}), (t[2], "a", {"nickname": "Fox"}),
               (t[3], "c", {"nickname": "Bee"}), (t[4], "c", {"nickname": ""})]
    # a changed to Fox at t2; b's "owl" (t1) came after a's Owl (t0), but a no longer holds it
    assert current_nicknames(entries) == {"a": "Fox", "b": "owl"}
    assert current_nicknames([(t[0], "a", {"nickname": "Owl"}), (t[1], "b", {"nickname": "OWL"})]) == {"a": "Owl"}


class AuditNow:
    """The writer's part Nicknames uses, applying each audit entry to the store at once."""

    def __init__(self, store: StoreProtocol) -> None:
        self.store = store

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> Future[None]:
        self.store.apply([AuditWrite(actor, action, detail, utcnow())])
        done: Future[None] = Future()
        done.set_result(None)
        return done


def seen(store: StoreProtocol, *users: str) -> None:
    start = utcnow()
    store.apply([UserSeen(u, start + timedelta(seconds=i)) for i, u in enumerate(users)])


def test_nicknames_on_both_engines(make_store: Callable[[], StoreProtocol]) -> None:
    store = make_store()
    seen(store, "alice", "bob", "carol")
    names = Nicknames(store, AuditNow(store), "on")
    alice, bob = Identity("alice", False), Identity("bob", False)
    assert names.names() == {"alice": "Annotator 1", "bob": "Annotator 2", "carol": "Annotator 3"}
    assert "shows you as 'Owl'" in names.set(alice, "  Owl  ")
    assert names.names()["alice"] == "Owl"
    for bad, why in (("owl", "someone else's"), ("Carol", "someone else's"), ("Annotator 7", "numbers"),
                     ("x" * 25, "at most 24"), ("a\u202eb", "invisible"), ("a\x00b", "NUL"), (3, "as text")):
        with pytest.raises(NicknameError, match=why):
            names.set(bob, bad)
    assert names.set(bob, "bob") and names.names()["bob"] == "bob"   # one's own user name: the opt-in
    assert names.status(bob).shown_as == "bob"
    names.set(bob, "")
    assert names.names()["bob"] == "Annotator 2"
    assert names.set(bob, "") == "You already show as a number."
    assert Nicknames(store, AuditNow(store), "anonymous").names()["alice"] == "Annotator 1"
    with pytest.raises(NicknameError, match="numbers only"):
        Nicknames(store, AuditNow(store), "anonymous").set(alice, "Owl")


def test_nickname_changes_are_capped(any_store: StoreProtocol) -> None:
    seen(any_store, "dave")
    names = Nicknames(any_store, AuditNow(any_store), "on")
    dave = Identity("dave", False)
    for i in range(MAX_CHANGES):
        names.set(dave, f"D{i}")
    assert names.status(dave).changes_left == 0
    with pytest.raises(NicknameError, match="ask an organizer"):
        names.set(dave, "again")


# --- one computation for every viewer ------------------------------------------------------------------

class CountingStore:
    """A store stand-in with the dashboard's reads, counting the record-group scans."""

    def __init__(self) -> None:
        self.scans = self.name_reads = 0
        self.lock = threading.Lock()

    def dashboard_record_groups(self) -> list[tuple[int, int, int, int]]:
        with self.lock:
            self.scans += 1
        return [(0, 2, 0, 3), (0, 0, 0, 7)]

    def dashboard_timeline(self, since: datetime, bucket_seconds: int, exclude: Sequence[int] = ()
                           ) -> list[tuple[datetime, str, int]]:
        return [(utcnow().replace(second=0, microsecond=0), "submitted", 6)]

    def dashboard_label_counts(self, questions: list[str]) -> list[tuple[str, str, int]]:
        return [("label", "cat", 4), ("label", "dog", 2)]

    def dashboard_users(self) -> list[tuple[str, int, int, float | None, datetime | None]]:
        return [("ann", 3, 0, None, utcnow()), ("bob", 3, 0, None, utcnow())]

    def dashboard_answers_version(self) -> tuple[int, datetime | None]:
        return 6, None

    def dashboard_overlapping_answers(self) -> list[tuple[int, str, dict[str, str]]]:
        return [(1, "ann", {"label": "cat"}), (1, "bob", {"label": "cat"}), (2, "ann", {"label": "dog"}),
                (2, "bob", {"label": "cat"})]

    def audit_entries(self, action: str) -> list[tuple[datetime, str, dict[str, Any]]]:
        self.name_reads += 1
        return [(utcnow(), "bob", {"nickname": "Owl"})]

    def users_by_first_seen(self) -> list[str]:
        return ["ann", "bob"]


class NoLeases:
    def leases(self) -> dict[str, list[tuple[int, str]]]:
        return {}


def projector(mode: str = "off", max_age: float = 60.0) -> tuple[Projector, CountingStore]:
    from annotator.task import Label, classification_task

    store = CountingStore()
    task = classification_task("Pets", (Label("cat", "1"), Label("dog", "2")), question="q", overlap=2)
    deps = DashboardDeps(store, task, NoLeases(), None, None, None, None, None)  # type: ignore[arg-type]
    return Projector(deps, Goal(20, "answers"), mode, Nicknames(store, AuditNow(store), mode),  # type: ignore
                     max_age=max_age), store


def test_many_viewers_share_one_computation() -> None:
    board, store = projector()
    results = []
    threads = [threading.Thread(target=lambda: results.append(board.payload())) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.scans == 1 and len(set(results)) == 1
    view = board.view()
    assert view.goal.done == 6 and view.goal.target == 20 and view.labels == (("q", "cat", 4), ("q", "dog", 2))
    assert view.leaderboard is None  # LEADERBOARD is off by default


def test_the_leaderboard_shows_nicknames_or_numbers_never_user_names() -> None:
    view = projector("on")[0].view()
    assert view.leaderboard is not None
    shown = {s.name for s in view.leaderboard.standings}
    assert shown == {"Annotator 1", "Owl"}
    assert b'"ann"' not in projector("on")[0].payload() and b'"bob"' not in projector("on")[0].payload()
    anonymous = {s.name for s in projector("anonymous")[0].view().leaderboard.standings}  # type: ignore[union-attr]
    assert anonymous == {"Annotator 1", "Annotator 2"}


def test_the_goal_and_the_names_follow_every_refresh() -> None:
    board, store = projector("on", max_age=0.0)
    board.view()
    board.view()
    assert store.scans == 2
    assert store.name_reads == 2, "a nickname an admin cleared leaves the screen at the next refresh"
