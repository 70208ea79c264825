"""I1-I5 on the PostgreSQL backend, under random interleavings of up to 50 people and across replicas.

The in-memory scheduler is checked call by call against a brute-force model
(test_scheduler_properties.py). Here the truth is the database: after every
step the invariants are checked against the rows themselves (answers, lease
rows with their expiry), not against the backend's own counters, and the
counters are checked against the rows. Time is simulated. Two backends on
one database stand for two replicas.

One run has gold records (issue 17) at a rate, a warm-up and a quota: there the
rows also show gold never counted toward completion or the team's progress,
never handed to a person who answered it, a person's answers plus held records
never past the quota (a late answer past it is refused, gold.QuotaFull), and
"quota", never "done", while work remains for them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import hypothesis.strategies as st
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from annotator.gold import GoldPlan, QuotaFull
from annotator.model import NewRecord, QueueState, ResponseWrite, utcnow
from annotator.pg_backend import PgBackend
from annotator.pg_leases import to_ts
from annotator.pg_store import PgStore

TTL = 10.0
MAX_USERS = 50
RECORDS = 5
GOLD_RECORDS = 2
# with gold: the warm-up and half of the later hand-outs are gold, two answers a person (soon reached)
GOLD_PLAN = GoldPlan(rate=0.5, warmup=1, quota=2)
# most steps by a few people (so queues run dry and buffers get taken over), some by any of 50
PEOPLE = st.integers(0, 3) | st.integers(0, MAX_USERS - 1)


class Clock:
    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t


def new_records(n: int) -> list[NewRecord]:
    return [NewRecord(f"r{i:04d}", f"r{i:04d}.png", "0" * 64, 8, 8, 100) for i in range(n)]


def reset(url: str, n: int, n_gold: int = 0) -> tuple[list[int], list[int]]:
    """An empty workshop of n records and n_gold gold records after them (the schema stays): (order, gold)."""
    store = PgStore(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE leases, gold_handouts, responses, response_history, users, audit, records")
        ids = store.add_records(new_records(n + n_gold))
    finally:
        store.close()
    return ids[:n], ids[n:]


def open_backend(url: str, overlap: int, clock: Clock, replica: str, order: list[int] | None = None,
                 gold: list[int] = (), plan: GoldPlan = GoldPlan()) -> PgBackend:
    store = PgStore(url)
    return PgBackend(store, store.record_ids() if order is None else order, overlap, TTL, replica=replica,
                     clock=clock, counts_every=0, gold=gold, plan=plan)


class Facts:
    """The rows as they are now, read straight from the tables."""

    def __init__(self, url: str, now: float) -> None:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT id, extra_answers, submitted, leased, gold FROM records").fetchall()
            self.records = {rid: (extra, submitted, leased) for rid, extra, submitted, leased, _ in rows}
            self.gold = {rid for rid, *_, gold in rows if gold}
            self.answers = {(rid, user): status for rid, user, status in conn.execute(
                "SELECT record_id, user_id, status FROM responses")}
            rows = conn.execute("SELECT record_id, user_id, hard, expires_at FROM leases").fetchall()
        self.all_leases = Counter(rid for rid, *_ in rows)
        live = to_ts(now)
        self.leases = {(rid, user): hard for rid, user, hard, expires in rows if expires >= live}

    def submitted(self, rid: int) -> int:
        return sum(1 for (r, _), s in self.answers.items() if r == rid and s == "submitted")

    def holders(self, rid: int) -> dict[str, bool]:
        return {u: hard for (r, u), hard in self.leases.items() if r == rid}

    def target(self, rid: int, overlap: int) -> int:
        return overlap + self.records[rid][0]

    def complete(self, rid: int, overlap: int) -> bool:
        return rid not in self.gold and self.submitted(rid) >= self.target(rid, overlap)

    def work(self) -> list[int]:
        """The records of the order (gold records are checks, not work)."""
        return sorted(r for r in self.records if r not in self.gold)

    def eligible(self, user: str, rid: int, overlap: int) -> bool:
        return (not self.complete(rid, overlap) and (rid, user) not in self.answers
                and (rid, user) not in self.leases)

    def counted(self, user: str) -> int:
        """What the quota counts: their submitted answers plus the records they hold, gold left out."""
        return sum(1 for r in self.work() if self.answers.get((r, user)) == "submitted"
                   or ((r, user) in self.leases and (r, user) not in self.answers))


def machine(url: str, overlap: int, with_gold: bool = False) -> type[RuleBasedStateMachine]:
    plan = GOLD_PLAN if with_gold else GoldPlan()

    class PgAssignment(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            order, gold = reset(url, RECORDS, GOLD_RECORDS if with_gold else 0)
            self.clock = Clock()
            self.replicas = [open_backend(url, overlap, self.clock, name, order, gold, plan) for name in "ab"]
            self.unleased: Counter[int] = Counter()  # submissions made without a lease: the only way past I2

        def teardown(self) -> None:
            for backend in self.replicas:
                backend.close()

        def on(self, i: int) -> PgBackend:
            return self.replicas[i % 2]  # people stay on one replica, as behind a sticky load balancer

        def user(self, i: int) -> str:
            return f"u{i}"

        def facts(self) -> Facts:
            return Facts(url, self.clock())

        @rule(i=PEOPLE)
        def next(self, i: int) -> None:
            user = self.user(i)
            state = self.on(i).next(user)
            f = self.facts()
            if state.kind == "ready":
                rid = state.record_id
                assert (rid, user) not in f.answers, "I1: shown a record they already answered"
                assert (rid, user) in f.leases, "the record on screen is leased to them"
                return
            left = [r for r in f.work() if f.eligible(user, r, overlap)]
            if state.kind == "quota":
                assert f.counted(user) >= plan.quota, f"told quota at {f.counted(user)} of {plan.quota}"  # type: ignore[operator]
                return
            if state.kind == "done":
                assert not left, f"I3: told done while {left} are left for {user}"
                return
            assert left and state.held_by_others == len(left), (state, left)
            for r in left:
                assert f.submitted(r) + len(f.holders(r)) >= f.target(r, overlap), f"I3: {r} had room"
                assert all(hard for u, hard in f.holders(r).items() if u != user), f"I5: {r} could be taken over"
            assert state.frees_at is not None and state.frees_at > self.clock()

        @rule(i=PEOPLE, n=st.integers(0, 5))
        def lease_soft(self, i: int, n: int) -> None:
            user = self.user(i)
            got = self.on(i).lease_soft(user, n)
            f = self.facts()
            assert len(got) <= n and len(set(got)) == len(got)
            for rid in got:
                assert (rid, user) not in f.answers, "I1: leased a record they already answered"
                assert f.leases.get((rid, user)) is False

        @rule(i=PEOPLE, data=st.data())
        def promote(self, i: int, data: st.DataObject) -> None:
            user = self.user(i)
            f = self.facts()
            mine = sorted(r for (r, u) in f.leases if u == user)
            if not mine:
                return
            rid = data.draw(st.sampled_from(mine))
            ok = self.on(i).promote(user, rid)
            assert ok == (not f.complete(rid, overlap))

        @rule(i=PEOPLE, data=st.data(), status=st.sampled_from(["submitted", "skipped"]))
        def answer(self, i: int, data: st.DataObject, status: str) -> None:
            rid = self.on(i).current(self.user(i))
            if rid is None or data.draw(st.booleans()):
                rid = data.draw(st.sampled_from(sorted(self.facts().records)))  # a late or repeated answer
            self.answer_one(i, rid, status)

        @rule(i=PEOPLE)
        def click(self, i: int) -> None:
            """An annotator's click: the record on screen is answered, the next one comes (people reach their
            quota, and then answer late what they held before)."""
            self.next(i)
            rid = self.on(i).current(self.user(i))
            if rid is not None:
                self.answer_one(i, rid, "submitted")

        def answer_one(self, i: int, rid: int, status: str) -> None:
            user = self.user(i)
            backend = self.on(i)
            before = self.facts()
            held = (rid, user) in before.leases
            previous = before.answers.get((rid, user))
            try:
                backend.answer(ResponseWrite(rid, user, status, {"label": "a"} if status == "submitted" else {},
                                             None, None, utcnow()))
            except QuotaFull:
                assert status == "submitted" and rid not in before.gold and not held and previous != "submitted"
                assert plan.quota is not None and before.counted(user) >= plan.quota
                assert self.facts().answers.get((rid, user)) == previous, "a refused answer is not stored"
                return
            assert backend.flush(30)
            if status == "submitted" and (previous == "skipped" or (previous is None and not held)):
                self.unleased[rid] += 1

        @rule(i=PEOPLE, one=st.booleans())
        def release(self, i: int, one: bool) -> None:
            user = self.user(i)
            f = self.facts()
            mine = sorted(r for (r, u) in f.leases if u == user)
            rid = mine[0] if one and mine else None
            self.on(i).release(user, rid)
            after = self.facts()
            assert all(u != user or (rid is not None and r != rid) for (r, u) in after.leases), "I4: release"

        @rule(data=st.data())
        def reopen(self, data: st.DataObject) -> None:
            rid = data.draw(st.sampled_from(self.facts().work()))
            self.replicas[0].reopen(rid, 1)
            assert self.replicas[0].flush(30)

        @rule(i=PEOPLE)
        def touch(self, i: int) -> None:
            self.on(i).touch(self.user(i))

        @rule(dt=st.sampled_from([0.5, 3.0, TTL / 2, TTL + 0.5]))
        def advance(self, dt: float) -> None:
            self.clock.t += dt

        @rule()
        def expire(self) -> None:
            self.replicas[1].expire()
            with psycopg.connect(url) as conn:
                stale = conn.execute("SELECT count(*) FROM leases WHERE expires_at < %s",
                                     [to_ts(self.clock())]).fetchone()[0]
            assert stale == 0, "I4: an expired lease survived the sweep"

        @invariant()
        def rows_hold_the_contract(self) -> None:
            f = self.facts()
            for rid, (extra, submitted, leased) in f.records.items():
                assert submitted == f.submitted(rid), f"records.submitted of {rid} is off"
                assert leased == f.all_leases[rid], f"records.leased of {rid} is off"
            for rid in f.work():
                assert f.submitted(rid) + len(f.holders(rid)) <= f.target(rid, overlap) + self.unleased[rid], \
                    f"I2: record {rid} over its overlap"
            work = f.work()
            complete = sum(f.complete(rid, overlap) for rid in work)
            partial = sum(0 < f.submitted(rid) and not f.complete(rid, overlap) for rid in work)
            counts = self.replicas[0].leases_db.counts(self.clock())
            assert (counts["records"], counts["complete"], counts["partial"], counts["untouched"],
                    counts["submissions"]) == \
                (len(work), complete, partial, len(work) - complete - partial, sum(map(f.submitted, work))), \
                "the team progress is off from the rows (gold counts nowhere)"
            if plan.quota is not None:
                for user in {u for _, u in f.answers} | {u for _, u in f.leases}:
                    assert f.counted(user) <= plan.quota, f"{user} passed the quota"

    return PgAssignment


@pytest.mark.parametrize("overlap,with_gold", [(1, False), (3, False), (2, True)])
def test_invariants_hold_under_random_interleavings(pg_url: str, overlap: int, with_gold: bool) -> None:
    PgStore(pg_url).close()  # the schema
    run = machine(pg_url, overlap, with_gold)
    run.TestCase.settings = settings(max_examples=12, stateful_step_count=40, deadline=None,
                                     suppress_health_check=list(HealthCheck))
    run.TestCase().runTest()


def work_until_done(backend: PgBackend, user: str, prefetch: int, shown: list[tuple[str, int]]) -> None:
    """One annotator: take, answer, repeat until told done (waiting means try again)."""
    while True:
        if prefetch:
            backend.lease_soft(user, prefetch)
        state = backend.next(user)
        if state.kind == "done":
            return
        if state.kind == "waiting":
            threading.Event().wait(0.01)
            continue
        shown.append((user, state.record_id))
        backend.answer(ResponseWrite(state.record_id, user, "submitted", {"label": "a"}, None, None, utcnow()))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_32_threads_on_three_replicas_no_record_over_overlap(pg_url: str, prefetch: int) -> None:
    overlap, n = 3, 60
    PgStore(pg_url).close()
    reset(pg_url, n)
    clock = Clock()
    replicas = [open_backend(pg_url, overlap, clock, f"r{k}") for k in range(3)]
    shown: list[tuple[str, int]] = []
    try:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: work_until_done(replicas[k % 3], f"t{k}", prefetch, shown), range(32)))
        for backend in replicas:
            assert backend.flush(60)
        f = Facts(pg_url, clock())
    finally:
        for backend in replicas:
            backend.close()
    assert len(shown) == len(set(shown)), "I1: someone was shown the same record twice"
    per_record = Counter(rid for (rid, _), s in f.answers.items() if s == "submitted")
    assert per_record == Counter({rid: overlap for rid in f.records}), "every record exactly at its overlap"
    assert len(f.answers) == len(shown) == n * overlap, "every response stored once"
    assert not f.leases and not f.all_leases, "no lease left behind"


def test_takeover_waiting_expiry_and_open_records_first(pg_url: str) -> None:
    """The named behaviours, one step at a time (overlap 1, three records)."""
    PgStore(pg_url).close()
    reset(pg_url, 3)
    clock = Clock()
    a, b = open_backend(pg_url, 1, clock, "a"), open_backend(pg_url, 1, clock, "b")
    try:
        assert a.lease_soft("ann", 2) == [1, 2]
        assert a.next("ann").record_id == 3  # a fresh record first; her own buffer keeps
        state = b.next("bob")  # nothing free: bob takes over an unseen buffered record (I5)
        assert state.kind == "ready" and state.record_id == 1
        assert not a.promote("ann", 1), "the taken record is gone from her buffer"
        assert a.promote("ann", 2)
        clock.t += 1
        waiting = b.next("cat")  # everything is on someone's screen now
        assert waiting.kind == "waiting" and waiting.held_by_others == 3
        assert waiting.frees_at == pytest.approx(clock.t - 1 + TTL)
        clock.t += TTL + 1  # everyone idle past the ttl: their leases go (I4)
        assert b.next("cat").kind == "ready"
        a.answer(ResponseWrite(2, "ann", "submitted", {"label": "a"}, None, None, utcnow()))
        assert a.flush(30)
        leases = b.leases()
        assert "ann" not in leases and [k for _, k in leases["cat"]] == ["hard"]
        assert b.release("cat") == 1
        assert b.next("dan").record_id == 1, "records already started come first, then the order"
    finally:
        a.close()
        b.close()


def test_an_answered_record_never_comes_back_before_its_commit(pg_url: str) -> None:
    """`next` may hand out a soft lease that also sits in the person's buffer; once answered, reaching
    it again in the buffer must not show it again, even while its commit (and lease row) is pending."""
    PgStore(pg_url).close()
    reset(pg_url, 2)
    clock = Clock()
    backend = open_backend(pg_url, 1, clock, "a")
    try:
        assert backend.lease_soft("ann", 1) == [1]  # in her buffer
        assert backend.lease_soft("bob", 1) == [2]
        assert backend.next("ann").record_id == 1  # nothing else left: her own soft lease goes on screen
        with psycopg.connect(pg_url) as blocker:  # hold the writer's commit back
            blocker.execute("LOCK TABLE responses IN EXCLUSIVE MODE")
            backend.answer(ResponseWrite(1, "ann", "submitted", {"label": "a"}, None, None, utcnow()))
            assert not backend.promote("ann", 1), "shown again while its commit was pending"
            assert backend.has_seen("ann", 1)
        assert backend.flush(30)
        assert not backend.promote("ann", 1)
        assert backend.next("ann").record_id == 2  # bob's unseen buffered record is taken over (I5)
    finally:
        backend.close()


def test_a_record_locked_by_a_commit_with_a_slot_left_is_not_a_wait_for_the_lease(pg_url: str) -> None:
    """Overlap 2: ann holds the record and the writer's commit of an answer has its row locked for a moment.
    bob's hand-out skips the locked row; he must look again, not be told to wait until ann's lease ends
    (the suite once saw "waiting" for a free slot, a person idle while work remained)."""
    PgStore(pg_url).close()
    (rid,), _ = reset(pg_url, 1)
    clock = Clock()
    backend = open_backend(pg_url, 2, clock, "a")
    try:
        assert backend.next("ann") == QueueState("ready", rid)
        with psycopg.connect(pg_url) as commit:  # the row lock a commit takes, held through every attempt
            commit.execute("SELECT id FROM records WHERE id = %s FOR UPDATE", [rid])
            state = backend.next("bob")
            assert state.kind == "waiting" and state.frees_at == clock.t + 1.0, state  # not ann's lease: TTL
        with psycopg.connect(pg_url) as commit, ThreadPoolExecutor(1) as pool:  # the lock goes a moment later
            commit.execute("SELECT id FROM records WHERE id = %s FOR UPDATE", [rid])
            asked = pool.submit(backend.next, "cat")
            time.sleep(0.01)
            commit.rollback()
            assert asked.result(10) == QueueState("ready", rid)
    finally:
        backend.close()


def test_records_added_after_start_take_the_task_overlap_and_the_hand_out_skips_completed_ones(pg_url: str) -> None:
    """The overlap lives on each row (for the partial indexes): rows ingested while replicas run (the
    CLI) get the running task's overlap, not the column's initial 1; completed rows leave the index."""
    PgStore(pg_url).close()
    reset(pg_url, 2)
    clock = Clock()
    backend = open_backend(pg_url, 3, clock, "a")
    try:
        backend.store.add_records([NewRecord("late", "late.png", "1" * 64, 8, 8, 100)])
        with psycopg.connect(pg_url) as conn:
            assert {o for (o,) in conn.execute("SELECT overlap FROM records")} == {3}
        late = max(backend.store.record_ids())
        for person in ("ann", "bob", "cat"):
            backend.release(person)
            got = []
            while (state := backend.next(person)).kind == "ready" and state.record_id not in got:
                got.append(state.record_id)
                backend.answer(ResponseWrite(state.record_id, person, "submitted", {"label": "a"}, None, None, utcnow()))
            assert late in got, (person, got)
        assert backend.flush(30)
        assert backend.next("dan").kind == "done", "each record has its 3 answers"
        with psycopg.connect(pg_url) as conn:
            plan = "\n".join(r for (r,) in conn.execute(
                "EXPLAIN SELECT id FROM records r WHERE r.submitted + r.leased < r.overlap + r.extra_answers "
                "ORDER BY r.touched DESC, r.rank, r.id LIMIT 1"))
            assert "records_open" in plan, plan
    finally:
        backend.close()


def test_a_replica_starting_with_the_same_overlap_does_not_lock_out_the_others(pg_url: str) -> None:
    """Changing the overlap column's default takes an exclusive table lock; a replica starting with the
    overlap already there must not take it, or it would wait behind (and stall) the serving replicas."""
    PgStore(pg_url).close()
    reset(pg_url, 2)
    clock = Clock()
    serving = open_backend(pg_url, 2, clock, "a")
    with psycopg.connect(pg_url) as busy:  # a transaction of a serving replica, still open
        busy.execute("SELECT id FROM records FOR UPDATE")
        started = threading.Thread(target=lambda: open_backend(pg_url, 2, clock, "b").close(), daemon=True)
        started.start()
        started.join(10)
        assert not started.is_alive(), "a replica's start waited behind the serving replica's transaction"
    serving.close()
