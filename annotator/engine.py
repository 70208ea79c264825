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
from annotator.snapshot import restore_snapshot
from annotator.store import Store
from annotator.store_protocol import StoreProtocol
from annotator.task import TaskSpec, legacy_question, load_task

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


def open_engine(settings: Settings, task: TaskSpec | None = None) -> Engine:
    """Open (and migrate) the store the settings name, with the backend factory that goes with it.

    The task (read from TASK_FILE when not given and the file exists) says
    which question the answers of an older store were given to, for the
    migration to typed answers; a store that needs it and has none says so.
    """
    if task is None and settings.task_file.is_file():
        task = load_task(settings.task_file)
    legacy = legacy_question(task) if task is not None else None
    if uses_postgres(settings):
        pg = PgStore(settings.store_url, pool_size=settings.store_pool_size, legacy=legacy)
        return Engine(pg, partial(PgBackend, pg))
    duck = Store(settings.db_path, legacy=legacy)
    return Engine(duck, partial(LocalBackend, duck))


def open_store(settings: Settings, task: TaskSpec | None = None) -> StoreProtocol:
    """Open (and migrate) the store the settings name, without a backend (the command-line tools). In
    snapshot mode DATA_DIR's snapshot is restored first, as the app does: a tool never reads, or leaves
    behind, a local file that does not hold DATA_DIR's answers."""
    if settings.db_mode == "snapshot" and not uses_postgres(settings):
        restore_snapshot(settings)
    return open_engine(settings, task).store


def describe(settings: Settings) -> str:
    """Where the store is, password scrubbed."""
    return scrub_url(settings.store_url) if uses_postgres(settings) else str(settings.db_path)


__all__ = ["Backend", "BackendFactory", "Engine", "describe", "mode", "open_engine", "open_store",
           "store_files", "uses_postgres"]
