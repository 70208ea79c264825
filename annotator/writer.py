"""The group-commit writer: one thread owns every write transaction.

A commit on a network disk costs tens of milliseconds whatever its size, so
the thread takes everything queued while the last commit ran and writes it in
one transaction. Callers get a Future that resolves only after COMMIT returned
("saved" means committed). A failed commit is retried with backoff, keeping
the batch in memory: nothing is dropped and nothing is acknowledged falsely.
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
    """put() after close(): the app is shutting down."""


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


class Writer(Generic[Op]):
    """Drains a queue into `apply(batch)`, one transaction per batch.

    Lifecycle: `start()` launches the thread; `put()` queues an op and returns
    its acknowledgement; `flush()` waits for everything queued so far;
    `close()` flushes and stops the thread, is idempotent, and after it
    `put()` raises WriterClosedError. Usable as a context manager.
    """

    def __init__(self, apply: Callable[[Sequence[Op]], None], *, max_batch: int = 5000,
                 retry_initial: float = 0.05, retry_max: float = 5.0, name: str = "annotator-writer") -> None:
        self._apply = apply
        self._max_batch = max_batch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._queue: queue.Queue[tuple[object, Future[None]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._closed = False
        self._close_lock = threading.Lock()
        self._latency = LatencyWindow()
        self._commits = 0
        self._rows = 0
        self._failed = 0
        self._retrying = False
        self._last_error: str | None = None

    def __enter__(self) -> "Writer[Op]":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread.start()

    def put(self, op: Op) -> Future[None]:
        """Queue one op; the Future resolves after the transaction holding it committed."""
        ack: Future[None] = Future()
        with self._close_lock:  # so nothing can be queued behind the stop marker
            if self._closed:
                raise WriterClosedError("the writer is closed; the app is shutting down")
            self._queue.put((op, ack))
        return ack

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued before this call is committed; False on timeout."""
        marker: Future[None] = Future()
        with self._close_lock:
            closed = self._closed
            if not closed:
                self._queue.put((None, marker))
        if closed:  # close() queued the stop marker: everything before it is written when the thread ends
            if self._thread.is_alive():
                self._thread.join(timeout)
            return not self._thread.is_alive() and self._queue.empty()
        try:
            marker.result(timeout)
            return True
        except TimeoutError:
            return False

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, then stop the thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put((_STOP, Future()))
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("writer did not finish within %ss; %d ops still queued", timeout, self._queue.qsize())

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
        )

    # --- the thread --------------------------------------------------------

    def _take_batch(self) -> tuple[list[tuple[object, Future[None]]], bool]:
        items = [self._queue.get()]
        while len(items) < self._max_batch:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        stop = any(op is _STOP for op, _ in items)
        return [(op, ack) for op, ack in items if op is not _STOP], stop

    def _run(self) -> None:
        while True:
            items, stop = self._take_batch()
            ops = [op for op, _ in items if op is not None]
            if ops:
                self._commit(ops)  # returns only once committed
            for _, ack in items:
                _resolve(ack)
            if stop:
                # put() queues under the close lock, so nothing follows the stop marker;
                # drain anyway in case a batch was cut at max_batch before it
                while not self._queue.empty():
                    items, _ = self._take_batch()
                    ops = [op for op, _ in items if op is not None]
                    if ops:
                        self._commit(ops)
                    for _, ack in items:
                        _resolve(ack)
                return

    def _commit(self, ops: list[object]) -> None:
        delay = self._retry_initial
        while True:
            started = time.perf_counter()
            try:
                self._apply(ops)  # type: ignore[arg-type]
            except Exception as exc:  # storage failed: keep the batch, try again
                self._failed += 1
                self._retrying = True
                self._last_error = f"{type(exc).__name__}: {exc}"
                log.warning("commit of %d ops failed (%s); retrying in %.2fs", len(ops), self._last_error, delay)
                time.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._latency.add(time.perf_counter() - started)
            self._commits += 1
            self._rows += len(ops)
            self._retrying = False
            return


def _resolve(ack: Future[None]) -> None:
    """Acknowledge; a Future the caller cancelled (e.g. asyncio timeout) must not kill the thread."""
    try:
        if not ack.done():
            ack.set_result(None)
    except InvalidStateError:  # cancelled between done() and set_result()
        pass
