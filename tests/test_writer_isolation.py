"""The writer isolates what can never commit: one bad op is refused to its owner, everything else commits.

Today's failure (issue 11): one answer whose comment cannot be encoded
failed every group commit, and the writer retried the whole batch forever,
so nobody's answers were saved any more. Now a batch that fails with a data
error is split until the ops that fail on their own are found; exactly those
get WriteRejected, the rest commits in the same round, and transient errors
(I/O, a lost connection) are still retried as a whole.

The property test runs on real DuckDB and real PostgreSQL stores.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import wait
from typing import Callable

import duckdb
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storehelpers import any_store, engine, make_store, rows  # noqa: F401 - fixtures

from annotator.model import AuditWrite, ResponseWrite, UserSeen, decode_answer, utcnow
from annotator.pg_store import PgStore
from annotator.store_protocol import StoreProtocol
from annotator.writer import Writer, WriterClosedError, WriteRejected


class BadOp(ValueError):
    pass


def fake_apply(log: list[list[int]], transient: list[int] | None = None) -> Callable[[list[int]], None]:
    """Ops are ints: a negative one fails any batch holding it (a data error); `transient` fails calls by number."""
    calls = itertools.count(1)

    def apply(ops: list[int]) -> None:
        n = next(calls)
        if transient and n in transient:
            raise OSError(f"disk unavailable (call {n})")
        if any(op < 0 for op in ops):
            raise BadOp(f"cannot store {min(ops)}")
        log.append(list(ops))
    return apply


def test_one_bad_op_is_refused_and_the_rest_commits_in_the_same_round() -> None:
    batches: list[list[int]] = []
    gate = threading.Event()
    inner = fake_apply(batches)

    def apply(ops: list[int]) -> None:
        assert gate.wait(10)
        inner(ops)

    writer = Writer(apply, refuses=lambda e: isinstance(e, BadOp), retry_initial=60.0)  # a retry would hang
    writer.start()
    try:
        first = writer.put(0)  # holds the commit while the batch below queues
        acks = {op: writer.put(op) for op in [1, 2, 3, -4, 5, 6, 7, 8, 9]}
        gate.set()
        assert not wait([first, *acks.values()], timeout=10).not_done
        bad = acks.pop(-4)
        with pytest.raises(WriteRejected) as refused:
            bad.result()
        assert refused.value.op == -4 and isinstance(refused.value.cause, BadOp)
        assert "could not be saved" in str(refused.value)
        assert all(a.result() is None for a in acks.values())
        written = [op for batch in batches for op in batch]
        assert sorted(written) == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # each once, the bad one never
        health = writer.health()
        assert health.rejected == 1 and health.failed_commits == 0 and not health.retrying
        assert writer.flush(5)
    finally:
        writer.close()


def test_transient_errors_are_still_retried_as_a_whole() -> None:
    batches: list[list[int]] = []
    writer = Writer(fake_apply(batches, transient=[1, 2]), refuses=lambda e: isinstance(e, BadOp),
                    retry_initial=0.01, retry_max=0.02)
    with writer:
        acks = [writer.put(i) for i in range(5)]
        assert not wait(acks, timeout=10).not_done
        assert all(a.exception() is None for a in acks)
        assert writer.health().failed_commits == 2 and writer.health().rejected == 0
    assert [op for b in batches for op in b] == list(range(5))


def test_default_refuses_nothing_so_data_errors_keep_todays_retry() -> None:
    batches: list[list[int]] = []
    writer = Writer(fake_apply(batches), retry_initial=0.01, retry_max=0.02, give_up_after=0.2)
    writer.start()
    ack = writer.put(-1)
    time.sleep(0.1)
    assert not ack.done() and writer.health().retrying
    writer.close()
    with pytest.raises(WriterClosedError):  # not refused, not acknowledged: the app stopped without it
        ack.result(1)


# --- the property, against real stores --------------------------------------------------------

_example = itertools.count()


def good_response(n: int, i: int) -> ResponseWrite:
    return ResponseWrite(i + 1, f"x{n}-u{i}", "submitted", {"label": f"label{i % 3}"}, f"comment {i}", 10, utcnow(),
                         first=True)


def bad_ops(engine: str, n: int, i: int) -> list[object]:
    """Ops that fail on their own, whatever else is in the batch, on this engine."""
    ops: list[object] = [
        ResponseWrite(i + 1, f"x{n}-bad{i}", "submitted", {"label": "a"}, "lone \ud800 surrogate", 10, utcnow(), first=True),
        ResponseWrite(2**31 + i, f"x{n}-big{i}", "submitted", {"label": "a"}, None, 10, utcnow(), first=True),  # not int4
        AuditWrite(f"x{n}-admin\udfff", "release_user", {"user": "b"}, utcnow()),
    ]
    if engine == "postgresql":
        ops.append(ResponseWrite(i + 1, f"x{n}-nul{i}", "submitted", {"label": "a"}, "nul \x00 byte", 10, utcnow(),
                                 first=True))
    return ops


class Flaky:
    """store.apply, but the calls whose numbers are in `fail` raise a transient error before touching the store."""

    def __init__(self, store: StoreProtocol, fail: set[int]) -> None:
        self.store, self.fail, self.calls = store, fail, 0
        self.error = duckdb.IOException if not isinstance(store, PgStore) else psycopg.OperationalError

    def __call__(self, ops) -> None:
        self.calls += 1
        if self.calls in self.fail:
            raise self.error(f"injected transient failure (call {self.calls})")
        self.store.apply(ops)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["good", "good", "good", "audit", "seen", "bad"]), min_size=1, max_size=40),
       bad_pick=st.randoms(use_true_random=False),
       transient=st.sets(st.integers(min_value=1, max_value=12), max_size=4))
def test_random_batches_every_good_op_once_every_bad_op_refused(any_store: StoreProtocol, engine: str,  # noqa: F811
                                                                 kinds: list[str], bad_pick, transient: set[int]
                                                                 ) -> None:
    n = next(_example)
    ops: list[object] = []
    for i, kind in enumerate(kinds):
        if kind == "good":
            ops.append(good_response(n, i))
        elif kind == "audit":
            ops.append(AuditWrite(f"x{n}-admin{i}", "reopen", {"record_id": i}, utcnow()))
        elif kind == "seen":
            ops.append(UserSeen(f"x{n}-seen{i}", utcnow()))
        else:
            ops.append(bad_pick.choice(bad_ops(engine, n, i)))
    bad = [op for op, kind in zip(ops, kinds) if kind == "bad"]
    flaky = Flaky(any_store, transient)
    gate = threading.Event()

    def apply(batch) -> None:
        assert gate.wait(10)
        flaky(batch)

    writer = Writer(apply, refuses=any_store.refuses, retry_initial=0.001, retry_max=0.005)
    writer.start()
    try:
        acks = [writer.put(op) for op in ops]  # all queued before the first commit: one batch
        gate.set()
        assert not wait(acks, timeout=60).not_done, "an op was never resolved"
        health = writer.health()
        assert health.rejected == len(bad)
        assert health.failed_commits == len({c for c in transient if c <= flaky.calls})  # each one retried
    finally:
        writer.close()
    for op, ack in zip(ops, acks):
        if any(op is b for b in bad):
            assert isinstance(ack.exception(), WriteRejected), f"bad op acknowledged or not refused: {op!r}"
        else:
            assert ack.exception() is None, f"good op refused: {op!r}: {ack.exception()!r}"

    answers = {(r, u): (decode_answer(a), c) for r, u, a, c in rows(
        any_store, f"SELECT record_id, user_id, answer, comment FROM responses WHERE user_id LIKE 'x{n}-%'")}
    good = [op for op in ops if isinstance(op, ResponseWrite) and not any(op is b for b in bad)]
    assert answers == {(op.record_id, op.user_id): (op.answer, op.comment) for op in good}
    # exactly once: a second commit of a first answer would have put the first one in the history,
    # and the audit table is append-only
    assert rows(any_store, f"SELECT count(*) FROM response_history WHERE user_id LIKE 'x{n}-%'") == [(0,)]
    audits = sorted(a for (a,) in rows(any_store, f"SELECT actor FROM audit WHERE actor LIKE 'x{n}-%'"))
    assert audits == sorted(op.actor for op in ops if isinstance(op, AuditWrite) and not any(op is b for b in bad))
    seen = {u for (u,) in rows(any_store, f"SELECT user_id FROM users WHERE user_id LIKE 'x{n}-%'")}
    assert seen == {op.user_id for op in ops if isinstance(op, UserSeen)}


# --- the owner is told, the record is theirs to answer again; nobody else notices ---------------

from test_service import ALICE, BOB, opener  # noqa: E402,F401 - the fixture runs each test on both engines

from annotator.scheduler import Scheduler  # noqa: E402


def poison(rt, marker: str = "POISON", gate: threading.Event | None = None) -> None:
    """From now on an answer whose comment is `marker` fails every batch holding it with a data error
    (as text a store cannot encode did, before the edge check refused it), once `gate` is open."""
    real = rt.backend.writer._apply

    def apply(ops) -> None:
        if any(isinstance(op, ResponseWrite) and op.comment == marker for op in ops):
            assert gate is None or gate.wait(10)
            raise ValueError("injected data error")
        real(ops)
    rt.backend.writer._apply = apply


def test_a_refused_answer_is_told_to_its_owner_and_the_record_comes_back(opener) -> None:  # noqa: F811
    rt = opener(records=6, overlap=2)  # the record stays open to alice even if bob takes it meanwhile
    svc = rt.service
    gate = threading.Event()
    poison(rt, gate=gate)
    shown = svc.next(ALICE).record
    assert svc.submit(ALICE, shown.ticket, ["circle"], "POISON").saved.pending == 1
    other = svc.next(BOB).record
    svc.submit(BOB, other.ticket, ["square"])
    gate.set()
    assert svc.wait_saved(BOB, 5).text == "All answers saved"
    svc.progress(ALICE)  # waits for her commits too, but does not use up the refusal
    status = svc.wait_saved(ALICE, 5)
    assert status.pending == 0 and len(status.rejected) == 1
    assert status.text.startswith("This answer could not be saved") and "Answer that record again" in status.text
    assert svc.wait_saved(ALICE, 1).rejected == ()
    assert rt.store.response(shown.record_id, "alice") is None
    assert rt.store.response(other.record_id, "bob").answer == {"label": "square"}
    assert rt.backend.counts(0.0)["submissions"] == 1  # the refused answer is not counted as done
    assert svc.progress(ALICE).mine_total == 0
    # the record is open to alice again: skipping through her queue reaches it, and this time it is saved
    view = svc.next(ALICE)
    for _ in range(8):
        if view.record.record_id == shown.record_id:
            break
        view = svc.skip(ALICE, view.record.ticket)
    assert view.record.record_id == shown.record_id and not view.record.editing
    svc.submit(ALICE, view.record.ticket, ["triangle"], "fine now")
    assert svc.wait_saved(ALICE, 5).text == "All answers saved"
    assert rt.store.response(shown.record_id, "alice").answer == {"label": "triangle"}
    assert rt.backend.writer_health().rejected == 1 and not rt.backend.writer_health().retrying


def test_scheduler_correct_puts_a_counted_answer_back() -> None:
    s = Scheduler(range(1, 4), overlap=1, lease_ttl=60)
    assert s.next("ann", now=0).record_id == 1
    assert s.submit("ann", 1, now=1) == "new"
    assert s.counts()["complete"] == 1 and s.remaining_for("ann") == 2
    s.correct("ann", 1, None)  # its write was refused
    assert s.answered("ann", 1) is None and not s.has_seen("ann", 1)
    assert s.counts()["complete"] == 0 and s.counts()["submissions"] == 0 and s.remaining_for("ann") == 3
    assert s.next("ann", now=2).record_id == 1  # open to her again, first in line
    s.skip("ann", 1, now=3)
    s.correct("ann", 1, "submitted")  # an earlier submission is what the store holds
    assert s.answered("ann", 1) == "submitted" and s.counts() | {"leased": 0} == {
        "records": 3, "complete": 1, "partial": 0, "untouched": 2, "leased": 0, "submissions": 1, "skips": 0}


def test_an_admin_action_whose_audit_entry_is_refused_says_so(opener) -> None:  # noqa: F811
    from annotator import admin_actions
    from annotator.auth import Identity

    rt = opener()
    real = rt.backend.writer._apply

    def apply(ops) -> None:
        if any(isinstance(op, AuditWrite) for op in ops):
            raise ValueError("injected data error")
        real(ops)
    rt.backend.writer._apply = apply
    result = admin_actions.release_user(rt.admin_deps(), Identity("boss", True), "bob")
    assert not result.audited and "The audit entry could not be saved: injected data error" in result.message
    assert rt.store.audit_log() == []
