"""The group-commit writer: one thread owns every write transaction.

A commit on a network disk costs tens of milliseconds whatever its size, so
the thread takes everything queued while the last commit ran and writes it in
one transaction. Callers get a Future that resolves only after COMMIT returned
("saved" means committed).

A batch that fails is told apart by its error (the store's `refuses(exc)`):

- a data error (text a store cannot encode, a constraint, a value out of
  range) fails again whatever we do: the batch is split in halves until the
  ops that fail on their own are found; exactly those are refused to their
  owners (their Future raises WriteRejected) and everything else commits in
  the same round. One person's bad answer never stops anyone else's saving.
- anything else (I/O, a full disk, a lost connection) is retried with
  backoff, keeping the batch in memory: nothing is dropped and nothing is
  acknowledged falsely.

At close, what storage did not take in time is handed to `spill` (the
recovery file, see recovery.py) instead of being dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

from annotator.metrics import LatencyWindow

log = logging.getLogger(__name__)

Op = TypeVar("Op")
_STOP = object()


class WriterClosedError(RuntimeError):
    """put() after close(), or an op the writer could not commit before it stopped."""


class WriteRejected(Exception):
    """This op can never be committed (a data error on its own); nothing of it was saved.

    `op` is the refused op, `cause` the store's error. The message is for the
    person who sent it.
    """

    def __init__(self, op: object, cause: BaseException) -> None:
        super().__init__(f"This answer could not be saved: storage refused it ({type(cause).__name__}: "
                         f"{str(cause)[:200]}). Answer that record again; if it fails again, tell the organizer.")
        self.op = op
        self.cause = cause


def never(_: BaseException) -> bool:
    """The default `refuses`: no error is a data error, so every failure is retried."""
    return False


@dataclass(frozen=True)
class WriterHealth:
    queue_depth: int
    commits: int
    rows_written: int
    failed_commits: int
    retrying: bool
    last_error: str | None
    commit_latency: dict[str, float | None]
    mean_batch: float
    rejected: int = 0  # ops refused for good (data errors), since start


class _Transient(Exception):
    """Internal: an attempt failed with an error worth retrying."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _GiveUp(Exception):
    """Internal: closing while storage keeps failing; what is left goes to `spill`."""


_Item = tuple[object, "Future[None]"]


class Writer(Generic[Op]):
    """Drains a queue into `apply(batch)`, one transaction per batch.

    Arguments: `apply` writes a batch in one transaction (all or nothing);
    `refuses(exc)` says whether an error of `apply` is a data error that will
    never go away (default: none is); `spill(ops)` keeps, at close, the ops
    storage did not take, and returns where (default: they are logged as
    lost); `max_batch` (5000) caps a transaction; `retry_initial` (0.05 s)
    and `retry_max` (5 s) shape the backoff; `give_up_after` (5 s) is how
    long close() waits for failing storage to recover before spilling.

    Lifecycle: `start()` launches the thread; `put()` queues an op and returns
    its acknowledgement; `flush()` waits for everything queued so far;
    `close()` writes what is queued (or spills it), stops the thread, is
    idempotent, and after it `put()` raises WriterClosedError. Usable as a
    context manager.
    """

    def __init__(self, apply: Callable[[Sequence[Op]], None], *, refuses: Callable[[BaseException], bool] = never,
                 spill: Callable[[list[Op]], str] | None = None, max_batch: int = 5000,
                 retry_initial: float = 0.05, retry_max: float = 5.0, give_up_after: float = 5.0,
                 name: str = "annotator-writer") -> None:
        self._apply = apply
        self._refuses = refuses
        self._spill_to = spill
        self._max_batch = max_batch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._give_up_after = give_up_after
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._close_lock = threading.Lock()
        self._abandon = threading.Event()  # close(): stop retrying, spill what is left
        self._spill_lock = threading.Lock()
        self._spilled = False
        self._current: list[_Item] = []  # the round being written: what close() spills if the thread hangs
        self._latency = LatencyWindow()
        self._commits = 0
        self._rows = 0
        self._failed = 0
        self._rejected = 0
        self._retrying = False
        self._failing_since: float | None = None
        self._last_error: str | None = None

    def __enter__(self) -> "Writer[Op]":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    def put(self, op: Op) -> Future[None]:
        """Queue one op; the Future resolves after the transaction holding it committed.

        It raises WriteRejected instead when the op can never commit, and
        WriterClosedError when the writer stopped before storage took it.
        """
        ack: Future[None] = Future()
        with self._close_lock:  # so nothing can be queued behind the stop marker
            if self._closed:
                raise WriterClosedError("the writer is closed; the app is shutting down")
            self._queue.put((op, ack))
        return ack

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is written (committed or refused); False on
        timeout, or when the writer stopped with ops it could not commit."""
        marker: Future[None] = Future()
        with self._close_lock:
            closed = self._closed
            if not closed:
                self._queue.put((None, marker))
        if closed:  # close() queued the stop marker: everything before it is written when the thread ends
            if self._thread.is_alive():
                self._thread.join(timeout)
            return not self._thread.is_alive() and self._queue.empty() and not self._spilled
        try:
            marker.result(timeout)
            return True
        except Exception:  # noqa: BLE001 - TimeoutError, or WriterClosedError from a spill
            return False

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, then stop the thread. Idempotent.

        While storage works this waits up to `timeout` for the queue to
        drain. While it fails, it waits `give_up_after` for a recovery; then
        the ops not committed go to `spill` and their Futures raise
        WriterClosedError. Nothing queued is dropped silently.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put((_STOP, Future()))
        if not self._thread.is_alive():
            return
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        while self._thread.is_alive():
            self._thread.join(0.05)
            now = time.monotonic()
            failing = self._failing_since
            if failing is not None and now - max(failing, started) >= self._give_up_after:
                break  # storage is failing and did not recover: do not wait the full timeout
            if deadline is not None and now >= deadline:
                break
        if not self._thread.is_alive():
            return
        self._abandon.set()  # the thread stops retrying after its current attempt and spills
        self._thread.join(self._give_up_after)
        if self._thread.is_alive():  # stuck inside apply (hung I/O): spill what it holds and what is queued
            log.error("writer is stuck in a commit after %.0fs; keeping what it holds without it",
                      time.monotonic() - started)
            self._spill(list(self._current) + self._drain())

    def failure(self) -> str | None:
        """The error commits are failing with right now, or None; cheap enough for every click."""
        return self._last_error if self._retrying else None

    def health(self) -> WriterHealth:
        return WriterHealth(
            queue_depth=self._queue.qsize(),
            commits=self._commits,
            rows_written=self._rows,
            failed_commits=self._failed,
            retrying=self._retrying,
            last_error=self._last_error,
            commit_latency=self._latency.percentiles(),
            mean_batch=self._rows / self._commits if self._commits else 0.0,
            rejected=self._rejected,
        )

    # --- the thread (not meant to be used directly) -----------------------------

    def _take_batch(self) -> tuple[list[_Item], bool]:
        items = [self._queue.get()]
        while len(items) < self._max_batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stop = any(op is _STOP for op, _ in items)
        return [(op, ack) for op, ack in items if op is not _STOP], stop

    def _drain(self) -> list[_Item]:
        items: list[_Item] = []
        while True:
            try:
                op, ack = self._queue.get_nowait()
            except queue.Empty:
                return items
            if op is not _STOP:
                items.append((op, ack))

    def _run(self) -> None:
        stop = False
        while not stop:
            items, stop = self._take_batch()
            if self._abandon.is_set():  # close() timed out on a long queue: keep the rest for the next start
                self._spill(items + self._drain())
                return
            if stop:
                # put() queues under the close lock, so nothing follows the stop marker;
                # drain anyway in case a batch was cut at max_batch before it
                items += self._drain()
            try:
                self._write(items)
            except _GiveUp:
                self._spill(list(self._current) + self._drain())
                return

    def _write(self, items: list[_Item]) -> None:
        """Commit the ops of `items` (refusing those that can never commit), then resolve the flush markers."""
        self._current = [(op, ack) for op, ack in items if op is not None]
        delay = self._retry_initial
        while self._current:
            started = time.perf_counter()
            try:
                self._isolate(list(self._current))
            except _Transient as failed:
                self._failed += 1
                self._retrying = True
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._last_error = f"{type(failed.cause).__name__}: {failed.cause}"
                if self._abandon.is_set():
                    raise _GiveUp() from None
                log.warning("commit of %d ops failed (%s); retrying in %.2fs", len(self._current),
                            self._last_error, delay)
                self._abandon.wait(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._latency.add(time.perf_counter() - started)
        self._retrying = False
        self._failing_since = None
        for op, ack in items:
            if op is None:
                resolve(ack)

    def _isolate(self, group: list[_Item]) -> None:
        """Apply `group` in one transaction; on a data error, split it until the ops that fail alone are found.

        Each part that commits is acknowledged at once and leaves
        `self._current`, as does each op refused for good; a transient error
        raises _Transient with the rest still in `self._current` (retried as
        a whole: no ack is ever given for an op that was not committed).
        """
        try:
            self._apply([op for op, _ in group])  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - sorted into data errors and transient failures
            if not self._refuses(exc):
                raise _Transient(exc) from exc
            if len(group) == 1:
                self._reject(group[0], exc)
                return
            middle = len(group) // 2
            self._isolate(group[:middle])
            self._isolate(group[middle:])
            return
        self._commits += 1
        self._rows += len(group)
        self._retrying = False
        self._failing_since = None
        done = {id(item) for item in group}
        self._current = [item for item in self._current if id(item) not in done]
        for _, ack in group:
            resolve(ack)

    def _reject(self, item: _Item, exc: BaseException) -> None:
        op, ack = item
        self._rejected += 1
        self._current = [it for it in self._current if it is not item]
        log.error("refused for good, never saved (%s: %s): %r", type(exc).__name__, exc, op)
        fail(ack, WriteRejected(op, exc))

    def _spill(self, items: list[_Item]) -> None:
        """Hand what was not committed to `spill`, once; its Futures raise WriterClosedError."""
        with self._spill_lock:
            if self._spilled:
                return
            self._spilled = True
        pending = [(op, ack) for op, ack in items if op is not None and not ack.done()]
        ops = [op for op, _ in pending]
        where = None
        if ops and self._spill_to is not None:
            try:
                where = self._spill_to(ops)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - the last resort is the log below
                log.exception("could not keep the %d ops storage did not take", len(ops))
        if ops and where is None:
            log.error("writer stopped with %d ops storage did not take; they are lost: %r", len(ops), ops)
        elif ops:
            log.error("writer stopped while storage was failing (%s); %d ops it did not take are kept in %s "
                      "and committed at the next start", self._last_error, len(ops), where)
        reason = WriterClosedError(f"not saved before the app stopped; kept in {where}" if where else
                                   "not saved before the app stopped")
        for op, ack in items:
            fail(ack, reason)


def resolve(ack: Future[None]) -> None:
    """Acknowledge; a Future the caller cancelled (e.g. asyncio timeout) must not kill the thread."""
    try:
        if not ack.done():
            ack.set_result(None)
    except InvalidStateError:  # cancelled between done() and set_result()
        pass


def fail(ack: Future[None], exc: BaseException) -> None:
    """Refuse, as `resolve` acknowledges."""
    try:
        if not ack.done():
            ack.set_exception(exc)
    except InvalidStateError:
        pass
