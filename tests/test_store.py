"""The store: migrations, ingest, batch writes, reads, locking, errors.

Tests taking `store`/`store3`/`make_store` run on both engines (DuckDB and
PostgreSQL, see storehelpers); the rest are about the DuckDB file.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storehelpers import rows, typed

from annotator.model import (AuditWrite, NewRecord, ReopenWrite, ResponseWrite, StoreClosedError, StoreError, UserSeen,
                             encode_answer)
from annotator import store as store_module
from annotator.store import Store, StoreLockedError

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 1, 9, 0, 0)


def rec(key: str, **extra) -> NewRecord:
    return NewRecord(source_key=key, image_path=f"/images/{key}.jpg", sha256="ab" * 32, width=640, height=480,
                     size_bytes=12345, **extra)


def answer(record_id: int, user: str, *labels: str, at: float = 0.0, status: str = "submitted",
           comment: str | None = None, ms: int | None = 1000) -> ResponseWrite:
    return ResponseWrite(record_id, user, status, typed(labels, status), comment, ms, T0 + timedelta(seconds=at))


def first(record_id: int, user: str, *labels: str, at: float = 0.0) -> ResponseWrite:
    """An answer the scheduler marked as the person's first for the record (the plain-insert path)."""
    return replace(answer(record_id, user, *labels, at=at), first=True)


def snapshot(store: Store) -> tuple[list[tuple], ...]:
    """Every written row, in a comparable order."""
    cur = store._cur()
    return tuple(cur.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
                 for table, columns in (("responses", "*"), ("response_history", "*"), ("users", "*"),
                                        ("audit", "*"), ("records", "id, extra_answers")))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "annotator.duckdb"


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


@pytest.fixture
def store3(store: Store) -> Store:
    assert store.add_records([rec("a"), rec("b"), rec("c")]) == [1, 2, 3]
    return store


# --- migrations --------------------------------------------------------------

def test_fresh_file_gets_current_schema_version(db_path: Path) -> None:
    store = Store(db_path)
    try:
        assert db_path.exists()
        assert store.schema_version() == Store.SCHEMA_VERSION >= 1
        tables = {t for (t,) in store._cur().execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert {"records", "responses", "response_history", "users", "audit", "schema_version"} <= tables
    finally:
        store.close()


def test_reopening_applies_no_migration_and_keeps_data(db_path: Path) -> None:
    store = Store(db_path)
    store.add_records([rec("a")])
    store.close()

    store = Store(db_path)
    try:
        rows = store._cur().execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert rows == [(v,) for v in range(1, Store.SCHEMA_VERSION + 1)]  # each migration recorded once
        assert store.record_count() == 1
    finally:
        store.close()


def test_newer_schema_version_is_refused_with_a_clear_message(db_path: Path) -> None:
    Store(db_path).close()
    con = duckdb.connect(str(db_path))
    con.execute("INSERT INTO schema_version VALUES (?, ?)", [Store.SCHEMA_VERSION + 5, T0])
    con.close()

    with pytest.raises(StoreError) as info:
        Store(db_path)
    message = str(info.value)
    assert f"schema version {Store.SCHEMA_VERSION + 5}" in message
    assert "newer" in message and "upgrade" in message and "DATA_DIR" in message
    assert not isinstance(info.value, StoreLockedError)

    # the refused open released the file: another connection can use it
    con = duckdb.connect(str(db_path))
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == Store.SCHEMA_VERSION + 5
    con.close()


# --- records -------------------------------------------------------------------

def test_add_records_is_idempotent_by_source_key_and_ids_continue(store: Store) -> None:
    assert store.add_records([rec("a"), rec("b", metadata={"split": "train"}, suggestion="cat")]) == [1, 2]
    assert store.add_records([rec("a"), rec("b")]) == []  # re-running the ingest adds nothing
    # duplicates inside one call count once; new keys continue after the existing ids
    assert store.add_records([rec("b"), rec("c"), rec("d"), rec("c")]) == [3, 4]
    assert store.add_records([]) == []

    assert store.record_count() == 4
    assert store.record_ids() == [1, 2, 3, 4]
    assert store.source_keys() == {"a", "b", "c", "d"}
    b = store.record(2)
    assert b is not None
    assert (b.source_key, b.image_path, b.width, b.height, b.size_bytes) == ("b", "/images/b.jpg", 640, 480, 12345)
    assert b.metadata == {"split": "train"} and b.suggestion == "cat"
    assert b.position == 2 and b.extra_answers == 0
    assert store.record(99) is None
    assert set(store.records([4, 1, 99])) == {1, 4}
    assert store.records([]) == {}


def test_ids_continue_after_reopen(db_path: Path) -> None:
    store = Store(db_path)
    store.add_records([rec("a"), rec("b")])
    store.close()
    store = Store(db_path)
    try:
        assert store.add_records([rec("b"), rec("z")]) == [3]
        assert store.record(3).source_key == "z"
    finally:
        store.close()


# --- the write path ---------------------------------------------------------------

def test_apply_answers_edits_and_history(store3: Store) -> None:
    store = store3
    store.apply([answer(1, "ana", "cat", at=0), answer(1, "bo", "dog", at=1), answer(2, "ana", "dog", at=2)])
    r = store.response(1, "ana")
    assert r is not None
    assert (r.status, r.answer, r.created_at, r.updated_at) == ("submitted", {"label": "cat"}, T0, T0)
    assert store.history(1, "ana") == []

    # an edit replaces the answer and moves the earlier one to the history
    store.apply([answer(1, "ana", "cat", "dog", at=10, comment="both", ms=50)])
    r = store.response(1, "ana")
    assert r.answer == {"labels": ["cat", "dog"]} and r.comment == "both" and r.time_spent_ms == 50
    assert r.created_at == T0 and r.updated_at == T0 + timedelta(seconds=10)
    (old,) = store.history(1, "ana")
    assert old.answer == {"label": "cat"} and old.updated_at == T0
    [(replaced_at,)] = rows(store, "SELECT replaced_at FROM response_history")
    assert replaced_at == T0 + timedelta(seconds=10)

    assert store.response(1, "bo").answer == {"label": "dog"}  # others untouched
    assert store.history(1, "bo") == []
    assert [x.record_id for x in store.user_responses("ana")] == [1, 2]
    assert {x.user_id for x in store.record_responses(1)} == {"ana", "bo"}
    assert sorted(store.assignment_facts()) == [(1, "ana", "submitted"), (1, "bo", "submitted"),
                                                (2, "ana", "submitted")]


def test_same_person_and_record_twice_in_one_batch_is_like_sequential_transactions(make_store) -> None:
    ops_sequence = [answer(1, "ana", "cat", at=0), answer(2, "bo", "cat", at=1), answer(1, "ana", "dog", at=2),
                    answer(1, "ana", at=3, status="skipped", ms=None), answer(1, "bo", "dog", at=4),
                    answer(1, "ana", "bird", at=5)]

    columns = "record_id, user_id, status, answer, comment, time_spent_ms, created_at, updated_at"

    def snapshot(store: Store):
        return (rows(store, f"SELECT {columns} FROM responses ORDER BY {columns}"),
                rows(store, f"SELECT {columns}, replaced_at FROM response_history ORDER BY replaced_at, {columns}"))

    batched, sequential = make_store(), make_store()
    for s in (batched, sequential):
        s.add_records([rec("a"), rec("b")])
    batched.apply(ops_sequence)
    for op in ops_sequence:
        sequential.apply([op])
    assert snapshot(batched) == snapshot(sequential)
    assert len(snapshot(batched)[1]) == 3

    current = batched.response(1, "ana")
    assert current.answer == {"label": "bird"} and current.created_at == T0
    assert current.updated_at == T0 + timedelta(seconds=5)
    assert [h.answer for h in batched.history(1, "ana")] == [{"label": "cat"}, {"label": "dog"}, {}]
    assert [h.status for h in batched.history(1, "ana")] == ["submitted", "submitted", "skipped"]


def test_skipped_status(store3: Store) -> None:
    store3.apply([answer(1, "ana", status="skipped", ms=None), answer(2, "ana", "cat")])
    r = store3.response(1, "ana")
    assert r.status == "skipped" and r.answer == {} and r.time_spent_ms is None
    assert sorted(store3.assignment_facts()) == [(1, "ana", "skipped"), (2, "ana", "submitted")]
    stats = store3.stats()
    assert (stats["submitted"], stats["skipped"], stats["responses"]) == (1, 1, 2)
    # going back and answering a skipped record turns it into an answer
    store3.apply([answer(1, "ana", "dog", at=9)])
    assert store3.response(1, "ana").status == "submitted"
    assert [h.status for h in store3.history(1, "ana")] == ["skipped"]


def test_users_first_and_last_seen(store: Store) -> None:
    def users():
        return dict((u, (f, l)) for u, f, l in rows(store, "SELECT user_id, first_seen, last_seen FROM users"))

    t = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    # several sightings in one batch, out of order: earliest is first, latest is last
    store.apply([UserSeen("ana", t(5)), UserSeen("ana", t(1)), UserSeen("ana", t(3)), UserSeen("bo", t(2))])
    assert users() == {"ana": (t(1), t(5)), "bo": (t(2), t(2))}
    store.apply([UserSeen("ana", t(10))])
    assert users()["ana"] == (t(1), t(10))
    store.apply([UserSeen("ana", t(7))])  # a late, older sighting moves nothing back
    assert users()["ana"] == (t(1), t(10))


def test_audit_rows(store: Store) -> None:
    store.apply([AuditWrite("admin", "export", {"repo": "org/ds", "rows": 3}, T0),
                 AuditWrite("admin", "reopen", {"record": 1, "when": T0}, T0 + timedelta(seconds=1))])
    log = store.audit_log()
    assert [(at, actor, action) for at, actor, action, _ in log] == [
        (T0 + timedelta(seconds=1), "admin", "reopen"), (T0, "admin", "export")]  # newest first
    assert log[1][3] == {"repo": "org/ds", "rows": 3}
    assert log[0][3] == {"record": 1, "when": str(T0)}  # non-JSON values are stored as text
    assert len(store.audit_log(limit=1)) == 1


def test_reopen_extra_answers(store3: Store) -> None:
    store3.apply([ReopenWrite(2, 1)])
    store3.apply([ReopenWrite(2, 2), ReopenWrite(3, 1)])
    assert store3.record(2).extra_answers == 3
    assert store3.extra_answers() == {2: 3, 3: 1}
    store3.apply([ReopenWrite(99, 1)])  # unknown record: nothing happens
    assert store3.extra_answers() == {2: 3, 3: 1}


def test_apply_is_all_or_nothing(store3: Store) -> None:
    class Boom:  # not a JSON-able detail: building the batch fails before anything is sent
        def __str__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store3.apply([answer(1, "ana", "cat"), UserSeen("ana", T0), AuditWrite("x", "y", {"z": Boom()}, T0)])
    # a NULL user fails inside the transaction, after the first answers and before the users were written
    broken = ResponseWrite(2, None, "submitted", {"label": "dog"}, None, 10, T0)  # type: ignore[arg-type]
    with pytest.raises((duckdb.ConstraintException, psycopg.errors.NotNullViolation)):
        store3.apply([first(1, "ana", "cat"), broken, UserSeen("ana", T0), ReopenWrite(3, 1)])
    assert store3.response(1, "ana") is None
    assert rows(store3, "SELECT count(*) FROM responses") == [(0,)]
    assert rows(store3, "SELECT count(*) FROM users") == [(0,)]
    assert store3.extra_answers() == {}
    store3.apply([answer(1, "ana", "cat")])  # the store is usable afterwards
    assert store3.response(1, "ana").answer == {"label": "cat"}


def test_answers_marked_first_are_written_like_unmarked_ones(tmp_path: Path) -> None:
    """The plain-insert path for `first` answers, and its fallback when one is not first after all."""
    batches = [
        [first(1, "ana", "cat", at=0), first(2, "ana", "dog", at=1), UserSeen("ana", T0)],
        [first(1, "bo", "cat", at=2), answer(1, "ana", "bird", at=3),  # an edit beside first answers
         first(3, "ana", "cat", at=4), answer(3, "ana", "dog", at=5)],  # first, then edited in the same batch
        [first(2, "ana", "bird", at=6), first(2, "cy", "cat", at=7)],  # marked first, but ana answered 2 before
        [first(3, "cy", "dog", at=8), first(3, "cy", "cat", at=9), ReopenWrite(3, 1), ReopenWrite(3, 2),
         AuditWrite("admin", "reopen", {"record": 3}, T0)],  # marked first twice in one batch
    ]
    marked = Store(tmp_path / "marked.duckdb")
    unmarked = Store(tmp_path / "unmarked.duckdb")
    try:
        for s in (marked, unmarked):
            s.add_records([rec("a"), rec("b"), rec("c")])
        for batch in batches:
            marked.apply(batch)
            unmarked.apply([replace(op, first=False) if isinstance(op, ResponseWrite) else op for op in batch])
        assert snapshot(marked) == snapshot(unmarked)
        assert [h.answer for h in marked.history(2, "ana")] == [{"label": "dog"}]
        assert [h.answer for h in marked.history(3, "ana")] == [{"label": "cat"}]
        assert [h.answer for h in marked.history(3, "cy")] == [{"label": "dog"}]
        assert marked.response(3, "cy").answer == {"label": "cat"}
        assert marked.extra_answers() == {3: 3}
        assert len(marked._cur().execute("SELECT * FROM response_history").fetchall()) == 4
    finally:
        marked.close()
        unmarked.close()


def test_a_few_first_answers_alone_are_written_like_a_large_batch(tmp_path: Path, monkeypatch) -> None:
    """The crowd's usual batch, a few new answers and nothing else, takes one parameterized INSERT
    (Store._insert_few); it stores what the Arrow path stores, and falls back like it."""
    batches = [
        [first(1, "ana", "cat", at=0)],
        [first(2, "ana", "dog", at=1), replace(first(1, "bo", at=2), comment="é 🐱", time_spent_ms=None)],
        [replace(first(3, "cy", at=3), answer={"box": {"objects": [{"bbox": [1.5, 2, 3, 4], "category": "x"}]},
                                                "note": "a\u2028b"})],
        [first(1, "ana", "bird", at=4), first(3, "ana", "cat", at=5)],  # marked first, but ana answered 1 before
    ]
    few, large = Store(tmp_path / "few.duckdb"), Store(tmp_path / "large.duckdb")
    try:
        for s in (few, large):
            s.add_records([rec("a"), rec("b"), rec("c")])
        for batch in batches:
            assert len(batch) <= store_module.FEW_ANSWERS
            few.apply(batch)
            with monkeypatch.context() as m:
                m.setattr(store_module, "FEW_ANSWERS", 0)
                large.apply(batch)
        assert snapshot(few) == snapshot(large)
        few.apply([])  # an empty batch is no INSERT with no rows
        assert snapshot(few) == snapshot(large)
        assert [h.answer for h in few.history(1, "ana")] == [{"label": "cat"}]
        assert few.response(1, "bo").comment == "é 🐱" and few.response(1, "bo").time_spent_ms is None
        with pytest.raises(TypeError, match="object by question name") as refused:
            few.apply([replace(first(2, "cy"), answer=["cat"])])
        assert few.refuses(refused.value) and few.response(2, "cy") is None
    finally:
        few.close()
        large.close()


def test_stats_counts(store3: Store) -> None:
    store3.apply([answer(1, "ana", "cat"), answer(1, "bo", "cat"), answer(1, "cy", status="skipped"),
                  answer(2, "ana", "dog"), ReopenWrite(1, 2)])
    stats = store3.stats()
    assert stats["records"] == 3
    assert (stats["responses"], stats["submitted"], stats["skipped"]) == (4, 3, 1)
    assert sorted(stats["answers_per_record"]) == [(1, 2, 2), (2, 0, 1)]
    assert stats["users"] == {"ana": {"submitted": 2, "skipped": 0}, "bo": {"submitted": 1, "skipped": 0},
                              "cy": {"submitted": 0, "skipped": 1}}


def test_iter_responses_batches(store: Store) -> None:
    store.add_records([rec(f"r{i}") for i in range(10)])
    store.apply([answer(rid, user, "x") for rid in range(1, 11) for user in ("ana", "bo", "cy")])
    batches = list(store.iter_responses(batch_size=7))
    assert [len(b) for b in batches] == [7, 7, 7, 7, 2]
    flat = [(r.record_id, r.user_id) for b in batches for r in b]
    assert len(flat) == len(set(flat)) == 30
    assert [rid for rid, _ in flat] == sorted(rid for rid, _ in flat)  # record order
    assert [len(b) for b in store.iter_responses(batch_size=100)] == [30]


def test_iter_responses_empty(store: Store) -> None:
    assert list(store.iter_responses()) == []


# --- opening: locks, folders, closing -----------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from annotator.store import Store
    store = Store(sys.argv[1])
    print("OPEN", flush=True)
    sys.stdin.readline()   # hold the file until the parent says so
    store.close()
""")


def test_second_process_gets_store_locked_error(db_path: Path) -> None:
    Store(db_path).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path), str(ROOT)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "OPEN"
        with pytest.raises(StoreLockedError) as info:
            Store(db_path)
        message = str(info.value)
        assert str(db_path) in message
        assert "another process" in message and f"process {holder.pid}" in message
        assert "stop the other one" in message and "DATA_DIR" in message  # says what to do
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    Store(db_path).close()  # once the holder exits the file opens again


def test_unwritable_parent_folder_gives_store_error_naming_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    with pytest.raises(StoreError) as info:
        Store(blocker / "sub" / "annotator.duckdb")
    assert "DATA_DIR" in str(info.value) and str(blocker / "sub") in str(info.value)


UNWRITABLE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[2])
    from annotator.model import StoreError  # import first: root's Python may be unreadable to nobody
    from annotator.store import Store
    if os.geteuid() == 0:                             # root ignores permissions: become nobody
        os.setgid(65534); os.setuid(65534)
    try:
        Store(sys.argv[1])
    except StoreError as exc:
        print(type(exc).__name__ + ": " + str(exc))
    else:
        print("OPENED")
""")


def test_read_only_data_dir_gives_store_error_naming_data_dir() -> None:
    base = Path(tempfile.mkdtemp(prefix="annotator-ro-"))  # pytest's tmp folders are private to root
    try:
        base.chmod(0o755)
        data = base / "ro"
        data.mkdir()
        data.chmod(0o555)
        out = subprocess.run([sys.executable, "-c", UNWRITABLE, str(data / "annotator.duckdb"), str(ROOT)],
                             capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("StoreError: ") and "DATA_DIR" in line, line


def test_closed_store_raises_store_closed_error(db_path: Path) -> None:
    store = Store(db_path)
    store.add_records([rec("a")])
    store.close()
    store.close()  # idempotent
    calls = [lambda: store.record(1), lambda: store.records([1]), store.record_ids, store.assignment_facts,
             lambda: store.response(1, "ana"), lambda: store.user_responses("ana"),
             lambda: store.history(1, "ana"), lambda: list(store.iter_responses()), store.stats,
             store.audit_log, lambda: store.apply([answer(1, "ana", "cat")]),
             lambda: store.add_records([rec("b")]), store.checkpoint]
    for call in calls:
        with pytest.raises(StoreClosedError):
            call()
    reopened = Store(db_path)  # closing released the file and kept the data
    try:
        assert reopened.record_ids() == [1]
    finally:
        reopened.close()


def test_reads_from_many_threads(store3: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store3.apply([answer(1, "ana", "cat"), answer(2, "bo", "dog")])

    def read(i: int):
        return (store3.record(1 + i % 3).id, len(store3.assignment_facts()), store3.stats()["responses"])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, range(200)))
    assert all(r[1:] == (2, 2) for r in results)


# any typed answer (model.Answer): question names as the task allows them, any text but NUL and lone surrogates
# (the service refuses those before they reach a store)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_ANSWERS = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True),
                           st.one_of(_TEXT, st.integers(-2**31, 2**31 - 1), st.lists(_TEXT, max_size=4)), max_size=4)


_EXAMPLES = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(_ANSWERS, min_size=1, max_size=4))
def test_any_typed_answer_reads_back_as_written(store: Store, answers: list) -> None:
    """Every engine gives back the answer object written, in the current row and in the history."""
    store.add_records([rec("a")])  # once: the same key again adds nothing
    at = T0 + timedelta(minutes=next(_EXAMPLES))  # each example later than the last: its history row is the newest
    store.apply([ResponseWrite(1, f"u{i}", "submitted", a, None, 1, at) for i, a in enumerate(answers)])
    store.apply([ResponseWrite(1, "u0", "skipped", {}, None, 1, at + timedelta(seconds=1))])
    assert [store.response(1, f"u{i}").answer for i in range(1, len(answers))] == answers[1:]
    assert store.response(1, "u0").answer == {} and store.history(1, "u0")[-1].answer == answers[0]


def test_an_answer_that_is_not_an_object_is_a_data_error(store: Store) -> None:
    store.add_records([rec("a")])
    with pytest.raises(TypeError, match="object by question name") as refused:
        store.apply([ResponseWrite(1, "ana", "submitted", ["cat"], None, 1, T0)])  # type: ignore[arg-type]
    assert store.refuses(refused.value) and store.response(1, "ana") is None
    assert encode_answer({"b": 1, "a": ["é"]}) == '{"a":["é"],"b":1}'  # the one canonical text
