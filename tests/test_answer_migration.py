"""The migration to typed answers: a store written before them (answers as lists of labels) opens with
every answer carried over, on both engines, once, and all or nothing.

The old stores are built with the old schema itself (migration 1 of each store is that schema, unchanged)
and filled the way the old code wrote answers: lists of label names.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Callable

import duckdb
import psycopg
import pytest
from pgserver import create_database, drop_database

from annotator import pg_store, store as duck_store
from annotator.model import LegacyQuestion, StoreError, encode_answer
from annotator.pg_store import PgStore
from annotator.store import Store

T0 = datetime(2025, 3, 1, 9, 0, 0)
ROOT = Path(__file__).resolve().parent.parent
# (record, user, status, answer as the old code stored it)
OLD_SINGLE = [(1, "ana", "submitted", ["cat"]), (1, "bo", "skipped", []), (2, "ana", "submitted", ["chat été 猫"])]
OLD_MULTI = [(1, "ana", "submitted", ["a", "b"]), (1, "bo", "submitted", []), (2, "ana", "skipped", [])]
# the answers the history held before ana's current one to record 1
OLD_HISTORY = {"label": [(1, "ana", "submitted", ["dog"]), (1, "ana", "skipped", [])],
               "labels": [(1, "ana", "submitted", ["b"]), (1, "ana", "skipped", [])]}
WANT = {
    "label": {(1, "ana"): {"label": "cat"}, (1, "bo"): {}, (2, "ana"): {"label": "chat été 猫"}},
    "labels": {(1, "ana"): {"labels": ["a", "b"]}, (1, "bo"): {"labels": []}, (2, "ana"): {}},
}
WANT_HISTORY = {"label": [{"label": "dog"}, {}], "labels": [{"labels": ["b"]}, {}]}


def old_rows(kind: str) -> tuple[list[tuple], list[tuple]]:
    current = OLD_SINGLE if kind == "label" else OLD_MULTI
    responses = [(rid, user, status, answer, None, 100, T0, T0 + timedelta(seconds=9))
                 for rid, user, status, answer in current]
    history = [(rid, user, status, answer, None, 50, T0, T0 + timedelta(seconds=i), T0 + timedelta(seconds=i + 1))
               for i, (rid, user, status, answer) in enumerate(OLD_HISTORY[kind])]
    return responses, history


def make_old_duckdb(path: Path, kind: str) -> None:
    """A DuckDB file at schema version 1 (the schema before typed answers), holding answers of `kind`."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    con.execute(duck_store._MIGRATIONS[0])
    con.execute("INSERT INTO schema_version VALUES (1, ?)", [T0])
    for rid in (1, 2):
        con.execute("INSERT INTO records (id, source_key, image_path, sha256, width, height, size_bytes, position, "
                    "created_at) VALUES (?, ?, 'x.png', 'ab', 4, 3, 10, ?, ?)", [rid, f"k{rid}", rid, T0])
    responses, history = old_rows(kind)
    con.executemany("INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?)", responses)
    con.executemany("INSERT INTO response_history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", history)
    con.close()


def crash_on_the_history(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> Callable:
    """Make the migration fail after `responses` was converted, before `response_history` (as a crash
    would); returns the real conversion, to put back."""
    convert = module.typed_answers
    calls: list[int] = []

    def fail_on_history(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("crash in the middle of the migration")
        return convert(*args)

    monkeypatch.setattr(module, "typed_answers", fail_on_history)
    return convert


def answers(store: Store | PgStore) -> tuple[dict, list]:
    current = {(r.record_id, r.user_id): r.answer for batch in store.iter_responses() for r in batch}
    return current, [h.answer for h in store.history(1, "ana")]


def migrated_twice(open_store: Callable[[], Store | PgStore], kind: str) -> None:
    """Opening carries the answers over; opening again changes nothing (same answers, same fingerprint)."""
    fingerprints = []
    for _ in range(2):
        store = open_store()
        try:
            assert store.schema_version() == store.SCHEMA_VERSION
            assert answers(store) == (WANT[kind], WANT_HISTORY[kind])
            fingerprints.append(store.export_fingerprint())
        finally:
            store.close()
    assert fingerprints[0] == fingerprints[1]


@pytest.mark.parametrize("kind", ["label", "labels"])
def test_duckdb_file_of_the_old_schema_opens_with_typed_answers(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "annotator.duckdb"
    make_old_duckdb(path, kind)
    legacy = LegacyQuestion(kind, kind)  # type: ignore[arg-type]
    migrated_twice(lambda: Store(path, legacy=legacy), kind)
    store = Store(path, legacy=legacy)
    try:
        stored = dict(((rid, user), text) for rid, user, text in
                      store._cur().execute("SELECT record_id, user_id, answer FROM responses").fetchall())
        assert stored == {key: encode_answer(value) for key, value in WANT[kind].items()}  # the one JSON form
        versions = store._cur().execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert versions == [(v,) for v in range(1, Store.SCHEMA_VERSION + 1)]  # each migration once
    finally:
        store.close()


def test_duckdb_migration_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure after `responses` was converted (as a crash would) leaves the old schema and answers whole."""
    path = tmp_path / "annotator.duckdb"
    make_old_duckdb(path, "label")
    convert = crash_on_the_history(monkeypatch, duck_store)
    with pytest.raises(RuntimeError, match="crash"):
        Store(path, legacy=LegacyQuestion("label", "label"))
    con = duckdb.connect(str(path))
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1
        assert sorted(con.execute("SELECT record_id, user_id, status, answer FROM responses").fetchall()) == OLD_SINGLE
        assert [r[0] for r in con.execute("SELECT data_type FROM information_schema.columns WHERE column_name = "
                                          "'answer' ORDER BY table_name").fetchall()] == ["VARCHAR[]", "VARCHAR[]"]
    finally:
        con.close()
    monkeypatch.setattr(duck_store, "typed_answers", convert)
    migrated_twice(lambda: Store(path, legacy=LegacyQuestion("label", "label")), "label")


def test_a_kill_right_after_the_migration_leaves_a_file_that_opens(tmp_path: Path) -> None:
    """The process dies right after the migration commits, before any close: the next open finds the new
    schema (from the WAL, or the checkpoint DuckDB made at the commit). DuckDB 2.0.1 cannot replay an
    ALTER ... TYPE JSON USING to_json from its WAL, so the migration must not use one."""
    path = tmp_path / "annotator.duckdb"
    make_old_duckdb(path, "label")
    child = ("import os, sys; from annotator.model import LegacyQuestion; from annotator.store import Store; "
             "Store(sys.argv[1], legacy=LegacyQuestion('label', 'label')); os._exit(0)")
    subprocess.run([sys.executable, "-c", child, str(path)], cwd=ROOT, check=True, timeout=60)
    migrated_twice(lambda: Store(path, legacy=LegacyQuestion("label", "label")), "label")


def test_old_answers_without_a_label_question_are_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "annotator.duckdb"
    make_old_duckdb(path, "label")
    with pytest.raises(StoreError, match="TASK_FILE"):
        Store(path)
    con = duckdb.connect(str(path))
    try:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 1
    finally:
        con.close()
    Store(tmp_path / "fresh.duckdb").close()  # an empty store needs no question


@pytest.fixture
def pg_db() -> str:
    url = create_database()
    yield url
    drop_database(url)


def make_old_pg(url: str, kind: str) -> None:
    """A PostgreSQL database at schema version 4 (the schema before typed answers), holding answers of `kind`."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
        for version, step in enumerate(pg_store._MIGRATIONS[:4], 1):
            conn.execute(step)
            conn.execute("INSERT INTO schema_version VALUES (%s, %s)", [version, T0])
        for rid in (1, 2):
            conn.execute("INSERT INTO records (id, source_key, image_path, sha256, width, height, size_bytes, "
                         "position, created_at) VALUES (%s, %s, 'x.png', 'ab', 4, 3, 10, %s, %s)",
                         [rid, f"k{rid}", rid, T0])
        responses, history = old_rows(kind)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO responses VALUES (%s, %s, %s, %s::text[], %s, %s, %s, %s)", responses)
            cur.executemany("INSERT INTO response_history VALUES (%s, %s, %s, %s::text[], %s, %s, %s, %s, %s)",
                            history)


@pytest.mark.parametrize("kind", ["label", "labels"])
def test_postgresql_database_of_the_old_schema_opens_with_typed_answers(pg_db: str, kind: str) -> None:
    make_old_pg(pg_db, kind)
    migrated_twice(lambda: PgStore(pg_db, legacy=LegacyQuestion(kind, kind)), kind)  # type: ignore[arg-type]


def test_postgresql_migration_is_all_or_nothing(pg_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make_old_pg(pg_db, "labels")
    convert = crash_on_the_history(monkeypatch, pg_store)
    with pytest.raises(RuntimeError, match="crash"):
        PgStore(pg_db, legacy=LegacyQuestion("labels", "labels"))
    with psycopg.connect(pg_db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 4
        assert sorted(conn.execute("SELECT record_id, user_id, status, answer FROM responses").fetchall()) == OLD_MULTI
    with pytest.raises(StoreError, match="TASK_FILE"):
        PgStore(pg_db)  # answers and no label question: refused, nothing changed
    monkeypatch.setattr(pg_store, "typed_answers", convert)
    migrated_twice(lambda: PgStore(pg_db, legacy=LegacyQuestion("labels", "labels")), "labels")
