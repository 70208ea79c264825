"""kill -9 in the middle of writing: every acknowledged response survives.

A child process (crash_child.py) writes through Store + Writer from several
threads and prints `ACK <record_id> <user> <answer>` only after the write's
Future resolved. The parent SIGKILLs it at a random (seeded) moment, reopens
the file, and checks each acknowledged answer is there: as the current answer,
or in the history if a later write by the same person replaced it.
"""

from __future__ import annotations

import collections
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from annotator.model import decode_answer
from annotator.store import Store

CHILD = Path(__file__).resolve().parent / "crash_child.py"
ACK = re.compile(r"ACK (\d+) (\S+) v(\d+)\n")
ROUNDS = 3
SEED = 20240607


def run_and_kill(db: Path, round_no: int, delay: float, tmp: Path) -> list[tuple[int, str, int]]:
    stderr = open(tmp / f"child-{round_no}.err", "w+")
    child = subprocess.Popen([sys.executable, str(CHILD), str(db), str(round_no)], stdout=subprocess.PIPE,
                             stderr=stderr, text=True, bufsize=1)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:  # keep the pipe drained so the child never blocks on a full pipe
        for line in child.stdout:
            if line == "READY\n":
                ready.set()
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(30):
            stderr.seek(0)
            raise AssertionError(f"child never became ready:\n{stderr.read()}")
        time.sleep(delay)
        alive = child.poll() is None
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        reader.join(10)
        if not alive:
            stderr.seek(0)
            raise AssertionError(f"child died before the kill:\n{stderr.read()}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        stderr.close()
    assert child.returncode == -signal.SIGKILL
    acks = []
    for line in lines:  # a line cut by the kill has no newline and does not match: not acknowledged
        m = ACK.fullmatch(line)
        if m:
            acks.append((int(m.group(1)), m.group(2), int(m.group(3))))
        else:
            assert line == "READY\n" or not line.endswith("\n"), f"garbled line {line!r}"
    return acks


def test_acknowledged_responses_survive_sigkill(tmp_path: Path) -> None:
    rnd = random.Random(SEED)
    db = tmp_path / "crash.duckdb"
    started = time.monotonic()
    total_acks = 0
    for round_no in range(ROUNDS):
        delay = rnd.uniform(0.5, 2.0)
        acks = run_and_kill(db, round_no, delay, tmp_path)
        assert acks, f"round {round_no}: no write was acknowledged in {delay:.2f}s"
        total_acks += len(acks)
        print(f"round {round_no}: killed after {delay:.2f}s, {len(acks)} acknowledged writes")

        store = Store(db)  # reopening replays the WAL left by the kill
        try:
            cur = store._cur()
            current = {(r, u): a for r, u, a in cur.execute(
                "SELECT record_id, user_id, answer ->> '$.label' FROM responses WHERE user_id LIKE ?",
                [f"r{round_no}-%"]).fetchall()}
            history: dict[tuple[int, str], set[str]] = {}
            for r, u, a in cur.execute("SELECT record_id, user_id, answer ->> '$.label' FROM response_history "
                                       "WHERE user_id LIKE ?", [f"r{round_no}-%"]).fetchall():
                history.setdefault((r, u), set()).add(a)

            missing = []
            newest: dict[tuple[int, str], int] = {}
            for record_id, user, seq in acks:
                key = (record_id, user)
                newest[key] = max(newest.get(key, -1), seq)
                if current.get(key) != f"v{seq}" and f"v{seq}" not in history.get(key, set()):
                    missing.append((record_id, user, seq))
            assert missing == [], f"round {round_no}: {len(missing)} of {len(acks)} acknowledged writes lost"
            for key, seq in newest.items():  # the current answer is the last acknowledged one or newer
                assert int(current[key][1:]) >= seq, (key, current[key], seq)

            # the file is whole: a full scan of every table works, and earlier rounds are intact
            assert cur.execute("SELECT count(*) FROM responses").fetchone()[0] >= len(newest)
            cur.execute("SELECT * FROM response_history").fetchall()
            cur.execute("SELECT * FROM users").fetchall()
            assert store.record_count() == 40
            for earlier in range(round_no):
                assert cur.execute("SELECT count(*) FROM responses WHERE user_id LIKE ?",
                                   [f"r{earlier}-%"]).fetchone()[0] > 0
        finally:
            store.close()
    assert total_acks > 0
    assert time.monotonic() - started < 30


# --- SIGTERM while storage fails: nothing queued is dropped -------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import asyncio  # noqa: E402

import duckdb  # noqa: E402
import pytest  # noqa: E402

import drills  # noqa: E402
import loadgen  # noqa: E402
from loadgen import Person  # noqa: E402


def _writes(db: Path) -> tuple[dict[tuple[int, str], list[str]], list[tuple]]:
    """(current answers, every stored write as (record, user, updated_at) across answers and history)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        current = {(r, u): list(decode_answer(a).values()) for r, u, a in
                   con.execute("SELECT record_id, user_id, answer FROM responses").fetchall()}
        writes = con.execute("SELECT record_id, user_id, updated_at FROM responses UNION ALL "
                             "SELECT record_id, user_id, updated_at FROM response_history").fetchall()
    finally:
        con.close()
    return current, writes


@pytest.mark.parametrize("mode", ["write", "sync"])  # a full disk (ENOSPC), a broken one (EIO on fsync)
def test_sigterm_while_storage_fails_commits_every_queued_answer_at_the_next_start(tmp_path: Path,
                                                                                      mode: str) -> None:
    """The real app; the DuckDB file's writes fail (bench/failsync.c) while answers arrive, then SIGTERM.

    Before: "writer did not finish within 30 s; N ops still queued" and those answers were gone
    after the restart. Now: the stop takes seconds, the unsaved answers are in DATA_DIR/recovery,
    and the next start (storage back) commits each of them exactly once.
    """
    assert shutil.which("gcc") or shutil.which("cc"), "this test builds bench/failsync.c: install gcc"
    names = ["ann", "bob", "cyd"]
    base = loadgen.app_env(tmp_path, names, records=60, overlap=2)
    data_dir = Path(base["DATA_DIR"])
    loadgen.ingest(base)
    flag = tmp_path / "storage-failing"
    env = drills.failsync_env(base, flag, data_dir / "annotator.duckdb", mode)  # the database, not the folder
    persons = [Person(u) for u in names]
    server = loadgen.start_server("ours", env, tmp_path / "server.log")
    counts: dict[str, int] = {}
    try:
        async def run() -> None:
            crew = drills.Crew(server.url, persons)
            await crew.open()
            await crew.work(time.monotonic() + 1.5, random.Random(1), pause_p=0.0)
            counts["healthy"] = sum(len(p.accepted) for p in persons)
            flag.touch()
            await crew.work(time.monotonic() + 2.0, random.Random(2), pause_p=0.0)
            counts["all"] = sum(len(p.accepted) for p in persons)
            await crew.close()

        asyncio.run(run())
        assert counts["all"] > counts["healthy"] > 0, counts  # answers were accepted while storage failed
        started = time.monotonic()
        server.stop(timeout=60)
        stop_seconds = time.monotonic() - started
    finally:
        server.kill()
    log_text = server.log()
    assert stop_seconds < 25, f"the stop took {stop_seconds:.1f}s:\n{log_text[-3000:]}"
    assert "still queued" not in log_text and "they are lost" not in log_text, log_text[-3000:]
    assert "shutdown failed" not in log_text, log_text[-3000:]  # a failed checkpoint at close is only logged
    spilled = sorted((data_dir / "recovery").glob("unsaved-*.jsonl"))
    assert spilled, f"no recovery file in {data_dir / 'recovery'}:\n{log_text[-3000:]}"
    assert f"kept in {spilled[0]}" in log_text, log_text[-3000:]

    flag.unlink()
    again = loadgen.start_server("ours", base, tmp_path / "server2.log")  # storage is back, no shim
    try:
        again.stop(timeout=60)
    finally:
        again.kill()
    assert "recovery: committed" in again.log() and str(spilled[0]) in again.log(), again.log()[-3000:]
    assert not list((data_dir / "recovery").glob("unsaved-*.jsonl")), "a recovery file was left behind"
    current, writes = _writes(data_dir / "annotator.duckdb")
    lost = drills.missing(persons, current, saved_only=False)
    assert lost == [], f"{len(lost)} of {counts['all']} accepted answers missing: {lost[:5]}"
    twice = [w for w, n in collections.Counter(writes).items() if n > 1]
    assert twice == [], f"answers committed twice: {twice[:5]}"
