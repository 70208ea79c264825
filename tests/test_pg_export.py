"""Exporters of several replicas on one PostgreSQL database: one pushes at a time, and a state one of
them pushed is not pushed again by another (the store's export lock and its record of pushes).

Each replica here is an Exporter on a PgStore of its own with a DATA_DIR of its own (images copied),
so nothing but the database tells one what the other did.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import test_export
from test_export import REPO, T0, export_commits, make_settings, make_task, wait_for
from test_export import hub  # noqa: F401 - fixture

from annotator.export.hub import Exporter
from annotator.model import ResponseWrite, StoreClosedError
from annotator.pg_store import PgStore


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str):
    """Two (settings, PgStore) pairs on one database; the records are in it, their images in both DATA_DIRs."""
    pairs = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, store_url=pg_url)
        pairs.append((settings, PgStore(pg_url)))
    (settings_a, store_a), (settings_b, _) = pairs
    test_export.fill(store_a, settings_a)
    shutil.copytree(settings_a.images_dir, settings_b.images_dir)
    yield pairs
    for _, store in pairs:
        store.close()


def exporter(pair, hub, **kwargs) -> Exporter:  # noqa: F811
    settings, store = pair
    return Exporter(store, make_task(), settings, endpoint=hub.endpoint, **kwargs)


def count_overlap(exporters: list[Exporter]) -> list[int]:
    """Slow each exporter's upload down and return [most uploads seen running at once]."""
    running, most, lock = [0], [0], threading.Lock()
    for one in exporters:
        upload = one._upload

        def slow(*args, _upload=upload):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                time.sleep(0.3)
                return _upload(*args)
            finally:
                with lock:
                    running[0] -= 1

        one._upload = slow  # type: ignore[method-assign]
    return most


def test_export_lock_is_one_holder_across_stores(pg_url: str) -> None:
    first, second = PgStore(pg_url), PgStore(pg_url)
    try:
        with first.export_lock() as held:
            assert held
            with second.export_lock() as other:
                assert not other
            started = time.monotonic()
            with second.export_lock(wait=0.3) as other:
                assert not other and time.monotonic() - started >= 0.25
        with pytest.raises(RuntimeError), first.export_lock() as held:
            assert held
            raise RuntimeError("the export failed")
        with second.export_lock() as other:  # released after the failure too
            assert other
        assert first.last_push(REPO) is None
        first.record_push(REPO, "1:0:0:0", "https://hub/commit/1")
        second.record_push(REPO, "2:0:0:0", "https://hub/commit/2")
        last = first.last_push(REPO)
        assert (last.fingerprint, last.commit_url) == ("2:0:0:0", "https://hub/commit/2")
        assert first.last_push("other/repo") is None
    finally:
        first.close()
        second.close()
    with pytest.raises(StoreClosedError), first.export_lock():
        pass


def test_export_lock_outlives_a_server_idle_session_timeout(pg_url: str) -> None:
    """The lock's connection idles through a long upload; a server-wide idle_session_timeout must not end
    that session (and release the lock while the export is still pushing)."""
    first, second = PgStore(pg_url), PgStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as admin:  # this test's own database, dropped after it
        name = admin.execute("SELECT current_database()").fetchone()[0]
        admin.execute(f'ALTER DATABASE "{name}" SET idle_session_timeout = \'300ms\'')
    try:
        with first.export_lock() as held:
            assert held
            time.sleep(1.0)  # idle, as during an upload
            with second.export_lock() as other:
                assert not other, "the idle timeout ended the session holding the export lock"
    finally:
        first.close()
        second.close()


def test_concurrent_triggers_on_two_replicas_push_once(hub, replicas) -> None:  # noqa: F811
    a, b = exporter(replicas[0], hub), exporter(replicas[1], hub)
    most = count_overlap([a, b])
    barrier = threading.Barrier(2)
    futures = {}

    def ask(name: str, one: Exporter) -> None:
        barrier.wait()
        futures[name] = one.trigger()

    threads = [threading.Thread(target=ask, args=item) for item in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [f.result(timeout=60) for f in futures.values()]
    assert sorted(r.pushed for r in results) == [False, True]
    assert len(export_commits(hub)) == 1 and most[0] == 1
    a.stop(final_push=False)
    b.stop(final_push=False)


def test_scheduled_round_skips_while_another_replica_exports(hub, replicas) -> None:  # noqa: F811
    settings, store = replicas[0]
    a = Exporter(store, make_task(), replace(settings, export_every=0.01), endpoint=hub.endpoint)  # 0.6 s
    other = replicas[1][1]
    try:
        with other.export_lock() as held:  # replica b is exporting
            assert held
            a.start()
            assert wait_for(lambda: a.status().last_result == "another replica is exporting")
            assert export_commits(hub) == [] and a.status().pushes == 0
        assert wait_for(lambda: len(export_commits(hub)) == 1)  # a later round pushes
        assert wait_for(lambda: a.status().last_result == "pushed")
    finally:
        a.stop(final_push=False)


def test_trigger_waits_for_the_other_replica_then_pushes_what_is_left(hub, replicas) -> None:  # noqa: F811
    other = replicas[1][1]
    a = exporter(replicas[0], hub, lock_wait=0.3)
    with other.export_lock() as held:
        assert held
        result = a.trigger().result(timeout=30)
        assert not result.pushed and "another replica" in result.reason  # waited 0.3 s, then gave up
    a.stop(final_push=False)
    patient = exporter(replicas[0], hub, lock_wait=30)
    with other.export_lock():
        future = patient.trigger()
        time.sleep(0.5)
        assert not future.done()
    assert future.result(timeout=60).pushed and len(export_commits(hub)) == 1
    patient.stop(final_push=False)


def test_a_state_pushed_by_one_replica_is_not_pushed_by_another(hub, replicas) -> None:  # noqa: F811
    a, b = exporter(replicas[0], hub), exporter(replicas[1], hub)
    assert a.trigger().result(timeout=60).pushed
    again = b.trigger().result(timeout=30)
    assert not again.pushed and len(export_commits(hub)) == 1
    assert b.status().last_result == "up to date"
    assert b.status().commit_url == a.status().commit_url is not None  # b's dashboard links a's commit
    assert b.status().last_success_at is not None

    replicas[1][1].apply([ResponseWrite(1, "dave", "submitted", {"label": "bird"}, None, 50, T0 + timedelta(hours=1))])
    assert b.trigger().result(timeout=60).pushed and len(export_commits(hub)) == 2
    assert not a.trigger().result(timeout=30).pushed  # b's push is a's state too
    a.stop()  # nothing changed: no final push from either
    b.stop()
    assert len(export_commits(hub)) == 2
