"""The lifecycle of a background job that runs on a schedule, on demand and once more at stop.

The Hub export (`export.hub.Exporter`) and the DuckDB snapshot
(`snapshot.Snapshotter`) share it; each says what one run does and keeps its
own status fields beside the two kept here (`state`, `next_run_at`). Model:
huggingface_hub's CommitScheduler. No I/O of its own.

Lifecycle of a `PeriodicJob`:

* `start()` launches the thread and schedules a run every `period` seconds;
  without it the thread (started by the first `trigger()`) runs on demand only.
* `trigger()` asks for a run now and returns a Future of its result; triggers
  that arrive while no run has begun share one Future (one run). A run, asked
  for or scheduled, puts the next scheduled one a full period away.
* `mark_changed()` bumps `_version`, so a job that skips runs when nothing
  changed sees a change its own check might miss.
* `stop()` (named and defaulted by each job) is idempotent: it calls
  `_interrupt_run()`, lets a run in progress finish, then makes the final run
  (which serves a pending trigger) or, with final=False, fails a pending
  trigger with `closed_error`. Stopped before any thread was started, the final
  run happens in the caller's thread. After it, `start()` and `trigger()`
  raise `closed_error`. The status ends with state "stopped", no next run.

Every run goes through `_work(run)`, one at a time, in the job's thread (or
stop()'s caller's, as said); the run kind ("scheduled", "triggered" or
"final") lets a job run differently. A run's exception goes to the Future of
the trigger it serves (none: dropped), so `_work` reports its own failures
(status, log). `_cond` guards the job's state and the status, and subclasses
guard theirs with it too: one lock, no lock order to get wrong.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

log = logging.getLogger(__name__)

Run = Literal["scheduled", "triggered", "final"]
R = TypeVar("R")   # what one run returns
S = TypeVar("S")   # the status: a frozen dataclass with `state` and `next_run_at` fields


class PeriodicJob(ABC, Generic[R, S]):
    """A background job with a schedule, coalesced triggers and a final run at stop (see the module).

    Subclasses set `closed_error` and `noun` (for its messages), implement
    `_work()` and a public `stop()` that names its options and calls `_stop()`.
    """

    closed_error: ClassVar[type[Exception]] = RuntimeError
    noun: ClassVar[str] = "job"

    def __init__(self, period: float, status: S, *, name: str) -> None:
        self.period = period                        # seconds between scheduled runs
        self._name = name                           # the thread's name, and the log's
        self._cond = threading.Condition()          # guards everything below, and the subclass's state
        self._status = status
        self._pending: Future[R] | None = None      # the next triggered run's result, shared
        self._next_due: float | None = None         # monotonic; None until start(): triggers only
        self._stopping = False
        self._final = True
        self._thread: threading.Thread | None = None
        self._version = 0                           # bumped by mark_changed()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Run every `period` seconds from now on. Idempotent."""
        with self._cond:
            if self._stopping:
                raise self.closed_error(f"the {self.noun} is stopped")
            if self._next_due is None:
                self._reschedule()
            self._ensure_thread()
            self._cond.notify_all()

    def mark_changed(self) -> None:
        """Note a change the job's own check (e.g. a store fingerprint) might not show."""
        with self._cond:
            self._version += 1

    def trigger(self) -> Future[R]:
        """Ask for a run now; triggers that arrive before it begins share its Future."""
        with self._cond:
            if self._stopping:
                raise self.closed_error(f"the {self.noun} is stopped")
            if self._pending is None:
                self._pending = Future()
            future = self._pending
            self._ensure_thread()
            self._cond.notify_all()
        return future

    @abstractmethod
    def stop(self) -> None:
        """End the job (subclasses name the options and defaults, and call `_stop()`)."""

    def status(self) -> S:
        with self._cond:
            return self._status

    # --- for subclasses ----------------------------------------------------------

    @abstractmethod
    def _work(self, run: Run) -> R:
        """One run; raises the job's own error, after reporting it."""

    def _interrupt_run(self) -> None:
        """Called once by stop(), under `_cond`: cut a run in progress short. Default: nothing."""

    def _set_status(self, **changes: Any) -> None:
        with self._cond:
            self._status = replace(self._status, **changes)  # type: ignore[type-var]

    def _stop(self, *, final: bool, timeout: float | None) -> None:
        """Final run unless not `final`, waiting at most `timeout` s for the thread. Idempotent."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._final = final
            self._interrupt_run()
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.error("%s: the last run did not finish within %ss at stop", self._name, timeout)
        elif final:
            self._serve(None, "final")
        self._set_status(state="stopped", next_run_at=None)

    # --- the thread ----------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()

    def _reschedule(self) -> None:
        self._next_due = time.monotonic() + self.period
        self._set_status(next_run_at=datetime.now(timezone.utc) + timedelta(seconds=self.period))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and self._pending is None:
                    if self._next_due is None:
                        self._cond.wait()
                        continue
                    wait = self._next_due - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopping:
                    break
                waiter, self._pending = self._pending, None
            self._serve(waiter, "scheduled" if waiter is None else "triggered")
            with self._cond:
                if self._next_due is not None:
                    self._reschedule()
        with self._cond:
            waiter, self._pending = self._pending, None
        if self._final:
            self._serve(waiter, "final")
        elif waiter is not None:
            waiter.set_exception(self.closed_error(f"the {self.noun} stopped before this run"))

    def _serve(self, waiter: Future[R] | None, run: Run) -> None:
        try:
            result = self._work(run)
        except Exception as exc:  # reported by _work; the trigger's Future carries it
            if waiter is not None:
                waiter.set_exception(exc)
            return
        if waiter is not None:
            waiter.set_result(result)


__all__ = ["PeriodicJob", "Run"]
