"""Start the real app (`python app.py`) in a subprocess and talk to it over HTTP.

The process handling is the benchmarks' (`bench/loadgen.py`); here only the
environment the tests give the app.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from loadgen import Server as AppServer, free_port, start_server  # noqa: E402

__all__ = ["AppServer", "start_app"]


def start_app(data_dir: Path, *, env: dict[str, str] | None = None, timeout: float = 180) -> AppServer:
    """Run app.py on a free port with DATA_DIR=data_dir; wait until it answers.

    The wait is loadgen's 180 s: the suite's workers start apps side by side on 2 cores (three at once in
    some modules), and on a busy machine (load 14) starts took 47-76 s alone and over 120 s side by side."""
    port = free_port()
    # offline flags some test modules set for themselves are not the app's: it gets them only when asked
    inherited = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    full_env = {**inherited, "HF_HUB_OFFLINE": "0", "DATA_DIR": str(data_dir),
                "CACHE_DIR": str(data_dir.parent / "cache"), **(env or {})}
    return start_server("ours", full_env, data_dir.parent / f"app-{port}.log", port=port, timeout=timeout)
