#!/usr/bin/env python
"""Export time and peak memory against the number of records.

For each size N (default 2,500 / 5,000 / 10,000 records, 3 answers each, so
10,000 records carry 30,000 answers) a fresh store is built with small
generated images (48x48 PNG of noise, about 7 KB each, all distinct), then a
SEPARATE process opens it and exports, so its peak figures belong to that
export alone:

- `hub files`: `write_hub_files`, i.e. everything a push does before the
  upload: one read-only pass over the store, majority/agreement per record,
  parquet files with the images embedded;
- `local`: `export_local` (Parquet + JSONL + CSV of both tables);
- `push` (with --push): `Exporter.push_now()` to a fake Hub (tests/fakehub.py)
  running in a third process, so its copy of the upload is not counted.

Memory: `tracemalloc` peak (Python objects), the pyarrow pool's peak
(`max_memory`) and the process RSS (sampled every 5 ms; peak minus the RSS
right before the export, i.e. after the imports and opening the store).
Goal: 10,000 records in under 60 s, memory flat in N (it grows with the shard
size, SHARD_ROWS records or SHARD_BYTES of images, not with N).

    python bench/bench_export.py                         # ~1-2 min on 2 cores
    python bench/bench_export.py --sizes 10000 --push --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKEN = "hf_benchToken000000000000000000000"


def _settings(folder: Path, endpoint_repo: str | None = None):
    from annotator.config import load_settings
    env = {"DATA_DIR": str(folder / "data"), "CACHE_DIR": str(folder / "cache"), "AUTH_MODE": "local",
           "TASK_FILE": str(folder / "task.toml"), "EXPORT_REPO": endpoint_repo or "", "HF_TOKEN": TOKEN}
    return load_settings(env)


def _task():
    from annotator.task import Label, classification_task
    return classification_task("Bench", tuple(Label(n, str(i + 1)) for i, n in enumerate(("cat", "dog", "bird", "fish"))),
                               question="Which?", overlap=3)


def setup(folder: Path, n: int, answers: int) -> None:
    """Build a store of n records with `answers` answers each (run in its own process)."""
    import hashlib
    import io
    from datetime import datetime, timedelta

    from PIL import Image

    from annotator.model import NewRecord, ResponseWrite
    from annotator.store import Store
    settings = _settings(folder)
    store = Store(settings.db_path)
    rows = []
    for i in range(n):
        buf = io.BytesIO()
        Image.frombytes("RGB", (48, 48), random.Random(i).randbytes(48 * 48 * 3)).save(buf, "PNG")
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}.png"
        (settings.images_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings.images_dir / rel).write_bytes(data)
        rows.append(NewRecord(f"bench:{i}", rel, sha, 48, 48, len(data), {"i": i}, None))
        if len(rows) == 1000:
            store.add_records(rows)
            rows = []
    store.add_records(rows)
    rng = random.Random(0)
    t0 = datetime(2025, 1, 1)
    ops = []
    labels = ("cat", "dog", "bird", "fish")
    for rid in store.record_ids():
        for k in range(answers):
            ops.append(ResponseWrite(rid, f"user{(rid + k) % 30}", "submitted", {"label": rng.choice(labels)}, None,
                                     rng.randint(300, 5000), t0 + timedelta(seconds=rid * answers + k)))
        if len(ops) >= 5000:
            store.apply(ops)
            ops = []
    store.apply(ops)
    store.close()


class _RssSampler:
    """Peak resident set size seen by a thread reading /proc/self/statm every `every` seconds."""

    def __init__(self, every: float = 0.005) -> None:
        self.every, self.peak = every, self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def measure(folder: Path, mode: str, endpoint: str | None) -> dict:
    """Export the store in `folder` once (run in its own process); return the figures."""
    import tracemalloc

    import pyarrow as pa

    from annotator.export.format import records_features
    from annotator.export.hub import Exporter, write_hub_files
    from annotator.export.local import export_local
    from annotator.store import Store
    repo = "bench/results" if mode == "push" else None
    settings = _settings(folder, repo)
    task = _task()
    records_features(task)  # import datasets before the baseline
    store = Store(settings.db_path)
    out = folder / f"out-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    base_rss = _RssSampler.now()
    tracemalloc.start()
    started = time.perf_counter()
    with _RssSampler() as rss:
        if mode == "hub files":
            out.mkdir()
            files, summary = write_hub_files(store, task, settings.images_dir, out)
            size = sum(p.stat().st_size for paths in files.values() for p in paths)
        elif mode == "local":
            result = export_local(store, task, out, settings.images_dir)
            summary = result.summary
            size = sum(p.stat().st_size for p in result.files.values())
        else:
            exporter = Exporter(store, task, settings, endpoint=endpoint, retries=1)
            pushed = exporter.push_now()
            exporter.stop(final_push=False)
            summary = None
            size = 0
            assert pushed.pushed
    seconds = time.perf_counter() - started
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.close()
    shutil.rmtree(out, ignore_errors=True)
    return {
        "mode": mode,
        "seconds": round(seconds, 2),
        "records": summary.records if summary else None,
        "answers": summary.responses if summary else None,
        "output_mb": round(size / 2**20, 1),
        "tracemalloc_peak_mb": round(py_peak / 2**20, 1),
        "arrow_pool_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1),
        "rss_before_mb": round(base_rss / 2**20, 1),
        "rss_peak_mb": round(rss.peak / 2**20, 1),
        "rss_growth_mb": round((rss.peak - base_rss) / 2**20, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _child(args: list[str]) -> str:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                               "HF_HUB_DISABLE_TELEMETRY": "1"})
    if proc.returncode:
        raise SystemExit(f"child {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _start_fakehub() -> tuple[subprocess.Popen, str]:
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from fakehub import FakeHub; "
            "h = FakeHub(token=sys.argv[2]).start(); print(h.endpoint, flush=True); time.sleep(10**6)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT / "tests"), TOKEN], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2500,5000,10000", help="record counts, comma separated")
    parser.add_argument("--answers", type=int, default=3, help="answers per record")
    parser.add_argument("--push", action="store_true", help="also push to a fake Hub in another process")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--_setup", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--_measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._setup:
        setup(Path(args._setup[0]), int(args._setup[1]), int(args._setup[2]))
        return 0
    if args._measure:
        folder, mode, endpoint = args._measure
        print(json.dumps(measure(Path(folder), mode, endpoint or None)))
        return 0

    command = "python bench/bench_export.py " + " ".join(sys.argv[1:])
    print(f"$ {command}")
    print(f"{platform.platform()}, {os.cpu_count()} cpus, Python {platform.python_version()}")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    modes = ["hub files", "local"] + (["push"] if args.push else [])
    hub, endpoint = _start_fakehub() if args.push else (None, "")
    results = []
    try:
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
                t0 = time.perf_counter()
                _child(["--_setup", tmp, str(n), str(args.answers)])
                print(f"\n{n} records x {args.answers} answers (store built in {time.perf_counter() - t0:.0f}s)")
                for mode in modes:
                    row = json.loads(_child(["--_measure", tmp, mode, endpoint]).strip().splitlines()[-1])
                    row["n"] = n
                    results.append(row)
                    print(f"  {mode:9s} {row['seconds']:6.1f} s  output {row['output_mb']:6.1f} MB  "
                          f"tracemalloc peak {row['tracemalloc_peak_mb']:5.1f} MB  arrow peak "
                          f"{row['arrow_pool_peak_mb']:5.1f} MB  RSS +{row['rss_growth_mb']:5.1f} MB "
                          f"(peak {row['rss_peak_mb']:.0f} MB)")
    finally:
        if hub is not None:
            hub.kill()
            hub.wait()
    print("\nGoal: 10,000 records with 30,000 answers under 60 s; memory flat in the number of records.")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "platform": platform.platform(),
                                               "cpus": os.cpu_count(), "results": results}, indent=2))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
