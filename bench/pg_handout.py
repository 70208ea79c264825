"""Figures for the PostgreSQL hand-out late in a big workshop: lease latency against completed records.

A throwaway PostgreSQL server (or `--url`) gets `--records` records of which
the first `--complete` are finished (one answer each, by crowd users, as a
workshop leaves them: started records come first in the hand-out order).
New people then take a record to show (`next`) and fill a buffer
(`lease_soft`), as on the first click of every session; p50/p99 per call,
and the team counts every replica reads once a second.

The baseline is the same database without the partial indexes of migration 3
(the single hand-out index before it), measured in the same run: the
hand-out then walks past every completed record.

Run from the repository root:
    python bench/pg_handout.py [--records 100000 --complete 50000 --calls 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402

import postgres  # noqa: E402
from annotator.pg_leases import PgLeases  # noqa: E402
from annotator.pg_store import PgStore  # noqa: E402

BEFORE_MIGRATION_3 = """
    DROP INDEX records_open; DROP INDEX records_incomplete;
    CREATE INDEX records_hand_out ON records (touched DESC, rank, id);
    ANALYZE records;
"""


def fill(url: str, records: int, complete: int) -> None:
    """Rows as ingest and a crowd leave them: answered records carry their counters and a response."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE records, responses, response_history, leases, gold_handouts")
        conn.execute("""INSERT INTO records (id, source_key, image_path, sha256, width, height, size_bytes,
                                             position, created_at, rank)
                        SELECT g, 'key-' || g, 'images/' || g || '.jpg', md5(g::text), 640, 480, 50000,
                               g, now(), g - 1 FROM generate_series(1, %s) g""", [records])
        conn.execute("UPDATE records SET submitted = 1, touched = true WHERE id <= %s", [complete])
        conn.execute("""INSERT INTO responses (record_id, user_id, status, answer, created_at, updated_at)
                        SELECT g, 'crowd-' || (g %% 200), 'submitted', ARRAY['cat'], now(), now()
                        FROM generate_series(1, %s) g""", [complete])
        conn.execute("VACUUM ANALYZE records")
        conn.execute("VACUUM ANALYZE responses")


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in samples)
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2)}


def measure(leases: PgLeases, calls: int, prefix: str) -> dict[str, dict[str, float]]:
    """Each call a new person: `next` then a buffer of 3; their leases go back after, as a session ends."""
    nxt, soft, counts = [], [], []
    now = time.time()
    for i in range(calls):
        user = f"{prefix}-{i}"
        t0 = time.perf_counter()
        state = leases.next(user, now)
        t1 = time.perf_counter()
        leases.lease_soft(user, 3, now)
        t2 = time.perf_counter()
        assert state.kind == "ready", state
        nxt.append(t1 - t0)
        soft.append(t2 - t1)
        leases.release(user, None, now)
    for _ in range(max(5, calls // 10)):
        t0 = time.perf_counter()
        leases.counts(now)
        counts.append(time.perf_counter() - t0)
    return {"next": percentiles(nxt), "lease_soft_3": percentiles(soft), "counts": percentiles(counts)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--complete", type=int, default=50_000, help="records already finished (the first ones)")
    p.add_argument("--calls", type=int, default=200, help="people arriving, per variant")
    p.add_argument("--url", help="an existing PostgreSQL database to fill (its tables are emptied!)")
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)
    command = "python bench/pg_handout.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    server = None if args.url else postgres.start(0)
    url = args.url or server.url  # type: ignore[union-attr]
    try:
        store = PgStore(url)
        try:
            leases = PgLeases(store.pool, overlap=1, ttl=60.0, replica="bench")
            fill(url, args.records, args.complete)
            leases.set_order(list(range(1, args.records + 1)))
            ours = measure(leases, args.calls, "ours")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(BEFORE_MIGRATION_3)
            baseline = measure(leases, args.calls, "baseline")
        finally:
            store.close()
    finally:
        if server is not None:
            server.stop()
    print(command)
    print(f"{args.records:,} records, {args.complete:,} complete; {args.calls} people arriving; "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'call':<14}{'ours p50/p99':>18}{'baseline p50/p99':>22}{'ratio p50':>11}")
    for call in ours:
        o, b = ours[call], baseline[call]
        print(f"{call:<14}{o['p50_ms']:>8.2f} / {o['p99_ms']:<7.2f}{b['p50_ms']:>10.2f} / {b['p99_ms']:<9.2f}"
              f"{o['p50_ms'] / b['p50_ms']:>9.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "records": args.records,
                                               "complete": args.complete, "ours": ours, "baseline": baseline},
                                              indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
