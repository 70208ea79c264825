"""kill -9 in the middle of writing: every acknowledged response survives.

A child process (crash_child.py) writes through Store + Writer from several
threads and prints `ACK <record_id> <user> <answer>` only after the write's
Future resolved. The parent SIGKILLs it at a random (seeded) moment, reopens
the file, and checks each acknowledged answer is there: as the current answer,
or in the history if a later write by the same person replaced it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

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
                "SELECT record_id, user_id, answer[1] FROM responses WHERE user_id LIKE ?",
                [f"r{round_no}-%"]).fetchall()}
            history: dict[tuple[int, str], set[str]] = {}
            for r, u, a in cur.execute("SELECT record_id, user_id, answer[1] FROM response_history "
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
