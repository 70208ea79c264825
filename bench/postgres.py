"""A throwaway PostgreSQL server for the benchmarks, with the same emulated commit delay as the app.

`scripts/pg.sh` starts it (as the `postgres` user when run as root). With a
delay, the slow-fsync shim is preloaded into the server, so a commit on
PostgreSQL pays the same +N ms per fsync as a DuckDB commit does in the
single-process runs: the comparison is between designs, not disks.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

import slowsync
from loadgen import free_port

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PgServer:
    folder: Path
    url: str

    def pids(self) -> list[int]:
        """The postmaster and its backends (they come and go with connections)."""
        pid_file = self.folder / "data" / "postmaster.pid"
        try:
            main = psutil.Process(int(pid_file.read_text().split()[0]))
            return [main.pid] + [c.pid for c in main.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            return []

    def stop(self) -> None:
        subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "stop", str(self.folder)], check=False)


def start(delay_ms: float) -> PgServer:
    """Start a server on a free loopback port; its URL names the `postgres` database."""
    folder = Path(tempfile.mkdtemp(prefix="crowd-pg-"))
    folder.chmod(0o755)
    env = dict(os.environ)
    if delay_ms > 0:
        # in a folder the postgres user can read (root's home is not)
        shim_dir = Path(tempfile.gettempdir()) / "annotator-bench-shared"
        shim_dir.mkdir(mode=0o755, exist_ok=True)
        shim = slowsync.build(shim_dir)
        shim.chmod(0o755)
        env.update({"LD_PRELOAD": str(shim), "FSYNC_DELAY_US": str(int(delay_ms * 1000))})
    port = free_port()
    subprocess.run(["bash", str(ROOT / "scripts" / "pg.sh"), "start", str(folder), str(port)], env=env, check=True)
    return PgServer(folder, f"postgresql://postgres@127.0.0.1:{port}/postgres")
