"""Which store the settings select: the DuckDB file (default) or PostgreSQL (STORE_URL).

`open_store(settings)` is the one place that decides, so the app, the CLI
commands and the tests open the same kind of store for the same settings.
Also the `python -m annotator migrate` command.
"""

from __future__ import annotations

import argparse
from typing import Any, Union

from annotator.config import Settings, load_settings, scrub_url
from annotator.pg_store import PgStore
from annotator.store import Store

AnyStore = Union[Store, PgStore]


def open_store(settings: Settings) -> AnyStore:
    """Open (and migrate) the store the settings name: PostgreSQL when STORE_URL is set, else DuckDB."""
    if settings.store_url:
        return PgStore(settings.store_url, pool_size=settings.store_pool_size)
    return Store(settings.db_path)


def describe(settings: Settings) -> str:
    """Where the store is, password scrubbed."""
    return scrub_url(settings.store_url) if settings.store_url else str(settings.db_path)


def _run_migrate(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings)  # opening applies the pending migrations
    try:
        version = store.schema_version()
    finally:
        store.close()
    print(f"{describe(settings)}: schema version {version}")
    return 0


def add_command(subparsers: Any) -> None:
    """Add `migrate` to the `python -m annotator` command line."""
    parser = subparsers.add_parser(
        "migrate", help="apply pending schema migrations and print the schema version",
        description="Apply pending schema migrations to the store STORE_URL selects (the DuckDB file in "
                    "DATA_DIR when unset) and print the schema version. Safe to run again, and beside running "
                    "replicas on PostgreSQL.")
    parser.set_defaults(run=_run_migrate)


__all__ = ["AnyStore", "add_command", "describe", "open_store"]
