"""A fresh PostgreSQL database per test, on the server `scripts/test.sh` starts.

The server's URL comes from ANNOTATOR_TEST_PG_URL. Without it the PostgreSQL
tests skip, or fail when ANNOTATOR_REQUIRE_PG=1 (CI), so a missing server can
never make CI green. Start one by hand with `bash scripts/pg.sh start DIR PORT`.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest


def server_url() -> str:
    """The admin URL of the test server, or skip/fail the test when there is none."""
    url = os.environ.get("ANNOTATOR_TEST_PG_URL", "")
    if not url:
        reason = "no PostgreSQL server: set ANNOTATOR_TEST_PG_URL (scripts/test.sh starts one)"
        if os.environ.get("ANNOTATOR_REQUIRE_PG") == "1":
            pytest.fail(f"ANNOTATOR_REQUIRE_PG=1 but {reason}")
        pytest.skip(reason)
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def create_database() -> str:
    """Create an empty database and return its URL."""
    import psycopg

    admin = server_url()
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin, name)


def drop_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
