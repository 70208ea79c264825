"""One owner per DATA_DIR: a lock taken before anything in DATA_DIR is read, held for the process's life.

Why: two processes on one DATA_DIR overwrite each other's answers. A
DB_MODE=snapshot process replaces the file a direct-mode one commits to, two
snapshot-mode processes keep whichever snapshot came last, and on a Space the
old and the new container overlap on one bucket during a restart.

How (`DataDirLock.acquire`):

* `DATA_DIR/.annotator.lock` (mode 0600) is locked with `flock`: exclusive
  for the DuckDB modes; shared for PostgreSQL (STORE_URL) replicas, which keep
  their data in PostgreSQL and share DATA_DIR only for the images and the
  key, so any number of them start together but never beside a DuckDB owner.
  The holder writes who it is into the file: owner id, pid, host, since, mode.
* A lock held by someone else is waited for (`wait` seconds, the setting
  DATA_DIR_LOCK_WAIT): a restart where the old process is still stopping
  goes on once it has; a holder that stays raises `DataDirBusyError`, whose
  message names DATA_DIR and the holder.
* Where `flock` is refused (ENOLCK, EOPNOTSUPP...: a FUSE bucket may not
  support locks), or DATA_DIR is on FUSE (where a lock the kernel grants may
  hold for this machine only, not for another container on the same bucket),
  the file also carries a heartbeat that a thread rewrites every
  `heartbeat` seconds. A record whose heartbeat is older than
  `STALE_HEARTBEATS` intervals, that says it was released, or that names a
  dead process on this host, is taken over; a fresh one is waited for like a
  lock. Shared (PostgreSQL) holders keep no heartbeat: they only refuse a
  DuckDB owner where `flock` works.

    lock = DataDirLock.acquire(settings.data_dir, mode="direct", wait=30)
    ...                                   # restore, open the store, serve
    lock.verify()                         # before replacing a file in DATA_DIR: still ours?
    lock.release()                        # last, after the store is closed
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from annotator.storage_probe import find_mount, parse_mounts, read_mounts

log = logging.getLogger(__name__)

LOCK_NAME = ".annotator.lock"
HEARTBEAT_S = 5.0
STALE_HEARTBEATS = 4          # a heartbeat older than this many intervals is a dead holder's
_POLL_S = 0.2
_REPORT_EVERY_S = 10.0
_RECORD_BYTES = 512
# errno values with which flock says "this file system has no locks" (FUSE, some network mounts)
_NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})


class DataDirBusyError(RuntimeError):
    """Another process owns DATA_DIR; the message names DATA_DIR, the holder and what to do."""


class DataDirLostError(RuntimeError):
    """Another process took DATA_DIR over (heartbeat mode): this one must not write there any more."""


@dataclass(frozen=True)
class Holder:
    """What the lock file says about its holder."""
    owner: str
    pid: int
    host: str
    since: str
    mode: str
    heartbeat: float = 0.0       # wall-clock seconds of the last heartbeat (0: no heartbeat kept)
    released: bool = False

    def describe(self) -> str:
        what = "a STORE_URL (PostgreSQL) replica" if self.mode == "postgres" else f"DB_MODE={self.mode}"
        return f"pid {self.pid} on host {self.host}, since {self.since}, {what}"

    def alive_here(self) -> bool | None:
        """On this host: is the pid running? None when the holder is on another host."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def _parse(raw: bytes) -> Holder | None:
    try:
        data = json.loads(raw.decode("utf-8"))
        return Holder(**{k: data[k] for k in Holder.__dataclass_fields__ if k in data})
    except (ValueError, TypeError, KeyError):
        return None


def _on_fuse(path: Path) -> bool:
    mount = find_mount(path.resolve(), parse_mounts(read_mounts()))
    return bool(mount and mount.is_fuse)


class DataDirLock:
    """The lock on one DATA_DIR, held from `acquire` to `release`.

    Not meant to be built directly: use `DataDirLock.acquire`. `release()` is
    idempotent. `verify()` raises DataDirLostError when another process has
    taken the folder over (possible only in heartbeat mode, after this
    process stalled for longer than the stale limit).
    """

    def __init__(self, data_dir: Path, fd: int, holder: Holder, *, locked: bool, heartbeat: float | None) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self.holder = holder
        self._fd: int | None = fd
        self._locked = locked                  # flock held on _fd
        self._heartbeat = heartbeat            # seconds between heartbeats, None without heartbeat
        self._stop = threading.Event()
        self._io = threading.Lock()            # one write to the file at a time
        self._lost = False
        self._thread: threading.Thread | None = None
        if heartbeat is not None:
            self._thread = threading.Thread(target=self._beat, name="annotator-datadir-lock", daemon=True)
            self._thread.start()

    @property
    def owner(self) -> str:
        return self.holder.owner

    @property
    def heartbeat_mode(self) -> bool:
        return self._heartbeat is not None

    @classmethod
    def acquire(cls, data_dir: Path, *, mode: str, wait: float, heartbeat: float = HEARTBEAT_S) -> "DataDirLock":
        """Take DATA_DIR for this process, waiting up to `wait` seconds for a holder to let go.

        `mode` is the DB_MODE ("direct", "snapshot") or "postgres" (a shared
        lock). A heartbeat every `heartbeat` seconds is kept where flock fails
        or DATA_DIR is on FUSE. Raises DataDirBusyError, or OSError when the
        lock file cannot be created.
        """
        data_dir = Path(data_dir)
        shared = mode == "postgres"
        path = data_dir / LOCK_NAME
        me = Holder(uuid.uuid4().hex, os.getpid(), socket.gethostname(),
                    datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), mode)
        deadline = time.monotonic() + max(0.0, wait)
        waiting = _Waiting(data_dir, wait)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                locked = _flock(fd, shared, deadline, waiting)
                if locked and not _same_file(fd, path):
                    os.close(fd)  # the holder removed the file as it let go: lock the one there now
                    continue
                use_heartbeat = not locked or _on_fuse(data_dir)
                if shared:
                    if locked:  # the record says "a PostgreSQL replica": a DuckDB owner's message names one
                        _write(path, me)
                    return cls(data_dir, fd, me, locked=locked, heartbeat=None)
                if use_heartbeat:
                    me = _claim_by_heartbeat(path, me, deadline, heartbeat, waiting, locked)
                else:
                    _write(path, me)
                lock = cls(data_dir, fd, me, locked=locked, heartbeat=heartbeat if use_heartbeat else None)
            except BaseException:
                os.close(fd)  # closing drops the flock
                raise
            log.info("DATA_DIR %s: owned by this process (%s)%s", data_dir, me.describe(),
                     f", heartbeat every {heartbeat:g} s" if use_heartbeat else "")
            return lock

    def verify(self) -> None:
        """Raise DataDirLostError when another process has taken DATA_DIR over since `acquire`."""
        if self._lost:
            raise DataDirLostError(self._lost_message(None))
        if self._heartbeat is None or self._fd is None:
            return
        with self._io:
            current = _read(self.path)
        if current is not None and current.owner != self.owner:
            self._lost = True
            raise DataDirLostError(self._lost_message(current))

    def release(self) -> None:
        """Let go of DATA_DIR. Idempotent.

        With a working flock the lock file is removed while still locked (a
        waiter that locked the removed file notices and locks the new one), so
        a stopped app leaves nothing behind; in heartbeat mode the record is
        marked released instead, for a claimant on another host to see at once.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._io:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                if self.holder.mode == "postgres" or self._lost:
                    pass  # shared with other replicas, or no longer ours: nothing to say
                elif self._locked and self._heartbeat is None:
                    self.path.unlink(missing_ok=True)
                else:
                    current = _read(self.path)
                    if current is None or current.owner == self.owner:
                        _write(self.path, Holder(**{**asdict(self.holder), "released": True}))
            except OSError as exc:
                log.warning("DATA_DIR %s: could not mark the lock released (%s)", self.data_dir, exc)
            finally:
                os.close(fd)

    # --- internals -------------------------------------------------------------

    def _lost_message(self, current: Holder | None) -> str:
        who = current.describe() if current else "another process"
        return (f"DATA_DIR={str(self.data_dir)!r} was taken over by {who}: this process stalled past the "
                f"heartbeat limit and no longer owns it, so it writes nothing more there. Stop this process.")

    def _beat(self) -> None:
        assert self._heartbeat is not None
        while not self._stop.wait(self._heartbeat):
            try:
                self.verify()
                with self._io:
                    if self._fd is None:
                        return
                    self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
                    _write(self.path, self.holder)
            except DataDirLostError as exc:
                log.error("%s", exc)
                return
            except OSError as exc:  # a slow or failing bucket: try again at the next beat
                log.warning("DATA_DIR %s: heartbeat not written (%s)", self.data_dir, exc)


class _Waiting:
    """Logs, at most every _REPORT_EVERY_S, who holds DATA_DIR while this process waits."""

    def __init__(self, data_dir: Path, wait: float) -> None:
        self.data_dir, self.wait = data_dir, wait
        self.started = time.monotonic()
        self._last: float | None = None
        self.holder: Holder | None = None

    def report(self, holder: Holder | None) -> None:
        self.holder = holder or self.holder
        now = time.monotonic()
        if self._last is None or now - self._last >= _REPORT_EVERY_S:
            self._last = now
            who = self.holder.describe() if self.holder else "another process"
            log.warning("DATA_DIR %s is held by %s; waiting up to %g s for it to stop (DATA_DIR_LOCK_WAIT)",
                        self.data_dir, who, self.wait)

    def busy(self) -> DataDirBusyError:
        who = self.holder.describe() if self.holder else "another process (it wrote no details)"
        if self.holder is not None and self.holder.mode == "postgres":
            advice = ("PostgreSQL replicas (STORE_URL) share this DATA_DIR; a DuckDB process needs its own: "
                      "set DATA_DIR to another folder, or set STORE_URL to join them")
        else:
            advice = ("only one process may own a DATA_DIR: stop the other one, or set DATA_DIR to another "
                      "folder (several replicas need STORE_URL, PostgreSQL)")
        return DataDirBusyError(
            f"DATA_DIR={str(self.data_dir)!r} is in use by another annotator process ({who}); waited "
            f"{time.monotonic() - self.started:.0f} s for it to stop (DATA_DIR_LOCK_WAIT={self.wait:g}). "
            f"{advice[0].upper()}{advice[1:]}.")


def _flock(fd: int, shared: bool, deadline: float, waiting: _Waiting) -> bool:
    """flock `fd`, polling until `deadline`; True when locked, False when the file system has no locks."""
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    while True:
        try:
            fcntl.flock(fd, op)
            return True
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno in _NO_LOCKS:
                log.warning("DATA_DIR %s: the file system refuses locks (%s); a heartbeat in %s stands in for "
                            "one", waiting.data_dir, os.strerror(exc.errno or 0), LOCK_NAME)
                return False
            raise
        waiting.report(_read(waiting.data_dir / LOCK_NAME))
        if time.monotonic() >= deadline:
            raise waiting.busy()
        time.sleep(_POLL_S)


def _claim_by_heartbeat(path: Path, me: Holder, deadline: float, heartbeat: float, waiting: _Waiting,
                        locked: bool) -> Holder:
    """Take the lock file over when no live owner's heartbeat is in it; wait for one that is.

    After writing its own record the claimant reads it back a moment later: of two that
    claimed together, the one whose record is still there holds the folder, the other waits.
    """
    settle = min(1.0, heartbeat / 5)
    while True:
        current = _read(path)
        if _free(current, path, heartbeat, locked):
            me = Holder(**{**asdict(me), "heartbeat": time.time()})
            if current is not None and current.owner != me.owner and not current.released:
                log.warning("DATA_DIR %s: taking over from %s, which is gone (no fresh heartbeat)", waiting.data_dir,
                            current.describe())
            _write(path, me)
            time.sleep(settle)
            back = _read(path)
            if back is not None and back.owner == me.owner:
                return me
            current = back
        waiting.report(current)
        if time.monotonic() >= deadline:
            raise waiting.busy()
        time.sleep(_POLL_S)


def _free(holder: Holder | None, path: Path, heartbeat: float, locked: bool) -> bool:
    """Whether the record in the lock file belongs to nobody alive."""
    if holder is None:  # empty: never written; unreadable: free once it has not changed for the stale limit
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return True
        return stat.st_size == 0 or time.time() - stat.st_mtime > STALE_HEARTBEATS * heartbeat
    if holder.released:
        return True
    here = holder.alive_here()
    if here is False or (here is True and locked and holder.pid != os.getpid()):
        return True  # dead on this host, or alive here without the flock this process now holds
    return time.time() - holder.heartbeat > STALE_HEARTBEATS * heartbeat


def _same_file(fd: int, path: Path) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _read(path: Path) -> Holder | None:
    """The record in the lock file, read through a fresh open: a bucket mount shows another host's
    writes at open (close-to-open), not through a descriptor held since before them."""
    try:
        with open(path, "rb") as f:
            return _parse(f.read(4096))
    except OSError:
        return None


def _write(path: Path, holder: Holder) -> None:
    """Rewrite the lock file in place, flushed and closed (so another host sees it).

    Never by rename (an flock belongs to the inode), and always as one record
    of _RECORD_BYTES, so a reader never finds the file empty or half old, half
    new. Opening and closing another descriptor keeps the flock (unlike fcntl locks).
    """
    data = json.dumps(asdict(holder), sort_keys=True).encode().ljust(_RECORD_BYTES - 1) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["DataDirBusyError", "DataDirLock", "DataDirLostError", "HEARTBEAT_S", "Holder", "LOCK_NAME",
           "STALE_HEARTBEATS"]
