"""The group-commit writer: acks after commit, batching, retry without loss, shutdown."""

from __future__ import annotations

import gc
import sys
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import Future, wait
from pathlib import Path

import pytest

from annotator.model import NewRecord, ResponseWrite, decode_answer, utcnow
from annotator.store import Store
from annotator.writer import Writer, WriterClosedError


class Recorder:
    """An apply() that records batches; optionally slow, gated, or failing the first N calls."""

    def __init__(self, delay: float = 0.0, fail_first: int = 0, gate: threading.Event | None = None) -> None:
        self.delay = delay
        self.fail_first = fail_first
        self.gate = gate
        self.calls = 0
        self.batches: list[list[object]] = []
        self.entered = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, ops) -> None:
        with self.lock:
            self.calls += 1
            call = self.calls
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test never opened the gate"
        if self.delay:
            time.sleep(self.delay)
        if call <= self.fail_first:
            raise OSError(f"disk unavailable (call {call})")
        self.batches.append(list(ops))

    @property
    def written(self) -> list[object]:
        return [op for batch in self.batches for op in batch]


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_ack_resolves_only_after_commit_returned() -> None:
    gate = threading.Event()
    apply = Recorder(gate=gate)
    with Writer(apply) as writer:
        ack = writer.put("a")
        assert apply.entered.wait(5)  # the commit is running ...
        time.sleep(0.1)
        assert not ack.done()  # ... but has not returned: no ack
        assert apply.batches == []
        gate.set()
        assert ack.result(5) is None
        assert apply.batches == [["a"]]  # the op was written before the ack resolved


def test_group_commit_takes_everything_queued() -> None:
    apply = Recorder(delay=0.05)  # a slow disk
    with Writer(apply) as writer:
        acks = [writer.put(i) for i in range(500)]
        done, not_done = wait(acks, timeout=30)
        assert not not_done
        health = writer.health()
    assert sorted(apply.written) == list(range(500))
    assert apply.written == list(range(500))  # queue order is kept
    assert len(apply.batches) <= 5, [len(b) for b in apply.batches]
    assert health.commits == len(apply.batches) and health.rows_written == 500
    assert health.mean_batch == pytest.approx(500 / len(apply.batches))
    assert health.commit_latency["p50"] >= 0.05


def test_group_commit_under_concurrent_producers() -> None:
    apply = Recorder(delay=0.02)
    with Writer(apply) as writer:
        acks = []
        lock = threading.Lock()

        def produce(t: int) -> None:
            for i in range(50):
                f = writer.put((t, i))
                with lock:
                    acks.append(f)
                time.sleep(0.001)

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not wait(acks, timeout=30).not_done
    assert Counter(apply.written) == Counter((t, i) for t in range(16) for i in range(50))
    assert len(apply.batches) < 800 / 5  # batches, not one commit per op


def test_max_batch_caps_a_transaction() -> None:
    apply = Recorder(gate=threading.Event())
    writer = Writer(apply, max_batch=100)
    writer.start()
    try:
        first = writer.put(-1)
        assert apply.entered.wait(5)
        acks = [writer.put(i) for i in range(250)]
        apply.gate.set()
        assert not wait([first, *acks], timeout=10).not_done
        assert [len(b) for b in apply.batches] == [1, 100, 100, 50]
    finally:
        writer.close()


def test_failure_then_recovery_without_restart() -> None:
    apply = Recorder(fail_first=4)
    writer = Writer(apply, retry_initial=0.05, retry_max=0.2)
    writer.start()
    try:
        acks = [writer.put(i) for i in range(10)]
        wait_until(lambda: apply.calls >= 2)
        health = writer.health()
        assert health.retrying
        assert health.failed_commits >= 1
        assert "OSError" in health.last_error and "disk unavailable" in health.last_error
        assert not any(a.done() for a in acks)  # nothing acknowledged while failing

        # more work arriving during the outage waits too, and is written after recovery
        later = [writer.put(i) for i in range(10, 20)]
        assert not any(a.done() for a in later)
        assert not wait(acks + later, timeout=10).not_done
        assert all(a.exception() is None for a in acks + later)

        assert Counter(apply.written) == Counter(range(20))  # exactly once, none lost
        health = writer.health()
        assert not health.retrying
        assert health.failed_commits == 4
        assert health.rows_written == 20
        assert health.last_error is not None  # kept for the dashboard
        # the failed batch was retried as a whole: its first successful commit holds the first 10
        assert apply.batches[0] == list(range(10))
    finally:
        writer.close()


def test_failed_commit_retries_with_backoff() -> None:
    stamps: list[float] = []

    def apply(ops) -> None:
        stamps.append(time.monotonic())
        if len(stamps) <= 4:
            raise RuntimeError("nope")

    with Writer(apply, retry_initial=0.02, retry_max=0.08) as writer:
        writer.put("x").result(10)
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert len(gaps) == 4
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.08 and gaps[3] >= 0.08
    assert gaps[3] < 0.5  # capped at retry_max (plus scheduling slack)


def test_flush_waits_for_everything_queued_before() -> None:
    apply = Recorder(delay=0.02)
    with Writer(apply) as writer:
        acks = [writer.put(i) for i in range(100)]
        assert writer.flush(timeout=10) is True
        assert all(a.done() for a in acks)
        assert sorted(apply.written) == list(range(100))
        assert writer.flush(timeout=1) is True  # nothing queued: returns at once


def test_flush_times_out_while_commit_is_stuck() -> None:
    gate = threading.Event()
    apply = Recorder(gate=gate)
    writer = Writer(apply)
    writer.start()
    try:
        writer.put("a")
        assert apply.entered.wait(5)
        assert writer.flush(timeout=0.1) is False
        gate.set()
        assert writer.flush(timeout=5) is True
    finally:
        writer.close()


def test_close_drains_queue_and_is_idempotent() -> None:
    gate = threading.Event()
    apply = Recorder(gate=gate, delay=0.001)
    writer = Writer(apply)
    writer.start()
    acks = [writer.put(i) for i in range(1000)]
    assert apply.entered.wait(5)
    threading.Timer(0.1, gate.set).start()
    writer.close()
    assert all(a.done() and a.exception() is None for a in acks)
    assert sorted(apply.written) == list(range(1000))
    writer.close()  # idempotent
    assert writer.flush(timeout=1) is True
    assert writer.health().queue_depth == 0


def test_put_after_close_raises() -> None:
    writer = Writer(Recorder())
    writer.start()
    writer.put(1).result(5)
    writer.close()
    with pytest.raises(WriterClosedError):
        writer.put(2)


def test_close_racing_with_puts_loses_nothing() -> None:
    """Every put that did not raise is written and acknowledged, even when close() lands mid-stream."""
    for _ in range(5):
        apply = Recorder(delay=0.001)
        writer = Writer(apply)
        writer.start()
        accepted = []
        lock = threading.Lock()

        def produce(t: int) -> None:
            for i in range(10_000):
                try:
                    f = writer.put((t, i))
                except WriterClosedError:
                    return
                with lock:
                    accepted.append(((t, i), f))

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        writer.close()
        for t in threads:
            t.join()
        assert all(f.done() for _, f in accepted), "an accepted put was never acknowledged"
        assert Counter(apply.written) == Counter(op for op, _ in accepted)


def test_cancelled_future_does_not_kill_the_writer() -> None:
    gate = threading.Event()
    apply = Recorder(gate=gate)
    with Writer(apply) as writer:
        first = writer.put("a")
        assert apply.entered.wait(5)
        second = writer.put("b")
        assert second.cancel()  # e.g. an asyncio wrapper timed out
        gate.set()
        first.result(5)
        assert writer.put("c").result(5) is None  # the thread is still alive
    assert apply.written == ["a", "b", "c"]  # cancelling an ack does not un-queue the write


def test_health_reports_queue_and_latency() -> None:
    gate = threading.Event()
    apply = Recorder(gate=gate)
    writer = Writer(apply)
    fresh = writer.health()
    assert (fresh.commits, fresh.rows_written, fresh.failed_commits, fresh.retrying) == (0, 0, 0, False)
    assert fresh.last_error is None and fresh.mean_batch == 0.0
    assert fresh.commit_latency["p50"] is None
    writer.start()
    try:
        writer.put(0)
        assert apply.entered.wait(5)
        for i in range(1, 6):
            writer.put(i)
        assert writer.health().queue_depth == 5
        gate.set()
        assert writer.flush(5)
        health = writer.health()
        assert health.queue_depth == 0 and health.rows_written == 6 and health.commits == 2
        assert set(health.commit_latency) >= {"p50", "p99"}
    finally:
        writer.close()


# --- with a real DuckDB file ----------------------------------------------------------

def test_32_threads_x_100_submits_into_a_real_store(tmp_path: Path) -> None:
    threads_n, per_thread = 32, 100
    store = Store(tmp_path / "annotator.duckdb")
    store.add_records([NewRecord(f"r{i}", f"/img/{i}.jpg", "0" * 64, 10, 10, 1) for i in range(per_thread)])
    writer = Writer(store.apply)
    writer.start()
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def annotate(t: int) -> None:
        try:
            barrier.wait()
            acks = [writer.put(ResponseWrite(i + 1, f"user{t:02d}", "submitted", {"label": f"label{(t + i) % 3}"}, None,
                                             100, utcnow())) for i in range(per_thread)]
            for ack in acks:
                ack.result(60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(t,)) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    health = writer.health()
    writer.close()
    assert errors == []
    assert health.rows_written == threads_n * per_thread and health.failed_commits == 0
    assert health.commits < threads_n * per_thread  # group commit happened

    store.close()
    store = Store(tmp_path / "annotator.duckdb")  # what is on disk, not in memory
    try:
        rows = store._cur().execute("SELECT record_id, user_id, answer FROM responses").fetchall()
        assert len(rows) == threads_n * per_thread
        keys = Counter((r, u) for r, u, _ in rows)
        assert set(keys) == {(i + 1, f"user{t:02d}") for t in range(threads_n) for i in range(per_thread)}
        assert max(keys.values()) == 1
        assert all(decode_answer(a) == {"label": f"label{(int(u[4:]) + r - 1) % 3}"} for r, u, a in rows)
        assert store._cur().execute("SELECT count(*) FROM response_history").fetchone()[0] == 0
    finally:
        store.close()


# --- the benchmark's open-loop generator ----------------------------------------------

def test_bench_generator_writes_everything_and_keeps_no_acknowledged_future(tmp_path: Path) -> None:
    """bench/bench_writer.py's open loop, short and without slow fsync.

    Acknowledged Futures must be released as in the app: the old generator kept
    every one (and a prebuilt op list), and the full garbage collections that
    heap growth triggered paused the writer and were reported as its latency.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import bench_writer

    live, most = [0], [0]
    real_put = Writer.put

    def counting_put(self: Writer, op: object) -> Future[None]:
        ack = real_put(self, op)
        live[0] += 1
        most[0] = max(most[0], live[0])
        weakref.finalize(ack, lambda: live.__setitem__(0, live[0] - 1))
        return ack

    Writer.put = counting_put  # type: ignore[method-assign]
    try:
        result = bench_writer.measure_group(rate=400, duration=1.0, warmup=0.1, folder=tmp_path)
    finally:
        Writer.put = real_put  # type: ignore[method-assign]
    gc.collect()
    assert result["rows_in_db"] == result["rows_expected"] == 440
    assert result["failed_commits"] == 0 and result["commits"] < 440
    assert result["ack_p99_ms"] >= result["ack_p50_ms"] > 0
    # only those in flight are alive (a few commits' worth at local-disk speed), never the whole run
    assert most[0] < 220, f"{most[0]} Futures alive at once: the generator keeps acknowledged ones"
