"""Figures for the in-memory scheduler: start-up restore, and the click path.

(a) restore: build a Scheduler over `--records` ids and restore `--responses`
    stored answers (overlap `--overlap`); wall time, tracemalloc peak and the
    RSS delta. Goal: under 2 s for 100k records / 300k responses.
(b) cycles: `--users` users take turns doing next + submit on the scheduler
    alone (no store, no UI); throughput and p50/p99 latency per cycle, also
    with a prefetch buffer (promote + submit + lease_soft refill) and from
    `--threads` threads at once.

Run from the repository root:
    python bench/bench_scheduler.py [--records 100000 --responses 300000 ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from annotator.model import hand_out_order  # noqa: E402
from annotator.scheduler import Scheduler  # noqa: E402


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def make_order(n: int, kind: str, seed: int) -> list[int] | range:
    if kind == "range":
        return range(n)
    return hand_out_order(range(n), "shuffle", seed)  # the app's seeded shuffle


def make_facts(order, n_responses: int, overlap: int, n_users: int, skip_rate: float, seed: int):
    """Answers as a workshop leaves them: records in order, `overlap` distinct users each, some skips."""
    rnd = random.Random(seed)
    users = [f"user{i:04d}" for i in range(n_users)]
    facts = []
    i = 0
    while len(facts) < n_responses:
        rid = order[i % len(order)]
        for user in rnd.sample(users, min(overlap, n_users)):
            facts.append((rid, user, "skipped" if rnd.random() < skip_rate else "submitted"))
            if len(facts) == n_responses:
                break
        i += 1
    return facts


def bench_restore(args) -> dict:
    order = make_order(args.records, args.order, args.seed)
    facts = make_facts(order, args.responses, args.overlap, args.users, args.skip_rate, args.seed)
    times = []
    cpu = []
    rss_delta = None
    for attempt in range(args.repeat):
        gc.collect()
        before = rss_bytes()
        t0, c0 = time.perf_counter(), time.process_time()
        s = Scheduler(order, args.overlap, args.ttl)
        s.restore(facts)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        after = rss_bytes()
        if attempt == 0 and before is not None and after is not None:
            rss_delta = after - before
        counts = s.counts()
        del s
    gc.collect()
    tracemalloc.start()
    s = Scheduler(order, args.overlap, args.ttl)
    s.restore(facts)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del s
    return {"records": args.records, "responses": args.responses, "overlap": args.overlap,
            "order": args.order, "seconds_best": min(times), "seconds_median": statistics.median(times),
            "cpu_seconds_best": min(cpu),
            "tracemalloc_peak_bytes": peak, "tracemalloc_retained_bytes": current,
            "rss_delta_bytes": rss_delta, "counts": counts}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency_summary(name: str, lat_ns: list[int], wall: float) -> dict:
    us = [x / 1000 for x in lat_ns]
    return {"scenario": name, "cycles": len(us), "per_second": len(us) / wall if wall else 0.0,
            "p50_us": pct(us, 0.50), "p99_us": pct(us, 0.99), "max_us": max(us) if us else 0.0}


def bench_cycles(args) -> list[dict]:
    users = [f"user{i:04d}" for i in range(args.users)]
    out = []

    # next + submit, one thread, users taking turns
    s = Scheduler(make_order(args.records, args.order, args.seed), args.overlap, args.ttl)
    lat: list[int] = []
    clock = time.perf_counter_ns
    t0 = time.perf_counter()
    for i in range(args.cycles):
        u = users[i % len(users)]
        a = clock()
        st = s.next(u)
        if st.kind != "ready":
            break
        s.submit(u, st.record_id)
        lat.append(clock() - a)
    out.append(latency_summary("next+submit", lat, time.perf_counter() - t0))

    # the service's path with a prefetch buffer: promote the head of the buffer, submit, refill
    s = Scheduler(make_order(args.records, args.order, args.seed), args.overlap, args.ttl)
    buffers: dict[str, list[int]] = {u: [] for u in users}
    lat = []
    t0 = time.perf_counter()
    for i in range(args.cycles):
        u = users[i % len(users)]
        buf = buffers[u]
        a = clock()
        rid = None
        while buf and rid is None:
            cand = buf.pop(0)
            if s.promote(u, cand):
                rid = cand
        if rid is None:
            st = s.next(u)
            if st.kind != "ready":
                break
            rid = st.record_id
        s.submit(u, rid)
        buf.extend(s.lease_soft(u, args.prefetch - len(buf)))
        lat.append(clock() - a)
    out.append(latency_summary(f"promote+submit+lease_soft({args.prefetch})", lat, time.perf_counter() - t0))

    # next + submit from several threads at once: the lock under contention
    s = Scheduler(make_order(args.records, args.order, args.seed), args.overlap, args.ttl)
    per_thread = max(1, args.cycles // args.threads)
    lats: list[list[int]] = [[] for _ in range(args.threads)]
    barrier = threading.Barrier(args.threads + 1)

    def work(k: int) -> None:
        mine = lats[k]
        barrier.wait()
        for i in range(per_thread):
            u = users[(k + i * args.threads) % len(users)]
            a = clock()
            st = s.next(u)
            if st.kind != "ready":
                continue
            s.submit(u, st.record_id)
            mine.append(clock() - a)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(args.threads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    out.append(latency_summary(f"next+submit, {args.threads} threads", [x for m in lats for x in m], wall))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--responses", type=int, default=300_000)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--order", choices=["shuffled", "range"], default="shuffled")
    p.add_argument("--skip-rate", type=float, default=0.05)
    p.add_argument("--ttl", type=float, default=600.0)
    p.add_argument("--cycles", type=int, default=100_000, help="next+submit cycles per scenario")
    p.add_argument("--prefetch", type=int, default=4, help="buffer depth in the prefetch scenario")
    p.add_argument("--threads", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="restore runs (best and median reported)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)

    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    print(f"command: {command}")
    print(f"python {env['python']} on {env['machine']}, {env['cpus']} cpus")

    r = bench_restore(args)
    mib = 1 << 20
    rss = f"{r['rss_delta_bytes'] / mib:.1f} MiB" if r["rss_delta_bytes"] is not None else "n/a"
    print(f"restore: {r['records']} records ({r['order']} order), {r['responses']} responses, overlap {r['overlap']}: "
          f"best {r['seconds_best']:.3f} s, median {r['seconds_median']:.3f} s of {args.repeat} "
          f"(cpu best {r['cpu_seconds_best']:.3f} s; goal < 2 s)")
    print(f"restore memory: tracemalloc peak {r['tracemalloc_peak_bytes'] / mib:.1f} MiB, "
          f"retained {r['tracemalloc_retained_bytes'] / mib:.1f} MiB, RSS delta {rss}")
    print(f"restore counts: {r['counts']}")

    cycles = bench_cycles(args)
    for c in cycles:
        print(f"cycles [{c['scenario']}], {args.users} users, {args.records} records, overlap {args.overlap}: "
              f"{c['cycles']} cycles, {c['per_second']:,.0f}/s, p50 {c['p50_us']:.1f} us, "
              f"p99 {c['p99_us']:.1f} us, max {c['max_us']:.0f} us")

    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "env": env, "restore": r, "cycles": cycles},
                                              indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
