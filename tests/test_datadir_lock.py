"""One owner per DATA_DIR, in every mode (issue 11, item 3).

Real app processes (`app.py`) on one DATA_DIR: a second one is refused with
exit code 2 and one line naming DATA_DIR and the holder, whatever the two
DB_MODEs; a restart waits for the old process and then goes on with its
answers; where the file system refuses locks (bench/nolock.c makes flock fail
with ENOLCK, as a FUSE bucket may) a heartbeat in the lock file stands in,
and a holder whose heartbeat stopped is taken over. In-process: the lock's
rules (shared for PostgreSQL replicas, a removed lock file, a stalled holder
that lost the folder and may not snapshot over it).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apphelpers import AppServer, start_app  # noqa: I001 - puts bench/ on sys.path
import loadgen
import slowsync
from clients import ApiUser, make_images, read_store, write_task

from annotator import datadir_lock
from annotator.config import load_settings
from annotator.datadir_lock import LOCK_NAME, DataDirBusyError, DataDirLock, DataDirLostError
from annotator.snapshot import ForeignSnapshotError, Snapshotter
from annotator.store import Store

ROOT = Path(__file__).resolve().parent.parent
NOLOCK = ROOT / "bench" / "nolock.c"
CLEAN_EXIT = (0, -15)  # uvicorn re-raises the SIGTERM it handled once the app has closed


def app_env(tmp_path: Path, mode: str, cache: str, *, no_locks: bool = False, **extra: str) -> dict[str, str]:
    source = tmp_path / "src"
    if not source.exists():
        make_images(source, 8, size=(48, 36))
    env = {"SOURCE_DIR": str(source), "TASK_FILE": str(write_task(tmp_path / "task.toml", overlap=1)),
           "AUTH_MODE": "local", "DB_MODE": mode, "CACHE_DIR": str(tmp_path / cache), **extra}
    if no_locks:
        env["LD_PRELOAD"] = str(slowsync.build(source=NOLOCK))
    return env


def answer(server: AppServer, n: int) -> list[int]:
    """Answer n records as the local user; the record ids, in order."""
    done = []
    with ApiUser.anonymous(server.url) as api:
        view = api.next()
        while view["state"] == "ready" and len(done) < n:
            done.append(view["item"]["record_id"])
            view = api.submit(view["item"]["record"], ["circle"])
    assert len(done) == n, view
    return done


def run_app(data_dir: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """app.py to its end (a refused start ends at once; one that serves runs into the timeout)."""
    full = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_NAME": "127.0.0.1", "PYTHONUNBUFFERED": "1",
            "GRADIO_SERVER_PORT": str(loadgen.free_port()), "DATA_DIR": str(data_dir), **env}
    return subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


def refusal(done: subprocess.CompletedProcess, data_dir: Path, holder_pid: int) -> str:
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("annotator cannot start")]
    assert len(lines) == 1, output[-3000:]
    assert str(data_dir) in lines[0] and f"pid {holder_pid}" in lines[0], lines[0]
    assert socket.gethostname() in lines[0] and "since" in lines[0], lines[0]
    assert "Traceback" not in output and "on http://" not in output, output[-3000:]
    return lines[0]


@pytest.mark.parametrize("first_mode, second_mode", [("direct", "snapshot"), ("snapshot", "snapshot")])
def test_a_second_process_is_refused_and_the_first_keeps_its_answers(tmp_path: Path, first_mode: str,
                                                                     second_mode: str) -> None:
    data = tmp_path / "data"
    first = start_app(data, env=app_env(tmp_path, first_mode, "cache-a"))
    try:
        answered = answer(first, 3)
        done = run_app(data, app_env(tmp_path, second_mode, "cache-b", DATA_DIR_LOCK_WAIT="1"))
        line = refusal(done, data, first.pid)
        assert f"DB_MODE={first_mode}" in line
        answered += answer(first, 2)  # the first one goes on as if nothing happened
    finally:
        assert first.stop() in CLEAN_EXIT, first.log()[-3000:]
    stored = read_store(data)  # DATA_DIR's database: the live file, or the first one's last snapshot
    assert sorted(r.record_id for r in stored.responses) == sorted(answered)
    assert not (data / LOCK_NAME).exists()  # a clean stop leaves no lock file


@pytest.mark.parametrize("no_locks", [False, True], ids=["flock", "heartbeat"])
def test_a_restart_waits_for_the_old_process_then_takes_over(tmp_path: Path, no_locks: bool) -> None:
    data = tmp_path / "data"
    first = start_app(data, env=app_env(tmp_path, "snapshot", "cache-a", no_locks=no_locks))
    second: AppServer | None = None
    try:
        answered = answer(first, 3)
        env = {**os.environ, **app_env(tmp_path, "snapshot", "cache-b", no_locks=no_locks,
                                       DATA_DIR_LOCK_WAIT="120"), "DATA_DIR": str(data)}
        log = tmp_path / "second.log"
        with ThreadPoolExecutor(1) as pool:
            starting = pool.submit(loadgen.start_server, "ours", env, log, timeout=180)
            deadline = time.monotonic() + 90
            while "waiting up to 120 s" not in (log.read_text() if log.exists() else ""):
                assert time.monotonic() < deadline and not starting.done(), \
                    (log.read_text() if log.exists() else "") + str(starting.done() and starting.exception())
                time.sleep(0.2)
            assert not list((tmp_path / "cache-b").glob("*.duckdb"))  # it opened nothing while it waited
            answered += answer(first, 1)
            assert first.stop() in CLEAN_EXIT, first.log()[-3000:]
            second = starting.result()
        assert "Traceback" not in second.log()
        with ApiUser.anonymous(second.url) as api:  # the first one's answers are there: not offered again
            view = api.next()
            assert view["state"] == "ready" and view["item"]["record_id"] not in answered
    finally:
        first.kill()
        if second is not None:
            assert second.stop() in CLEAN_EXIT, second.log()[-3000:]
    assert sorted(r.record_id for r in read_store(data).responses) == sorted(answered)


def test_a_stale_heartbeat_is_taken_over_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    """No locks on the file system: the lock file's heartbeat decides."""
    data = tmp_path / "data"
    data.mkdir()
    record = {"owner": "old-owner", "pid": 4242, "host": "old-container", "since": "2026-01-01 00:00:00 UTC",
              "mode": "snapshot", "heartbeat": time.time() - 3600, "released": False}
    (data / LOCK_NAME).write_text(json.dumps(record))
    app = start_app(data, env=app_env(tmp_path, "snapshot", "cache-a", no_locks=True))
    try:
        answered = answer(app, 2)
        assert "taking over from pid 4242 on host old-container" in app.log()
        assert json.loads((data / LOCK_NAME).read_text())["pid"] == app.pid
    finally:
        assert app.stop() in CLEAN_EXIT, app.log()[-3000:]
    assert json.loads((data / LOCK_NAME).read_text())["released"] is True
    assert sorted(r.record_id for r in read_store(data).responses) == sorted(answered)

    # a holder on another host that keeps its heartbeat fresh is waited for, then refused
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            (data / LOCK_NAME).write_text(json.dumps({**record, "heartbeat": time.time()}))
            stop.wait(0.5)

    beating = threading.Thread(target=beat, daemon=True)
    beating.start()
    try:
        done = run_app(data, app_env(tmp_path, "snapshot", "cache-b", no_locks=True, DATA_DIR_LOCK_WAIT="3"))
    finally:
        stop.set()
        beating.join()
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert "pid 4242 on host old-container" in done.stderr and str(data) in done.stderr, output[-3000:]
    assert "Traceback" not in output


# --------------------------------------------------------------------------- the lock itself, in-process


def test_exclusive_and_shared_holders(tmp_path: Path) -> None:
    """DuckDB modes alone; PostgreSQL replicas together, never beside a DuckDB owner."""
    owner = DataDirLock.acquire(tmp_path, mode="direct", wait=0)
    with pytest.raises(DataDirBusyError, match="DB_MODE=direct"):
        DataDirLock.acquire(tmp_path, mode="snapshot", wait=0.5)
    with pytest.raises(DataDirBusyError):
        DataDirLock.acquire(tmp_path, mode="postgres", wait=0)
    assert (tmp_path / LOCK_NAME).stat().st_mode & 0o777 == 0o600
    owner.release()
    owner.release()  # idempotent
    assert not (tmp_path / LOCK_NAME).exists()

    replicas = [DataDirLock.acquire(tmp_path, mode="postgres", wait=0) for _ in range(2)]
    with pytest.raises(DataDirBusyError, match="STORE_URL"):
        DataDirLock.acquire(tmp_path, mode="direct", wait=0)
    for replica in replicas:
        replica.release()
    DataDirLock.acquire(tmp_path, mode="direct", wait=0).release()


def test_a_waiter_follows_the_lock_file_when_the_holder_removes_it(tmp_path: Path) -> None:
    owner = DataDirLock.acquire(tmp_path, mode="direct", wait=0)
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(DataDirLock.acquire, tmp_path, mode="snapshot", wait=30)
        time.sleep(0.5)
        assert not waiter.done()
        owner.release()  # removes the file the waiter has open
        second = waiter.result(timeout=30)
    try:
        with pytest.raises(DataDirBusyError):  # the second holds the file that is there now
            DataDirLock.acquire(tmp_path, mode="direct", wait=0)
    finally:
        second.release()


@pytest.fixture
def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """flock fails as on a file system without locks (in-process: the app tests use bench/nolock.c)."""
    def refuse(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(datadir_lock.fcntl, "flock", refuse)


def test_a_stalled_holder_loses_the_folder_and_may_not_snapshot_over_it(tmp_path: Path, no_flock: None) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "DB_MODE": "snapshot", "AUTH_MODE": "local"})
    settings.data_dir.mkdir()
    beat = 0.2
    first = DataDirLock.acquire(settings.data_dir, mode="snapshot", wait=0, heartbeat=beat)
    assert first.heartbeat_mode
    with pytest.raises(DataDirBusyError, match=f"pid {os.getpid()}"):  # a live heartbeat is waited for
        DataDirLock.acquire(settings.data_dir, mode="snapshot", wait=1.5, heartbeat=beat)
    store = Store(settings.db_path)
    snapshots = Snapshotter(store, settings, owner=first)
    try:
        assert snapshots.snapshot_now().written
        first._stop.set()  # the first process stalls: no more heartbeats
        first._thread.join()
        # another process waits out the stale limit and takes the folder
        started = time.monotonic()
        second = DataDirLock.acquire(settings.data_dir, mode="snapshot", wait=30, heartbeat=beat)
        assert time.monotonic() - started >= 2 * beat  # it did wait for the heartbeat to go stale
        with pytest.raises(DataDirLostError, match="taken over"):
            first.verify()
        before = (settings.data_dir / "annotator.duckdb").read_bytes()
        with pytest.raises(ForeignSnapshotError, match="taken over"):
            snapshots.snapshot_now()
        assert (settings.data_dir / "annotator.duckdb").read_bytes() == before
        second.release()
    finally:
        snapshots.stop(final=False)
        store.close()
        first.release()
