"""The PostgreSQL store: same answers as the DuckDB store, migrations across replicas, the lease
bookkeeping columns, snapshots, restore, export, the CLI on STORE_URL and its error messages."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import test_export
import test_restore
from pgserver import server_url, with_database
from storehelpers import rows, typed
from test_export import hub  # noqa: F401 - fixture

from annotator.config import ConfigError, load_settings
from annotator.engine import open_store
from annotator.export.restore import restore_from_hub
from annotator.model import AuditWrite, NewRecord, ReopenWrite, ResponseWrite, StoreClosedError, StoreError, UserSeen
from annotator.pg_store import PgStore, connect_error
from annotator.store import Store
from annotator.store_protocol import StoreProtocol

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 3, 1, 9, 0, 0)


def rec(key: str) -> NewRecord:
    return NewRecord(key, f"{key}.png", "ab" * 32, 4, 3, 100, {"key": key, "n": len(key)}, "Cat")


def answer(rid: int, user: str, *labels: str, at: float = 0, status: str = "submitted",
           ms: int | None = 1000) -> ResponseWrite:
    return ResponseWrite(rid, user, status, typed(labels, status), None, ms, T0 + timedelta(seconds=at))


@pytest.fixture
def pg(pg_url: str):
    store = PgStore(pg_url)
    yield store
    store.close()


def bookkeeping(store: PgStore) -> dict[int, tuple[int, int, bool]]:
    return {rid: (submitted, leased, touched) for rid, submitted, leased, touched in
            rows(store, "SELECT id, submitted, leased, touched FROM records")}


# --- the same public API and the same answers -------------------------------------------

def test_both_engines_implement_the_store_protocol_with_the_same_signatures() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {name: inspect.signature(f) for name, f in vars(cls).items()
                if callable(f) and not name.startswith("_")}

    contract, duck, pg = public(StoreProtocol), public(Store), public(PgStore)
    assert set(duck) - set(contract) == {"backup_to", "checkpoint"}  # DuckDB-only: DB_MODE=snapshot
    assert set(pg) == set(contract)
    for name in contract:
        assert str(pg[name]) == str(duck[name]), name
        assert str(pg[name].parameters) == str(contract[name].parameters), name
    assert PgStore.SCHEMA_VERSION >= 1


# a workload that exercises every read: edits, skips, multi-label, mixed-case labels and users (ordering),
# an even number of times (median interpolation), someone seen but silent, a reopen, audit rows
WORKLOAD = [
    [answer(1, "ana", "cat", at=0, ms=1000), answer(1, "Bo", "dog", at=5, ms=3000), answer(2, "ana", "Zebra", at=7),
     UserSeen("ana", T0), UserSeen("silent", T0 + timedelta(minutes=3)), AuditWrite("ana", "export", {"n": 1}, T0)],
    [answer(1, "ana", "dog", "cat", at=20, ms=400), answer(2, "cy", at=21, status="skipped", ms=None),
     answer(3, "cy", "bird", at=400), answer(3, "ana", "cat", at=401), answer(3, "ana", "bird", at=402),
     ReopenWrite(3, 2), ReopenWrite(3, 1), AuditWrite("Bo", "reopen", {"record": 3}, T0 + timedelta(seconds=1))],
    [answer(4, "Bo", "apple", at=900, ms=10), answer(4, "ana", "Apple", at=901, ms=20), UserSeen("Bo", T0)],
]


def read_everything(store) -> dict:
    ids = store.record_ids()
    return {
        "ids": ids, "count": store.record_count(), "keys": store.source_keys(), "records": store.records(ids),
        "record": [store.record(i) for i in ids + [999]], "extra": store.extra_answers(),
        "facts": sorted(store.assignment_facts()), "stats": store.stats(),
        "responses": [store.record_responses(i) for i in ids],
        "by_user": {u: store.user_responses(u) for u in ("ana", "Bo", "cy", "nobody")},
        "history": {(i, u): store.history(i, u) for i in ids for u in ("ana", "Bo", "cy")},
        "one": store.response(1, "ana"), "none": store.response(1, "nobody"),
        "iter": list(store.iter_responses(batch_size=3)), "export": list(store.iter_export(batch_size=3)),
        "audit": store.audit_log(), "audit1": store.audit_log(limit=1),
        "groups": store.dashboard_record_groups(), "timeline5": store.dashboard_timeline(T0, 300),
        "timeline7": store.dashboard_timeline(T0 + timedelta(seconds=3), 7),
        "labels": store.dashboard_label_counts(["label", "labels"]), "users": store.dashboard_users(),
        "texts": store.dashboard_text_lengths(["label"]),  # any string answer has a length
        "version": store.dashboard_answers_version(), "overlap": store.dashboard_overlapping_answers(),
    }


def test_same_workload_reads_the_same_on_both_engines(tmp_path: Path, pg: PgStore) -> None:
    duck = Store(tmp_path / "a.duckdb")
    try:
        for store in (duck, pg):
            assert store.add_records([rec(k) for k in "abcde"]) == [1, 2, 3, 4, 5]
            for batch in WORKLOAD:
                store.apply(batch)
        want, got = read_everything(duck), read_everything(pg)
        for key in want:
            assert got[key] == want[key], key
        assert want["stats"]["responses"] == 8 and len(want["labels"]) == 7 and want["users"][-1][0] == "silent"
        assert pg.schema_version() == PgStore.SCHEMA_VERSION and pg.export_fingerprint() != ""
    finally:
        duck.close()


# --- migrations ----------------------------------------------------------------------------

def test_fresh_database_migrates_once_and_reopening_changes_nothing(pg_url: str) -> None:
    PgStore(pg_url).close()
    store = PgStore(pg_url)
    try:
        assert store.schema_version() == PgStore.SCHEMA_VERSION
        assert rows(store, "SELECT version FROM schema_version ORDER BY 1") == [
            (v,) for v in range(1, PgStore.SCHEMA_VERSION + 1)]  # each migration recorded once
        assert {t for (t,) in rows(store, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")} == {
            "records", "responses", "response_history", "users", "audit", "leases", "export_pushes",
            "schema_version", "quotas", "marks", "finals", "gold_handouts"}
        indexes = {i for (i,) in rows(store, "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'")}
        for column in ("records USING btree (\"position\")", "responses USING btree (user_id)",
                       "leases USING btree (user_id)", "leases USING btree (expires_at)"):
            assert any(column in i for i in indexes), column
        store.add_records([rec("a")])
        assert bookkeeping(store) == {1: (0, 0, False)}  # the lease code's columns and their defaults
    finally:
        store.close()


def test_three_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    barrier, errors, versions = threading.Barrier(3), [], []

    def start() -> None:
        barrier.wait()
        try:
            store = PgStore(pg_url)
            versions.append(store.schema_version())
            store.close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and versions == [PgStore.SCHEMA_VERSION] * 3
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == [
            (v,) for v in range(1, PgStore.SCHEMA_VERSION + 1)]


def test_newer_schema_is_refused_naming_store_url(pg_url: str) -> None:
    PgStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, now())", [PgStore.SCHEMA_VERSION + 3])
    with pytest.raises(StoreError, match=f"schema version {PgStore.SCHEMA_VERSION + 3}, newer") as info:
        PgStore(pg_url)
    assert "STORE_URL" in str(info.value) and "upgrade" in str(info.value)


def test_concurrent_ingests_share_the_ids(pg_url: str) -> None:
    stores = [PgStore(pg_url) for _ in range(3)]
    try:
        barrier = threading.Barrier(3)
        results: list[list[int]] = []

        def ingest(store: PgStore) -> None:
            barrier.wait()
            results.append(store.add_records([rec(f"k{i}") for i in range(50)]))

        threads = [threading.Thread(target=ingest, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(len(r) for r in results) == [0, 0, 50]  # one adds them all, the others find them there
        assert stores[0].record_ids() == list(range(1, 51))
    finally:
        for s in stores:
            s.close()


# --- the lease bookkeeping in apply ------------------------------------------------------------

def test_apply_drops_the_answerers_lease_and_counts_submitted(pg: PgStore) -> None:
    pg.add_records([rec(k) for k in "abc"])
    with pg.pool.connection() as conn:
        conn.execute("INSERT INTO leases (record_id, user_id, replica, expires_at) VALUES "
                     "(1, 'ana', 'r1', now()), (1, 'bo', 'r2', now()), (2, 'cy', 'r1', now()), (2, 'ana', 'r1', now())")
        conn.execute("UPDATE records SET leased = 2, touched = true WHERE id IN (1, 2)")
    # ana answers 1 twice in one batch, cy skips 2, dee answers 1 without holding a lease
    pg.apply([answer(1, "ana", "cat"), answer(2, "cy", status="skipped"), answer(1, "ana", "dog", at=1),
              answer(1, "dee", "dog")])
    assert sorted(rows(pg, "SELECT record_id, user_id FROM leases")) == [(1, "bo"), (2, "ana")]
    assert bookkeeping(pg) == {1: (2, 1, True), 2: (0, 1, True), 3: (0, 0, False)}
    pg.apply([answer(1, "ana", status="skipped", at=2), answer(3, "bo", status="skipped")])
    assert bookkeeping(pg) == {1: (1, 1, True), 2: (0, 1, True), 3: (0, 0, True)}  # a skip touches, counts no answer
    pg.apply([UserSeen("x", T0), ReopenWrite(3, 1)])  # no answers: nothing else moves
    assert bookkeeping(pg) == {1: (1, 1, True), 2: (0, 1, True), 3: (0, 0, True)}


def test_a_failed_batch_leaves_leases_and_counts(pg: PgStore) -> None:
    pg.add_records([rec("a")])
    with pg.pool.connection() as conn:
        conn.execute("INSERT INTO leases (record_id, user_id, replica, expires_at) VALUES (1, 'ana', 'r1', now())")
        conn.execute("UPDATE records SET leased = 1 WHERE id = 1")
    class Boom:  # not JSON-able and no text either: the audit row fails after the answer was written
        def __str__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        pg.apply([answer(1, "ana", "cat"), AuditWrite("ana", "x", {"bad": Boom()}, T0)])
    assert rows(pg, "SELECT count(*) FROM leases") == [(1,)] and bookkeeping(pg) == {1: (0, 1, False)}
    assert pg.response(1, "ana") is None


def test_lost_connection_raises_and_the_next_batch_commits(pg: PgStore, pg_url: str) -> None:
    pg.add_records([rec("a")])
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(psycopg.OperationalError):
        pg.apply([answer(1, "ana", "cat")])  # the writer retries the whole batch on this
    pg.apply([answer(1, "ana", "cat")])
    assert pg.response(1, "ana").answer == {"label": "cat"}


# --- snapshots, restore, closing --------------------------------------------------------------

def test_iter_export_reads_one_snapshot_while_others_commit(pg: PgStore) -> None:
    pg.add_records([rec(f"r{i}") for i in range(6)])
    pg.apply([answer(i, "ana", "cat") for i in range(1, 7)])
    batches = pg.iter_export(batch_size=2)
    first_records, _ = next(batches)
    pg.apply([answer(i, "bo", "dog") for i in range(1, 7)] + [answer(5, "ana", "dog", at=9)])
    pg.add_records([rec("late")])
    rest = list(batches)
    records = first_records + [r for rs, _ in rest for r in rs]
    answers = [a for _, resp in rest for a in resp]
    assert [r.id for r in records] == [1, 2, 3, 4, 5, 6]  # not the record added after the first batch
    assert {(a.user_id, a.answer["label"]) for a in answers} == {("ana", "cat")}  # nor the later answers
    assert len(list(pg.iter_export())[-1][1]) >= 1 and pg.record_count() == 7


def test_import_snapshot_sets_submitted_and_touched_and_refuses_a_filled_store(tmp_path: Path, pg: PgStore) -> None:
    duck = Store(tmp_path / "src.duckdb")
    try:
        duck.add_records([rec(k) for k in "abcd"])
        duck.apply([ReopenWrite(2, 1), answer(1, "ana", "cat"), answer(1, "bo", "dog"), answer(2, "cy", status="skipped"),
                    answer(4, "ana", "x", "y")])
        snapshot = list(duck.iter_export(batch_size=3))
        audit = AuditWrite("admin", "restore", {"from": "test"}, T0)
        assert pg.import_snapshot((rs for rs, _ in snapshot), (a for _, a in snapshot), audit=audit) == (4, 4)
        assert list(pg.iter_export(batch_size=3)) == snapshot and pg.stats() == duck.stats()
        assert bookkeeping(pg) == {1: (2, 0, True), 2: (0, 0, True), 3: (0, 0, False), 4: (1, 0, True)}
        assert pg.audit_log()[0][2] == "restore"
        assert sorted(u for (u,) in rows(pg, "SELECT user_id FROM users")) == ["ana", "bo", "cy"]
        with pytest.raises(StoreError, match="not empty"):
            pg.import_snapshot([[duck.record(1)]], [])
        assert pg.record_count() == 4
    finally:
        duck.close()


def test_closed_store_raises_store_closed_error(pg_url: str) -> None:
    store = PgStore(pg_url)
    store.close()
    store.close()  # idempotent
    for call in (store.record_ids, store.stats, lambda: list(store.iter_export()),
                 lambda: store.apply([UserSeen("a", T0)]), lambda: store.add_records([rec("a")])):
        with pytest.raises(StoreClosedError):
            call()


# --- export and restore through the exporter (the test_export/test_restore checks, on PostgreSQL) -----

@pytest.fixture
def pg_env(tmp_path: Path, pg_url: str):
    settings = test_export.make_settings(tmp_path, store_url=pg_url)
    store = open_store(settings)
    yield settings, store
    store.close()


def test_export_tables_from_postgresql(pg_env) -> None:
    assert isinstance(pg_env[1], PgStore)
    test_export.test_build_tables_rows_and_summary(pg_env)


def test_push_from_postgresql_loads_back_with_datasets(hub, pg_env, tmp_path: Path) -> None:  # noqa: F811
    test_export.test_push_then_load_dataset_both_configs(hub, pg_env, tmp_path)


def test_restore_from_the_hub_into_postgresql(hub, tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    source_settings, source = test_restore._push(hub, tmp_path / "a")  # a DuckDB store, exported
    settings = test_export.make_settings(tmp_path / "b", store_url=pg_url)
    store = open_store(settings)
    try:
        report = restore_from_hub(store, settings, test_export.make_task(), endpoint=hub.endpoint)
        assert report is not None and (report.records, report.responses) == (6, 10)
        assert store.last_push(settings.export_repo).fingerprint == store.export_fingerprint()  # for every replica
        assert [store.record(i) for i in source.record_ids()] == [source.record(i) for i in source.record_ids()]
        assert test_restore._responses(store) == test_restore._responses(source)
        assert store.stats() == source.stats()
        submitted = {r: n for r, _, n in source.stats()["answers_per_record"]}
        answered = {r.record_id for batch in source.iter_responses() for r in batch}
        assert bookkeeping(store) == {i: (submitted.get(i, 0), 0, i in answered) for i in source.record_ids()}
    finally:
        store.close()
        source.close()


# --- settings, errors, command line ----------------------------------------------------------

def test_connect_errors_name_store_url_and_the_host_but_not_the_password() -> None:
    secret_url = "postgresql://ann:Sup3rSecret@127.0.0.1:1/db"
    with pytest.raises(StoreError) as info:
        PgStore(secret_url, connect_timeout=3)
    message = str(info.value)
    assert "STORE_URL" in message and "127.0.0.1:1" in message and "cannot connect" in message
    assert "Sup3rSecret" not in message and "ann:***@" in message
    refused = connect_error(psycopg.OperationalError('password authentication failed for user "ann" Sup3rSecret'),
                            secret_url)
    assert "refused the user name or password" in str(refused) and "Sup3rSecret" not in str(refused)


def test_missing_database_is_named(pg_url: str) -> None:
    with pytest.raises(StoreError, match="database 'no_such_db' does not exist.*STORE_URL"):
        PgStore(with_database(server_url(), "no_such_db"))


def test_store_url_setting(tmp_path: Path) -> None:
    base = {"DATA_DIR": str(tmp_path)}
    assert load_settings(base).store_url is None
    for url in ("postgresql://u:pw@db:5432/ann", "postgres://db/ann"):
        assert load_settings({**base, "STORE_URL": url}).store_url == url
    settings = load_settings({**base, "STORE_URL": "postgresql://u:Hidden1@db/ann", "STORE_POOL_SIZE": "3"})
    assert settings.store_pool_size == 3 and "Hidden1" not in repr(settings)
    assert settings.public_items()["STORE_URL"] == "postgresql://u:***@db/ann"
    for bad in ("mysql://u:Hidden1@db/ann", "/tmp/file.duckdb", "postgresql://u:Hidden1@db:port/ann"):
        with pytest.raises(ConfigError) as info:
            load_settings({**base, "STORE_URL": bad})
        assert "STORE_URL" in str(info.value) and "postgresql://" in str(info.value)
        assert "Hidden1" not in str(info.value)
    with pytest.raises(ConfigError, match="DB_MODE=snapshot cannot be used with STORE_URL"):
        load_settings({**base, "STORE_URL": "postgresql://db/ann", "DB_MODE": "snapshot"})


def run_cli(*args: str, store_url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STORE_URL": store_url, "DATA_DIR": str(tmp_path / "data"), "AUTH_MODE": "local"}
    return subprocess.run([sys.executable, "-m", "annotator", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_migrate_and_stats_commands_on_store_url(pg_url: str, tmp_path: Path) -> None:
    for _ in range(2):  # idempotent
        out = run_cli("migrate", store_url=pg_url, tmp_path=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith(f"schema version {PgStore.SCHEMA_VERSION}")
    settings = load_settings({"STORE_URL": pg_url, "DATA_DIR": str(tmp_path / "data")})
    store = open_store(settings)
    try:
        assert isinstance(store, PgStore)
        store.add_records([rec("a"), rec("b")])
        store.apply([answer(1, "ana", "cat"), answer(2, "bo", status="skipped")])
    finally:
        store.close()
    out = run_cli("stats", "--json", "--overlap", "1", store_url=pg_url, tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"records": 6' not in out.stdout and '"records": 2' in out.stdout and '"complete": 1' in out.stdout
    assert not (tmp_path / "data" / "annotator.duckdb").exists()  # STORE_URL set: no DuckDB file


def test_unreachable_store_url_on_the_command_line(tmp_path: Path) -> None:
    out = run_cli("stats", store_url="postgresql://ann:Sup3rSecret@127.0.0.1:1/db", tmp_path=tmp_path)
    assert out.returncode == 2
    assert "STORE_URL" in out.stderr and "127.0.0.1:1" in out.stderr and "Traceback" not in out.stderr
    assert "Sup3rSecret" not in out.stderr + out.stdout
