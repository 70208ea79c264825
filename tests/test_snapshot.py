"""DB_MODE=snapshot (copies of the live file in DATA_DIR) and the DATA_DIR storage probe."""

from __future__ import annotations

import json
import os
from contextlib import closing
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from annotator.config import Settings, load_settings
from annotator.engine import open_store
from annotator.snapshot import (OWNER_MARKER, ForeignSnapshotError, SnapshotError, Snapshotter,
                                SnapshotterClosedError, restore_snapshot, snapshot_path)
from annotator.model import NewRecord, ResponseWrite
from annotator.storage_probe import find_mount, parse_mounts, probe
from annotator.store import Store

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2025, 5, 1, 12, 0, 0)


def snapshot_settings(root: Path, **changes: object) -> Settings:
    env = {"DATA_DIR": str(root / "data"), "CACHE_DIR": str(root / "cache"), "DB_MODE": "snapshot",
           "AUTH_MODE": "local", "TASK_FILE": str(root / "task.toml")}
    return replace(load_settings(env), **changes)  # type: ignore[arg-type]


def answer(record_id: int, user: str, minute: int, label: str = "cat") -> ResponseWrite:
    return ResponseWrite(record_id, user, "submitted", {"label": label}, None, 100, T0 + timedelta(minutes=minute))


def seeded(settings: Settings) -> Store:
    store = Store(settings.db_path)
    store.add_records([NewRecord(f"k{i}", f"ab/{i}.png", "ab" * 32, 4, 4, 10) for i in range(5)])
    return store


def all_responses(store: Store) -> list:
    return [r for batch in store.iter_responses() for r in batch]


def wait_for(predicate, timeout: float = 20.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_snapshot_survives_the_loss_of_the_local_file(tmp_path):
    settings = snapshot_settings(tmp_path)
    assert settings.db_path.parent == settings.cache_dir
    store = seeded(settings)
    store.apply([answer(1, "alice", 1), answer(2, "bob", 2)])
    snapshots = Snapshotter(store, settings)
    first = snapshots.snapshot_now()
    assert first.written and snapshot_path(settings).exists() and first.size_bytes > 0
    store.apply([answer(3, "carol", 3, "dog"), answer(1, "alice", 4, "dog")])
    snapshots.stop()  # final snapshot: something changed
    assert snapshots.status().snapshots == 2 and snapshots.status().state == "stopped"
    with pytest.raises(SnapshotterClosedError):
        snapshots.trigger()
    expected = all_responses(store)
    store.close()
    # no temporary left; the owner marker beside the snapshot
    assert sorted(p.name for p in settings.data_dir.iterdir()) == ["annotator.duckdb", "annotator.duckdb.owner"]

    settings.db_path.unlink()  # the Space restarted: local disk is empty
    Path(str(settings.db_path) + ".wal").write_bytes(b"stale")  # a WAL without its database
    assert restore_snapshot(settings) == snapshot_path(settings)
    assert not Path(str(settings.db_path) + ".wal").exists()
    reopened = Store(settings.db_path)
    try:
        assert all_responses(reopened) == expected and len(expected) == 3
        assert reopened.record_count() == 5
    finally:
        reopened.close()
    assert restore_snapshot(settings) is None  # the local file is there: nothing copied
    assert restore_snapshot(replace(settings, db_mode="direct")) is None


def test_a_local_file_that_does_not_continue_the_snapshot_is_set_aside_and_the_snapshot_restored(tmp_path):
    """A command-line tool run on an empty CACHE_DIR used to leave an empty local database; the app then
    took it as the data (the local file was there), ingested the images again and snapshotted over every
    answer in DATA_DIR. Now every tool restores first, and a local file that does not continue DATA_DIR's
    snapshot is kept aside while the snapshot is restored."""
    settings = snapshot_settings(tmp_path)
    store = seeded(settings)
    store.apply([answer(1, "alice", 1), answer(2, "bob", 2)])
    snapshots = Snapshotter(store, settings)
    snapshots.snapshot_now()
    store.apply([answer(3, "carol", 3)])  # committed after the last snapshot: the live file is ahead
    snapshots.stop(final=False)
    store.close()
    assert restore_snapshot(settings) is None  # it continues the snapshot: kept, with its newer answer
    with closing(Store(settings.db_path)) as again:
        assert len(all_responses(again)) == 3
    marker = snapshot_path(settings).with_name(OWNER_MARKER)
    before, written = json.loads(Path(str(settings.db_path) + ".continues").read_text())
    assert written == marker.read_text()
    marker.write_text(before)  # killed after the snapshot's rename, before its marker's: still continues
    assert restore_snapshot(settings) is None
    marker.write_text(written)

    for path in settings.cache_dir.iterdir():  # the Space restarted ...
        path.unlink()
    with closing(open_store(settings)) as tool:  # ... and an organizer ran `python -m annotator stats`
        assert tool.record_count() == 5 and len(all_responses(tool)) == 2  # the snapshot's, not an empty file

    for path in settings.cache_dir.iterdir():
        path.unlink()
    with closing(Store(settings.db_path)) as stray:  # a local file from elsewhere (an older tool, a copy)
        stray.add_records([NewRecord("other", "cd/0.png", "cd" * 32, 4, 4, 10)])
    assert restore_snapshot(settings) == snapshot_path(settings)
    with closing(Store(settings.db_path)) as restored:
        assert restored.record_count() == 5 and len(all_responses(restored)) == 2
    aside = [p for p in settings.cache_dir.iterdir() if ".replaced-" in p.name]
    assert len(aside) == 1  # kept, not deleted
    with closing(Store(aside[0])) as kept:
        assert kept.record_count() == 1
    assert restore_snapshot(settings) is None  # now it continues the snapshot


def test_scheduled_snapshots_only_after_changes(tmp_path):
    settings = snapshot_settings(tmp_path)
    store = seeded(settings)
    snapshots = Snapshotter(store, settings, every=0.1)
    try:
        snapshots.start()
        assert wait_for(lambda: snapshots.status().snapshots == 1)
        time.sleep(0.6)
        assert snapshots.status().snapshots == 1
        assert not snapshots.trigger().result(timeout=10).written  # nothing changed
        store.apply([answer(1, "alice", 1)])
        assert wait_for(lambda: snapshots.status().snapshots == 2)
        snapshots.mark_changed()
        assert snapshots.trigger().result(timeout=10).written
    finally:
        snapshots.stop()
        store.close()
    assert snapshots.status().snapshots == 3


def test_direct_mode_is_refused(tmp_path):
    settings = replace(snapshot_settings(tmp_path), db_mode="direct")
    store = Store(settings.db_path)
    try:
        with pytest.raises(SnapshotError):
            Snapshotter(store, settings)
    finally:
        store.close()


def test_a_snapshot_never_replaces_a_file_another_owner_wrote(tmp_path):
    """Two processes on one DATA_DIR (a lock the file system did not enforce): the owner marker and the
    file itself are checked before the rename, so neither a second snapshotter nor a direct-mode
    process that committed to the file since is overwritten."""
    first_settings = snapshot_settings(tmp_path)
    second_settings = replace(first_settings, cache_dir=tmp_path / "cache-2")
    first, second = seeded(first_settings), seeded(second_settings)
    try:
        first.apply([answer(1, "alice", 1)])
        second.apply([answer(2, "bob", 2)])
        one, two = Snapshotter(first, first_settings), Snapshotter(second, second_settings)
        assert one.snapshot_now().written
        theirs = snapshot_path(first_settings).read_bytes()
        with pytest.raises(ForeignSnapshotError, match="changed by pid"):
            two.snapshot_now()
        with pytest.raises(ForeignSnapshotError):  # at shutdown too: the final snapshot is refused
            two.trigger().result(timeout=10)
        assert snapshot_path(first_settings).read_bytes() == theirs and two.status().failures == 2
        marker = json.loads((first_settings.data_dir / OWNER_MARKER).read_text())
        assert marker["generation"] == 1 and marker["pid"] == os.getpid()
        assert one.snapshot_now().written  # its own file: replaced as before
        assert json.loads((first_settings.data_dir / OWNER_MARKER).read_text())["generation"] == 2
        assert (first_settings.data_dir / OWNER_MARKER).stat().st_mode & 0o777 == 0o600
        assert snapshot_path(first_settings).stat().st_mode & 0o777 == 0o600
    finally:
        first.close()
        second.close()

    # a direct-mode process opens the snapshot as its live file and commits: a WAL grows beside it
    local = Store(first_settings.db_path)
    live = None
    try:
        snapshots = Snapshotter(local, first_settings)
        live = Store(snapshot_path(first_settings))
        live.apply([answer(3, "carol", 3)])
        with pytest.raises(ForeignSnapshotError, match="its commits"):
            snapshots.snapshot_now()
        live.close()
        live = Store(snapshot_path(first_settings))
        assert {r.user_id for r in all_responses(live)} == {"alice", "carol"}  # nothing replaced under it
    finally:
        local.close()
        if live is not None:
            live.close()


_CHILD = r"""
import json, sys
from dataclasses import replace
from datetime import datetime
sys.path.insert(0, sys.argv[1])
from annotator.config import load_settings
from annotator.model import ResponseWrite
from annotator.snapshot import Snapshotter
from annotator.store import Store
settings = replace(load_settings(json.loads(sys.argv[2])), db_mode="snapshot")
store = Store(settings.db_path)
t = datetime(2025, 1, 1)
n = int(sys.argv[3])
store.apply([ResponseWrite(i % 5000, f"user{i}", "submitted", {"label": f"label{i % 7}"}, "x" * 60, i, t) for i in range(n)])
snapshots = Snapshotter(store, settings)
snapshots.snapshot_now()
print("SNAP 1", flush=True)
store.apply([ResponseWrite(1, "late", "submitted", {"label": "z"}, None, 1, t)])
k = 2
while True:
    snapshots.snapshot_now()
    print(f"SNAP {k}", flush=True)
    k += 1
"""


def test_kill_during_a_snapshot_leaves_the_previous_one_intact(tmp_path):
    settings = snapshot_settings(tmp_path)
    env = {"DATA_DIR": str(settings.data_dir), "CACHE_DIR": str(settings.cache_dir), "AUTH_MODE": "local"}
    n = 20_000
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ROOT), json.dumps(env), str(n)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "SNAP 1", child.stderr.read()
        # kill it while the next snapshot is being copied into DATA_DIR under its temporary name
        caught = wait_for(lambda: any(settings.data_dir.glob(".annotator.duckdb.tmp-*")), timeout=30, step=0.0005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert caught, "the child never reached the copy step"
    assert child.returncode == -signal.SIGKILL

    target = snapshot_path(settings)
    db = duckdb.connect(str(target), read_only=True)  # readable, and every block checksum verified by the scan
    try:
        total, late = db.execute("SELECT count(*), count(*) FILTER (user_id = 'late') FROM responses").fetchone()
        db.execute("SELECT sum(length(comment)), sum(time_spent_ms) FROM responses").fetchone()
    finally:
        db.close()
    assert (total, late) in ((n, 0), (n + 1, 1))  # snapshot 1, or a later complete one: never a partial file

    # the next start restores it, and the next snapshot clears the leftover
    settings.db_path.unlink()
    assert restore_snapshot(settings) == target
    store = Store(settings.db_path)
    try:
        assert len(all_responses(store)) == total
        Snapshotter(store, settings).snapshot_now()
    finally:
        store.close()
    assert sorted(p.name for p in settings.data_dir.iterdir()) == ["annotator.duckdb", "annotator.duckdb.owner"]


# --------------------------------------------------------------------------- storage probe

MOUNTS = """overlay / overlay rw,relatime 0 0
proc /proc proc rw 0 0
hf-mount /data fuse.hf-mount rw,nosuid,nodev 0 0
tmpfs /dev/shm tmpfs rw 0 0
/dev/sda1 /mnt/disk\\040two ext4 rw 0 0
"""


def test_mount_parsing():
    mounts = parse_mounts(MOUNTS)
    assert find_mount(Path("/data/annotator"), mounts).fs_type == "fuse.hf-mount"
    assert find_mount(Path("/data"), mounts).is_fuse
    assert find_mount(Path("/home/user"), mounts).point == Path("/")
    assert find_mount(Path("/mnt/disk two/x"), mounts).fs_type == "ext4"
    assert not find_mount(Path("/dev/shm/x"), mounts).is_fuse


def test_probe_local_folder_recommends_direct(tmp_path):
    report = probe(tmp_path / "data", env={})
    assert report.writable and report.error is None
    assert report.fsync_ms is not None and report.read_ms is not None and report.free_bytes > 0
    assert not list((tmp_path / "data").iterdir())  # probe files removed
    if report.fsync_ms <= 10 and not report.is_fuse:
        assert report.recommended_mode == "direct" and "DB_MODE=direct" in report.recommendation
    assert any("fsync" in line for line in report.lines())


def test_probe_fuse_on_a_space_recommends_snapshot(tmp_path):
    mounts = f"overlay / overlay rw 0 0\nhf-mount {tmp_path} fuse.hf-mount rw 0 0\n"
    report = probe(tmp_path / "data", mounts_text=mounts, env={"SPACE_ID": "me/app"})
    assert report.is_fuse and report.recommended_mode == "snapshot"
    assert "DB_MODE=snapshot" in report.recommendation and "FUSE" in report.recommendation
    assert report.persistent is True

    ephemeral = probe(tmp_path / "data", mounts_text="overlay / overlay rw 0 0\n", env={"SPACE_ID": "me/app"})
    assert ephemeral.persistent is False and "EXPORT_REPO" in ephemeral.recommendation


def test_probe_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    report = probe(blocker / "data", env={})
    assert not report.writable and report.error and "cannot be written" in report.recommendation


def test_probe_advice_is_true_for_the_engine_in_use(tmp_path):
    """The start log says what happens to answers with the engine that runs, not with DB_MODE=direct."""
    fuse = f"overlay / overlay rw 0 0\nhf-mount {tmp_path} fuse.hf-mount rw 0 0\n"
    postgres = probe(tmp_path / "data", engine="postgres", env={}).recommendation
    assert postgres.startswith("Answers are committed to PostgreSQL (STORE_URL)")
    assert "DB_MODE=direct" not in postgres and "DB_MODE=snapshot" not in postgres
    snapshot = probe(tmp_path / "data", engine="snapshot", env={}).recommendation
    assert snapshot.startswith("DB_MODE=snapshot: the live database is on local disk (CACHE_DIR)")
    on_bucket = probe(tmp_path / "data", engine="snapshot", mounts_text=fuse, env={}).recommendation
    assert on_bucket.startswith("DB_MODE=snapshot suits DATA_DIR, which is a FUSE mount")
    direct_on_bucket = probe(tmp_path / "data", engine="direct", mounts_text=fuse, env={}).recommendation
    assert direct_on_bucket.startswith("Use DB_MODE=snapshot")
