"""The one interface the service uses for assignment and storage.

`LocalBackend` is the single-process implementation: the in-memory scheduler
decides who gets what, the DuckDB store keeps the facts, and the writer thread
commits them in groups. A PostgreSQL backend for several replicas implements
the same protocol with leases in the database.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from concurrent.futures import Future
from typing import Any, Protocol, Sequence

from annotator.scheduler import QueueState, Scheduler, SubmitOutcome
from annotator.store import AuditWrite, Record, ReopenWrite, Response, ResponseWrite, Store, UserSeen, WriteOp, utcnow
from annotator.writer import Writer, WriterHealth


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
    def records(self, record_ids: Sequence[int]) -> dict[int, Record]: ...
    def user_responses(self, user: str) -> list[Response]: ...
    def counts(self, max_age: float | None = None) -> dict[str, int]: ...
    def remaining_for(self, user: str) -> int: ...
    def leases(self) -> dict[str, list[tuple[int, str]]]: ...
    def writer_health(self) -> WriterHealth: ...
    def write_failure(self) -> str | None: ...
    def flush(self, timeout: float | None = None) -> bool: ...
    def close(self) -> None: ...


class WriterBackend:
    """What every backend does alike: facts are queued for the group-commit writer, rows are read
    from the store, and the writer's health is reported. Subclasses set `store` and `writer`."""

    store: Any
    writer: Writer[WriteOp]

    def user_seen(self, user: str) -> Future[None]:
        return self.writer.put(UserSeen(user, utcnow()))

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> Future[None]:
        return self.writer.put(AuditWrite(actor, action, detail, utcnow()))

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


class LocalBackend(WriterBackend):
    """One process: scheduler in memory, DuckDB store, group-commit writer.

    Lifecycle: constructing it rebuilds the scheduler from the store and
    starts the writer; `close()` writes what is queued, then closes the store.
    """

    def __init__(self, store: Store, order: Sequence[int], overlap: int, lease_ttl: float) -> None:
        self.store = store
        self.scheduler = Scheduler(order, overlap, lease_ttl)
        self.scheduler.restore(store.assignment_facts(), store.extra_answers())
        self.writer: Writer[WriteOp] = Writer(store.apply)
        self.writer.start()
        self._closed = False
        self._close_lock = threading.Lock()

    def next(self, user: str) -> QueueState:
        return self.scheduler.next(user)

    def lease_soft(self, user: str, n: int) -> list[int]:
        return self.scheduler.lease_soft(user, n)

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
        if write.status == "skipped":
            outcome = self.scheduler.skip(write.user_id, write.record_id)
        else:
            outcome = self.scheduler.submit(write.user_id, write.record_id)
        return outcome, self.writer.put(replace(write, first=outcome != "edit"))

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

    def close(self) -> None:
        """Write everything queued, then close the store. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self.writer.close()
        self.store.close()
