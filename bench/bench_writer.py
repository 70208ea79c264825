#!/usr/bin/env python
"""Writer throughput on emulated slow storage: group commit against commit-per-response.

Each measurement runs in a fresh subprocess on a fresh DuckDB file with the
slow-fsync shim preloaded (bench/slowsync.c, +30 ms per fsync/fdatasync by
default; a DuckDB commit is one write + one fdatasync of the WAL):

- group commit, open loop: ResponseWrites arrive at a fixed offered rate (as
  from many annotators) through one `Writer(store.apply)`; the ack latency of
  each is measured from its scheduled arrival to the moment its Future
  resolved (so a generator that falls behind counts against the writer).
- baseline: commit per response, `store.apply([op])` from 8 threads in a
  closed loop (each thread waits for its commit before the next).

Goal: 1,000 responses/s sustained with p99 ack < 100 ms.

    python bench/bench_writer.py                      # ~40 s
    python bench/bench_writer.py --rates 1000 --duration 10 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from annotator.model import ResponseWrite, utcnow  # noqa: E402

GOAL_RATE = 1000.0
GOAL_P99_MS = 100.0
USERS = 100


def percentile(samples: list[float], q: float) -> float | None:
    """Nearest-rank percentile (an observed value)."""
    if not samples:
        return None
    data = sorted(samples)
    k = min(len(data), max(1, math.ceil(q * len(data) / 100)))
    return data[k - 1]


def fsync_probe_ms(folder: Path) -> float:
    """One timed fdatasync in the measuring process: shows whether the shim is active."""
    with open(folder / "probe", "wb") as f:
        f.write(b"x")
        f.flush()
        started = time.perf_counter()
        os.fdatasync(f.fileno())
        return (time.perf_counter() - started) * 1000


def response(i: int) -> ResponseWrite:
    # distinct (record, user) per write: USERS people working through the records; first answers,
    # marked as the backend marks them (the scheduler knows), so they take the plain insert
    return ResponseWrite(i // USERS + 1, f"user{i % USERS:03d}", "submitted",
                         {"label": ("cat", "dog", "bird")[i % 3]}, None, 1500, utcnow(), first=True)


def open_store(folder: Path, n: int):
    from annotator.model import NewRecord
    from annotator.store import Store
    store = Store(folder / "bench.duckdb")
    store.add_records([NewRecord(f"img{i:06d}", f"/images/{i}.jpg", "0" * 64, 1024, 768, 200_000)
                       for i in range(n // USERS + 2)])
    return store


# --- measurements (run inside the shimmed subprocess) -------------------------------

class GcPauses:
    """Times the interpreter's garbage collections: a full one stops every thread, the writer included."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def measure_group(rate: float, duration: float, warmup: float, folder: Path) -> dict:
    from annotator.writer import Writer

    total = int(rate * (warmup + duration))
    store = open_store(folder, total)
    writer = Writer(store.apply)
    writer.start()
    # Only floats are kept per write, and each op and Future is released once acknowledged, as in the app.
    # (Keeping every Future and a prebuilt op list grew the heap by ~10 tracked objects per write, and the
    # full collections that growth triggers stopped the generator and the writer for up to 130 ms.)
    latencies: list[float | None] = [None] * total
    done_at: list[float] = [0.0] * total
    lags: list[float] = [0.0] * total
    failures: list[str] = []
    t0 = time.perf_counter() + 0.05
    interval = 1.0 / rate

    def on_done(i: int, due: float):
        def callback(future) -> None:
            now = time.perf_counter()
            if future.exception() is not None:
                failures.append(repr(future.exception()))
            latencies[i] = now - due
            done_at[i] = now
        return callback

    i = 0
    with GcPauses() as gc_pauses:
        while i < total:  # open loop: send everything whose time has come, then sleep to the next
            now = time.perf_counter()
            due = t0 + i * interval
            if due > now:
                time.sleep(due - now)
                continue
            while i < total and t0 + i * interval <= now:
                due = t0 + i * interval
                lags[i] = time.perf_counter() - due  # how late the generator sent it (counted in the ack)
                writer.put(response(i)).add_done_callback(on_done(i, due))
                i += 1
        sent_end = time.perf_counter()
        assert writer.flush(120), "writer did not drain"
    health = writer.health()
    writer.close()
    rows = store._cur().execute("SELECT count(*) FROM responses").fetchone()[0]
    store.close()
    assert not failures, failures[:3]
    assert all(latency is not None for latency in latencies), "a write was never acknowledged"

    first = int(rate * warmup)  # writes scheduled in the warm-up are not counted
    measured = [latency for latency in latencies[first:] if latency is not None]
    start = t0 + first * interval
    # sustained rate: acknowledgements that completed while the load was on, per second of load
    # (the drain after the last send is not counted, so a writer falling behind shows up as < offered)
    in_window = sum(1 for t in done_at[first:] if start <= t <= sent_end)
    full = [pause for generation, pause in gc_pauses.pauses if generation == 2]
    return {
        "mode": "group_commit_open_loop",
        "offered_per_s": rate,
        "duration_s": duration,
        "responses": total - first,
        "achieved_per_s": in_window / (sent_end - start),
        "drain_ms": (max(done_at) - sent_end) * 1000,
        "send_lag_p99_ms": percentile(lags[first:], 99) * 1000,
        "send_lag_max_ms": max(lags[first:]) * 1000,
        "send_rate_per_s": total / (sent_end - t0),
        "gc_collections": len(gc_pauses.pauses),
        "gc_full_collections": len(full),
        "gc_max_pause_ms": max((pause for _, pause in gc_pauses.pauses), default=0.0) * 1000,
        "ack_p50_ms": percentile(measured, 50) * 1000,
        "ack_p99_ms": percentile(measured, 99) * 1000,
        "ack_max_ms": max(measured) * 1000,
        "commits": health.commits,
        "mean_batch": health.mean_batch,
        "commit_p50_ms": (health.commit_latency["p50"] or 0) * 1000,
        "commit_p99_ms": (health.commit_latency["p99"] or 0) * 1000,
        "failed_commits": health.failed_commits,
        "rows_in_db": rows,
        "rows_expected": total,
    }


def measure_direct(threads_n: int, duration: float, folder: Path) -> dict:
    estimate = int(threads_n * duration * 200) + 1000  # ids to spare; far above what slow fsync allows
    store = open_store(folder, estimate)
    latencies: list[list[float]] = [[] for _ in range(threads_n)]
    errors: list[str] = []
    counter = iter(range(10**9))
    counter_lock = threading.Lock()
    stop_at = time.perf_counter() + duration + 0.05
    barrier = threading.Barrier(threads_n)

    def work(t: int) -> None:
        barrier.wait()
        while time.perf_counter() < stop_at:
            with counter_lock:
                i = next(counter)
            started = time.perf_counter()
            try:
                store.apply([response(i)])  # its own transaction and commit
            except Exception as exc:  # noqa: BLE001 - conflicts are counted, not fatal
                errors.append(type(exc).__name__)
                continue
            latencies[t].append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - started
    rows = store._cur().execute("SELECT count(*) FROM responses").fetchone()[0]
    store.close()
    flat = [x for per in latencies for x in per]
    return {
        "mode": "commit_per_response_closed_loop",
        "threads": threads_n,
        "duration_s": duration,
        "responses": len(flat),
        "achieved_per_s": len(flat) / elapsed,
        "ack_p50_ms": (percentile(flat, 50) or 0) * 1000,
        "ack_p99_ms": (percentile(flat, 99) or 0) * 1000,
        "ack_max_ms": (max(flat) if flat else 0) * 1000,
        "commits": len(flat),
        "mean_batch": 1.0,
        "failed_commits": len(errors),
        "rows_in_db": rows,
        "rows_expected": len(flat),
    }


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        folder = Path(tmp)
        probe = fsync_probe_ms(folder)
        if args.child == "group":
            result = measure_group(args.rate, args.duration, args.warmup, folder)
        else:
            result = measure_direct(args.threads, args.duration, folder)
        result["fsync_probe_ms"] = probe
        print("RESULT " + json.dumps(result), flush=True)


# --- the parent: one subprocess per measurement -------------------------------------

def run_child(extra: list[str], env: dict[str, str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"measurement {' '.join(extra)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")


def fmt(r: dict) -> str:
    ok = "" if r["rows_in_db"] == r["rows_expected"] else f"  ROWS {r['rows_in_db']}/{r['rows_expected']}!"
    if r["mode"] == "group_commit_open_loop":
        head = f"group commit   offered {r['offered_per_s']:6.0f}/s"
    else:
        head = f"commit/resp    {r['threads']} threads closed"
    return (f"{head}  achieved {r['achieved_per_s']:7.1f}/s  ack p50 {r['ack_p50_ms']:7.1f} ms  "
            f"p99 {r['ack_p99_ms']:7.1f} ms  max {r['ack_max_ms']:7.1f} ms  mean batch {r['mean_batch']:6.1f}  "
            + (f"commit p50 {r['commit_p50_ms']:5.1f} ms  " if "commit_p50_ms" in r else "")
            + (f"send lag p99 {r['send_lag_p99_ms']:4.1f} ms  gc max {r['gc_max_pause_ms']:5.1f} ms  "
               if "send_lag_p99_ms" in r else "")
            + f"commits {r['commits']:5d}  failed {r['failed_commits']}  n {r['responses']}  "
            f"fsync probe {r['fsync_probe_ms']:.1f} ms{ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,1000,1500",
                        help="offered responses/s for the group-commit runs, comma-separated")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each rate")
    parser.add_argument("--fsync-ms", type=float, default=30.0, help="delay added to every fsync/fdatasync")
    parser.add_argument("--baseline-threads", type=int, default=8)
    parser.add_argument("--baseline-duration", type=float, default=5.0)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    # internal: the measuring subprocess
    parser.add_argument("--child", choices=["group", "direct"], help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child(args)
        return

    import slowsync

    command = shlex.join([sys.executable, *sys.argv])
    print(f"command: {command}")
    env = slowsync.env(args.fsync_ms)
    env["PYTHONUNBUFFERED"] = "1"
    import duckdb
    print(f"python {platform.python_version()}, duckdb {duckdb.__version__}, {os.cpu_count()} cpus, "
          f"load avg {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"emulated storage: +{args.fsync_ms:g} ms per fsync/fdatasync "
          f"(LD_PRELOAD={env.get('LD_PRELOAD', '-')}, FSYNC_DELAY_US={env.get('FSYNC_DELAY_US', '0')})")
    print(f"goal: {GOAL_RATE:.0f} responses/s sustained with p99 ack < {GOAL_P99_MS:.0f} ms")

    results = []
    rates = [float(x) for x in args.rates.split(",") if x.strip()]
    for rate in rates:
        r = run_child(["--child", "group", "--rate", str(rate), "--duration", str(args.duration),
                       "--warmup", str(args.warmup)], env, timeout=120 + 3 * (args.duration + args.warmup))
        results.append(r)
        print(fmt(r), flush=True)
    if not args.no_baseline:
        r = run_child(["--child", "direct", "--threads", str(args.baseline_threads),
                       "--duration", str(args.baseline_duration)], env, timeout=120 + 3 * args.baseline_duration)
        results.append(r)
        print(fmt(r), flush=True)

    verdict = None
    at_goal = [r for r in results if r["mode"] == "group_commit_open_loop" and r["offered_per_s"] >= GOAL_RATE]
    if at_goal:
        r = min(at_goal, key=lambda x: x["offered_per_s"])
        met = r["achieved_per_s"] >= 0.98 * r["offered_per_s"] and r["ack_p99_ms"] < GOAL_P99_MS
        verdict = {"offered_per_s": r["offered_per_s"], "achieved_per_s": r["achieved_per_s"],
                   "ack_p99_ms": r["ack_p99_ms"], "met": met}
        print(f"goal at {r['offered_per_s']:.0f}/s offered: achieved {r['achieved_per_s']:.1f}/s, "
              f"p99 ack {r['ack_p99_ms']:.1f} ms -> {'MET' if met else 'NOT MET'}")
    else:
        print("goal: not evaluated (no rate >= 1000/s was run)")
    direct = [r for r in results if r["mode"] == "commit_per_response_closed_loop"]
    best = max((r for r in results if r["mode"] == "group_commit_open_loop"),
               key=lambda x: x["achieved_per_s"], default=None)
    if direct and best:
        print(f"group commit sustained {best['achieved_per_s']:.0f}/s vs {direct[0]['achieved_per_s']:.0f}/s "
              f"committing each response ({best['achieved_per_s'] / max(direct[0]['achieved_per_s'], 1e-9):.0f}x)")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "fsync_ms": args.fsync_ms, "results": results,
                                         "goal": verdict}, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
