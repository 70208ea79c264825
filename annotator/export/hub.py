"""Push the export tables to the Hub dataset EXPORT_REPO, with its card, in one commit.

`Exporter` pushes both tables as two configs of one dataset repo, with the
ready-to-train configs beside them (`train_configs`), the gold answers in
their own config (`export.gold`) and a generated README card, on a schedule
when something changed, on demand and at shutdown, in a background thread,
never two at once, retrying failed pushes.
Replicas sharing a PostgreSQL database all run one: the store's export lock
lets one push at a time, and the store remembers what was pushed, so the same
state is not pushed twice.

The token (HF_TOKEN) is passed to huggingface_hub only; every message this
module produces (logs, status, errors, the card) is scrubbed of it.

    exporter = Exporter(store, task, settings)
    exporter.start()              # pushes every EXPORT_EVERY minutes when something changed
    exporter.trigger().result()   # on demand (the admin view)
    exporter.stop()               # final push if something changed; before store.close()
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from annotator.boxes import DEFAULT_IOU
from annotator.config import ConfigError, Settings
from annotator.task import TaskSpec
from annotator.export.card import dataset_card
from annotator.export.format import RECORDS, RESPONSES
from annotator.export.gold import GOLD_CONFIG, GOLD_FILES, GOLD_RECORDS, GOLD_RESPONSES
from annotator.export.push_state import pushed_fingerprint, save_export_state
from annotator.export.summary import ExportSummary
from annotator.export.tables import SHARD_ROWS, ExportProgress, build_tables
from annotator.export.train_configs import owned_folder, train_configs
from annotator.export.token_scrub import describe_error, protect_token_in_logs, scrub
from annotator.export.writers import table_sink
from annotator.gold import GoldAnswer
from annotator.periodic import PeriodicJob, Run
from annotator.store_protocol import StoreProtocol

log = logging.getLogger(__name__)

HUB_FILE_BYTES = 400 * 2**20        # a new parquet file on the Hub past this size
LOCK_WAIT = 120.0                   # seconds "export now", the final push and the CLI wait for another replica


class ExportError(RuntimeError):
    """An export or a push failed; the message says why (never containing the token)."""


class ExporterClosedError(ExportError):
    """trigger() after stop()."""


def write_hub_files(store: StoreProtocol, task: TaskSpec, images_dir: Path, folder: Path, *,
                    progress: ExportProgress | None = None, shard_rows: int = SHARD_ROWS,
                    file_bytes: int = HUB_FILE_BYTES, box_iou: float = DEFAULT_IOU,
                    gold: Mapping[int, GoldAnswer] | None = None) -> tuple[dict[str, list[Path]], ExportSummary]:
    """Write `<config>/train-*.parquet` under `folder` for a push: `records`, `responses` and each
    ready-to-train config that has rows (an empty one is left out: it would not load). With gold records
    (`gold`), `gold/train-*` (when someone answered one) and, for restore, `gold/records-*` and
    `gold/responses-*`."""
    configs = train_configs(task)
    tables = build_tables(store, task, images_dir, shard_rows=shard_rows, progress=progress, configs=configs,
                          box_iou=box_iou, gold=gold)
    # (folder, file stem) -> schema
    schemas = {(RECORDS, "train"): tables.records_schema, (RESPONSES, "train"): tables.responses_schema,
               **{(c.name, "train"): c.schema for c in configs}}
    if gold:
        schemas.update({(GOLD_CONFIG, GOLD_FILES): tables.gold_schema,
                        (GOLD_CONFIG, GOLD_RECORDS): tables.records_schema,
                        (GOLD_CONFIG, GOLD_RESPONSES): tables.responses_schema})
    sinks = {}
    for (name, stem), schema in schemas.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        sinks[(name, stem)] = table_sink(folder / name, f"part-{stem}", schema, max_bytes=file_bytes,
                                         empty_file=name in (RECORDS, RESPONSES))
    try:
        for shard in tables:
            sinks[(RECORDS, "train")].write(shard.records)
            sinks[(RESPONSES, "train")].write(shard.responses)
            for name, table in shard.configs.items():
                sinks[(name, "train")].write(table)
            for stem, part in ((GOLD_FILES, shard.gold), (GOLD_RECORDS, shard.gold_records),
                               (GOLD_RESPONSES, shard.gold_responses)):
                if part is not None:
                    sinks[(GOLD_CONFIG, stem)].write(part)
    finally:
        produced = {key: sink.close() for key, sink in sinks.items()}
    files: dict[str, list[Path]] = {}
    for (name, stem), paths in produced.items():
        for i, path in enumerate(paths):
            target = path.with_name(f"{stem}-{i:05d}-of-{len(paths):05d}.parquet")
            os.replace(path, target)
            files.setdefault(name, []).append(target)
    return files, tables.summary


@dataclass(frozen=True)
class ExportResult:
    """One run of the exporter. `pushed` is False when nothing had changed (`reason` says so)."""
    pushed: bool
    reason: str
    commit_url: str | None = None
    records: int = 0
    responses: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class ExportStatus:
    """What the admin view shows about the export. No field ever holds the token."""
    repo: str
    state: str                          # idle | building | uploading | retrying | stopped
    rows_done: int
    rows_total: int
    last_result: str | None             # pushed | up to date | nothing to export | failed |
                                        # another replica is exporting (PostgreSQL: this round is left to it)
    last_error: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    next_run_at: datetime | None
    commit_url: str | None
    attempts: int                       # attempts of the current (or last) push
    pushes: int
    failures: int

    @property
    def progress(self) -> float | None:
        return self.rows_done / self.rows_total if self.rows_total else None


class Exporter(PeriodicJob[ExportResult, ExportStatus]):
    """Pushes the store to the Hub dataset EXPORT_REPO, in the background (model: CommitScheduler).

    Args:
        store: the open Store (read only here; exports read a consistent snapshot).
        task: the TaskSpec (card, majority and status rules).
        settings: EXPORT_REPO (required), EXPORT_EVERY (minutes), EXPORT_PRIVATE (a new repo is
            private unless false), HF_TOKEN, DATA_DIR (images, state file), CACHE_DIR (work files).
        endpoint: the Hub URL (default: huggingface_hub's, i.e. HF_ENDPOINT or huggingface.co).
        retries: attempts per push (default 5), with `retry_initial` seconds (default 5) doubling up to
            `retry_max` (default 120) between them. At shutdown, `final_attempts` (default 2).
        gold: the gold records (runtime.load_gold): their answers leave `records` and `responses` for the
            `gold` config (export.gold).
        lock_wait: seconds a trigger, the final push and `push_now()` wait while another replica
            exports (default LOCK_WAIT); a scheduled round does not wait, it skips.

    Lifecycle: `start()` launches the thread that pushes every EXPORT_EVERY minutes when the store
    changed since the last successful push (its `export_fingerprint()`, or `mark_changed()`);
    `trigger()` asks for an export now and returns a Future of ExportResult: triggers that arrive
    together share one export, and a trigger whose state was already pushed resolves without a new
    push; `stop()` ends the thread after a final push if something changed, is idempotent, and
    after it `trigger()` raises ExporterClosedError. Never two exports at once (a lock, also taken
    by `push_now()`), nor two replicas on one PostgreSQL database (`store.export_lock()`; what was
    pushed is read from the store once the lock is held, so a replica does not push again what
    another one just pushed). A failed push is retried with backoff, then reported in `status()` and tried
    again at the next interval. An empty store (no records) is never pushed, so a lost disk cannot
    overwrite a good export with nothing. Stop it before closing the store. The lifecycle is
    `periodic.PeriodicJob`'s; this class says what one export is.

        with Exporter(store, task, settings) as exporter:   # start() ... stop()
            exporter.trigger().result(timeout=600)
            print(exporter.status())
    """

    closed_error = ExporterClosedError
    noun = "exporter"

    def __init__(self, store: StoreProtocol, task: TaskSpec, settings: Settings, *, endpoint: str | None = None,
                 retries: int = 5, retry_initial: float = 5.0, retry_max: float = 120.0,
                 final_attempts: int = 2, shard_rows: int = SHARD_ROWS, file_bytes: int = HUB_FILE_BYTES,
                 lock_wait: float = LOCK_WAIT, gold: Mapping[int, GoldAnswer] | None = None) -> None:
        if not settings.export_repo:
            raise ConfigError("EXPORT_REPO is not set; set it to a dataset id (owner/name) to push results "
                              "to the Hub.")
        from huggingface_hub import HfApi
        self.store, self.task, self.settings = store, task, settings
        self.gold = gold or {}
        self.repo_id = settings.export_repo
        super().__init__(max(0.001, settings.export_every) * 60.0,
                         ExportStatus(self.repo_id, "idle", 0, 0, None, None, None, None, None, None, 0, 0, 0),
                         name="annotator-export")
        self.retries, self.retry_initial, self.retry_max = max(1, retries), retry_initial, retry_max
        self.final_attempts = max(1, final_attempts)
        self.shard_rows, self.file_bytes = shard_rows, file_bytes
        self.lock_wait = max(0.0, lock_wait)
        self._token = settings.hf_token
        protect_token_in_logs(self._token)
        self._api = HfApi(endpoint=endpoint, token=self._token)
        self._export_lock = threading.Lock()     # held for a whole export: never two at once
        self._interrupt = threading.Event()      # cuts retry waits short at stop()
        self._pushed_version = 0                 # guarded by _cond, as the two below
        self._pushed_fingerprint: str | None = pushed_fingerprint(settings)
        self._runs = 0

    def stop(self, *, final_push: bool = True, timeout: float | None = 300.0) -> None:
        """Final push if something changed (unless final_push=False), then end the thread. Idempotent."""
        self._stop(final=final_push, timeout=timeout)

    def push_now(self, progress: ExportProgress | None = None) -> ExportResult:
        """Export and push at once in this thread, whether or not something changed (the CLI)."""
        return self._export(force=True, attempts=self.retries, wait=self.lock_wait, progress=progress)

    # --- one run of the thread -------------------------------------------------------

    def _interrupt_run(self) -> None:
        self._interrupt.set()

    def _work(self, run: Run) -> ExportResult:
        """A scheduled round skips while another replica exports; a trigger and the final push wait."""
        if run == "final":
            self._interrupt.clear()  # stop() cut the last round short; the final push gets its attempts
        attempts = self.final_attempts if run == "final" else self.retries
        wait = 0.0 if run == "scheduled" else self.lock_wait
        try:
            return self._export(force=False, attempts=attempts, wait=wait)
        except ExportError:
            raise
        except Exception as exc:  # the store failed (e.g. its database is unreachable)
            error = ExportError(describe_error(exc, self._token))
            self._fail(str(error))
            log.error("export to %s failed: %s", self.repo_id, error)
            raise error from None

    # --- one export ----------------------------------------------------------------

    def _changed(self, fingerprint: str) -> bool:
        with self._cond:
            return fingerprint != self._pushed_fingerprint or self._version != self._pushed_version

    def _export(self, *, force: bool, attempts: int, wait: float, progress: ExportProgress | None = None) -> ExportResult:
        """One export under both locks: this process's, then the store's (other replicas'), waiting `wait` s."""
        with self._export_lock, self.store.export_lock(wait) as held:
            if not held:
                self._set_status(last_result="another replica is exporting")
                log.info("export: another replica is exporting to %s; this round is left to it", self.repo_id)
                return ExportResult(False, f"another replica is exporting to {self.repo_id}; it pushes this "
                                           f"state or a newer one")
            self._adopt_shared_state()
            return self._export_held(force=force, attempts=attempts, progress=progress)

    def _adopt_shared_state(self) -> None:
        """What another replica pushed, read under the lock, replaces what this one remembers; a newer
        push shows in this replica's status too (the dashboard links the Hub commit from any replica)."""
        shared = self.store.last_push(self.repo_id)
        if shared is None:
            return
        pushed_at = shared.pushed_at.replace(tzinfo=timezone.utc)
        with self._cond:
            self._pushed_fingerprint = shared.fingerprint
            last = self._status.last_success_at
            if last is None or pushed_at > last:
                self._status = replace(self._status, last_success_at=pushed_at,
                                       commit_url=shared.commit_url or self._status.commit_url)

    def _export_held(self, *, force: bool, attempts: int, progress: ExportProgress | None) -> ExportResult:
        started = time.monotonic()
        with self._cond:
            version = self._version
        fingerprint = self.store.export_fingerprint()  # taken BEFORE reading: never claims more than read
        if not force and not self._changed(fingerprint):
            with self._cond:  # "pushed" already says the Hub has this state
                if self._status.last_result != "pushed":
                    self._set_status(last_result="up to date")
            return ExportResult(False, "nothing changed since the last push")
        if self.store.record_count() == 0:
            self._set_status(last_result="nothing to export")
            return ExportResult(False, "the store has no records; nothing is pushed")
        self._runs += 1
        work = self.settings.cache_dir / "export" / f"run-{os.getpid()}-{self._runs}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        self._set_status(state="building", rows_done=0, rows_total=self.store.record_count(), attempts=0,
                         last_attempt_at=datetime.now(timezone.utc))

        def report(done: int, total: int) -> None:
            self._set_status(rows_done=done, rows_total=total)
            if progress:
                progress(done, total)

        try:
            try:
                files, summary = write_hub_files(self.store, self.task, self.settings.images_dir, work,
                                                 progress=report, shard_rows=self.shard_rows,
                                                 file_bytes=self.file_bytes, box_iou=self.settings.box_iou,
                                                 gold=self.gold)
                card = scrub(dataset_card(self.task, summary, self.repo_id), self._token)
            except Exception as exc:
                self._fail(describe_error(exc, self._token))
                raise ExportError(f"building the export failed: {describe_error(exc, self._token)}") from None
            commit_url = self._upload_with_retries(files, card, summary, attempts)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with self._cond:
            self._pushed_fingerprint = fingerprint
            self._pushed_version = version
            self._status = replace(self._status, state="idle", last_result="pushed", last_error=None,
                                   last_success_at=datetime.now(timezone.utc), commit_url=commit_url,
                                   pushes=self._status.pushes + 1)
        save_export_state(self.store, self.settings, fingerprint, commit_url)
        seconds = time.monotonic() - started
        log.info("export: pushed %d records and %d answers to %s in %.1fs", summary.records,
                 summary.responses, self.repo_id, seconds)
        return ExportResult(True, "pushed", commit_url, summary.records, summary.responses, seconds)

    def _fail(self, reason: str) -> None:
        with self._cond:
            self._status = replace(self._status, state="idle", last_result="failed", last_error=reason,
                                   failures=self._status.failures + 1)

    def _upload_with_retries(self, files: dict[str, list[Path]], card: str, summary: ExportSummary,
                             attempts: int) -> str | None:
        delay = self.retry_initial
        for attempt in range(1, attempts + 1):
            self._set_status(state="uploading", attempts=attempt)
            try:
                return self._upload(files, card, summary)
            except Exception as exc:
                reason = describe_error(exc, self._token)
                if attempt == attempts or self._interrupt.is_set():
                    self._fail(reason)
                    log.error("export: push to %s failed after %d attempt(s): %s", self.repo_id, attempt, reason)
                    raise ExportError(f"push to {self.repo_id} failed after {attempt} attempt(s): {reason}") from None
                self._set_status(state="retrying", last_error=reason)
                log.warning("export: push to %s failed (attempt %d of %d): %s; retrying in %.1fs",
                            self.repo_id, attempt, attempts, reason, delay)
                self._interrupt.wait(delay)
                delay = min(delay * 2, self.retry_max)
        return None  # not reached

    def _upload(self, files: dict[str, list[Path]], card: str, summary: ExportSummary) -> str | None:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete
        self._api.create_repo(self.repo_id, repo_type="dataset", private=self.settings.export_private,
                              exist_ok=True)
        existing = self._api.list_repo_files(self.repo_id, repo_type="dataset")
        new_paths = {f"{name}/{p.name}": p for name, paths in files.items() for p in paths}
        operations: list[Any] = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local))
                                 for path, local in new_paths.items()]
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
        # stale shards of the export's configs, including configs this export no longer has
        operations += [CommitOperationDelete(path_in_repo=path) for path in existing
                       if "/" in path and _owned(path.split("/", 1)[0]) and path not in new_paths]
        info = self._api.create_commit(
            self.repo_id, operations, repo_type="dataset",
            commit_message=f"annotator export: {summary.records} records, {summary.responses} answers",
            commit_description=f"Exported by annotator on {summary.created_at:%Y-%m-%d %H:%M} UTC.")
        return getattr(info, "commit_url", None)


def _owned(folder: str) -> bool:
    """Whether a top-level folder of the export repo is the export's (its stale files are deleted)."""
    return owned_folder(folder) or folder == GOLD_CONFIG
