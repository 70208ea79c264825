"""Fill an EMPTY store from the latest Hub export, so a Space that lost its disk loses at most one export interval.

Reads the tables the exporter pushed (their columns are `format`'s), stores
the images again as ingest does, and imports everything in one transaction.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from annotator.config import Settings
from annotator.task import TaskSpec, legacy_question
from annotator.export.format import (CONFIGS, FINAL_COLUMNS, MORE_IMAGES, RECORD_COLUMNS, RECORDS, RESPONSES,
                                     final_from_row, image_bytes, more_image_bytes, record_from_row,
                                     response_from_row)
from annotator.export.gold import GOLD_CONFIG, GOLD_RECORDS, GOLD_RESPONSES
from annotator.export.push_state import save_export_state
from annotator.export.tables import SHARD_ROWS
from annotator.export.token_scrub import describe_error, protect_token_in_logs
from annotator.images import ImageError, SavedImage, save_original
from annotator.model import AuditWrite, Final, Record, Response, StoreError, utcnow
from annotator.store_protocol import StoreProtocol

log = logging.getLogger(__name__)


class RestoreError(RuntimeError):
    """The export exists but could not be read back; the message says why (never containing the token)."""


@dataclass(frozen=True)
class RestoreReport:
    """What one restore read back, for the start-up log."""
    repo: str
    revision: str | None
    records: int
    responses: int
    missing_images: int
    unknown_labels: int
    seconds: float

    def summary(self) -> str:
        text = (f"restored {self.records} records and {self.responses} answers from {self.repo} "
                f"in {self.seconds:.1f}s")
        if self.missing_images:
            text += f"; {self.missing_images} images were not in the export"
        if self.unknown_labels:
            text += f"; {self.unknown_labels} answers use labels the task no longer has"
        return text


def restore_from_hub(store: StoreProtocol, settings: Settings, task: TaskSpec | None = None, *,
                     endpoint: str | None = None) -> RestoreReport | None:
    """Fill an EMPTY store from the latest export in EXPORT_REPO; None when there is nothing to do.

    Nothing happens (None) when EXPORT_REPO is not set, when the store holds
    any record or answer (a store that is not empty is never touched), or when
    the repo does not exist (or this token cannot see it) or holds no export.
    Record ids, positions and extra answers are kept; images go to
    `images_dir/<sha256[:2]>/<sha256><ext>` as ingest stores them; current
    answers keep status, answer, comment, time spent and timestamps. One
    transaction: an interrupted restore leaves the store empty. Raises
    RestoreError when the export exists but cannot be downloaded or read:
    starting anyway would ingest afresh and the next export would replace the
    answers on the Hub, so start-up should stop and say so.
    """
    if not settings.export_repo:
        return None
    if store.record_count() or store.stats()["responses"]:
        log.info("restore: the store is not empty; nothing restored from %s", settings.export_repo)
        return None
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    started = time.monotonic()
    token = settings.hf_token
    protect_token_in_logs(token)
    repo = settings.export_repo
    api = HfApi(endpoint=endpoint, token=token)
    work = settings.cache_dir / "restore" / f"run-{os.getpid()}"
    try:
        try:
            info = api.repo_info(repo, repo_type="dataset")
        except (RepositoryNotFoundError, RevisionNotFoundError):
            log.info("restore: %s does not exist or HF_TOKEN cannot read it; nothing to restore", repo)
            return None
        revision = info.sha
        names = [s.rfilename for s in (info.siblings or [])]
        wanted = [n for n in names if n.split("/", 1)[0] in CONFIGS and n.endswith(".parquet")]
        if not any(n.startswith(f"{RECORDS}/") for n in wanted):
            log.info("restore: %s holds no export yet; nothing to restore", repo)
            return None
        shutil.rmtree(work, ignore_errors=True)
        local = Path(api.snapshot_download(repo, repo_type="dataset", revision=revision,
                                           allow_patterns=[f"{c}/*.parquet" for c in CONFIGS] +
                                           [f"{GOLD_CONFIG}/{GOLD_RECORDS}-*.parquet",
                                            f"{GOLD_CONFIG}/{GOLD_RESPONSES}-*.parquet"],
                                           local_dir=work))
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise RestoreError(f"cannot download the export {repo}: {describe_error(exc, token)}. Check HF_TOKEN and "
                           f"the network, or unset EXPORT_REPO to start without restoring.") from None
    counts = {"missing_images": 0, "unknown_labels": 0}
    labels = ({q.name: set(q.label_names) for q in task.questions if q.kind in ("label", "labels", "boxes")}
              if task else None)
    legacy = legacy_question(task) if task else None
    images_dir = settings.images_dir

    def saved_image(row: dict[str, Any], data: bytes | None) -> SavedImage | None:
        if not data:
            counts["missing_images"] += 1
            return None
        try:
            return save_original(data, images_dir, settings.max_image_pixels)
        except ImageError as exc:
            log.warning("restore: an image of record %s is unreadable (%s)", row["record_id"], exc)
            counts["missing_images"] += 1
            return None

    finals: list[Final] = []  # filled while the records are read; the store reads it after them

    def record_batches() -> Iterator[list[Record]]:
        for path in _parts(local, RECORDS, GOLD_RECORDS):
            file = pq.ParquetFile(path)
            # more_images: only in the export of a task of several images; final...: since adjudication
            columns = [c for c in (*RECORD_COLUMNS, MORE_IMAGES, *FINAL_COLUMNS) if c in file.schema_arrow.names]
            for batch in file.iter_batches(batch_size=SHARD_ROWS, columns=columns):
                rows = batch.to_pylist()
                finals.extend(f for f in map(final_from_row, rows) if f is not None)
                yield [record_from_row(row, saved_image(row, image_bytes(row)),
                                       [saved_image(row, data) for data in more_image_bytes(row)])
                       for row in rows]

    def response_batches() -> Iterator[list[Response]]:
        for path in _parts(local, RESPONSES, GOLD_RESPONSES):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
                out = [response_from_row(row, legacy) for row in batch.to_pylist()]
                if labels is not None:
                    counts["unknown_labels"] += sum(1 for r in out if r.status == "submitted" and _unknown(r, labels))
                yield out

    try:
        audit = AuditWrite("annotator", "restore", {"repo": repo, "revision": revision}, utcnow())
        try:
            n_records, n_responses = store.import_snapshot(record_batches(), response_batches(), audit=audit,
                                                           finals=finals)
        except StoreError:
            raise
        except Exception as exc:
            raise RestoreError(f"cannot restore from the export {repo}@{revision[:8] if revision else '?'}: "
                               f"{describe_error(exc, token)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save_export_state(store, settings, store.export_fingerprint())
    report = RestoreReport(repo, revision, n_records, n_responses, counts["missing_images"],
                           counts["unknown_labels"], time.monotonic() - started)
    log.info("restore: %s", report.summary())
    return report


def _parts(local: Path, table: str, gold_stem: str) -> list[Path]:
    """The files of one table: its config's, then the gold records' copy of it (export.gold), which the
    export keeps apart from the config so a restored store has its gold records and their answers too."""
    return sorted((local / table).glob("*.parquet")) + sorted((local / GOLD_CONFIG).glob(f"{gold_stem}-*.parquet"))


def _unknown(response: Response, labels: dict[str, set[str]]) -> bool:
    """Whether an answer names a label its question (label, labels or boxes) does not have in the task."""
    for name, known in labels.items():
        value = response.answer.get(name)
        if value is None:
            continue
        names = {value} if isinstance(value, str) else {v["label"] if isinstance(v, dict) else v for v in value}  # type: ignore[union-attr]
        if not names <= known:
            return True
    return False
