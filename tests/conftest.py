"""Puts tests/ and the repository root on sys.path and keeps the libraries off the network.

Shared helpers live in modules beside this file: `apphelpers` (the real app
in a subprocess), `clients` (acting as a person over HTTP), `oauth_cookies`,
`fakehub` (a local stand-in for the Hub); `pgserver` and `storehelpers`
(a PostgreSQL database per test, stores of both engines) are fixture plugins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

pytest_plugins = ("pgserver", "storehelpers")  # pg_url, make_store: a fresh database per test

# The longest files (start and kill many apps, or drive browsers), measured with --durations=0: run first, so
# that with `--dist loadfile` no worker picks one of them up last while the others sit idle at the end.
SLOWEST_FIRST = ("test_drills.py", "test_datadir_lock.py", "test_crash.py", "test_integration_api.py",
                 "test_browser.py", "test_server.py", "test_private_files.py", "test_security.py",
                 "test_fuzz_routes.py", "test_pg_assignment.py", "test_annotate_keys_browser.py",
                 "test_poison_answer.py", "test_dashboard_page_browser.py", "test_hostile_input.py")


def pytest_collection_modifyitems(items: list) -> None:
    """Collection order, except the files of SLOWEST_FIRST ahead (a stable sort: each file's tests keep theirs)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
