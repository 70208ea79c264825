"""Which store the settings select: the DuckDB file (default) or PostgreSQL (STORE_URL).

`open_store(settings)` is the one place that decides, so the app, the CLI
commands and the tests open the same kind of store for the same settings.
"""

from __future__ import annotations

from typing import Union

from annotator.config import Settings, scrub_url
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


__all__ = ["AnyStore", "describe", "open_store"]
