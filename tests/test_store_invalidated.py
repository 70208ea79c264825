"""A read racing a failed commit is served, not turned into an error page.

A failed fsync invalidates the whole DuckDB database. The writer marks the
store for reconnection only after its commit has failed; a person's click
that reads in between met FatalException and saw "Something went wrong"
(CI, stop 21). Here a child process under the failing-storage shim
(bench/failsync.c) invalidates the database with a write that bypasses the
writer, then reads from several threads while storage keeps failing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import drills  # noqa: E402

CHILD = textwrap.dedent("""
    import json, sys, threading
    from pathlib import Path
    import duckdb
    from annotator.model import NewRecord
    from annotator.store import Store

    db, flag = Path(sys.argv[1]), Path(sys.argv[2])
    store = Store(db)
    store.add_records([NewRecord(f"k{i}", f"{i}.png", "0" * 64, 4, 4, 10) for i in range(3)])
    reader = {}
    threading.Thread(target=lambda: reader.setdefault("before", store.record_count())).start()
    flag.touch()  # from here every fsync under the folder fails
    try:
        store._db.execute("INSERT INTO users VALUES ('x', now(), now())")  # an invalidating commit
        invalidated = False
    except duckdb.FatalException:
        invalidated = True
    out = {"invalidated": invalidated, "reads": []}
    def read():
        out["reads"].append([store.record_count(), store.record(2).source_key, len(store.stats()["users"])])
    threads = [threading.Thread(target=read) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(out))
""")


def test_reads_after_an_invalidating_commit_reconnect_and_answer(tmp_path: Path) -> None:
    assert shutil.which("gcc") or shutil.which("cc"), "this test builds bench/failsync.c: install gcc"
    data = tmp_path / "data"
    data.mkdir()
    flag = tmp_path / "storage-failing"
    env = drills.failsync_env({"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}, flag, data, "sync")
    done = subprocess.run([sys.executable, "-c", CHILD, str(data / "a.duckdb"), str(flag)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["invalidated"], "the shim did not make the commit fail: the test proves nothing"
    assert out["reads"] == [[3, "k1", 0]] * 4
