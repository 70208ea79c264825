"""Which engine the settings select, the one place that decides: the DuckDB file (default) or PostgreSQL
(STORE_URL).

`open_engine(settings)` opens the store and names the assignment backend that
goes with it (the in-memory scheduler beside one DuckDB file, lease rows
beside a PostgreSQL database shared by replicas); `open_store(settings)` is
the store alone, for the command-line tools. The app, the CLI commands and the
tests thus open the same kind of store for the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Union

from annotator.backend import LocalBackend
from annotator.config import Settings, scrub_url
from annotator.pg_backend import PgBackend
from annotator.pg_store import PgStore
from annotator.store import Store
from annotator.store_protocol import StoreProtocol

# the assignment backends an engine builds: both are WorkBackends with a group-commit writer
Backend = Union[LocalBackend, PgBackend]
# (hand-out order, overlap, lease ttl, recovery_dir=...) -> the backend over the engine's store
BackendFactory = Callable[..., Backend]


@dataclass(frozen=True)
class Engine:
    """An open store and how to build the assignment backend that belongs with it."""
    store: StoreProtocol
    backend: BackendFactory


def uses_postgres(settings: Settings) -> bool:
    """PostgreSQL when STORE_URL is set; the DuckDB file in DATA_DIR otherwise."""
    return bool(settings.store_url)


def mode(settings: Settings) -> str:
    """The engine as DATA_DIR's lock and the storage probe name it: "postgres", or the DuckDB DB_MODE."""
    return "postgres" if uses_postgres(settings) else settings.db_mode


def store_files(settings: Settings) -> tuple[Path, ...]:
    """The files in DATA_DIR that opening the store creates (none for PostgreSQL: its data is on the server)."""
    if uses_postgres(settings):
        return ()
    return settings.db_path, settings.db_path.with_name(settings.db_path.name + ".wal")


def open_engine(settings: Settings) -> Engine:
    """Open (and migrate) the store the settings name, with the backend factory that goes with it."""
    if uses_postgres(settings):
        pg = PgStore(settings.store_url, pool_size=settings.store_pool_size)
        return Engine(pg, partial(PgBackend, pg))
    duck = Store(settings.db_path)
    return Engine(duck, partial(LocalBackend, duck))


def open_store(settings: Settings) -> StoreProtocol:
    """Open (and migrate) the store the settings name, without a backend (the command-line tools)."""
    return open_engine(settings).store


def describe(settings: Settings) -> str:
    """Where the store is, password scrubbed."""
    return scrub_url(settings.store_url) if uses_postgres(settings) else str(settings.db_path)


__all__ = ["Backend", "BackendFactory", "Engine", "describe", "mode", "open_engine", "open_store",
           "store_files", "uses_postgres"]
