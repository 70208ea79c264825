"""Restore from the Hub export on an empty disk; a store that is not empty is never touched."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from datetime import timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from annotator.export import restore  # noqa: E402
from annotator.export.format import CONFIGS, RECORD_COLUMNS, records_features  # noqa: E402
from annotator.export.hub import Exporter  # noqa: E402
from annotator.export.restore import RestoreError, restore_from_hub  # noqa: E402
from annotator.model import ResponseWrite  # noqa: E402
from annotator.store import Store  # noqa: E402
from test_export import REPO, T0, TOKEN, add_images, export_commits, fill, hub, make_settings, make_task  # noqa: E402,F401


def _responses(store: Store) -> list:
    return sorted((r for batch in store.iter_responses() for r in batch), key=lambda r: (r.record_id, r.user_id))


def _push(hub, root: Path):
    settings = make_settings(root)
    store = Store(settings.db_path)
    ids = fill(store, settings)
    store.apply([ResponseWrite(ids[3], "zoe", "submitted", {"label": "cat"}, "ünïcode, \"quotes\"", None,
                               T0 + timedelta(hours=3, microseconds=123457))])
    exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint)
    exporter.push_now()
    exporter.stop(final_push=False)
    return settings, store


def test_restore_brings_back_every_record_and_answer(hub, tmp_path):
    source_settings, source = _push(hub, tmp_path / "a")
    settings = make_settings(tmp_path / "b")  # a fresh disk: no database, no images
    store = Store(settings.db_path)
    try:
        report = restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint)
        assert report is not None and (report.records, report.responses) == (6, 10)
        assert report.missing_images == 0 and report.unknown_labels == 0 and report.revision
        assert "restored 6 records and 10 answers" in report.summary()

        assert store.record_ids() == source.record_ids()
        for rid in source.record_ids():
            before, after = source.record(rid), store.record(rid)
            assert after == before  # id, source key, content-addressed path, sizes, metadata, position, extra
            assert (settings.images_dir / after.image_path).read_bytes() == \
                (source_settings.images_dir / before.image_path).read_bytes()
        assert _responses(store) == _responses(source)  # status, answer, comment, time spent, both timestamps
        assert store.export_fingerprint() == source.export_fingerprint()
        assert set(store.stats()["users"]) == {"alice", "bob", "carol", "zoe"}
        assert store.audit_log()[0][2] == "restore"

        # the restored state is what the Hub holds: no push at the next start
        commits = len(export_commits(hub))
        exporter = Exporter(store, make_task(), settings, endpoint=hub.endpoint)
        assert not exporter.trigger().result(timeout=30).pushed
        exporter.stop()
        assert len(export_commits(hub)) == commits
    finally:
        store.close()
        source.close()


def test_a_store_that_is_not_empty_is_never_touched(hub, tmp_path):
    _, source = _push(hub, tmp_path / "a")
    source.close()
    settings = make_settings(tmp_path / "b")
    store = Store(settings.db_path)
    try:
        add_images(store, settings, 1, start=40)
        before = store.export_fingerprint()
        hub.clear_requests()
        assert restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint) is None
        assert store.export_fingerprint() == before and store.record_count() == 1
        assert hub.requests == []  # not even asked
    finally:
        store.close()


def test_nothing_to_restore(hub, tmp_path):
    settings = make_settings(tmp_path / "b")
    store = Store(settings.db_path)
    try:
        assert restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint) is None  # no such repo
        hub.create_repo(REPO, private=True)
        assert restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint) is None  # no export yet
        from dataclasses import replace
        assert restore_from_hub(store, replace(settings, export_repo=None), make_task()) is None
        assert store.record_count() == 0
    finally:
        store.close()


def test_failed_or_interrupted_restore_leaves_the_store_empty(hub, tmp_path, monkeypatch):
    _, source = _push(hub, tmp_path / "a")
    source.close()
    settings = make_settings(tmp_path / "b")
    store = Store(settings.db_path)
    try:
        hub.fail_next(1, status=500, path_contains=f"/api/datasets/{REPO}", message=f"echo {TOKEN}")
        with pytest.raises(RestoreError) as raised:
            restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint)
        assert TOKEN not in str(raised.value) and "EXPORT_REPO" in str(raised.value)
        assert store.record_count() == 0
        hub.clear_failures()

        real, calls = restore.save_original, []

        def flaky(data, images_dir, *rest):
            calls.append(1)
            if len(calls) == 4:
                raise OSError("disk full")
            return real(data, images_dir, *rest)

        monkeypatch.setattr(restore, "save_original", flaky)
        with pytest.raises(RestoreError, match="disk full"):
            restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint)
        assert store.record_count() == 0 and store.stats()["responses"] == 0  # one transaction: all or nothing
        monkeypatch.setattr(restore, "save_original", real)

        report = restore_from_hub(store, settings, make_task(), endpoint=hub.endpoint)  # simply runs again
        assert report is not None and report.records == 6
    finally:
        store.close()


def test_import_snapshot_refuses_a_store_with_records(tmp_path):
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    try:
        add_images(store, settings, 2)
        from annotator.model import StoreError
        with pytest.raises(StoreError, match="not empty"):
            store.import_snapshot([[store.record(store.record_ids()[0])]], [])
        assert store.record_count() == 2
    finally:
        store.close()
    assert CONFIGS == ("records", "responses")


def test_restore_reads_only_columns_the_export_writes():
    """Restore names no column of its own: it reads back the record's columns of the one schema, not the
    computed ones (majority, answers...)."""
    assert set(RECORD_COLUMNS) < set(records_features(make_task()))
