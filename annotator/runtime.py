"""Builds the long-lived parts in order and takes them down in reverse.

settings -> store -> scheduler/writer (backend) -> images, tickets, prefetch
-> service. `app.py`, the tests and the benchmarks all start the app through
`Runtime.open`, so they run the same composition.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import psycopg

from annotator.admin_actions import AdminDeps
from annotator.auth import Access
from annotator.config import ConfigError, Settings, load_settings
from annotator.task import TaskSpec, check_answers_fit, legacy_question, load_task
from annotator.datadir_lock import DataDirLock
from annotator.engine import Backend, describe, mode, open_engine, store_files
from annotator.export.hub import Exporter
from annotator.export.restore import restore_from_hub
from annotator.gold import GoldAnswer, GoldError, gold_answers, plan_of
from annotator.images import ImageCache
from annotator.model import StoreError, hand_out_order
from annotator.prefetch import PrefetchBuffers
from annotator.recovery import RecoveryError, replay
from annotator.reports import DashboardDeps
from annotator.service import AnnotationService
from annotator.snapshot import Snapshotter, restore_snapshot
from annotator.storage_probe import StorageReport, probe
from annotator.store_protocol import StoreProtocol
from annotator.tickets import Signer, load_secret

log = logging.getLogger(__name__)


def check_data_dir(data_dir: Path) -> None:
    """Refuse to start on a DATA_DIR that cannot be written, before anything is created in it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".write-test-") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        raise ConfigError(
            f"DATA_DIR={str(data_dir)!r} cannot be written ({exc.strerror or exc}). Set DATA_DIR to a "
            f"writable folder with free space, or attach a Storage Bucket at /data on the Space.") from None


def own_data_dir(settings: Settings) -> DataDirLock:
    """Take DATA_DIR for this process before anything in it is read (see datadir_lock).

    The DuckDB modes own it alone; PostgreSQL replicas (STORE_URL) share it
    with each other (the images, the key) and never with a DuckDB owner.
    Waits up to DATA_DIR_LOCK_WAIT seconds for a process that is stopping;
    raises DataDirBusyError when the holder stays.
    """
    try:
        return DataDirLock.acquire(settings.data_dir, mode=mode(settings), wait=settings.lock_wait)
    except OSError as exc:
        raise ConfigError(f"DATA_DIR={str(settings.data_dir)!r}: cannot create its lock file "
                          f"({exc.strerror or exc}). Set DATA_DIR to a writable folder.") from None


def _abandon(store: StoreProtocol, created: list[Path]) -> None:
    """A start that failed half-way leaves nothing behind that it created."""
    with contextlib.suppress(Exception):
        store.close()
    for path in created:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def load_gold(store: StoreProtocol, task: TaskSpec) -> dict[int, GoldAnswer]:
    """The task's gold records (gold_column, gold_file), read once at start; a wrong one stops the start
    with a message naming the record or the line (gold.gold_answers)."""
    quality = task.quality
    if not quality.has_gold:
        return {}
    rows = []
    if quality.gold_file:
        with open(quality.gold_file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ConfigError(f"gold_file {quality.gold_file!r} line {n} is not JSON ({exc}).") from None
    try:
        gold = gold_answers(task, store.records(store.record_ids()).values(), quality.gold_column, rows)
    except GoldError as exc:
        raise ConfigError(f"{exc}.") from None
    if not gold:
        log.warning("gold: the task names gold records but none was found (gold_column %r, gold_file %r)",
                    quality.gold_column, quality.gold_file)
    return gold


def _sizes_as_shown(store: StoreProtocol, settings: Settings, fresh: bool) -> None:
    """Once per database: the first image's size as shown (ingest.fix_shown_sizes) for records stored before
    sizes were; a store filled at this start is right already. Done once (`StoreProtocol.mark`)."""
    from annotator.ingest import SHOWN_SIZES, fix_shown_sizes
    if store.marked(SHOWN_SIZES):
        return
    fixed = 0 if fresh else fix_shown_sizes(store, settings.images_dir)
    if fixed:
        log.info("%d records now have the size of their image as shown (EXIF orientation)", fixed)
    store.mark(SHOWN_SIZES)


def _check_images_per_record(store: StoreProtocol, settings: Settings, task: TaskSpec) -> None:
    """A preference question chooses among a record's images: refuse to start on records with fewer than the
    task's [record] images (ingested before, or by a task of one image), naming how many and what to do."""
    if not any(q.kind == "preference" for q in task.questions):
        return
    need, ids, short = len(task.image_columns), store.record_ids(), 0
    for start in range(0, len(ids), 1000):
        short += sum(r.image_count < need for r in store.records(ids[start:start + 1000]).values())
    if short:
        raise ConfigError(f"{short} of the {len(ids)} records in DATA_DIR={str(settings.data_dir)!r} have fewer than "
                          f"the {need} images the task's preference question compares ([record] images = "
                          f"{list(task.image_columns)}); they were ingested for another task. Point DATA_DIR at an "
                          f"empty folder, so that the source is ingested with this task's image columns.")


def commit_recovered(store: StoreProtocol, settings: Settings, task: TaskSpec) -> None:
    """Commit what the last run could not save before it stopped (recovery files in DATA_DIR), once.

    Runs after the store opened and before assignment is rebuilt from it, so
    the scheduler counts these answers. A file whose writes storage does not
    take stops the start, and is kept.
    """
    try:
        replay(store, settings.data_dir, legacy=legacy_question(task))
    except RecoveryError as exc:
        raise ConfigError(str(exc)) from None


@dataclass
class Runtime:
    settings: Settings
    task: TaskSpec
    store: StoreProtocol
    backend: Backend
    signer: Signer
    service: AnnotationService  # holds the prefetch buffers and the image cache
    access: Access
    storage: StorageReport
    exporter: Exporter | None = None  # None when EXPORT_REPO is unset
    snapshots: Snapshotter | None = None  # None unless DB_MODE=snapshot
    owner: DataDirLock | None = None  # this process's lock on DATA_DIR, released last by close()
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, settings: Settings | None = None, *, ingest: bool = True) -> "Runtime":
        settings = settings or load_settings()
        task = load_task(settings.task_file)
        check_data_dir(settings.data_dir)
        owner = own_data_dir(settings)
        try:
            return cls._open_owned(settings, task, owner, ingest=ingest)
        except BaseException:
            owner.release()
            raise

    @classmethod
    def _open_owned(cls, settings: Settings, task: TaskSpec, owner: DataDirLock, *, ingest: bool) -> "Runtime":
        """Everything after DATA_DIR is owned: the caller releases `owner` when this raises."""
        storage = probe(settings.data_dir, engine=mode(settings))
        for line in storage.lines():
            log.info("DATA_DIR: %s", line)
        if settings.db_mode == "snapshot":
            restored = restore_snapshot(settings)
            if restored is not None:
                log.info("restored the database from the snapshot %s", restored)
        created = [path for path in (*store_files(settings), settings.images_dir) if not path.exists()]
        engine = open_engine(settings, task)
        store = engine.store
        try:
            fresh = store.record_count() == 0  # what fills it now is stored with the sizes as shown
            if settings.export_repo and store.record_count() == 0:
                # an empty disk with an export configured: the export is the second copy
                try:
                    restored_export = restore_from_hub(store, settings, task)
                except StoreError:
                    if store.record_count() == 0:
                        raise
                    # replicas on one PostgreSQL database started together: another one restored it first
                    log.info("restore: another replica filled the store first; nothing restored here")
                    restored_export = None
                if restored_export is not None:
                    log.info("restore: %s", restored_export.summary())
            if ingest and store.record_count() == 0:
                from annotator.ingest import LOGGED_SKIPS, EmptySourceError, ingest_from_settings
                report = ingest_from_settings(store, settings, task)
                log.info("ingest: %s", report.summary(skipped=LOGGED_SKIPS))  # each skipped file named
                if store.record_count() == 0 and not settings.allow_empty:
                    raise EmptySourceError(settings, report)
            elif ingest:  # a source changed after the first start is not read: say so, not nothing
                from annotator.ingest import source_setting
                log.info("ingest: the database already holds %d records, so %s is not read (images are imported "
                         "only into an empty database; `python -m annotator ingest` adds new ones, a new DATA_DIR "
                         "starts afresh)", store.record_count(), source_setting(settings))
            _sizes_as_shown(store, settings, fresh)
            _check_images_per_record(store, settings, task)
            for name in sorted(check_answers_fit(task, store.answered_questions(), settings.task_file)):
                log.warning("task: the stored answers to the question %r are kept, but TASK_FILE no longer asks "
                            "it, so they are neither shown nor exported (put the question back to have them)", name)
            commit_recovered(store, settings, task)
            gold = load_gold(store, task)
            order = hand_out_order([i for i in store.record_ids() if i not in gold] if gold else store.record_ids(),
                                   task.order, task.seed)
            backend = engine.backend(order, task.overlap, settings.lease_ttl, recovery_dir=settings.data_dir,
                                     gold=sorted(gold), plan=plan_of(task))
        except BaseException as exc:
            _abandon(store, created)
            if isinstance(exc, psycopg.Error):
                raise ConfigError(f"STORE_URL ({describe(settings)}) failed while setting up "
                                  f"({type(exc).__name__}: {exc}); check the PostgreSQL server.") from None
            if isinstance(exc, (OSError, duckdb.Error)):
                raise ConfigError(f"DATA_DIR={str(settings.data_dir)!r} failed while setting up "
                                  f"({type(exc).__name__}: {exc}). Free some space or point DATA_DIR at a "
                                  f"writable folder; nothing was left behind.") from None
            raise
        images = ImageCache(settings.images_dir, settings.cache_dir, settings.image_max_side,
                            settings.max_image_pixels)
        signer = Signer(load_secret(settings.secret_key, settings.data_dir))
        ttl = settings.image_url_ttl
        prefetch = PrefetchBuffers(backend, images, settings.prefetch_depth,
                                   lambda rid, user, number=1: signer.image_url(rid, user, ttl, number=number),
                                   order=order)
        service = AnnotationService(task, backend, prefetch, signer, images,
                                     max_comment_chars=settings.max_comment_chars, goal=settings.goal, gold=gold)
        service.start()
        exporter = Exporter(store, task, settings, gold=gold) if settings.export_repo else None
        if exporter is not None:
            exporter.start()
        snapshots = Snapshotter(store, settings, owner=owner) if settings.db_mode == "snapshot" else None
        if snapshots is not None:
            snapshots.start()
        return cls(settings, task, store, backend, signer, service, Access(settings), storage, exporter, snapshots,
                   owner)

    def dashboard_deps(self) -> DashboardDeps:
        """The parts the dashboard reads (annotator.reports), and no more of the runtime."""
        limits = self.access.sign_in_limits if self.settings.auth_mode == "password" else None
        return DashboardDeps(self.store, self.task, self.backend, self.service.click_latency,
                             self.settings.data_dir, self.storage, self.exporter, limits, self.settings.box_iou,
                             gold=self.service.gold)

    def admin_deps(self) -> AdminDeps:
        """The parts the admin actions use (annotator.admin_actions), and no more of the runtime."""
        return AdminDeps(self.settings, self.task, self.store, self.backend, self.service, self.exporter)

    def close(self) -> None:
        """Stop taking work, write everything queued, close the database. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.service.close()
        self.backend.writer.close()  # every answer committed before the last export and snapshot
        if self.exporter is not None:
            self.exporter.stop()
        if self.snapshots is not None:
            self.snapshots.stop()
        try:
            self.backend.close()
        finally:
            if self.owner is not None:
                self.owner.release()
        log.info("closed: every acknowledged answer is committed")
