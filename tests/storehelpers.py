"""Stores of both engines for the tests: `make_store` opens a DuckDB file or a PostgreSQL database.

Tests that take `make_store` (or `any_store`) run once per engine. The
PostgreSQL databases come from `pgserver` (skipped without a server, unless
ANNOTATOR_REQUIRE_PG=1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from pgserver import create_database, drop_database

from annotator.model import Answer
from annotator.pg_store import PgStore
from annotator.store import Store
from annotator.store_protocol import StoreProtocol

ENGINES = ("duckdb", "postgresql")


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(engine: str, tmp_path: Path) -> Iterator[Callable[[], StoreProtocol]]:
    """Opens a new, empty store of the test's engine; all are closed (and dropped) after the test."""
    opened: list[StoreProtocol] = []
    databases: list[str] = []

    def make() -> StoreProtocol:
        if engine == "duckdb":
            store: StoreProtocol = Store(tmp_path / f"store{len(opened)}.duckdb")
        else:
            databases.append(create_database())
            store = PgStore(databases[-1])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    for url in databases:
        drop_database(url)


@pytest.fixture
def any_store(make_store: Callable[[], StoreProtocol]) -> StoreProtocol:
    return make_store()


def rows(store: StoreProtocol, sql: str) -> list[tuple]:
    """Run a read query written in SQL both engines speak, on the engine's own connection."""
    if isinstance(store, PgStore):
        return store._all(sql)
    return store._cur().execute(sql).fetchall()


def typed(labels: tuple[str, ...], status: str = "submitted") -> Answer:
    """Labels as a typed answer for store tests (the store does not check answers against a task): one
    label answers the question "label", several the question "labels"; a skip is {}."""
    if status != "submitted" or not labels:
        return {}
    return {"label": labels[0]} if len(labels) == 1 else {"labels": list(labels)}
