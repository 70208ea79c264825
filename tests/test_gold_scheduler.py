"""Gold records, warm-up and quotas in the in-memory scheduler (issue 17).

A random interleaving of many people checks I1-I3 with gold and quotas
against brute-force facts; the rate over many people stays within
statistical bounds; 32 threads of one person never pass the quota.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from annotator import recovery
from annotator.backend import LocalBackend
from annotator.gold import GoldPlan, gold_due
from annotator.model import GoldHandout, NewRecord, QueueState, ResponseWrite, utcnow
from annotator.scheduler import Scheduler
from annotator.store import Store

TTL = 10.0


def drain(s: Scheduler, user: str, limit: int = 10_000, now: float = 0.0) -> list[int]:
    """What one person is handed, answering each at once, until they are not ready any more."""
    got = []
    for _ in range(limit):
        state = s.next(user, now)
        if state.kind != "ready":
            break
        got.append(state.record_id)
        s.submit(user, state.record_id, now)
    return got


def test_gold_never_counts_toward_completion_or_done():
    gold = [100, 101, 102]
    s = Scheduler(range(5), overlap=1, lease_ttl=TTL, gold=gold, plan=GoldPlan(rate=0.5))
    got = drain(s, "ann")
    assert sorted(r for r in got if r in gold) == gold  # each gold once, all of them (rate 0.5, 5 records)
    assert sorted(r for r in got if r not in gold) == list(range(5))
    assert s.next("ann", 1) == QueueState("done")
    c = s.counts()
    assert (c["records"], c["complete"], c["submissions"], c["leased"]) == (5, 5, 5, 0)
    assert s.remaining_for("ann") == 0
    # a second person still meets every gold record although the first answered them all
    other = drain(s, "bob")
    assert set(other) <= set(gold)
    assert s.counts()["submissions"] == 5


def test_warmup_gives_the_first_records_as_gold():
    s = Scheduler(range(50), overlap=2, lease_ttl=TTL, gold=range(1000, 1010), plan=GoldPlan(warmup=3))
    got = drain(s, "ann")
    assert all(r >= 1000 for r in got[:3]) and all(r < 1000 for r in got[3:])
    assert len(got) == 53


def test_gold_in_the_prefetch_buffer_and_never_twice():
    s = Scheduler(range(40), overlap=1, lease_ttl=TTL, gold=range(500, 520), plan=GoldPlan(rate=0.5, warmup=2))
    handed: list[int] = []
    for step in range(60):
        handed += s.lease_soft("ann", 3, step)
        held = [r for r, _ in s.leases(step).get("ann", [])]
        if not held:
            break
        s.submit("ann", held[0], step)
    assert len(handed) == len(set(handed))
    assert handed[:2] == [r for r in handed if r >= 500][:2]  # warm-up first, also through the buffer
    assert 0.3 <= sum(r >= 500 for r in handed) / len(handed) <= 0.55


def test_gold_share_over_many_people_is_the_rate():
    rate = 0.1
    s = Scheduler(range(100_000), overlap=3, lease_ttl=1e9, gold=range(10**6, 10**6 + 200), plan=GoldPlan(rate=rate))
    shares, firsts = [], []
    for k in range(300):
        got = drain(s, f"p{k}", limit=60)
        golds = [i for i, r in enumerate(got) if r >= 10**6]
        shares.append(len(golds) / len(got))
        firsts.append(golds[0])
    mean = sum(shares) / len(shares)
    assert abs(mean - rate) < 0.02, mean
    assert all(0.05 <= x <= 0.2 for x in shares)
    assert len(set(firsts)) >= 8  # people meet their first gold at different places


def test_gold_due_keeps_the_share_for_every_person():
    plan = GoldPlan(rate=0.2, warmup=2)
    for user in ("a", "b", "someone else"):
        gold = total = 0
        for _ in range(1000):
            gold += gold_due(plan, user, gold, total)
            total += 1
        assert abs(gold - 2 - 0.2 * 998) <= 1


def test_quota_stops_hand_outs_and_says_so():
    s = Scheduler(range(20), overlap=2, lease_ttl=TTL, plan=GoldPlan(quota=3))
    assert len(drain(s, "ann")) == 3
    assert s.next("ann", 1).kind == "quota"
    assert s.state("ann", 1).kind == "quota"
    assert s.lease_soft("ann", 4, 1) == []
    assert len(drain(s, "bob")) == 3  # work remains for others
    s.set_quota("ann", 5)  # an admin's override
    assert len(drain(s, "ann", now=2)) == 2
    s.set_quota("ann", None)
    assert len(drain(s, "ann", now=3)) == 15


def test_quota_counts_held_leases_and_not_gold():
    s = Scheduler(range(20), overlap=1, lease_ttl=TTL, gold=[90, 91], plan=GoldPlan(quota=3, warmup=2))
    got = s.lease_soft("ann", 10, 0)
    assert sorted(got[:2]) == [90, 91] and len(got) == 5  # two gold, then three towards the quota
    assert s.next("ann", 1).record_id in got
    for rid in got:
        s.submit("ann", rid, 1)
    assert s.next("ann", 2).kind == "quota"


def test_quota_holds_under_32_threads_of_one_person():
    quota = 25
    s = Scheduler(range(1000), overlap=1, lease_ttl=60, gold=range(5000, 5010), plan=GoldPlan(rate=0.2, quota=quota))
    answered: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(32)

    def tab(k: int) -> None:
        start.wait()
        for _ in range(200):
            if k % 2:
                ids = s.lease_soft("same", 2)
            else:
                state = s.next("same")
                ids = [state.record_id] if state.kind == "ready" else []
            for rid in ids:
                if s.promote("same", rid) and s.submit("same", rid) == "new":
                    with lock:
                        answered.append(rid)

    threads = [threading.Thread(target=tab, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    regular = [r for r in answered if r < 5000]
    assert len(regular) == len(set(regular)) == quota
    assert len([r for r in answered if r >= 5000]) == len({r for r in answered if r >= 5000})
    assert s.next("same").kind == "quota"
    assert s.counts()["submissions"] == quota


def test_restore_keeps_gold_out_of_the_counts():
    s = Scheduler(range(4), overlap=1, lease_ttl=TTL, gold=[7], plan=GoldPlan(warmup=1, quota=2))
    s.restore([(7, "ann", "submitted"), (0, "ann", "submitted"), (1, "ann", "skipped"), (2, "bob", "submitted")])
    c = s.counts()
    assert (c["submissions"], c["skips"], c["complete"]) == (2, 1, 2)
    got = drain(s, "ann")
    assert got == [3]  # warm-up over (gold 7 answered), one answer left under the quota of 2
    assert s.next("ann", 1).kind == "quota"


def test_gold_lease_that_expires_unanswered_never_comes_back():
    gold = [100, 101, 102]
    s = Scheduler(range(30), overlap=1, lease_ttl=TTL, gold=gold, plan=GoldPlan(warmup=10))
    first = s.next("ann", 0).record_id
    assert first in gold
    # ann walks away: the lease lapses unanswered; gold is still due, and it is another gold record
    second = s.next("ann", TTL + 1).record_id
    assert second in gold and second != first
    assert s.state("ann", TTL + 1).record_id == second
    s.submit("ann", second, TTL + 2)
    # the third gold sits in the buffer, and the session ends before it is shown
    third = s.lease_soft("ann", 1, TTL + 3)
    assert third and third[0] in set(gold) - {first, second}
    s.release("ann")
    # every gold record was handed to ann once: from now on only records of the order
    rest = drain(s, "ann", now=2 * TTL)
    assert rest and not set(rest) & set(gold)
    assert s.next("ann", 2 * TTL).kind == "done"
    assert s.lease_soft("ann", 4, 2 * TTL) == []
    # the lapsed gold records stay open to other people
    assert sorted(drain(s, "bob", now=3 * TTL)) == gold


def test_gold_in_a_lapsed_buffer_is_not_handed_again():
    gold = [200, 201, 202, 203]
    s = Scheduler(range(10), overlap=2, lease_ttl=TTL, gold=gold, plan=GoldPlan(warmup=4))
    buffered = s.lease_soft("ann", 2, 0)
    assert len(buffered) == 2 and set(buffered) <= set(gold)
    later = drain(s, "ann", now=TTL + 1)  # the buffer lapsed unseen: the two other gold, then the order
    assert sorted(later[:2]) == sorted(set(gold) - set(buffered))
    assert later[2:] == list(range(10))


def test_restore_keeps_the_gold_handed_out_before():
    plan = GoldPlan(warmup=2)
    s = Scheduler(range(5), overlap=1, lease_ttl=TTL, gold=[7, 8], plan=plan)
    first = s.next("ann", 0).record_id
    assert s.take_handouts() == [("ann", first)] and s.take_handouts() == []
    again = Scheduler(range(5), overlap=1, lease_ttl=TTL, gold=[7, 8], plan=plan)
    assert again.restore([], handed=[("ann", first), ("ann", 3)]) == 1  # 3 is no gold record (any more)
    got = drain(again, "ann")
    assert [r for r in got if r in (7, 8)] == [15 - first] and len(got) == 6


def test_gold_handed_out_on_duckdb_is_not_handed_again_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "annotator.duckdb"
    store = Store(path)
    ids = store.add_records([NewRecord(f"r{i}", f"r{i}.png", "0" * 64, 8, 8, 100) for i in range(8)])
    order, gold, plan = ids[:5], ids[5:], GoldPlan(warmup=3)
    backend = LocalBackend(store, order, 1, TTL, gold=gold, plan=plan)
    first = backend.next("ann").record_id
    buffered = backend.lease_soft("ann", 1)
    assert {first, *buffered} < set(gold)
    backend.close()  # ann walked away and the app restarted: both leases are gone, unanswered

    store = Store(path)
    assert sorted(store.gold_handouts()) == sorted(("ann", r) for r in (first, *buffered))
    backend = LocalBackend(store, order, 1, TTL, gold=gold, plan=plan)
    try:
        got = []
        while (state := backend.next("ann")).kind == "ready":
            got.append(state.record_id)
            _, ack = backend.answer(ResponseWrite(state.record_id, "ann", "submitted", {"label": "a"}, None, None,
                                                  utcnow(), first=True))
            ack.result(10)
        assert [r for r in got if r in gold] == sorted(set(gold) - {first, *buffered})
        assert sorted(r for r in got if r not in gold) == order
    finally:
        backend.close()


def test_gold_handouts_are_stored_once_and_kept_in_a_recovery_file(tmp_path: Path) -> None:
    ops = [GoldHandout("ann", 1), GoldHandout("ann", 1), GoldHandout("bob", 1)]
    assert [recovery.decode(recovery.encode(op)) for op in ops] == ops
    store = Store(tmp_path / "annotator.duckdb")
    try:
        store.apply(ops)  # the same pair twice in one batch
        store.apply(ops[:1])  # and again later
        assert sorted(store.gold_handouts()) == [("ann", 1), ("bob", 1)]
    finally:
        store.close()


class GoldMachine(RuleBasedStateMachine):
    """Random calls of many people; the facts are kept here, the scheduler must never break them."""

    @initialize(data=st.data())
    def setup(self, data):
        n = data.draw(st.integers(0, 20), label="records")
        self.gold = list(range(1000, 1000 + data.draw(st.integers(0, 6), label="gold")))
        self.overlap = data.draw(st.sampled_from([1, 2]), label="overlap")
        self.quota = data.draw(st.sampled_from([None, 1, 3]), label="quota")
        plan = GoldPlan(rate=data.draw(st.sampled_from([0.0, 0.1, 0.5])), warmup=data.draw(st.integers(0, 2)),
                        quota=self.quota)
        self.ids = list(range(n))
        self.users = [f"u{i}" for i in range(data.draw(st.integers(1, 6), label="users"))]
        self.s = Scheduler(self.ids, self.overlap, TTL, gold=self.gold, plan=plan)
        self.sub: dict[int, set[str]] = {r: set() for r in self.ids + self.gold}
        self.seen: dict[str, set[int]] = {u: set() for u in self.users}
        self.handed: dict[str, set[int]] = {u: set() for u in self.users}  # gold records ever leased to each
        self.late: Counter[int] = Counter()
        self.now = 0.0

    def mine(self, u: str) -> int:
        return sum(u in self.sub[r] for r in self.ids)

    def held(self, u: str) -> set[int]:
        return {r for r, _ in self.s.leases(self.now).get(u, [])}

    def check_handed(self, u: str, rid: int, held: set[int]) -> None:
        """`rid` handed to `u`, who held `held` before the call."""
        assert rid not in self.seen[u], (u, rid)  # I1, gold included: never twice
        assert rid in self.sub
        if rid in self.gold and rid not in held:  # a new gold lease, even after one that lapsed unanswered
            assert rid not in self.handed[u], (u, rid)
            self.handed[u].add(rid)

    @rule(i=st.integers(0, 5))
    def next(self, i):
        u = self.users[i % len(self.users)]
        held = self.held(u)
        state = self.s.next(u, self.now)
        if state.kind == "ready":
            self.check_handed(u, state.record_id, held)
        elif state.kind == "quota":
            assert self.quota is not None and self.mine(u) >= self.quota
        elif state.kind == "done":  # I3: nothing left in the order for this person
            assert all(len(self.sub[r]) >= self.overlap or r in self.seen[u] for r in self.ids)

    @rule(i=st.integers(0, 5), n=st.integers(0, 4))
    def lease_soft(self, i, n):
        u = self.users[i % len(self.users)]
        held = self.held(u)
        for rid in self.s.lease_soft(u, n, self.now):
            self.check_handed(u, rid, held)

    @rule(i=st.integers(0, 5), k=st.integers(0, 10), status=st.sampled_from(["submitted", "skipped"]))
    def answer_held(self, i, k, status):
        u = self.users[i % len(self.users)]
        held = [r for r, _ in self.s.leases(self.now).get(u, [])]
        if not held:
            return
        rid = held[k % len(held)]
        outcome = (self.s.submit if status == "submitted" else self.s.skip)(u, rid, self.now)
        assert outcome == "new"
        self.seen[u].add(rid)
        (self.sub[rid].add if status == "submitted" else self.sub[rid].discard)(u)

    @rule(i=st.integers(0, 5), one=st.booleans())
    def release(self, i, one):
        u = self.users[i % len(self.users)]
        held = [r for r, _ in self.s.leases(self.now).get(u, [])]
        self.s.release(u, held[0] if one and held else None)

    @rule(dt=st.sampled_from([1.0, 11.0]))
    def advance(self, dt):
        self.now += dt

    @invariant()
    def facts_hold(self):
        if not hasattr(self, "s"):
            return
        leases = self.s.leases(self.now)
        holders = Counter(r for held in leases.values() for r, _ in held)
        for r in self.ids:  # I2 over the order; gold has no overlap
            assert len(self.sub[r]) + holders[r] <= self.overlap
        c = self.s.counts()
        assert c["records"] == len(self.ids)
        assert c["submissions"] == sum(len(self.sub[r]) for r in self.ids)
        assert c["complete"] == sum(len(self.sub[r]) >= self.overlap for r in self.ids)
        assert c["leased"] == sum(1 for r in self.ids if holders[r])
        if self.quota is not None:
            for u in self.users:
                regular_held = sum(1 for r, _ in leases.get(u, []) if r in self.ids)
                assert self.mine(u) + regular_held <= self.quota


GoldMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestGoldMachine = GoldMachine.TestCase
