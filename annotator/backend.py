"""The one interface the service uses for assignment and storage.

`LocalBackend` is the single-process implementation: the in-memory scheduler
decides who gets what, the DuckDB store keeps the facts, and the writer thread
commits them in groups. A PostgreSQL backend for several replicas implements
the same protocol with leases in the database.

Both hand the writer the store's `refuses` (which errors are about the data,
so the op is refused to its owner instead of retried) and, given a
`recovery_dir` (DATA_DIR), a spill to a recovery file for what storage did
not take before the app stopped (recovery.py).
"""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from annotator import recovery
from annotator.gold import GoldPlan
from annotator.model import (Answer, AuditWrite, FinalWrite, GoldHandout, QueueState, Record, ReopenWrite, Response,
                             ResponseWrite, SubmitOutcome, UserSeen, WriteOp, utcnow)
from annotator.scheduler import Scheduler
from annotator.store_protocol import StoreProtocol
from annotator.writer import Writer, WriterClosedError, WriterHealth, fail, resolve


class WorkBackend(Protocol):
    """What the service needs from assignment and storage, whatever the engine."""

    def next(self, user: str) -> QueueState: ...
    def lease_soft(self, user: str, n: int) -> list[int]: ...
    def promote(self, user: str, record_id: int) -> bool: ...
    def current(self, user: str) -> int | None: ...
    def has_seen(self, user: str, record_id: int) -> bool: ...
    def touch(self, user: str) -> None: ...
    def release(self, user: str, record_id: int | None = None) -> int: ...
    def expire(self) -> int: ...
    def answer(self, write: ResponseWrite) -> tuple[SubmitOutcome, Future[None]]: ...
    def user_seen(self, user: str) -> Future[None]: ...
    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> Future[None]: ...
    def reopen(self, record_id: int, extra: int) -> Future[None]: ...
    def set_final(self, record_id: int, answer: Answer | None, admin: str) -> Future[None]: ...
    def records(self, record_ids: Sequence[int]) -> dict[int, Record]: ...
    def user_responses(self, user: str) -> list[Response]: ...
    def counts(self, max_age: float | None = None) -> dict[str, int]: ...
    def remaining_for(self, user: str) -> int: ...
    def set_quota(self, user: str, quota: int | None) -> None: ...
    def leases(self) -> dict[str, list[tuple[int, str]]]: ...
    def writer_health(self) -> WriterHealth: ...
    def write_failure(self) -> str | None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...


def make_writer(store: StoreProtocol, recovery_dir: Path | None) -> Writer[WriteOp]:
    """The group-commit writer of a backend: data errors refused by the store's rule, and what is not
    committed at close kept in a recovery file under `recovery_dir` (None: logged as lost)."""
    spill: Callable[[list[WriteOp]], str] | None = None
    if recovery_dir is not None:
        spill = functools.partial(_spill, recovery_dir)
    return Writer(store.apply, refuses=store.refuses, spill=spill)


def _spill(recovery_dir: Path, ops: list[WriteOp]) -> str:
    return str(recovery.save(recovery_dir, ops))


def relay(ack: Future[None], settle: Callable[[BaseException | None], None]) -> Future[None]:
    """A Future for the caller that follows the writer's `ack`, after `settle(error or None)` ran.

    The caller may cancel its Future (an asyncio timeout does) without the
    backend missing the outcome: only the backend holds `ack`.
    """
    out: Future[None] = Future()

    def done(finished: Future[None]) -> None:
        error = finished.exception()
        try:
            settle(error)
        finally:
            if error is None:
                resolve(out)
            else:
                fail(out, error)

    ack.add_done_callback(done)
    return out


class WriterBackend:
    """What every backend does alike: facts are queued for the group-commit writer, rows are read
    from the store, and the writer's health is reported. Subclasses set `store` and `writer`."""

    store: StoreProtocol
    writer: Writer[WriteOp]

    def user_seen(self, user: str) -> Future[None]:
        return self.writer.put(UserSeen(user, utcnow()))

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> Future[None]:
        return self.writer.put(AuditWrite(actor, action, detail, utcnow()))

    def set_final(self, record_id: int, answer: Answer | None, admin: str) -> Future[None]:
        """Queue an admin's final answer to a record (None takes it back); assignment does not change."""
        return self.writer.put(FinalWrite(record_id, answer, admin, utcnow()))

    def records(self, record_ids: Sequence[int]) -> dict[int, Record]:
        return self.store.records(record_ids)

    def user_responses(self, user: str) -> list[Response]:
        return self.store.user_responses(user)

    def writer_health(self) -> WriterHealth:
        return self.writer.health()

    def write_failure(self) -> str | None:
        return self.writer.failure()

    def flush(self, timeout: float | None = None) -> bool:
        return self.writer.flush(timeout)


@dataclass
class _Unsettled:
    """Answers of one person to one record that are queued but not all written yet."""
    stored: str | None  # the status the store holds: before the first of them, then the last committed
    queued: int = 0
    refused: bool = False


class LocalBackend(WriterBackend):
    """One process: scheduler in memory, DuckDB store, group-commit writer.

    The scheduler counts an answer when it is queued (the click never waits
    for the disk). Should its write be refused for good (WriteRejected), the
    count is put back to what the store holds once every queued answer of
    that person to that record is written: a refused first answer leaves the
    record open to them again, to be answered anew.

    Lifecycle: constructing it rebuilds the scheduler from the store and
    starts the writer; `close()` writes what is queued, then closes the store.
    """

    def __init__(self, store: StoreProtocol, order: Sequence[int], overlap: int, lease_ttl: float, *,
                 recovery_dir: Path | None = None, gold: Sequence[int] = (), plan: GoldPlan = GoldPlan()) -> None:
        self.store = store
        self.scheduler = Scheduler(order, overlap, lease_ttl, gold=gold, plan=plan)
        self.scheduler.restore(store.assignment_facts(), store.extra_answers(), store.gold_handouts())
        for _, _, detail in store.audit_entries("set_quota"):  # admins' overrides, in the order they were made
            self.scheduler.set_quota(detail["user"], detail["quota"])
        self._unsettled: dict[tuple[str, int], _Unsettled] = {}
        self._answers_lock = threading.Lock()
        self.writer = make_writer(store, recovery_dir)
        self.writer.start()
        self._closed = False
        self._close_lock = threading.Lock()

    def next(self, user: str) -> QueueState:
        state = self.scheduler.next(user)
        self._store_handouts()
        return state

    def lease_soft(self, user: str, n: int) -> list[int]:
        leased = self.scheduler.lease_soft(user, n)
        self._store_handouts()
        return leased

    def _store_handouts(self) -> None:
        """Queue the gold leases just granted for the store, so that a restart still hands each gold record at
        most once per person. Nobody waits for them: one lost (a crash, the app shutting down) only lets that
        gold record come back once to that person after the restart."""
        try:
            for user, rid in self.scheduler.take_handouts():
                self.writer.put(GoldHandout(user, rid))
        except WriterClosedError:
            pass

    def promote(self, user: str, record_id: int) -> bool:
        return self.scheduler.promote(user, record_id)

    def current(self, user: str) -> int | None:
        return self.scheduler.current(user)

    def has_seen(self, user: str, record_id: int) -> bool:
        return self.scheduler.has_seen(user, record_id)

    def touch(self, user: str) -> None:
        self.scheduler.touch(user)

    def release(self, user: str, record_id: int | None = None) -> int:
        return self.scheduler.release(user, record_id)

    def expire(self) -> int:
        return self.scheduler.expire()

    def answer(self, write: ResponseWrite) -> tuple[SubmitOutcome, Future[None]]:
        """Count the answer in memory at once, and queue it for the next group commit."""
        key = (write.user_id, write.record_id)
        with self._answers_lock:
            stored = self.scheduler.answered(*key)
            if write.status == "skipped":
                outcome = self.scheduler.skip(*key)
            else:
                outcome = self.scheduler.submit(*key)
            entry = self._unsettled.get(key)
            if entry is None:
                entry = self._unsettled[key] = _Unsettled(stored)
            entry.queued += 1
        try:
            ack = self.writer.put(replace(write, first=outcome != "edit"))
        except WriterClosedError:
            self._settle(key, write.status, committed=False)
            raise
        return outcome, relay(ack, lambda error: self._settle(key, write.status, committed=error is None))

    def _settle(self, key: tuple[str, int], status: str, committed: bool) -> None:
        """One queued answer is written or refused; once none of this person's answers to this record is
        queued, a refusal puts the scheduler back to what the store holds."""
        with self._answers_lock:
            entry = self._unsettled[key]
            entry.queued -= 1
            if committed:
                entry.stored = status
            else:
                entry.refused = True
            if entry.queued:
                return
            del self._unsettled[key]
            if entry.refused:
                self.scheduler.correct(*key, entry.stored)

    def reopen(self, record_id: int, extra: int) -> Future[None]:
        self.scheduler.reopen(record_id, extra)
        return self.writer.put(ReopenWrite(record_id, extra))

    def counts(self, max_age: float | None = None) -> dict[str, int]:
        """Always current: the scheduler counts in memory (`max_age` matters to a shared backend)."""
        return self.scheduler.counts()

    def remaining_for(self, user: str) -> int:
        return self.scheduler.remaining_for(user)

    def leases(self) -> dict[str, list[tuple[int, str]]]:
        return self.scheduler.leases()

    def set_quota(self, user: str, quota: int | None) -> None:
        self.scheduler.set_quota(user, quota)

    def close(self) -> None:
        """Write everything queued, then close the store. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.writer.close()
        self.store.close()
