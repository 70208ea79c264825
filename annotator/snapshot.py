"""DB_MODE=snapshot: the live DuckDB file on fast local disk, a consistent copy in DATA_DIR.

On Spaces, `/data` is a Storage Bucket mounted with FUSE: random writes and
fsync may not behave as on a disk. In snapshot mode the live file is
`CACHE_DIR/annotator.duckdb` (`Settings.db_path`) and `Snapshotter` writes a
consistent copy to `DATA_DIR/annotator.duckdb` every SNAPSHOT_EVERY seconds
when something changed, on request, and at shutdown. At start,
`restore_snapshot(settings)` copies that file back when the local one is
missing (a restarted Space) or does not continue it. What a crash can cost:
the answers committed since the last snapshot.

Which local file continues the snapshot: beside the live file,
`annotator.duckdb.continues` holds the identity of the snapshot it was
restored from or last wrote (the owner marker). A local file without it, or
with another snapshot's, was made by something else (a command-line tool
run before the restore, a copy): kept under `annotator.duckdb.replaced-<time>`
and the snapshot restored, never taken as the data and snapshotted over
DATA_DIR's answers.

How a snapshot is made, and why it is consistent without pausing the writer:

1. `Store.backup_to(tmp)`: `ATTACH tmp; COPY FROM DATABASE live TO tmp;
   DETACH`, one statement reading one MVCC snapshot (checked with DuckDB
   2.0.1: a writer committing pairs of rows throughout never left half a
   pair in the copy). The temporary file is on local disk (CACHE_DIR), where
   DuckDB's random writes are cheap.
2. The finished file is copied sequentially to DATA_DIR under a temporary
   name (`.annotator.duckdb.tmp-<pid>-<n>`), fsynced, then renamed over
   `annotator.duckdb` (atomic replace), and the folder is fsynced. A kill at
   any point leaves the previous snapshot whole; leftover temporary files are
   removed by the next snapshot.
3. Never over another owner's file: before the rename, the snapshotter checks
   that DATA_DIR still holds what it saw at start or wrote last (the owner
   marker `annotator.duckdb.owner`, with the owner id and a generation
   counter, plus the snapshot's size and whether a WAL lies beside it), and
   that it still owns DATA_DIR (`DataDirLock.verify`). A process that
   overlapped this one on the folder (a lock the file system did not
   enforce) is refused with SnapshotError instead of overwriting; its own
   database stays on its local disk. Snapshot files are created 0600.

Switching modes: the snapshot is an ordinary DuckDB file, so DB_MODE=direct
opens it as the live file; from direct to snapshot, `restore_snapshot` copies
the live file (and a WAL left beside it) to local disk.

    restore_snapshot(settings)              # before Store(settings.db_path)
    store = Store(settings.db_path)
    snapshots = Snapshotter(store, settings, owner=lock)   # lock: DataDirLock on DATA_DIR
    snapshots.start()
    ...
    snapshots.stop()                        # final snapshot; before store.close()
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from annotator.config import Settings
from annotator.files import fsync_dir, write_atomic
from annotator.datadir_lock import DataDirLock, DataDirLostError
from annotator.periodic import PeriodicJob, Run
from annotator.store import Store

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "annotator.duckdb"
OWNER_MARKER = SNAPSHOT_NAME + ".owner"
_CHUNK = 4 * 2**20


class SnapshotError(RuntimeError):
    """A snapshot could not be written or restored; the message says why."""


class SnapshotterClosedError(SnapshotError):
    """trigger() after stop()."""


class ForeignSnapshotError(SnapshotError):
    """DATA_DIR's snapshot was written by another process since this one last saw it: not replaced."""


def snapshot_path(settings: Settings) -> Path:
    """Where the snapshot lives: DATA_DIR/annotator.duckdb."""
    return settings.data_dir / SNAPSHOT_NAME


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _copy_durably(source: Path, target: Path) -> int:
    """Copy `source` to the new file `target` (mode 0600) sequentially and fsync it; return the byte count."""
    written = 0
    with open(source, "rb") as src, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
            written += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return written


def _remote_state(settings: Settings) -> tuple[bytes | None, int | None, bool]:
    """What DATA_DIR holds now: the owner marker, the snapshot's size, whether a WAL lies beside it.

    A commit by a direct-mode process grows the WAL, a snapshot by another
    owner rewrites the marker: either changes this tuple.
    """
    target = snapshot_path(settings)
    try:
        marker: bytes | None = (target.with_name(OWNER_MARKER)).read_bytes()
    except FileNotFoundError:
        marker = None
    try:
        size: int | None = target.stat().st_size
    except FileNotFoundError:
        size = None
    return marker, size, _wal(target).exists()


def _describe_marker(marker: bytes | None) -> str:
    try:
        data = json.loads(marker or b"")
        return f"pid {data['pid']} on host {data['host']} at {data['written_at']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


def _remove_leftovers(folder: Path, prefix: str) -> None:
    for stale in folder.glob(prefix + "*"):
        try:
            stale.unlink()
        except OSError:
            pass


CONTINUES_SUFFIX = ".continues"


def _remote_identity(settings: Settings) -> str:
    """DATA_DIR's snapshot as one string: its owner marker (new at every snapshot), else its size and time
    (a direct-mode file, before this mode's first snapshot)."""
    marker, size, _ = _remote_state(settings)
    if marker is not None:
        return marker.decode("utf-8", "replace")
    try:
        return f"no marker; {size} bytes, modified {snapshot_path(settings).stat().st_mtime_ns}"
    except FileNotFoundError:
        return "no snapshot"


def _continues_path(settings: Settings) -> Path:
    return settings.db_path.with_name(settings.db_path.name + CONTINUES_SUFFIX)


def _note_continues(settings: Settings, coming: str | None = None) -> None:
    """Record that the local file continues DATA_DIR's snapshot as it is now (after a restore), and the
    marker `coming` about to replace it (a snapshot written): a kill between the two keeps the live file."""
    identities = [_remote_identity(settings)] + ([coming] if coming is not None else [])
    write_atomic(_continues_path(settings), json.dumps(identities).encode(), durable=True)


def _continues(settings: Settings) -> bool:
    try:
        identities = json.loads(_continues_path(settings).read_text(encoding="utf-8"))
    except (FileNotFoundError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(identities, list) and _remote_identity(settings) in identities


def restore_snapshot(settings: Settings) -> Path | None:
    """At start in snapshot mode: copy DATA_DIR's snapshot to the local path when the local file is missing
    or does not continue that snapshot (see the module's docstring; such a file is kept aside, not deleted).

    Returns the snapshot's path when it was copied, None otherwise (not
    snapshot mode, the local file continues it, or no snapshot yet). A stale
    local WAL without its database is removed first (DuckDB would replay it
    onto the wrong file). Raises SnapshotError when the copy fails.
    """
    if settings.db_mode != "snapshot":
        return None
    local, remote = settings.db_path, snapshot_path(settings)
    if not remote.exists() or (local.exists() and _continues(settings)):
        return None
    started = time.monotonic()
    try:
        local.parent.mkdir(parents=True, exist_ok=True)
        if local.exists():
            aside = local.with_name(f"{local.name}.replaced-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
            if _wal(local).exists():
                os.replace(_wal(local), _wal(aside))
            os.replace(local, aside)
            log.warning("snapshot: %s does not continue DATA_DIR's snapshot %s (a command-line tool or a copy "
                        "made it, or it predates this check): kept as %s, and the snapshot is restored", local,
                        remote, aside)
        _wal(local).unlink(missing_ok=True)
        _remove_leftovers(local.parent, f".{local.name}.restore-")
        tmp = local.with_name(f".{local.name}.restore-{os.getpid()}")
        if _wal(remote).exists():  # a direct-mode file not closed cleanly: its WAL belongs to it
            wal_tmp = local.with_name(f".{local.name}.restore-{os.getpid()}.wal")
            _copy_durably(_wal(remote), wal_tmp)
            os.replace(wal_tmp, _wal(local))
        size = _copy_durably(remote, tmp)
        os.replace(tmp, local)
        _note_continues(settings)
        fsync_dir(local.parent)
    except OSError as exc:
        raise SnapshotError(f"cannot copy the snapshot {remote} to {local} ({exc.strerror or exc}); check "
                            f"CACHE_DIR has free space, or set DB_MODE=direct.") from None
    log.info("snapshot: restored %s (%d bytes) to %s in %.1fs", remote, size, local, time.monotonic() - started)
    return remote


@dataclass(frozen=True)
class SnapshotResult:
    written: bool
    reason: str
    path: Path | None = None
    size_bytes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class SnapshotStatus:
    """What the admin view shows about snapshots."""
    path: Path
    state: str                      # idle | writing | stopped
    last_result: str | None         # written | up to date | failed
    last_error: str | None
    last_success_at: datetime | None
    last_seconds: float | None
    size_bytes: int | None
    next_run_at: datetime | None
    snapshots: int
    failures: int


class Snapshotter(PeriodicJob[SnapshotResult, SnapshotStatus]):
    """Writes consistent copies of the live database to DATA_DIR (DB_MODE=snapshot).

    Args:
        store: the open Store whose file is `settings.db_path` (on CACHE_DIR).
        settings: DATA_DIR (where the snapshot goes), CACHE_DIR (temporary copy), SNAPSHOT_EVERY.
        every: seconds between checks (default SNAPSHOT_EVERY).
        owner: this process's lock on DATA_DIR, verified before every rename (None: no lock,
            the owner marker check alone).

    Lifecycle: `start()` launches the thread that writes a snapshot every
    `every` seconds when the store changed (`Store.export_fingerprint()`, or
    `mark_changed()` for changes it does not cover); `trigger()` asks for one
    now and returns a Future of SnapshotResult (triggers that arrive together
    share one); `snapshot_now()` writes one in the caller's thread; `stop()`
    writes a last one if something changed, is idempotent, and after it
    `trigger()` raises SnapshotterClosedError. Never two at once (a lock).
    Writes need not pause: see the module docstring. What DATA_DIR holds at
    construction is the snapshotter's starting point: a snapshot written over
    anything else raises ForeignSnapshotError. Stop it before closing the
    store. The lifecycle is `periodic.PeriodicJob`'s.

        with Snapshotter(store, settings) as snapshots:
            snapshots.trigger().result(timeout=60)
    """

    closed_error = SnapshotterClosedError
    noun = "snapshotter"

    def __init__(self, store: Store, settings: Settings, *, every: float | None = None,
                 owner: DataDirLock | None = None) -> None:
        if settings.db_path.resolve() == snapshot_path(settings).resolve():
            raise SnapshotError("DB_MODE=direct keeps the live database in DATA_DIR; snapshots are only for "
                                "DB_MODE=snapshot")
        super().__init__(max(0.01, settings.snapshot_every if every is None else every),
                         SnapshotStatus(snapshot_path(settings), "idle", None, None, None, None, None, None, 0, 0),
                         name="annotator-snapshot")
        self.store, self.settings = store, settings
        self._lock = threading.Lock()      # held for a whole snapshot: never two at once
        self._written_version = 0          # guarded by _cond, as the one below
        self._written_fingerprint: str | None = None
        self._runs = 0
        self._owner = owner
        self._owner_id = owner.owner if owner is not None else os.urandom(16).hex()
        self._seen = _remote_state(settings)   # DATA_DIR as this owner last saw or left it
        self._generation = self._seen_generation()

    def stop(self, *, final: bool = True, timeout: float | None = 120.0) -> None:
        """Write a last snapshot if something changed (unless final=False), then end. Idempotent."""
        self._stop(final=final, timeout=timeout)

    def snapshot_now(self, *, force: bool = True) -> SnapshotResult:
        """Write a snapshot in this thread (unless nothing changed and not `force`); raises SnapshotError."""
        with self._lock:
            with self._cond:
                version = self._version
            fingerprint = self.store.export_fingerprint()  # before the copy: never claims more than copied
            with self._cond:
                unchanged = fingerprint == self._written_fingerprint and version == self._written_version
            if unchanged and not force:
                self._set_status(last_result="up to date")
                return SnapshotResult(False, "nothing changed since the last snapshot", snapshot_path(self.settings))
            self._set_status(state="writing")
            started = time.monotonic()
            try:
                size = self._write()
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                with self._cond:
                    self._status = replace(self._status, state="idle", last_result="failed", last_error=reason,
                                           failures=self._status.failures + 1)
                log.error("snapshot: writing %s failed: %s", snapshot_path(self.settings), reason)
                if isinstance(exc, ForeignSnapshotError):
                    raise
                raise SnapshotError(f"cannot write the snapshot {snapshot_path(self.settings)}: {reason}") from None
            seconds = time.monotonic() - started
            with self._cond:
                self._written_fingerprint, self._written_version = fingerprint, version
                self._status = replace(self._status, state="idle", last_result="written", last_error=None,
                                       last_success_at=datetime.now(timezone.utc), last_seconds=seconds,
                                       size_bytes=size, snapshots=self._status.snapshots + 1)
            log.info("snapshot: wrote %s (%d bytes) in %.2fs", snapshot_path(self.settings), size, seconds)
            return SnapshotResult(True, "written", snapshot_path(self.settings), size, seconds)

    # --- internals -------------------------------------------------------------

    def _write(self) -> int:
        self._runs += 1
        tag = f"{os.getpid()}-{self._runs}"
        cache, data = self.settings.cache_dir, self.settings.data_dir
        cache.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        target = snapshot_path(self.settings)
        _remove_leftovers(cache, ".snapshot-")
        _remove_leftovers(data, f".{target.name}.tmp-")
        local_tmp = cache / f".snapshot-{tag}.duckdb"
        remote_tmp = data / f".{target.name}.tmp-{tag}"
        try:
            self.store.backup_to(local_tmp)
            size = _copy_durably(local_tmp, remote_tmp)
            self._check_still_ours()
            # a WAL beside the target belongs to an older live file (direct mode) and would be
            # replayed onto the new snapshot: remove it first (its content is in the live store)
            _wal(target).unlink(missing_ok=True)
            os.replace(remote_tmp, target)
            marker = self._next_marker()
            _note_continues(self.settings, marker)  # the live file goes on from what it writes now
            self._write_marker(marker)
            fsync_dir(data)
            self._seen = _remote_state(self.settings)
            return size
        finally:
            for leftover in (local_tmp, _wal(local_tmp), remote_tmp):
                try:
                    leftover.unlink()
                except OSError:
                    pass

    def _check_still_ours(self) -> None:
        """Refuse to replace DATA_DIR's snapshot unless this process owns the folder and wrote it last."""
        where = f"its own database stays at {self.settings.db_path}"
        if self._owner is not None:
            try:
                self._owner.verify()
            except DataDirLostError as exc:
                raise ForeignSnapshotError(f"{exc} The snapshot was not written; {where}.") from None
        now = _remote_state(self.settings)
        if now != self._seen:
            who = _describe_marker(now[0]) if now[0] != self._seen[0] else "another process (its commits)"
            raise ForeignSnapshotError(
                f"{snapshot_path(self.settings)} was changed by {who} since this process last wrote it: two "
                f"processes use DATA_DIR={str(self.settings.data_dir)!r}. Not replacing it; {where}. Stop one "
                f"of them.")

    def _seen_generation(self) -> int:
        try:
            return int(json.loads(self._seen[0] or b"{}").get("generation", 0))
        except (ValueError, TypeError, AttributeError):
            return 0

    def _next_marker(self) -> str:
        """The owner marker of the snapshot being written: this owner and the next generation."""
        self._generation += 1
        return json.dumps({"owner": self._owner_id, "generation": self._generation, "pid": os.getpid(),
                           "host": socket.gethostname(),
                           "written_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")})

    def _write_marker(self, body: str) -> None:
        """Put the marker beside the snapshot (atomic replace)."""
        write_atomic(snapshot_path(self.settings).with_name(OWNER_MARKER), body.encode(), durable=True)

    def _work(self, run: Run) -> SnapshotResult:
        """Every kind of run alike: a snapshot if something changed."""
        try:
            return self.snapshot_now(force=False)
        except SnapshotError:
            raise
        except Exception as exc:
            raise SnapshotError(str(exc)) from None


__all__ = ["ForeignSnapshotError", "OWNER_MARKER", "SNAPSHOT_NAME", "SnapshotError", "SnapshotResult",
           "SnapshotStatus", "Snapshotter", "SnapshotterClosedError", "restore_snapshot", "snapshot_path"]
