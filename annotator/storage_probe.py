"""Measure DATA_DIR at start and say which DB_MODE suits it.

`probe(path)` writes a few small files with fsync, reads them back, and
reports the latencies, the free space, the filesystem (from /proc/mounts:
FUSE or not, and which mount point holds the path) and a guess at whether
the folder survives a restart. `recommendation` is a sentence for the start
log and the admin view, true for the engine in use (`engine`): with
STORE_URL the answers are in PostgreSQL and DATA_DIR holds only the images
and the key, so it speaks of neither DB_MODE nor commits on DATA_DIR.

Rules behind the recommendation:

* FUSE (`fuse`, `fuse.*`, `fuseblk`: on Spaces `/data` is a Storage Bucket
  mounted with hf-mount), or a median fsync slower than `SLOW_FSYNC_MS`:
  DB_MODE=snapshot. DuckDB commits with one write + one fsync of its WAL and
  checkpoints with random writes; a bucket mount may not honour either as a
  disk does, and a slow fsync caps the commit rate.
* Otherwise DB_MODE=direct: every acknowledged answer is on DATA_DIR.

Persistence is a heuristic, stated as such:

* On a Space (SPACE_ID set): persistent only when the path is on a mount
  point other than the container's root filesystem (the attached storage,
  normally `/data`); anything else is reset when the Space restarts.
* Elsewhere: tmpfs/ramfs is not persistent; a folder under /tmp may be
  cleared at reboot ("unknown"); any other disk folder is taken as
  persistent.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

SLOW_FSYNC_MS = 10.0
Engine = Literal["direct", "snapshot", "postgres"]
_VOLATILE_FS = frozenset({"tmpfs", "ramfs"})


@dataclass(frozen=True)
class Mount:
    device: str
    point: Path
    fs_type: str

    @property
    def is_fuse(self) -> bool:
        return self.fs_type == "fuse" or self.fs_type.startswith("fuse.") or self.fs_type == "fuseblk"


@dataclass(frozen=True)
class StorageReport:
    """What `probe` measured. Latencies are medians in milliseconds (None when not measured)."""
    path: Path
    writable: bool
    error: str | None
    mount: Mount | None
    is_fuse: bool
    is_mount_point: bool
    persistent: bool | None
    persistent_reason: str
    free_bytes: int | None
    total_bytes: int | None
    write_ms: float | None
    fsync_ms: float | None
    fsync_max_ms: float | None
    read_ms: float | None
    recommended_mode: str
    recommendation: str

    def lines(self) -> list[str]:
        """Human-readable lines for the admin view."""
        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.1f} ms"

        def gb(v: int | None) -> str:
            return "n/a" if v is None else f"{v / 2**30:.1f} GB"

        where = f"{self.mount.fs_type} at {self.mount.point}" if self.mount else "unknown filesystem"
        out = [f"{self.path}: {where}" + (" (FUSE)" if self.is_fuse else ""),
               f"write {ms(self.write_ms)}, fsync {ms(self.fsync_ms)} (max {ms(self.fsync_max_ms)}), "
               f"read back {ms(self.read_ms)}",
               f"free {gb(self.free_bytes)} of {gb(self.total_bytes)}",
               f"persistent: {'yes' if self.persistent else 'no' if self.persistent is False else 'unknown'} "
               f"({self.persistent_reason})"]
        if self.error:
            out.append(f"error: {self.error}")
        out.append(self.recommendation)
        return out


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1:i + 4]
        if field[i] == "\\" and len(digits) == 3 and digits.isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append(Mount(_unescape(parts[0]), Path(_unescape(parts[1])), parts[2]))
    return mounts


def find_mount(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount holding `path`: the longest mount point that contains it (the last one wins on ties)."""
    best: Mount | None = None
    for mount in mounts:
        try:
            path.relative_to(mount.point)
        except ValueError:
            continue
        if best is None or len(mount.point.parts) >= len(best.point.parts):
            best = mount
    return best


def read_mounts() -> str:
    """The text of /proc/mounts; empty where there is none."""
    try:
        return Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe(path: Path | str, *, engine: Engine = "direct", files: int = 5, size: int = 64 * 1024,
          mounts_text: str | None = None, env: Mapping[str, str] | None = None) -> StorageReport:
    """Measure `path` (created if missing) and say what it means for `engine`, the store in use
    (DB_MODE direct or snapshot, or "postgres" with STORE_URL). Never raises on I/O errors."""
    env = os.environ if env is None else env
    path = Path(path).expanduser()
    resolved = _existing_parent(path.resolve())
    mount = find_mount(path.resolve(), parse_mounts(read_mounts() if mounts_text is None else mounts_text))
    is_mount_point = mount is not None and mount.point == path.resolve()
    is_fuse = bool(mount and mount.is_fuse)
    writes: list[float] = []
    syncs: list[float] = []
    reads: list[float] = []
    error: str | None = None
    writable = False
    try:
        path.mkdir(parents=True, exist_ok=True)
        payload = os.urandom(size)
        for i in range(files):
            target = path / f".probe-{os.getpid()}-{i}"
            try:
                t0 = time.perf_counter()
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, payload)
                    t1 = time.perf_counter()
                    os.fsync(fd)
                    t2 = time.perf_counter()
                finally:
                    os.close(fd)
                with open(target, "rb") as f:
                    back = f.read()
                t3 = time.perf_counter()
                if back != payload:
                    raise OSError("the data read back differs from what was written")
                writes.append((t1 - t0) * 1000)
                syncs.append((t2 - t1) * 1000)
                reads.append((t3 - t2) * 1000)
            finally:
                try:
                    target.unlink()
                except OSError:
                    pass
        writable = True
    except OSError as exc:
        error = f"{exc.strerror or exc}"
    free = total = None
    try:
        usage = shutil.disk_usage(path if path.exists() else resolved)
        free, total = usage.free, usage.total
    except OSError:
        pass

    persistent, reason = _persistence(path.resolve(), mount, is_fuse, env)
    fsync_ms = statistics.median(syncs) if syncs else None
    slow = fsync_ms is not None and fsync_ms > SLOW_FSYNC_MS
    mode = "snapshot" if writable and (is_fuse or slow) else "direct"
    if not writable:
        text = (f"DATA_DIR cannot be written ({error}); the app cannot keep answers there. Set DATA_DIR to a "
                f"writable folder.")
    else:
        text = _advice(engine, mode, is_fuse, fsync_ms)
    if writable and persistent is False:
        text += (" DATA_DIR does not survive a restart: attach persistent storage (the images and the key are "
                 "kept there)." if engine == "postgres" else
                 " DATA_DIR does not survive a restart: attach persistent storage, and set EXPORT_REPO so "
                 "answers are restored from the Hub export (at most EXPORT_EVERY minutes are lost).")
    elif writable and persistent is None:
        text += " Whether DATA_DIR survives a restart is unknown: " + (
            "keep the images somewhere that does." if engine == "postgres" else "set EXPORT_REPO as a second copy.")
    return StorageReport(
        path=path, writable=writable, error=error, mount=mount, is_fuse=is_fuse, is_mount_point=is_mount_point,
        persistent=persistent, persistent_reason=reason, free_bytes=free, total_bytes=total,
        write_ms=statistics.median(writes) if writes else None, fsync_ms=fsync_ms,
        fsync_max_ms=max(syncs) if syncs else None, read_ms=statistics.median(reads) if reads else None,
        recommended_mode=mode, recommendation=text)


def _advice(engine: Engine, mode: str, is_fuse: bool, fsync_ms: float | None) -> str:
    """The sentence about DB_MODE, true for the engine in use: `mode` is the one DATA_DIR suits."""
    fsync = f"fsync {fsync_ms:.1f} ms median" if fsync_ms is not None else "fsync not measured"
    if engine == "postgres":
        return (f"Answers are committed to PostgreSQL (STORE_URL); DATA_DIR ({fsync}) holds only the images and "
                f"the key, so DB_MODE does not apply.")
    why = "is a FUSE mount (a Storage Bucket): random writes and fsync may not behave as on a disk" \
        if is_fuse else f"has a slow fsync ({fsync}): every commit waits for it"
    snapshot = ("the live database is on local disk (CACHE_DIR) and a consistent copy goes to DATA_DIR every "
                "SNAPSHOT_EVERY seconds and at shutdown; a crash loses at most that interval")
    if engine == "snapshot":
        if mode == "snapshot":
            return f"DB_MODE=snapshot suits DATA_DIR, which {why}. {snapshot[0].upper()}{snapshot[1:]}."
        return (f"DB_MODE=snapshot: {snapshot}. DATA_DIR ({fsync}) would also do for DB_MODE=direct, which "
                f"commits every acknowledged answer there.")
    if mode == "snapshot":
        return f"Use DB_MODE=snapshot: DATA_DIR {why}. With DB_MODE=snapshot {snapshot}."
    return f"DB_MODE=direct suits DATA_DIR ({fsync}): every acknowledged answer is committed there."


def _persistence(path: Path, mount: Mount | None, is_fuse: bool, env: Mapping[str, str]) -> tuple[bool | None, str]:
    if mount is not None and mount.fs_type in _VOLATILE_FS:
        return False, f"{mount.fs_type} keeps files in memory"
    if env.get("SPACE_ID"):
        if mount is not None and mount.point != Path("/"):
            kind = "a bucket mount" if is_fuse else "a mounted volume"
            return True, f"on a Space, {mount.point} is {kind}, which outlives restarts"
        return False, "on a Space, the container's own disk is reset at every restart"
    if path == Path("/tmp") or Path("/tmp") in path.parents:
        return None, "under /tmp, which may be cleared at reboot"
    return True, "a folder on a local disk"


__all__ = ["Mount", "SLOW_FSYNC_MS", "StorageReport", "find_mount", "parse_mounts", "probe", "read_mounts"]
