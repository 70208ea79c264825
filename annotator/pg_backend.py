"""The PostgreSQL `WorkBackend`: several app replicas sharing one workshop.

Assignment lives in the database (`pg_leases.PgLeases`), answers go through
the same group-commit `Writer` as on DuckDB (one transaction per batch; the
answering person's lease turns into the answer in that transaction). What
this process keeps in memory is only about its own people: which record each
has on screen, and the answers it queued but the writer has not committed yet
(so a repeated key press is caught before the commit, as on DuckDB).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from annotator.backend import WriterBackend, make_writer, relay
from annotator.gold import GoldPlan, QuotaFull
from annotator.model import QueueState, ReopenWrite, ResponseWrite, SubmitOutcome
from annotator.pg_leases import PgLeases
from annotator.pg_store import PgStore
from annotator.writer import WriteRejected

log = logging.getLogger(__name__)


class PgBackend(WriterBackend):
    """An answer whose write is refused for good (WriteRejected) was never
    counted (the database counts at commit); its lease, still held until
    then, is handed back so that the record is open again, to its owner too.

    Lifecycle: constructing it stores the hand-out order and starts the writer;
    `close()` commits what is queued, hands this replica's leases back and
    closes the store."""

    def __init__(self, store: PgStore, order: Sequence[int], overlap: int, lease_ttl: float, *,
                 replica: str | None = None, clock: Callable[[], float] = time.time,
                 counts_every: float = 1.0, recovery_dir: Path | None = None, gold: Sequence[int] = (),
                 plan: GoldPlan = GoldPlan()) -> None:
        self.store = store
        self._clock = clock
        self.leases_db = PgLeases(store.pool, overlap, lease_ttl, replica or f"replica-{uuid.uuid4().hex[:8]}",
                                  plan=plan)
        self.leases_db.set_order(order, gold)
        self._screen: dict[str, int] = {}  # person -> record on their screen (a hard lease)
        # person -> records answered here whose commit is still queued -> whether it is their first answer
        self._pending: dict[str, dict[int, bool]] = {}
        self._lock = threading.Lock()
        self._counts: tuple[float, dict[str, int]] | None = None
        self._counts_every = counts_every
        self.writer = make_writer(store, recovery_dir)
        self.writer.start()
        self._closed = False

    @property
    def replica(self) -> str:
        return self.leases_db.replica

    def next(self, user: str) -> QueueState:
        now = self._clock()
        with self._lock:
            rid = self._screen.get(user)
        if rid is not None and self.leases_db.holds(user, rid, now):
            return QueueState("ready", rid)
        state = self.leases_db.next(user, now, self._queued(user))
        with self._lock:
            if state.kind == "ready":
                self._screen[user] = state.record_id  # type: ignore[assignment]
            else:
                self._screen.pop(user, None)
        return state

    def _queued(self, user: str) -> list[int]:
        """Records this person answered here whose commit is still queued."""
        with self._lock:
            return list(self._pending.get(user, ()))

    def lease_soft(self, user: str, n: int) -> list[int]:
        return self.leases_db.lease_soft(user, n, self._clock())

    def promote(self, user: str, record_id: int) -> bool:
        """False also for a record this person answered here whose commit is still queued: its lease row
        stays until that commit, and a record reached again (from the buffer, after `next` handed out
        the same soft lease) must not come back to the screen."""
        with self._lock:
            if record_id in self._pending.get(user, {}):
                return False
        if not self.leases_db.promote(user, record_id, self._clock()):
            return False
        with self._lock:
            self._screen[user] = record_id
        return True

    def current(self, user: str) -> int | None:
        with self._lock:
            return self._screen.get(user)

    def has_seen(self, user: str, record_id: int) -> bool:
        """Queued here (not committed yet), else committed: the database says."""
        with self._lock:
            if record_id in self._pending.get(user, {}):
                return True
        return self.leases_db.has_answered(user, record_id)

    def touch(self, user: str) -> None:
        """Activity; also learns whether the record on screen is still this person's (it may have expired)."""
        held = self.leases_db.touch(user, self._clock())
        with self._lock:
            rid = self._screen.get(user)
            if rid is not None and (rid, True) not in held:
                del self._screen[user]

    def release(self, user: str, record_id: int | None = None) -> int:
        with self._lock:
            if record_id is None or self._screen.get(user) == record_id:
                self._screen.pop(user, None)
        return self.leases_db.release(user, record_id, self._clock())

    def expire(self) -> int:
        return self.leases_db.expire(self._clock())

    def answer(self, write: ResponseWrite) -> tuple[SubmitOutcome, Future[None]]:
        """Queue the answer for the next group commit; the lease becomes the answer in that transaction.

        Until the commit the lease row stays (hard, so nobody takes it over),
        which keeps the record's slot counted, exactly once. An answer to a
        record not on this person's screen here first claims room in their
        quota (PgLeases.claim; QuotaFull when there is none).
        """
        key = (write.user_id, write.record_id)
        seen = not write.first and self.has_seen(*key)  # `first`: the service checked it already
        with self._lock:
            on_screen = self._screen.get(write.user_id) == write.record_id
        if write.status == "submitted" and not on_screen and not self.leases_db.claim(*key, self._clock()):
            raise QuotaFull()
        with self._lock:
            if self._screen.get(write.user_id) == write.record_id:
                del self._screen[write.user_id]
            self._pending.setdefault(write.user_id, {})[write.record_id] = not seen
        outcome: SubmitOutcome = "edit" if seen else ("new" if on_screen else "late")
        ack = self.writer.put(replace(write, first=not seen))
        return outcome, relay(ack, lambda error: self._written(*key, error))

    def _written(self, user: str, record_id: int, error: BaseException | None) -> None:
        """An answer is committed (its lease went in the same transaction) or refused; it is no longer queued."""
        with self._lock:
            mine = self._pending.get(user)
            if mine is not None:
                mine.pop(record_id, None)
                if not mine:
                    del self._pending[user]
        if isinstance(error, WriteRejected):  # not at a stop (WriterClosedError): close() hands every lease back
            try:
                self.leases_db.release(user, record_id, self._clock())
            except Exception:  # noqa: BLE001 - the lease then ends with its ttl
                log.warning("could not hand back the lease of %s on record %d after its answer was refused",
                            user, record_id, exc_info=True)

    def reopen(self, record_id: int, extra: int) -> Future[None]:
        if not self.store.records([record_id]):
            raise KeyError(record_id)
        return self.writer.put(ReopenWrite(record_id, extra))

    def counts(self, max_age: float | None = None) -> dict[str, int]:
        """Team progress as committed, read at most every `max_age` seconds (default: once a second per
        replica, since every click shows it)."""
        now = self._clock()
        cached = self._counts
        if cached is not None and now - cached[0] < (self._counts_every if max_age is None else max_age):
            return cached[1]
        counts = self.leases_db.counts(now)
        self._counts = (now, counts)
        return counts

    def remaining_for(self, user: str) -> int:
        """Records neither complete nor answered by this person: one indexed read of their answers,
        the team counts from the cache (a scan of every record per click would grow with the dataset)."""
        counts = self.counts()
        with self._lock:
            queued = sum(self._pending.get(user, {}).values())  # first answers not committed yet
        return max(0, counts["records"] - counts["complete"] - self.leases_db.answered_open(user) - queued)

    def leases(self) -> dict[str, list[tuple[int, str]]]:
        return self.leases_db.leases(self._clock())

    def set_quota(self, user: str, quota: int | None) -> None:
        """Shared: every replica reads it at the person's next hand-out."""
        self.leases_db.set_quota(user, quota)

    def close(self) -> None:
        """Commit everything queued, hand this replica's leases back, close the store. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.writer.close()
        try:
            self.leases_db.release_replica(self._clock())
        finally:
            self.store.close()
