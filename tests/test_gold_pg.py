"""Gold records, warm-up and quotas on PostgreSQL replicas (issue 17): shared state, not one replica's memory.

Two or three `PgBackend`s on one database stand for replicas; the truth is
read from the rows. Time is simulated.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg

from annotator.gold import GoldPlan
from annotator.model import GoldHandout, NewRecord, ResponseWrite, utcnow
from annotator.pg_backend import PgBackend
from annotator.pg_leases import QUOTA_OVERRIDES_MAX_AGE
from annotator.pg_store import PgStore

TTL = 60.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t


def setup(url: str, n: int, n_gold: int) -> tuple[list[int], list[int]]:
    """n records of the order and n_gold gold records after them: (order, gold)."""
    store = PgStore(url)
    try:
        ids = store.add_records([NewRecord(f"r{i:04d}", f"r{i:04d}.png", "0" * 64, 8, 8, 100)
                                 for i in range(n + n_gold)])
    finally:
        store.close()
    return ids[:n], ids[n:]


def replica(url: str, order: list[int], gold: list[int], plan: GoldPlan, clock: Clock, name: str,
            overlap: int = 1) -> PgBackend:
    return PgBackend(PgStore(url), order, overlap, TTL, replica=name, clock=clock, counts_every=0, gold=gold,
                     plan=plan)


def answer(backend: PgBackend, user: str, rid: int) -> None:
    _, ack = backend.answer(ResponseWrite(rid, user, "submitted", {"label": "a"}, None, None, utcnow(), first=True))
    ack.result(30)


def work(backends: list[PgBackend], user: str, limit: int = 1000) -> list[int]:
    """One person answering at once whatever they are handed, each call on the next replica."""
    got = []
    for k in range(limit):
        backend = backends[k % len(backends)]
        state = backend.next(user)
        if state.kind != "ready":
            break
        got.append(state.record_id)
        answer(backend, user, state.record_id)
    return got


def test_gold_once_per_person_across_replicas_and_never_counted(pg_url: str) -> None:
    order, gold = setup(pg_url, 30, 8)
    clock = Clock()
    plan = GoldPlan(rate=0.2, warmup=2)
    a, b = (replica(pg_url, order, gold, plan, clock, name, overlap=2) for name in "ab")
    try:
        got = work([a, b], "ann")
        assert len(got) == len(set(got)), "someone was handed the same record twice"
        golds = [r for r in got if r in gold]
        assert set(got[:2]) <= set(gold), "the warm-up comes first"
        assert sorted(r for r in got if r not in gold) == order
        assert 0.15 <= len(golds) / len(got) <= 0.3
        assert a.next("ann").kind == "done"
        c = a.counts(0)
        assert (c["records"], c["submissions"], c["complete"], c["leased"]) == (30, 30, 0, 0)
        assert a.remaining_for("ann") == 0 and a.remaining_for("bob") == 30
        again = work([b, a], "bob")
        assert sorted(r for r in again if r not in gold) == order
        assert a.counts(0)["complete"] == 30
    finally:
        a.close()
        b.close()


def test_gold_in_buffers_of_two_replicas_is_never_handed_twice(pg_url: str) -> None:
    order, gold = setup(pg_url, 40, 6)
    clock = Clock()
    a, b = (replica(pg_url, order, gold, GoldPlan(rate=0.5, warmup=3), clock, name) for name in "ab")
    try:
        buffered = a.lease_soft("ann", 4) + b.lease_soft("ann", 4)
        assert len(buffered) == len(set(buffered)) == 8
        assert len([r for r in buffered if r in gold]) >= 3
        for rid in buffered:
            assert a.promote("ann", rid)
            answer(a, "ann", rid)
        rest = work([b, a], "ann")
        golds = [r for r in buffered + rest if r in gold]
        assert sorted(golds) == sorted(gold), "each gold record once, all of them"
    finally:
        a.close()
        b.close()


def test_a_gold_lease_that_lapses_unanswered_never_comes_back(pg_url: str) -> None:
    order, gold = setup(pg_url, 20, 3)
    clock = Clock()
    plan = GoldPlan(warmup=10)
    a, b = (replica(pg_url, order, gold, plan, clock, name) for name in "ab")
    try:
        first = a.next("ann").record_id
        assert first in gold
        clock.t += TTL + 1  # ann walked away: the lease lapses unanswered; gold is still due, another one
        second = b.next("ann").record_id
        assert second in gold and second != first
        answer(b, "ann", second)
        third = a.lease_soft("ann", 1)  # in the buffer, and the session ends before it is shown
        assert third and third[0] in set(gold) - {first, second}
        a.release("ann")
        rest = work([a, b], "ann", limit=5)
        assert rest and not set(rest) & set(gold), "every gold record was handed to ann once"
    finally:
        a.close()
        b.close()
    c = replica(pg_url, order, gold, plan, clock, "c")  # a replica started later: the hand-outs are shared
    try:
        clock.t += TTL + 1
        assert not set(work([c], "ann")) & set(gold)
        assert c.next("ann").kind == "done"
        assert sorted(work([c], "bob")) == sorted(gold), "the lapsed gold records stay open to others"
        handed = {("ann", r) for r in gold} | {("bob", r) for r in gold}
        assert sorted(c.store.gold_handouts()) == sorted(handed)
        c.store.apply([GoldHandout("ann", gold[0]), GoldHandout("ann", gold[0])])  # the op means the same here
        assert sorted(c.store.gold_handouts()) == sorted(handed)
    finally:
        c.close()


def test_gold_share_over_many_people_is_the_rate(pg_url: str) -> None:
    order, gold = setup(pg_url, 300, 40)
    clock = Clock()
    a, b = (replica(pg_url, order, gold, GoldPlan(rate=0.1), clock, name, overlap=50) for name in "ab")
    try:
        shares = []
        for k in range(40):
            got = work([a, b], f"p{k}", limit=40)
            shares.append(sum(r in gold for r in got) / len(got))
        assert abs(sum(shares) / len(shares) - 0.1) < 0.025
    finally:
        a.close()
        b.close()


def test_quota_holds_for_32_threads_of_one_person_on_three_replicas(pg_url: str) -> None:
    quota = 20
    order, gold = setup(pg_url, 200, 5)
    clock = Clock()
    replicas = [replica(pg_url, order, gold, GoldPlan(rate=0.2, quota=quota), clock, f"r{k}") for k in range(3)]
    handed: list[int] = []

    def tab(k: int) -> None:
        backend = replicas[k % 3]
        for _ in range(15):
            if k % 2:
                ids = backend.lease_soft("same", 2)
            else:
                state = backend.next("same")
                ids = [state.record_id] if state.kind == "ready" else []
            for rid in ids:
                if backend.promote("same", rid):
                    handed.append(rid)
                    answer(backend, "same", rid)

    try:
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(tab, range(32)))
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT x.record_id, r.gold FROM responses x JOIN records r ON r.id = x.record_id "
                                "WHERE x.user_id = 'same' AND x.status = 'submitted'").fetchall()
        assert len([r for r, g in rows if not g]) == quota
        # two tabs of one person may both show what the person holds (the service's tickets count it once);
        # what matters is that every record the person answered was handed under the quota
        assert {r for r, _ in rows} == set(handed)
        assert all(b.next("same").kind == "quota" for b in replicas)
        assert replicas[0].counts(0)["submissions"] == quota
    finally:
        for backend in replicas:
            backend.close()


def test_an_admins_quota_override_is_seen_by_every_replica(pg_url: str) -> None:
    order, gold = setup(pg_url, 20, 0)
    clock = Clock()
    a, b = (replica(pg_url, order, gold, GoldPlan(quota=2), clock, name) for name in "ab")
    try:
        assert len(work([a, b], "ann")) == 2
        assert b.next("ann").kind == "quota"
        a.set_quota("ann", 5)
        assert b.next("ann").kind == "quota", "b still uses the overrides it read (no read per hand-out)"
        assert len(a.lease_soft("ann", 1)) == 1, "at once on the replica that set it"
        clock.t += QUOTA_OVERRIDES_MAX_AGE
        assert len(work([b], "ann")) == 3, "within the stated bound on every replica"
        a.set_quota("ann", None)
        clock.t += QUOTA_OVERRIDES_MAX_AGE
        assert len(work([b, a], "ann")) == 15
        assert b.next("ann").kind == "done"
        assert len(work([a], "bob")) == 0  # nothing left for anyone: done, not quota
        assert a.next("bob").kind == "done"
    finally:
        a.close()
        b.close()


def test_a_hand_out_does_not_read_the_quota_overrides(pg_url: str) -> None:
    """The overrides come from the replica's copy: a hand-out goes through while the quotas table is locked."""
    order, gold = setup(pg_url, 20, 0)
    clock = Clock()
    a = replica(pg_url, order, gold, GoldPlan(quota=3), clock, "a")
    try:
        a.set_quota("bob", 1)
        assert a.next("ann").kind == "ready"  # reads the overrides once
        with psycopg.connect(pg_url) as locker:
            locker.execute("LOCK TABLE quotas IN ACCESS EXCLUSIVE MODE")  # until this transaction ends
            pool = ThreadPoolExecutor(1)
            try:
                got = pool.submit(lambda: [a.lease_soft("ann", 2), a.next("bob").kind]).result(timeout=10)
            finally:
                locker.rollback()  # a hand-out that waited for the table goes on, and the test fails above
                pool.shutdown()
        assert len(got[0]) == 2 and got[1] == "ready"
        answer(a, "bob", a.current("bob"))  # type: ignore[arg-type]
        assert a.next("bob").kind == "quota", "bob's override of 1"
    finally:
        a.close()
