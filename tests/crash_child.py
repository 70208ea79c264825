"""Child process for test_crash.py: write through Store + Writer until killed.

    python crash_child.py DB_PATH ROUND [THREADS] [RECORDS]

Prints `READY` once the store is open, then, from several threads, submits
ResponseWrites in a loop and prints `ACK <record_id> <user> <answer>` (flushed)
only after the Future of that write resolved, i.e. after its commit returned.
Thread t of round R is user `r<R>-t<t>`; its i-th write answers record
`i % RECORDS + 1` with the answer `v<i>`, so later passes edit earlier answers.
Runs until SIGKILLed by the parent.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotator.model import NewRecord, ResponseWrite, UserSeen  # noqa: E402
from annotator.store import Store  # noqa: E402
from annotator.writer import Writer  # noqa: E402


def main() -> None:
    path, round_no = sys.argv[1], int(sys.argv[2])
    threads_n = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    records_n = int(sys.argv[4]) if len(sys.argv) > 4 else 40
    store = Store(path)
    store.add_records([NewRecord(f"img{i:04d}", f"/images/{i}.jpg", "0" * 64, 100, 100, 1000)
                       for i in range(records_n)])
    writer = Writer(store.apply)
    writer.start()
    out_lock = threading.Lock()
    print("READY", flush=True)

    def annotate(t: int) -> None:
        user = f"r{round_no}-t{t}"
        i = 0
        while True:
            record_id = i % records_n + 1
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            ack = writer.put(ResponseWrite(record_id, user, "submitted", {"label": f"v{i}"}, None, 10, now))
            if i % 10 == 0:
                writer.put(UserSeen(user, now))  # unacknowledged side writes in the same batches
            ack.result()
            with out_lock:
                sys.stdout.write(f"ACK {record_id} {user} v{i}\n")
                sys.stdout.flush()
            i += 1

    threads = [threading.Thread(target=annotate, args=(t,), daemon=True) for t in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
