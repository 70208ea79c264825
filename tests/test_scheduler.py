"""The scheduler's rules, one at a time (DESIGN.md, "Assignment contract" I1-I5).

Time is simulated: every call passes `now`, and the ttl is 10 s throughout.
"""

from __future__ import annotations

import random

import pytest

from annotator.model import QueueState
from annotator.scheduler import Scheduler

TTL = 10.0


def sched(n: int = 5, overlap: int = 1, order=None) -> Scheduler:
    return Scheduler(range(n) if order is None else order, overlap=overlap, lease_ttl=TTL)


def answer(s: Scheduler, user: str, now: float = 0.0) -> int:
    st = s.next(user, now)
    assert st.kind == "ready", st
    assert s.submit(user, st.record_id, now) == "new"
    return st.record_id


# --- construction -----------------------------------------------------------

def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        Scheduler(range(3), overlap=0, lease_ttl=TTL)
    with pytest.raises(ValueError):
        Scheduler(range(3), overlap=1, lease_ttl=0)


def test_empty_order_is_done():
    s = sched(0)
    assert s.next("a", 0) == QueueState("done")
    assert s.state("a", 0) == QueueState("done")
    assert s.lease_soft("a", 3, 0) == []
    assert s.counts()["records"] == 0


def test_range_order_is_not_materialised():
    s = Scheduler(range(10**12, 10**12 + 1_000_000), overlap=1, lease_ttl=TTL)
    assert s.next("a", 0).record_id == 10**12
    s.submit("a", 10**12 + 999_999, 0)  # late answer far down the order, looked up arithmetically
    assert s.counts() == {"records": 1_000_000, "complete": 1, "partial": 0, "untouched": 999_999,
                          "leased": 1, "submissions": 1, "skips": 0}


def test_shuffled_list_order_is_followed_and_looked_up():
    ids = list(range(100, 200))
    random.Random(1).shuffle(ids)
    s = sched(order=ids)
    assert [answer(s, "a") for _ in range(5)] == ids[:5]
    assert s.submit("b", ids[50], 0) == "late"
    assert s.submitted_users(ids[50]) == {"b"}
    with pytest.raises(KeyError):
        s.submit("b", 5, 0)


# --- overlap ----------------------------------------------------------------

def test_overlap_1_each_record_goes_to_one_user():
    s = sched(4, overlap=1)
    got = [s.next(u, 0).record_id for u in "abcd"]
    assert got == [0, 1, 2, 3]
    assert s.next("e", 0).kind == "waiting"
    for u, rid in zip("abcd", got):
        assert s.submit(u, rid, 1) == "new"
    assert s.next("e", 1) == QueueState("done")
    assert s.counts()["complete"] == 4


def test_overlap_3_needs_three_distinct_users():
    s = sched(2, overlap=3)
    assert [s.next(u, 0).record_id for u in "abc"] == [0, 0, 0]
    assert s.next("d", 0).record_id == 1  # record 0 is fully leased
    for u in "abc":
        s.submit(u, 0, 1)
    assert s.submitted_users(0) == {"a", "b", "c"}
    assert s.counts()["complete"] == 1
    # a user never gets the same record twice (I1), so "a" moves on to record 1
    assert s.next("a", 2).record_id == 1


def test_skips_do_not_count_toward_completion():
    s = sched(1, overlap=2)
    for u in "ab":
        assert s.next(u, 0).record_id == 0
        assert s.skip(u, 0, 0) == "new"
    c = s.counts()
    assert (c["complete"], c["partial"], c["untouched"], c["skips"]) == (0, 0, 1, 2)
    assert s.next("a", 0) == QueueState("done")  # skipped: seen, never again
    assert s.next("c", 0).record_id == 0         # still open for others


# --- I1 seen ------------------------------------------------------------------

def test_never_hands_out_a_seen_record():
    s = sched(3, overlap=3)
    s.submit("a", 1, 0)   # late answers put 1 and 2 in a's seen set
    s.skip("a", 2, 0)
    assert s.has_seen("a", 1) and s.has_seen("a", 2) and not s.has_seen("a", 0)
    assert s.lease_soft("a", 5, 0) == [0]
    assert s.next("a", 0).record_id == 0  # its own soft lease, promoted
    s.submit("a", 0, 0)
    assert s.next("a", 0) == QueueState("done")
    assert s.state("a", 0) == QueueState("done")


# --- priority -----------------------------------------------------------------

def test_open_records_come_before_fresh_ones():
    s = sched(10, overlap=2)
    assert s.next("a", 0).record_id == 0
    s.submit("a", 0, 0)
    assert s.next("a", 0).record_id == 1
    s.submit("a", 1, 0)
    # 0 and 1 are open (one answer each): b finishes them first, in order
    assert answer(s, "b") == 0
    assert answer(s, "b") == 1
    assert answer(s, "b") == 2


def test_open_record_deep_in_the_order_beats_fresh_ones():
    s = sched(10, overlap=3)
    s.submit("x", 7, 0)  # late answer opens record 7
    assert s.next("a", 0).record_id == 7
    assert s.lease_soft("b", 3, 0) == [7, 0, 1]
    # the fresh pointer skips records touched out of order
    s2 = sched(3, overlap=1)
    s2.submit("x", 1, 0)
    assert [answer(s2, "a") for _ in range(2)] == [0, 2]
    assert s2.next("a", 0) == QueueState("done")


def test_reopen_raises_the_target_and_reopens_complete_records():
    s = sched(3, overlap=1)
    assert answer(s, "a") == 0
    assert s.counts()["complete"] == 1
    s.reopen(0, 2)
    c = s.counts()
    assert (c["complete"], c["partial"]) == (0, 1)
    assert s.next("b", 1).record_id == 0  # open again, so it comes first
    assert s.next("c", 1).record_id == 0
    assert s.next("d", 1).record_id == 1  # target 3 reached with a + two leases
    s.submit("b", 0, 2)
    s.submit("c", 0, 2)
    assert s.submitted_users(0) == {"a", "b", "c"}
    assert s.counts()["complete"] == 1
    with pytest.raises(ValueError):
        s.reopen(0, 0)
    with pytest.raises(KeyError):
        s.reopen(99)


def test_reopen_of_an_untouched_record_puts_it_first():
    s = sched(5, overlap=1)
    s.reopen(3)
    assert s.next("a", 0).record_id == 3
    assert s.counts()["untouched"] == 5


# --- next / state -------------------------------------------------------------

def test_next_is_idempotent_while_the_record_is_on_screen():
    s = sched(5, overlap=1)
    first = s.next("a", 0)
    assert [s.next("a", t) for t in (1, 2, 3)] == [first] * 3
    assert s.current("a") == first.record_id
    assert s.leases(3) == {"a": [(first.record_id, "hard")]}
    s.submit("a", first.record_id, 4)
    assert s.current("a") is None
    assert s.next("a", 4).record_id != first.record_id


def test_state_grants_nothing():
    s = sched(3, overlap=1)
    assert s.state("a", 0) == QueueState("ready", 0)
    assert s.leases(0) == {}
    assert s.state("a", 0) == QueueState("ready", 0)
    assert s.next("a", 0) == QueueState("ready", 0)
    assert s.state("a", 1) == QueueState("ready", 0)  # the record on screen
    assert s.state("b", 1) == QueueState("ready", 1)
    assert s.counts()["leased"] == 1


def test_waiting_then_done_with_frees_at():
    s = sched(2, overlap=1)
    assert s.next("a", 0).record_id == 0
    assert s.next("b", 3).record_id == 1
    st = s.next("c", 5)
    assert st == QueueState("waiting", None, held_by_others=2, frees_at=0 + TTL)
    assert s.state("c", 5) == st
    s.touch("a", 8)   # a is still working: the first lease to end is now b's
    assert s.next("c", 9) == QueueState("waiting", None, 2, 3 + TTL)
    s.submit("b", 1, 9)
    assert s.next("c", 9) == QueueState("waiting", None, 1, 8 + TTL)
    s.submit("a", 0, 10)
    assert s.next("c", 10) == QueueState("done")


def test_waiting_ignores_records_the_user_has_seen():
    s = sched(1, overlap=3)
    s.submit("a", 0, 0)
    assert s.next("b", 0).record_id == 0
    assert s.next("a", 0) == QueueState("done")   # a already answered it
    assert s.next("c", 0).record_id == 0          # one slot left for c
    assert s.next("d", 0) == QueueState("waiting", None, 1, TTL)


def test_waiting_frees_up_when_the_holder_goes_idle():
    s = sched(1, overlap=1)
    s.next("a", 0)
    assert s.next("b", 5).kind == "waiting"
    assert s.next("b", TTL + 0.5) == QueueState("ready", 0)  # a idle for more than ttl
    assert s.promote("a", 0, TTL + 1) is False
    assert s.current("a") is None


# --- I4 expiry and release ---------------------------------------------------------

def test_lease_expires_only_after_idleness_longer_than_ttl():
    s = sched(5, overlap=1)
    rid = s.next("a", 0).record_id
    soft = s.lease_soft("a", 2, 0)
    assert s.holds("a", rid, TTL) and s.holds("a", soft[0], TTL)  # idle exactly ttl: still held
    for t in range(1, 30, 3):  # activity keeps every lease alive
        s.touch("a", t)
        assert s.holds("a", rid, t + TTL)
    assert s.holds("a", rid, 28 + TTL + 0.1) is False
    assert s.leases(100) == {}
    assert s.counts()["leased"] == 0


def test_any_call_naming_the_user_is_activity():
    s = sched(5, overlap=1)
    rid = s.next("a", 0).record_id
    s.lease_soft("a", 1, 8)
    s.next("a", 16)
    s.state("a", 24)
    assert s.holds("a", rid, 34)
    assert not s.holds("a", rid, 34.5)


def test_a_user_returning_after_the_ttl_has_lost_their_leases():
    s = sched(3, overlap=1)
    assert s.next("a", 0).record_id == 0
    s.lease_soft("a", 1, 0)
    assert s.next("a", 50).record_id == 0          # released at 50, granted again
    assert s.leases(50) == {"a": [(0, "hard")]}
    assert s.promote("a", 1, 50) is False


def test_expire_sweeps_everything_and_counts():
    s = sched(10, overlap=1)
    s.next("a", 0)
    s.lease_soft("a", 2, 0)
    s.next("b", 5)
    assert s.expire(TTL) == 0
    assert s.expire(TTL + 1) == 3
    assert s.leases(TTL + 1) == {"b": [(3, "hard")]}
    assert s.expire(100) == 1
    assert s.expire(100) == 0
    # expired records are open again and come first
    assert s.next("c", 100).record_id == 0


def test_release_all_or_one():
    s = sched(10, overlap=1)
    s.next("a", 0)
    s.lease_soft("a", 3, 0)
    assert s.release("a", 2) == 1
    assert s.release("a", 2) == 0
    assert s.release("a", 99) == 0
    assert [r for r, _ in s.leases(0)["a"]] == [0, 1, 3]
    assert s.release("a") == 3
    assert s.release("a") == 0
    assert s.current("a") is None
    assert s.release("nobody") == 0
    assert s.lease_soft("b", 2, 0) == [0, 1]


# --- soft leases, promote, I5 takeover ---------------------------------------------

def test_lease_soft_gives_new_records_only():
    s = sched(6, overlap=1)
    assert s.lease_soft("a", 2, 0) == [0, 1]
    assert s.lease_soft("a", 2, 0) == [2, 3]
    assert s.lease_soft("a", 0, 0) == []
    assert s.lease_soft("b", 5, 0) == [4, 5]
    assert s.lease_soft("c", 5, 0) == []  # never a takeover
    assert s.leases(0)["a"] == [(0, "soft"), (1, "soft"), (2, "soft"), (3, "soft")]


def test_promote_moves_a_soft_lease_on_screen_and_demotes_the_previous():
    s = sched(6, overlap=1)
    a, b = s.lease_soft("u", 2, 0)
    assert s.promote("u", a, 0)
    assert s.current("u") == a
    assert s.promote("u", a, 0)  # idempotent
    assert s.promote("u", b, 0)
    assert s.current("u") == b
    assert s.leases(0)["u"] == [(a, "soft"), (b, "hard")]
    assert s.next("u", 0).record_id == b
    assert s.promote("u", 5, 0) is False  # never leased
    assert s.promote("v", a, 0) is False  # someone else's


def test_next_uses_own_soft_lease_when_nothing_new_is_left():
    s = sched(2, overlap=1)
    assert s.lease_soft("a", 2, 0) == [0, 1]
    assert s.next("a", 0) == QueueState("ready", 0)
    assert s.leases(0)["a"] == [(0, "hard"), (1, "soft")]


def test_takeover_only_when_nothing_else_and_only_soft_leases():
    s = sched(4, overlap=1)
    assert s.next("a", 0).record_id == 0            # hard, on a's screen
    assert s.lease_soft("a", 2, 0) == [1, 2]       # soft, in a's buffer
    assert s.next("b", 0).record_id == 3           # something fresh first: no takeover
    s.submit("b", 3, 1)
    st = s.next("b", 1)
    assert st == QueueState("ready", 1)            # lowest soft-leased record taken over
    assert s.promote("a", 1, 2) is False           # a lost it
    assert s.leases(2) == {"a": [(0, "hard"), (2, "soft")], "b": [(1, "hard")]}
    s.submit("b", 1, 2)
    assert s.next("b", 2).record_id == 2
    s.submit("b", 2, 2)
    # only a's hard lease is left: never taken, b waits for it
    assert s.next("b", 3) == QueueState("waiting", None, 1, 2 + TTL)
    assert s.next("a", 3).record_id == 0


def test_takeover_skips_records_the_user_has_seen_and_takes_from_the_idlest_holder():
    s = sched(2, overlap=2)
    s.lease_soft("a", 2, 0)
    s.lease_soft("b", 2, 1)
    s.skip("c", 0, 2)
    st = s.next("c", 2)
    assert st.record_id == 1
    assert [r for r, _ in s.leases(2)["a"]] == [0]  # a was idle longest
    assert [r for r, _ in s.leases(2)["b"]] == [0, 1]


def test_lease_soft_never_takes_over():
    s = sched(1, overlap=1)
    s.lease_soft("a", 1, 0)
    assert s.lease_soft("b", 1, 0) == []
    assert s.state("b", 0) == QueueState("ready", 0)  # next would take it over
    assert s.leases(0) == {"a": [(0, "soft")]}


# --- submit / skip outcomes -------------------------------------------------------

def test_late_answer_is_counted_as_extra():
    s = sched(1, overlap=1)
    assert s.next("a", 0).record_id == 0
    assert s.next("b", 20).record_id == 0     # a idle past the ttl: lease moved to b
    assert s.submit("a", 0, 21) == "late"     # a's work is never dropped
    assert s.submit("b", 0, 22) == "new"
    assert s.submitted_users(0) == {"a", "b"}  # two answers for overlap 1: one extra
    c = s.counts()
    assert (c["complete"], c["submissions"]) == (1, 2)
    assert s.next("c", 22) == QueueState("done")


def test_late_answer_completing_a_record_frees_soft_leases_but_not_hard_ones():
    s = sched(2, overlap=2)
    s.next("a", 0)
    s.lease_soft("b", 1, 0)
    s.submit("x", 0, 0)   # late
    s.submit("y", 0, 0)   # late: complete now
    assert s.leases(0) == {"a": [(0, "hard")]}
    assert s.promote("b", 0, 0) is False
    assert s.submit("a", 0, 1) == "new"  # kept: the third answer
    assert len(s.submitted_users(0)) == 3


def test_edit_outcomes():
    s = sched(2, overlap=2)
    rid = s.next("a", 0).record_id
    assert s.submit("a", rid, 0) == "new"
    assert s.submit("a", rid, 1) == "edit"               # a changed answer: counts unchanged
    assert s.counts()["submissions"] == 1
    assert s.skip("a", rid, 2) == "edit"                 # submission becomes a skip
    c = s.counts()
    assert (c["submissions"], c["skips"], c["partial"]) == (0, 1, 0)
    assert s.skip("a", rid, 3) == "edit"
    assert s.submit("a", rid, 4) == "edit"               # and back
    c = s.counts()
    assert (c["submissions"], c["skips"], c["partial"]) == (1, 0, 1)
    assert s.submitted_users(rid) == {"a"}
    assert s.skip("b", 1, 5) == "late"                   # skip without a lease
    assert s.has_seen("b", 1)


def test_skip_of_a_submission_can_reopen_a_complete_record():
    s = sched(1, overlap=1)
    answer(s, "a")
    assert s.next("b", 0) == QueueState("done")
    s.skip("a", 0, 1)
    assert s.next("b", 1) == QueueState("ready", 0)
    assert s.next("a", 1) == QueueState("done")


def test_unknown_record_ids_raise_key_error():
    s = sched(3)
    for call in (lambda: s.submit("a", 3, 0), lambda: s.skip("a", -1, 0), lambda: s.reopen(7),
                 lambda: s.submitted_users(3)):
        with pytest.raises(KeyError):
            call()
    assert s.counts()["submissions"] == 0
    assert s.submitted_users(2) == frozenset()
    assert s.has_seen("a", 3) is False
    assert s.holds("a", 3, 0) is False


def test_submitting_a_soft_lease_directly_is_new():
    s = sched(3, overlap=1)
    soft = s.lease_soft("a", 2, 0)
    assert s.submit("a", soft[1], 0) == "new"
    assert s.leases(0) == {"a": [(soft[0], "soft")]}


# --- restore, add_records, counts, remaining ----------------------------------------

def test_restore_rebuilds_state():
    s = sched(6, overlap=2)
    ignored = s.restore([(0, "a", "submitted"), (0, "b", "submitted"),   # complete
                         (1, "a", "submitted"), (1, "b", "skipped"),     # partial
                         (2, "c", "skipped"), (2, "c", "submitted"),     # later fact wins
                         (4, "a", "skipped"),                            # only skipped
                         (77, "a", "submitted")],                        # no longer a record
                        extra={0: 1, 88: 2})
    assert ignored == 2
    assert s.counts() == {"records": 6, "complete": 0, "partial": 3, "untouched": 3,
                          "leased": 0, "submissions": 4, "skips": 2}
    assert s.submitted_users(2) == {"c"}
    assert s.has_seen("b", 1) and s.has_seen("a", 4)
    # open records first (0 needs a third answer since reopen), in order, then fresh
    assert s.lease_soft("z", 10, 0) == [0, 1, 2, 4, 3, 5]
    assert s.next("a", 0).record_id == 3  # 2 is full (c answered, z holds it); 3 has room
    assert s.remaining_for("a") == 3      # 2, 3, 5


def test_restore_unknown_status_is_an_error_and_changes_nothing():
    s = sched(3)
    with pytest.raises(ValueError):
        s.restore([(0, "a", "submitted"), (1, "a", "maybe")])
    assert s.counts()["submissions"] == 0


@pytest.mark.parametrize("covered", [1.0, 0.05])  # bulk lookup through a temporary dict, or one bisect per id
def test_restore_with_a_shuffled_order(covered):
    ids = random.Random(3).sample(range(10**6), 400)
    s = sched(order=list(ids), overlap=1)
    done = ids[: int(len(ids) * covered)]
    facts = [(rid, "a", "submitted") for rid in done] + [(-5, "a", "submitted")]
    assert s.restore(facts, extra={done[0]: 1}) == 1
    c = s.counts()
    assert (c["complete"], c["partial"], c["submissions"]) == (len(done) - 1, 1, len(done))
    assert answer(s, "b") == done[0]  # reopened: open work first
    rest = [answer(s, "b") for _ in range(len(ids) - len(done))]
    assert rest == ids[len(done):]
    assert s.next("b", 0) == QueueState("done")


def test_restore_drops_the_lease_of_whoever_answered():
    s = sched(3, overlap=2)
    s.next("a", 0)
    s.lease_soft("b", 1, 0)
    s.restore([(0, "a", "submitted")])
    assert s.leases(0) == {"b": [(0, "soft")]}
    assert s.counts()["partial"] == 1


def test_add_records_appends_and_ignores_known_ids():
    s = sched(2, overlap=1)
    assert s.add_records([1, 5, 5, 3]) == 2
    assert s.add_records(range(5, 8)) == 2          # 5 is known
    assert s.add_records(range(100, 103)) == 3      # kept as a range
    assert s.add_records([]) == 0
    assert s.counts()["records"] == 9
    assert [answer(s, "a") for _ in range(9)] == [0, 1, 5, 3, 6, 7, 100, 101, 102]
    assert s.next("a", 0) == QueueState("done")


def test_add_records_wakes_up_a_done_user():
    s = sched(1, overlap=1)
    answer(s, "a")
    assert s.next("a", 0).kind == "done"
    s.add_records([10])
    assert s.next("a", 0) == QueueState("ready", 10)


def test_counts_and_remaining_for():
    s = sched(5, overlap=2)
    assert s.remaining_for("a") == 5
    answer(s, "a")                 # 0: partial
    s.next("b", 0)                 # b holds 0
    s.submit("b", 0, 0)            # 0: complete
    answer(s, "a")                 # 1: partial
    s.skip("c", 2, 0)
    s.lease_soft("d", 2, 0)        # 1 and 2 are open: d's buffer gets those first
    assert s.counts() == {"records": 5, "complete": 1, "partial": 1, "untouched": 3,
                          "leased": 2, "submissions": 3, "skips": 1}
    assert s.remaining_for("a") == 3   # 2, 3, 4
    assert s.remaining_for("c") == 3   # 1, 3, 4
    assert s.remaining_for("new") == 4
    s.reopen(0)
    assert s.remaining_for("a") == 3 and s.remaining_for("new") == 5


def test_leases_view_lists_kinds_in_order():
    s = sched(5, overlap=1)
    s.lease_soft("a", 2, 0)
    s.next("a", 0)
    assert s.leases(0) == {"a": [(0, "soft"), (1, "soft"), (2, "hard")]}
