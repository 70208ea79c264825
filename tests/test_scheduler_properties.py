"""I1-I5 under random interleavings of many users, checked against a brute-force model.

The model keeps the facts (answers, leases, last activity) in the plainest
form and decides every expected outcome by scanning all records; the
scheduler must agree on every call. Time is simulated.

Runs may have gold records (issue 17) at a rate, a warm-up and a quota: gold is
never counted toward completion, the counts or a person's "done", never handed
twice to one person (not even after that lease expired or was released
unanswered), and a person's submitted answers plus the records
they hold never pass the quota, late answers included (those past it are
refused, gold.QuotaFull). Where gold comes is the rule's (gold.gold_due,
gold.gold_rank), applied to the model's facts.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from annotator.gold import GoldPlan, QuotaFull, gold_due, gold_rank
from annotator.model import QueueState
from annotator.scheduler import Scheduler

TTL = 10.0
MAX_USERS = 50


class Model:
    """The contract in its plainest form: every answer is a scan over all records."""

    def __init__(self, ids: list[int], overlap: int, gold: list[int] = (), plan: GoldPlan = GoldPlan()) -> None:
        self.ids = ids
        self.gold = list(gold)  # outside the order: no position in it, no target, no completion
        self.plan = plan
        self.pos = {rid: i for i, rid in enumerate(ids)} | {rid: -1 for rid in gold}
        self.target = {rid: overlap for rid in ids}
        self.sub: dict[int, set[str]] = {rid: set() for rid in ids + self.gold}
        self.skp: dict[int, set[str]] = {rid: set() for rid in ids + self.gold}
        self.unleased = Counter()  # submissions that arrived without a lease: the only way past I2
        self.touched: set[int] = set()
        self.leases: dict[str, dict[int, str]] = {}
        self.last: dict[str, float] = {}
        self.handed: dict[str, set[int]] = {}  # gold records each person was ever granted a lease on

    # facts
    def complete(self, rid: int) -> bool:
        return rid not in self.gold and len(self.sub[rid]) >= self.target[rid]

    def seen(self, user: str, rid: int) -> bool:
        return user in self.sub[rid] or user in self.skp[rid]

    def holders(self, rid: int) -> dict[str, str]:
        return {u: held[rid] for u, held in self.leases.items() if rid in held}

    def room(self, rid: int) -> bool:
        return not self.complete(rid) and len(self.sub[rid]) + len(self.holders(rid)) < self.target[rid]

    def eligible(self, user: str, rid: int) -> bool:
        return not self.seen(user, rid) and rid not in self.leases.get(user, {})

    def hard(self, user: str) -> int | None:
        return next((r for r, k in self.leases.get(user, {}).items() if k == "hard"), None)

    def remaining(self, user: str) -> list[int]:
        return [r for r in self.ids if not self.complete(r) and not self.seen(user, r)]

    # gold and the quota
    def mine(self, user: str) -> int:
        """Submitted answers to records of the order: what the quota counts."""
        return sum(1 for r in self.ids if user in self.sub[r])

    def quota_room(self, user: str) -> float:
        if self.plan.quota is None:
            return float("inf")
        held = sum(1 for r in self.leases.get(user, {}) if r not in self.gold)
        return self.plan.quota - self.mine(user) - held

    def gold_pick(self, user: str) -> int | None:
        """The gold record due for the user now, by the rule over their facts; None if none is."""
        if not self.gold or self.quota_room(user) <= 0:
            return None
        held = self.leases.get(user, {})
        met = sum(1 for g in self.gold if self.seen(user, g))
        dealt = sum(1 for r in self.ids if self.seen(user, r))
        if not gold_due(self.plan, user, met + sum(1 for r in held if r in self.gold), dealt + len(held) + met):
            return None
        unmet = [g for g in self.gold if self.eligible(user, g) and g not in self.handed.get(user, ())]
        return min(unmet, key=lambda g: gold_rank(user, g)) if unmet else None

    def own(self, user: str) -> list[int]:
        """The user's leases in order position; gold (no position) first, in no order among themselves."""
        return sorted(self.leases.get(user, {}), key=self.pos.get)

    # time
    def sweep(self, now: float) -> int:
        dropped = 0
        for user, held in self.leases.items():
            if held and self.last[user] + TTL < now:
                dropped += len(held)
                held.clear()
        return dropped

    def begin(self, user: str, now: float) -> None:
        self.sweep(now)
        self.last[user] = max(self.last.get(user, now), now)

    # expected choices
    def open_candidates(self, user: str) -> list[int]:
        return sorted((r for r in self.touched if self.eligible(user, r) and self.room(r)), key=self.pos.get)

    def fresh(self) -> list[int]:
        return [r for r in self.ids if r not in self.touched]

    def takeover(self, user: str) -> int | None:
        found = [r for r in self.ids if r in self.touched and self.eligible(user, r) and not self.complete(r)
                 and not self.room(r) and any(k == "soft" for u, k in self.holders(r).items() if u != user)]
        return found[0] if found else None

    # changes
    def grant(self, user: str, rid: int, kind: str) -> None:
        assert not self.seen(user, rid), (user, rid)  # I1, gold included: never met twice
        if rid not in self.gold:
            self.touched.add(rid)
        held = self.leases.setdefault(user, {})
        if rid in self.gold and rid not in held:  # a new gold lease: never a second one for this person
            handed = self.handed.setdefault(user, set())
            assert rid not in handed, (user, rid)
            handed.add(rid)
        if kind == "hard":
            for r in held:
                held[r] = "soft"
        held[rid] = kind

    def answer(self, user: str, rid: int, status: str) -> str:
        had = self.leases.get(user, {}).pop(rid, None) is not None
        was_complete = self.complete(rid)
        if rid not in self.gold:
            self.touched.add(rid)
        mine, other = (self.sub[rid], self.skp[rid]) if status == "submitted" else (self.skp[rid], self.sub[rid])
        if user in mine:
            outcome = "edit"
        elif user in other:
            other.discard(user)
            mine.add(user)
            outcome = "edit"
            if status == "submitted":
                self.unleased[rid] += 1
        else:
            mine.add(user)
            outcome = "new" if had else "late"
            if status == "submitted" and not had:
                self.unleased[rid] += 1
        if not was_complete and self.complete(rid):
            for u, k in self.holders(rid).items():
                if k == "soft":
                    del self.leases[u][rid]
        return outcome

    def counts(self) -> dict[str, int]:
        complete = sum(self.complete(r) for r in self.ids)
        partial = sum(1 for r in self.ids if self.sub[r] and not self.complete(r))
        return {"records": len(self.ids), "complete": complete, "partial": partial,
                "untouched": len(self.ids) - complete - partial,
                "leased": sum(1 for r in self.ids if self.holders(r)),
                "submissions": sum(len(self.sub[r]) for r in self.ids),
                "skips": sum(len(self.skp[r]) for r in self.ids)}


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(data=st.data())
    def setup(self, data):
        n_records = data.draw(st.integers(0, 30), label="records")
        self.overlap = data.draw(st.sampled_from([1, 3]), label="overlap")
        quota = data.draw(st.none() | st.integers(1, 6), label="quota")
        # with a quota, few people: each of them reaches it within a run, and then answers late
        n_users = data.draw(st.integers(1, MAX_USERS if quota is None else 6), label="users")
        if data.draw(st.booleans(), label="range order"):
            start = data.draw(st.integers(-5, 5))
            order = range(start, start + n_records)
            ids = list(order)
        else:
            ids = data.draw(st.lists(st.integers(-1000, 1000), min_size=n_records, max_size=n_records,
                                     unique=True), label="shuffled ids")
            order = list(ids)
        self.users = [f"u{i}" for i in range(n_users)]
        gold = [5000 + k for k in range(data.draw(st.integers(0, 4), label="gold records"))]
        plan = GoldPlan(rate=data.draw(st.sampled_from([0.0, 0.2, 0.5]), label="gold rate") if gold else 0.0,
                        warmup=data.draw(st.integers(0, 2), label="warm-up") if gold else 0,
                        quota=quota)
        self.sched = Scheduler(order, self.overlap, TTL, gold=gold, plan=plan)
        self.model = Model(ids, self.overlap, gold, plan)
        self.now = 1000.0
        self.clock = self.now  # the latest time the scheduler was told

    # helpers
    def user(self, i: int) -> str:
        return self.users[i % len(self.users)]

    def at(self) -> float:
        self.clock = max(self.clock, self.now)
        return self.now

    def pick_record(self, data, user: str) -> int | None:
        held = sorted(self.model.leases.get(user, {}))
        if held and data.draw(st.integers(0, 3), label="own lease?") > 0:
            return data.draw(st.sampled_from(held), label="held record")
        every = self.model.ids + self.model.gold
        if not every:
            return None
        return data.draw(st.sampled_from(every), label="any record")

    def expected_next(self, u: str) -> tuple[QueueState | None, set[int]]:
        """What `next`/`state` must answer (None: ready with one of the records in the set), before the call;
        the model has begun the user's call."""
        m = self.model
        hard = m.hard(u)
        if hard is not None:  # idempotent: the record on screen
            return QueueState("ready", hard), set()
        gold = m.gold_pick(u)
        if gold is not None:
            return QueueState("ready", gold), set()
        room = m.quota_room(u) > 0
        first = (m.open_candidates(u) or m.fresh()) if room else []
        if first:
            return QueueState("ready", first[0]), set()
        own = m.own(u)
        if own:  # several gold leases share the first place
            return None, {r for r in own if m.pos[r] == m.pos[own[0]]}
        if not room:
            return QueueState("quota"), set()
        return None, set()

    # rules
    @rule(i=st.integers(0, MAX_USERS - 1))
    def next(self, i):
        u, m = self.user(i), self.model
        now = self.at()
        m.begin(u, now)
        hard = m.hard(u)
        want, among = self.expected_next(u)
        takeover = m.takeover(u) if want is None and not among else None
        got = self.sched.next(u, now)
        if hard is not None:
            assert got == want
            return
        if want is not None and want.kind == "quota":  # at the quota: told so, never "done" while work remains
            assert got == want and m.quota_room(u) <= 0
            return
        if want is not None or among or takeover is not None:
            if among:
                assert got.kind == "ready" and got.record_id in among, (got, among)
            expected = want.record_id if want is not None else got.record_id if among else takeover
            assert got == QueueState("ready", expected), (got, expected)
            assert not m.seen(u, expected)  # I1
            if want is None and not among:  # I5: nothing else, so a soft lease changes hands
                soft = [v for v, k in m.holders(expected).items() if k == "soft"]
                victim = min(soft, key=lambda v: (m.last[v], v))
                del m.leases[victim][expected]
                assert self.sched.promote(victim, expected, now) is False
                m.begin(victim, now)
            m.grant(u, expected, "hard")
            return
        rest = m.remaining(u)
        if got.kind == "done":  # I3: brute force over all records (gold is no work left)
            assert rest == [], rest
            return
        assert got.kind == "waiting" and rest, got
        for r in rest:  # I3: everything left is fully held by others' hard leases
            holders = m.holders(r)
            assert u not in holders and all(k == "hard" for k in holders.values())
            assert len(m.sub[r]) + len(holders) >= m.target[r]
        assert got.held_by_others == len(rest)
        assert got.frees_at == min(m.last[v] + TTL for r in rest for v in m.holders(r))

    @rule(i=st.integers(0, MAX_USERS - 1))
    def state(self, i):
        u, m = self.user(i), self.model
        now = self.at()
        m.begin(u, now)
        want, among = self.expected_next(u)
        takeover = m.takeover(u) if want is None and not among else None
        got = self.sched.state(u, now)
        if want is not None:
            assert got == want
        elif among:
            assert got.kind == "ready" and got.record_id in among, (got, among)
        elif takeover is not None:
            assert got == QueueState("ready", takeover)
        else:
            assert got.kind == ("waiting" if m.remaining(u) else "done")

    @rule(i=st.integers(0, MAX_USERS - 1), n=st.integers(0, 5))
    def lease_soft(self, i, n):
        u, m = self.user(i), self.model
        now = self.at()
        m.begin(u, now)
        got = self.sched.lease_soft(u, n, now)
        for k in range(n):  # one at a time: each lease changes what is due next (gold, the quota)
            pick = m.gold_pick(u)
            if pick is None and m.quota_room(u) > 0:
                pick = next(iter(m.open_candidates(u) + m.fresh()), None)
            if pick is None:
                assert got[k:] == [], (got, k)
                break
            assert got[k:k + 1] == [pick], (got, k, pick)
            m.grant(u, pick, "soft")  # I1 checked there

    @rule(i=st.integers(0, MAX_USERS - 1), data=st.data())
    def promote(self, i, data):
        u, m = self.user(i), self.model
        rid = self.pick_record(data, u)
        if rid is None:
            return
        now = self.at()
        m.begin(u, now)
        expected = rid in m.leases.get(u, {})
        assert self.sched.promote(u, rid, now) is expected
        if expected:
            m.grant(u, rid, "hard")

    @rule(i=st.integers(0, MAX_USERS - 1), data=st.data(), status=st.sampled_from(["submitted", "skipped"]))
    def answer(self, i, data, status):
        u = self.user(i)
        rid = self.pick_record(data, u)
        if rid is not None:
            self.answer_one(u, rid, status)

    @rule(i=st.integers(0, MAX_USERS - 1))
    def click(self, i):
        """An annotator's click: the record on screen is answered and the next one comes (people reach
        their quota, and then answer late what they held before)."""
        self.next(i)
        rid = self.model.hard(self.user(i))
        if rid is not None:
            self.answer_one(self.user(i), rid, "submitted")

    def answer_one(self, u: str, rid: int, status: str) -> None:
        m = self.model
        now = self.at()
        m.begin(u, now)
        call = self.sched.submit if status == "submitted" else self.sched.skip
        if status == "submitted" and rid not in m.gold and u not in m.sub[rid] \
                and rid not in m.leases.get(u, {}) and m.quota_room(u) < 1:
            with pytest.raises(QuotaFull):  # late, and past the quota: refused, nothing counted
                call(u, rid, now)
            return
        expected = m.answer(u, rid, status)
        assert call(u, rid, now) == expected

    @rule(i=st.integers(0, MAX_USERS - 1), data=st.data(), one=st.booleans())
    def release(self, i, data, one):
        u, m = self.user(i), self.model
        held = m.leases.get(u, {})
        if one:
            rid = self.pick_record(data, u)
            if rid is None:
                return
            expected = 1 if held.pop(rid, None) else 0
            assert self.sched.release(u, rid) == expected
            assert rid not in dict(self.sched.leases(self.clock).get(u, []))
        else:
            expected = len(held)
            held.clear()
            assert self.sched.release(u) == expected
            assert u not in self.sched.leases(self.clock)

    @rule(data=st.data())
    def reopen(self, data):
        if not self.model.ids:
            return
        rid = data.draw(st.sampled_from(self.model.ids))
        self.model.target[rid] += 1
        self.model.touched.add(rid)
        self.sched.reopen(rid, 1)

    @rule(new=st.lists(st.integers(-10, 40) | st.integers(-1100, 1100), max_size=4))
    def add_records(self, new):
        m = self.model
        added = []
        for rid in new:
            if rid not in m.pos and rid not in added:
                added.append(rid)
        assert self.sched.add_records(new) == len(added)
        for rid in added:
            m.pos[rid] = len(m.ids)
            m.ids.append(rid)
            m.target[rid] = self.overlap
            m.sub[rid], m.skp[rid] = set(), set()

    @rule(i=st.integers(0, MAX_USERS - 1))
    def touch(self, i):
        u = self.user(i)
        now = self.at()
        self.model.begin(u, now)
        self.sched.touch(u, now)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, TTL / 2, TTL, TTL + 0.5]))
    def advance(self, dt):
        self.now += dt  # nobody is told: expiry must happen lazily at the next call

    @rule()
    def expire(self):
        now = self.at()
        assert self.sched.expire(now) == self.model.sweep(now)

    @rule(dt=st.sampled_from([TTL + 0.1, 2 * TTL]), keep=st.sets(st.integers(0, MAX_USERS - 1), max_size=5))
    def idle_past_ttl(self, dt, keep):
        """I4: some users stay active, the rest go quiet for longer than the ttl."""
        active = {self.user(i) for i in keep}
        step = TTL / 2
        t = 0.0
        while t + step < dt:
            t += step
            self.now += step
            for u in sorted(active):
                self.model.begin(u, self.at())
                self.sched.touch(u, self.now)
        self.now += dt - t
        now = self.at()
        leases = self.sched.leases(now)
        self.model.sweep(now)
        for u in self.users:
            if u not in active:
                assert u not in leases, (u, leases[u])
            else:
                assert len(leases.get(u, [])) == len(self.model.leases.get(u, {}))

    # invariants
    @invariant()
    def agrees_with_model(self):
        if not hasattr(self, "sched"):
            return
        m, s = self.model, self.sched
        got = s.leases(self.clock)  # no sweep beyond what the last call did
        want = {u: sorted(((r, k) for r, k in held.items()), key=lambda x: m.pos[x[0]])
                for u, held in m.leases.items() if held}
        assert {u: sorted(v, key=lambda x: (m.pos[x[0]], x[0])) for u, v in got.items()} == \
            {u: sorted(v, key=lambda x: (m.pos[x[0]], x[0])) for u, v in want.items()}
        assert {u: [r for r, _ in held if r not in m.gold] for u, held in got.items()} == \
            {u: [r for r, _ in held if r not in m.gold] for u, held in want.items()}  # in order position
        for r in m.ids:  # I2
            assert len(m.sub[r]) + len(m.holders(r)) <= m.target[r] + m.unleased[r], r
        assert s.counts() == m.counts()
        for u in self.users:
            assert s.remaining_for(u) == len(m.remaining(u))
            assert s.current(u) == m.hard(u)
            assert m.quota_room(u) >= 0, f"{u} passed the quota {m.plan.quota}"


SchedulerMachine.TestCase.settings = settings(max_examples=250, stateful_step_count=50, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
TestScheduler = SchedulerMachine.TestCase


# --- a hand-written interleaving hypothesis must keep finding ---------------------

def test_takeover_hands_over_a_soft_lease_to_an_idle_user():
    s = Scheduler(range(2), overlap=1, lease_ttl=TTL)
    assert s.lease_soft("busy", 2, 0) == [0, 1]
    assert s.next("idle", 1) == QueueState("ready", 0)
    assert s.promote("busy", 0, 2) is False
    assert s.promote("busy", 1, 2) is True


# --- real threads ----------------------------------------------------------------

def run_threads(n_threads: int, n_records: int, overlap: int, prefetch: int, seed: int):
    s = Scheduler(list(random.Random(seed).sample(range(10 * n_records), n_records)), overlap, lease_ttl=60)
    outcomes: list[tuple[int, str, str]] = []
    errors: list[BaseException] = []
    out_lock = threading.Lock()
    start = threading.Barrier(n_threads)

    def work(k: int) -> None:
        user = f"t{k}"
        rnd = random.Random(seed * 1000 + k)
        buffer: list[int] = []
        mine = []
        try:
            start.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                rid = None
                while buffer and rid is None:  # the prefetch path: promote what is buffered
                    cand = buffer.pop(0)
                    if s.promote(user, cand):
                        rid = cand
                if rid is None:
                    st_ = s.next(user)
                    if st_.kind == "done":
                        break
                    if st_.kind == "waiting":
                        time.sleep(0.001)
                        continue
                    rid = st_.record_id
                assert not s.has_seen(user, rid)
                assert len(s.submitted_users(rid)) < overlap
                mine.append((rid, user, s.submit(user, rid)))
                if prefetch and rnd.random() < 0.5:
                    buffer.extend(s.lease_soft(user, prefetch - len(buffer)))
            else:
                raise AssertionError(f"{user} never finished")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            s.release(user)
            with out_lock:
                outcomes.extend(mine)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that calls really interleave
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    return s, outcomes


def test_32_threads_until_done_no_record_over_overlap():
    overlap, n_records = 3, 400
    s, outcomes = run_threads(32, n_records, overlap, prefetch=0, seed=1)
    pairs = Counter((rid, user) for rid, user, _ in outcomes)
    assert max(pairs.values()) == 1                      # every (record, user) answered once
    assert {o for _, _, o in outcomes} == {"new"}        # always under a lease
    per_record = Counter(rid for rid, _, _ in outcomes)
    assert len(per_record) == n_records and set(per_record.values()) == {overlap}
    c = s.counts()
    assert (c["complete"], c["submissions"], c["leased"]) == (n_records, n_records * overlap, 0)


def test_32_threads_with_prefetch_and_takeover():
    overlap, n_records = 3, 300
    s, outcomes = run_threads(32, n_records, overlap, prefetch=3, seed=2)
    pairs = Counter((rid, user) for rid, user, _ in outcomes)
    assert max(pairs.values()) == 1
    assert {o for _, _, o in outcomes} == {"new"}
    per_record = Counter(rid for rid, _, _ in outcomes)
    assert len(per_record) == n_records and set(per_record.values()) == {overlap}
    assert s.counts()["complete"] == n_records
