"""The background-job lifecycle shared by the exporter and the snapshotter (annotator/periodic.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from annotator.periodic import PeriodicJob, Run


class JobClosedError(RuntimeError):
    pass


class JobFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class JobStatus:
    state: str
    next_run_at: datetime | None


class Job(PeriodicJob[int, JobStatus]):
    """Records each run's kind and thread; `gate` (when set) holds a run until released; `fail` makes it raise."""

    closed_error = JobClosedError
    noun = "test job"

    def __init__(self, period: float = 60.0) -> None:
        super().__init__(period, JobStatus("idle", None), name="test-periodic")
        self.runs: list[tuple[Run, str]] = []
        self.versions: list[int] = []
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.fail = False
        self.interrupts = 0

    def stop(self, *, final: bool = True, timeout: float | None = 10.0) -> None:
        self._stop(final=final, timeout=timeout)

    def _interrupt_run(self) -> None:
        self.interrupts += 1

    def _work(self, run: Run) -> int:
        with self._cond:
            self.versions.append(self._version)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never released the run"
        self.runs.append((run, threading.current_thread().name))
        if self.fail:
            raise JobFailed(f"run {len(self.runs)} failed")
        return len(self.runs)

    def kinds(self) -> list[Run]:
        return [kind for kind, _ in self.runs]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_triggers_that_arrive_while_a_run_is_busy_share_the_next_run() -> None:
    job = Job()
    job.gate = threading.Event()
    first = job.trigger()
    assert job.started.wait(5)  # the first run has begun: later triggers wait for the next one
    later = [job.trigger() for _ in range(3)]
    assert all(f is later[0] for f in later) and later[0] is not first
    job.gate.set()
    assert first.result(timeout=5) == 1
    assert later[0].result(timeout=5) == 2
    assert job.kinds() == ["triggered", "triggered"]
    assert all(name == "test-periodic" for _, name in job.runs)
    job.stop(final=False)
    assert job.kinds() == ["triggered", "triggered"]


def test_without_start_it_runs_only_on_demand() -> None:
    job = Job(period=0.02)
    assert job.trigger().result(timeout=5) == 1
    time.sleep(0.2)
    assert job.kinds() == ["triggered"] and job.status().next_run_at is None
    job.stop(final=False)


def test_scheduled_runs_every_period_and_status_shows_the_next() -> None:
    job = Job(period=0.2)
    before = datetime.now(timezone.utc)
    job.start()
    due = job.status().next_run_at
    job.start()  # idempotent: the schedule stays
    assert due is not None and due > before and job.status().next_run_at == due
    assert wait_for(lambda: len(job.runs) >= 2)
    job.stop(final=False)
    assert set(job.kinds()) == {"scheduled"}
    assert job.status() == JobStatus("stopped", None)


def test_a_trigger_puts_the_next_scheduled_run_a_full_period_away() -> None:
    job = Job(period=1.0)
    job.start()
    time.sleep(0.6)
    job.trigger().result(timeout=5)
    time.sleep(0.6)  # past the first due time, not yet a period after the trigger
    assert job.kinds() == ["triggered"]
    assert wait_for(lambda: job.kinds() == ["triggered", "scheduled"], timeout=3)
    job.stop(final=False)


def test_stop_makes_a_final_run_that_serves_a_pending_trigger() -> None:
    job = Job()
    job.gate = threading.Event()
    job.start()
    busy = job.trigger()
    assert job.started.wait(5)
    pending = job.trigger()
    stopper = threading.Thread(target=job.stop)
    stopper.start()
    assert wait_for(lambda: job.interrupts == 1)  # the busy run is told at once
    job.gate.set()
    stopper.join(10)
    assert busy.result(timeout=5) == 1 and pending.result(timeout=5) == 2
    assert job.kinds() == ["triggered", "final"]
    assert job.status() == JobStatus("stopped", None)
    job.stop()  # idempotent: no second final run, no second interrupt
    assert job.kinds() == ["triggered", "final"] and job.interrupts == 1


def test_stop_without_final_run_fails_a_pending_trigger_with_the_closed_error() -> None:
    job = Job()
    job.gate = threading.Event()
    busy = job.trigger()
    assert job.started.wait(5)
    pending = job.trigger()
    stopper = threading.Thread(target=job.stop, kwargs={"final": False})
    stopper.start()
    assert wait_for(lambda: job.interrupts == 1)  # stopping: the pending trigger will not run
    job.gate.set()
    stopper.join(10)
    assert busy.result(timeout=5) == 1
    with pytest.raises(JobClosedError, match="test job stopped before this run"):
        pending.result(timeout=5)
    assert job.kinds() == ["triggered"]


def test_stop_before_start_runs_the_final_work_in_the_callers_thread() -> None:
    job = Job()
    job.stop()
    assert job.runs == [("final", threading.current_thread().name)]
    assert job.status() == JobStatus("stopped", None)

    quiet = Job()
    quiet.stop(final=False)
    assert quiet.runs == [] and quiet.status().state == "stopped"


def test_trigger_and_start_after_stop_raise_the_jobs_closed_error() -> None:
    job = Job()
    job.start()
    job.stop(final=False)
    with pytest.raises(JobClosedError, match="test job is stopped"):
        job.trigger()
    with pytest.raises(JobClosedError):
        job.start()


def test_a_failed_run_reaches_its_trigger_and_the_job_goes_on() -> None:
    job = Job()
    job.fail = True
    with pytest.raises(JobFailed, match="run 1 failed"):
        job.trigger().result(timeout=5)
    job.fail = False
    assert job.trigger().result(timeout=5) == 2
    job.stop(final=False)


def test_mark_changed_bumps_the_version_the_work_reads() -> None:
    job = Job()
    job.trigger().result(timeout=5)
    job.mark_changed()
    job.mark_changed()
    job.trigger().result(timeout=5)
    assert job.versions == [0, 2]
    job.stop(final=False)


def test_context_manager_starts_and_stops_with_a_final_run() -> None:
    with Job(period=60.0) as job:
        assert job.status().next_run_at is not None
    assert job.kinds() == ["final"] and job.status().state == "stopped"
