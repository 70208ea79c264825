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
