"""A late answer never takes a person past their quota (issue 17), the same on both engines.

Every record handed out counts in the quota while held, so an answer on a live lease always fits. An
answer without one (the lease expired, or a skip turned into an answer) is kept while the person's
answers plus the records they hold are below their quota, and refused (gold.QuotaFull, nothing stored)
once they reach it; skips, edits and gold answers are never refused. Real backends: the in-memory
scheduler with a DuckDB writer, and PostgreSQL replicas (leases as rows) on one database.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
from apphelpers import start_app
from clients import ApiUser, add_users, make_images, write_task
from storehelpers import engine  # noqa: F401 - fixture

from annotator.backend import LocalBackend, WriterBackend
from annotator.gold import GoldPlan, QuotaFull
from annotator.model import NewRecord, ResponseWrite, utcnow
from annotator.pg_backend import PgBackend
from annotator.pg_store import PgStore
from annotator.store import Store

PG_TTL = 60.0
LOCAL_TTL = 0.4  # the scheduler reads the monotonic clock: its leases expire for real


class Clock:
    """PostgreSQL replicas' time, moved by the test."""

    def __init__(self) -> None:
        self.t = 1_900_000_000.0

    def __call__(self) -> float:
        return self.t


class Engine:
    """Backends of one engine on one store, and a way to let every lease expire."""

    def __init__(self, engine: str, tmp_path: Path, url: str | None) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.db = url
        self.clock = Clock()
        self.opened: list[WriterBackend] = []

    def records(self, n: int) -> list[int]:
        store = self._store()
        try:
            return store.add_records([NewRecord(f"r{i:03d}", f"r{i:03d}.png", "0" * 64, 8, 8, 100)
                                      for i in range(n)])
        finally:
            if self.engine == "postgresql":
                store.close()
            else:
                self._duck = store

    def _store(self) -> Store | PgStore:
        if self.db is not None:
            return PgStore(self.db)
        return Store(self.tmp_path / "a.duckdb")

    def backend(self, order: list[int], plan: GoldPlan, gold: list[int] = (), name: str = "a") -> WriterBackend:
        """One more backend (a replica on PostgreSQL; DuckDB has one owner, so only one)."""
        if self.engine == "postgresql":
            made: WriterBackend = PgBackend(self._store(), order, 1, PG_TTL, replica=name, clock=self.clock,
                                            counts_every=0, gold=gold, plan=plan)
        else:
            assert not self.opened, "one DuckDB file has one owner"
            made = LocalBackend(self._duck, order, 1, LOCAL_TTL, gold=gold, plan=plan)
        self.opened.append(made)
        return made

    def expire(self) -> None:
        """Every lease held now expires."""
        if self.engine == "postgresql":
            self.clock.t += PG_TTL + 1
        else:
            time.sleep(LOCAL_TTL * 1.5)

    def close(self) -> None:
        for b in self.opened:
            b.close()


@pytest.fixture
def eng(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Engine]:
    # taken here, not in the test, so that the database outlives the backends closed below
    made = Engine(engine, tmp_path, request.getfixturevalue("pg_url") if engine == "postgresql" else None)
    yield made
    made.close()


def say(backend: WriterBackend, user: str, rid: int, status: str = "submitted") -> str:
    """Answer and wait for the commit; the outcome ("new", "edit", "late")."""
    outcome, ack = backend.answer(ResponseWrite(rid, user, status, {"label": "a"} if status == "submitted" else {},
                                                None, None, utcnow()))
    ack.result(30)
    return outcome


def hand_out(backend: WriterBackend, user: str) -> int:
    state = backend.next(user)
    assert state.kind == "ready", state
    return state.record_id  # type: ignore[return-value]


def submitted(backend: WriterBackend, user: str) -> list[int]:
    return sorted(r.record_id for r in backend.user_responses(user) if r.status == "submitted")


def test_a_late_answer_past_the_quota_is_refused_and_nothing_is_stored(eng: Engine) -> None:
    order = eng.records(6)
    backend = eng.backend(order, GoldPlan(quota=2))
    held = hand_out(backend, "ann")
    eng.expire()  # ann walked away; her record is no longer held for her
    assert hand_out(backend, "bob") == held, "open records first: bob takes it over"
    first = hand_out(backend, "ann")
    assert say(backend, "ann", first) == "new"
    second = hand_out(backend, "ann")
    assert say(backend, "ann", second) == "new"
    assert backend.next("ann").kind == "quota"
    with pytest.raises(QuotaFull):
        say(backend, "ann", held)
    assert submitted(backend, "ann") == sorted([first, second]), "the quota holds: nothing was stored"
    assert not backend.has_seen("ann", held)
    assert say(backend, "ann", held, "skipped") == "late", "a skip is no answer: it always fits"
    with pytest.raises(QuotaFull):
        say(backend, "ann", held)  # ... and turning it into an answer would pass the quota
    assert say(backend, "ann", first) == "edit", "changing an answer adds nothing: never refused"
    assert submitted(backend, "ann") == sorted([first, second])
    assert backend.counts(0)["submissions"] == 2


def test_a_late_answer_within_the_quota_is_kept(eng: Engine) -> None:
    order = eng.records(6)
    backend = eng.backend(order, GoldPlan(quota=3))
    held = hand_out(backend, "ann")
    eng.expire()
    assert hand_out(backend, "bob") == held
    other = hand_out(backend, "ann")
    assert say(backend, "ann", held) == "late", "her quota has room: the late answer is stored"
    assert say(backend, "ann", other) == "new", "the record she holds still fits"
    assert backend.next("ann").kind == "ready"
    assert submitted(backend, "ann") == sorted([held, other])


def test_gold_late_answers_never_count_toward_the_quota(eng: Engine) -> None:
    ids = eng.records(8)
    order, gold = ids[:6], ids[6:]
    backend = eng.backend(order, GoldPlan(rate=0.0, quota=1), gold)
    assert say(backend, "ann", hand_out(backend, "ann")) == "new"
    assert backend.next("ann").kind == "quota"
    assert say(backend, "ann", gold[0]) == "late", "a gold answer is no work done: it always fits"


def test_late_answers_under_32_threads_never_pass_the_quota(eng: Engine) -> None:
    quota = 5
    order = eng.records(80)
    backends = [eng.backend(order, GoldPlan(quota=quota), name=f"r{k}")
                for k in range(3 if eng.engine == "postgresql" else 1)]
    start = threading.Barrier(32)
    refused: list[int] = []

    def tab(k: int) -> None:
        backend = backends[k % len(backends)]
        rng = random.Random(k)
        start.wait()
        for _ in range(6):
            if k % 2:  # a page answering what it is handed
                state = backend.next("same")
                rid = state.record_id if state.kind == "ready" else None
            else:  # an old tab answering records whose leases are long gone
                rid = rng.choice(order)
            if rid is None:
                continue
            try:
                backend.answer(ResponseWrite(rid, "same", "submitted", {"label": "a"}, None, None,
                                             utcnow()))[1].result(30)
            except QuotaFull:
                refused.append(rid)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(tab, range(32)))
    for b in backends:
        b.flush(30)
    stored = submitted(backends[0], "same")
    assert len(stored) == quota, f"{len(stored)} answers stored for a quota of {quota}"
    assert refused, "the old tabs' answers past the quota were refused"
    assert backends[0].next("same").kind == "quota"


LEASE_S = 2  # short, so the test waits little; long enough for one request on a loaded machine


def test_the_page_is_told_kindly_and_the_quota_holds(engine: str, tmp_path: Path,
                                                      request: pytest.FixtureRequest) -> None:
    """Through the real server, on either engine: a late answer past the quota gets the quota view and a kind
    message."""
    make_images(tmp_path / "source", 8)
    task = write_task(tmp_path / "task.toml", overlap=1)
    task.write_text("max_answers_per_person = 1\n" + task.read_text())
    passwords = add_users(tmp_path / "passwords.json", ["ann", "bob"])
    data = tmp_path / "data"
    data.mkdir()
    server = start_app(data, env={"AUTH_MODE": "password", "PASSWORD_FILE": str(tmp_path / "passwords.json"),
                                  "SOURCE_DIR": str(tmp_path / "source"), "TASK_FILE": str(task),
                                  "EXPORT_REPO": "", "LEASE_TTL": str(LEASE_S),
                                  **({"STORE_URL": request.getfixturevalue("pg_url")} if engine == "postgresql"
                                     else {})})
    try:
        ann = ApiUser.with_password(server.url, "ann", passwords["ann"])
        bob = ApiUser.with_password(server.url, "bob", passwords["bob"])
        # a second tab, signed in first: between bob's hand-out and hers only one request, so bob's lease
        # cannot expire in between on a slow machine (then she would be handed his record)
        ann2 = ApiUser.with_password(server.url, "ann", passwords["ann"])
        old = ann.click("next")["item"]
        time.sleep(LEASE_S + 0.6)  # her lease on the record on her screen expires ...
        assert bob.click("next")["item"]["record_id"] == old["record_id"]  # ... and bob takes it over
        fresh = ann2.click("next")["item"]
        assert fresh["record_id"] != old["record_id"]
        done = ann2.click("answer", ticket=fresh["record"], answer=["circle"])
        assert done["state"] == "quota"
        late = ann.click("answer", ticket=old["record"], answer=["square"])
        assert late["state"] == "quota"
        assert "not saved" in late["message"] and late["message"].startswith("You have given your 1 answers")
        assert ann.progress()["mine_total"] == 1
    finally:
        server.stop()
