"""Store -> results: a Hub dataset with a card, local Parquet/JSONL/CSV, and restore from the Hub.

Two tables come out of one pass over the store (`build_tables`), shard by
shard, so memory stays flat in the number of records:

* `records`: one row per record: the image (a `datasets` Image feature holding
  the original bytes), ids, metadata, the majority answer (None on a tie, the
  tied labels listed), the record's agreement, answer counts, status
  (complete / partial / untouched) and the list of answers;
* `responses`: one row per answer, skips included with status "skipped".

`Exporter` pushes both as two configs of one dataset repo (EXPORT_REPO) with a
generated README card, on a schedule when something changed, on demand and at
shutdown, in a background thread, never two at once, retrying failed pushes.
Replicas sharing a PostgreSQL database all run one: the store's export lock
lets one push at a time, and the store remembers what was pushed, so the same
state is not pushed twice.
`export_local` writes the same tables to a folder. `restore_from_hub` fills an
EMPTY store from the latest export, so a Space that lost its disk loses at
most one export interval.

The token (HF_TOKEN) is passed to huggingface_hub only; every message this
module produces (logs, status, errors, the card) is scrubbed of it.

    exporter = Exporter(store, task, settings)
    exporter.start()              # pushes every EXPORT_EVERY minutes when something changed
    exporter.trigger().result()   # on demand (the admin view)
    exporter.stop()               # final push if something changed; before store.close()
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import posixpath
import re
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from annotator import metrics
from annotator.config import ConfigError, Settings, TaskSpec
from annotator.engine import describe, open_store
from annotator.model import AuditWrite, Record, Response, StoreError, utcnow
from annotator.periodic import PeriodicJob, Run
from annotator.store_protocol import StoreProtocol

log = logging.getLogger(__name__)

RECORDS = "records"
RESPONSES = "responses"
CONFIGS = (RECORDS, RESPONSES)
SHARD_ROWS = 256                    # records read from the store per shard
SHARD_BYTES = 64 * 2**20            # ... or fewer, once their images reach this size
HUB_FILE_BYTES = 400 * 2**20        # a new parquet file on the Hub past this size
IMAGE_ROW_GROUP = 100               # rows per parquet row group in `records` (what `datasets` uses for images)
STATE_FILE = ".export-state.json"   # in DATA_DIR: what was last pushed where (skips a push after a restart)
LOCK_WAIT = 120.0                   # seconds "export now", the final push and the CLI wait for another replica

Progress = Callable[[int, int], None]


class ExportError(RuntimeError):
    """An export or a push failed; the message says why (never containing the token)."""


class ExporterClosedError(ExportError):
    """trigger() after stop()."""


class RestoreError(RuntimeError):
    """The export exists but could not be read back; the message says why (never containing the token)."""


# --- the token never leaks ----------------------------------------------------

_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def scrub(text: str, token: str | None) -> str:
    """`text` with the token, and anything shaped like a Hugging Face token, replaced by ***."""
    if token:
        text = text.replace(token, "***")
    return _TOKEN_RE.sub("hf_***", text)


_log_tokens: set[str] = set()
_log_lock = threading.Lock()


def protect_token_in_logs(token: str | None) -> None:
    """Scrub `token` from every log record made from now on, whoever logs it. Idempotent.

    Installs a log record factory, so it also covers third-party loggers
    (httpx/httpcore at DEBUG print response headers, which a server could echo
    the token into) and exception text attached to records. The Exporter and
    restore_from_hub call it; the app may call it at start-up too.
    """
    if not token:
        return
    with _log_lock:
        if token in _log_tokens:
            return
        first = not _log_tokens
        _log_tokens.add(token)
        if not first:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a broken format string: leave it to logging to report
                return record
            cleaned = message
            for secret in tuple(_log_tokens):
                cleaned = cleaned.replace(secret, "***")
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                scrubbed = text
                for secret in tuple(_log_tokens):
                    scrubbed = scrubbed.replace(secret, "***")
                if scrubbed != text:
                    record.exc_text = scrubbed
            return record

        logging.setLogRecordFactory(factory)


def _describe(exc: BaseException, token: str | None) -> str:
    message = str(exc).strip().replace("\n", " ")
    return scrub(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, token)


# --- table schemas ----------------------------------------------------------------

def records_features(task: TaskSpec) -> Any:
    """The `datasets` Features of the records table (majority is a list of labels for multi_label)."""
    from datasets import Features, Image, List, Value
    majority = Value("string") if task.kind == "single_label" else List(Value("string"))
    return Features({
        "image": Image(),
        "record_id": Value("int32"),
        "source_key": Value("string"),
        "image_file": Value("string"),
        "sha256": Value("string"),
        "width": Value("int32"),
        "height": Value("int32"),
        "metadata": Value("string"),
        "suggestion": Value("string"),
        "majority": majority,
        "tied": List(Value("string")),
        "agreement": Value("float64"),
        "n_answers": Value("int32"),
        "n_skipped": Value("int32"),
        "status": Value("string"),
        "answers": List({
            "annotator": Value("string"),
            "answer": List(Value("string")),
            "comment": Value("string"),
            "time": Value("timestamp[us]"),
            "time_spent_ms": Value("int32"),
        }),
        "position": Value("int32"),
        "extra_answers": Value("int32"),
    })


def responses_features() -> Any:
    from datasets import Features, List, Value
    return Features({
        "record_id": Value("int32"),
        "source_key": Value("string"),
        "annotator": Value("string"),
        "status": Value("string"),
        "answer": List(Value("string")),
        "comment": Value("string"),
        "time_spent_ms": Value("int32"),
        "created_at": Value("timestamp[us]"),
        "updated_at": Value("timestamp[us]"),
    })


# --- what the card says -----------------------------------------------------------

class _AlphaAccumulator:
    """Krippendorff's nominal alpha, accumulated one record at a time.

    The same formula as `metrics.krippendorff_alpha_nominal` (Krippendorff
    2011), whose input would hold every record's answers in memory at once;
    here only per-label sums are kept: n, the coincidence diagonal and the
    marginals are sums over records. Records with fewer than two answers are
    not pairable and are left out, as there. Not meant to be used directly.
    """

    def __init__(self) -> None:
        self.units = 0
        self.n = 0
        self.diagonal: Counter[Any] = Counter()
        self.marginals: Counter[Any] = Counter()

    def add(self, values: Sequence[Any]) -> None:
        present = [v for v in values if v is not None]
        m = len(present)
        if m < 2:
            return
        self.units += 1
        self.n += m
        for value, k in Counter(present).items():
            self.diagonal[value] += k * (k - 1) / (m - 1)
            self.marginals[value] += k

    def result(self) -> metrics.AgreementResult:
        if not self.units:
            return metrics.AgreementResult(value=None, n_records=0, n_answers=0)
        n = float(self.n)
        observed = n - sum(self.diagonal.values())
        expected = n * n - sum(float(c) * c for c in self.marginals.values())
        if expected <= 0:
            return metrics.AgreementResult(value=None, n_records=self.units, n_answers=self.n)
        return metrics.AgreementResult(value=1.0 - (n - 1.0) * observed / expected,
                                       n_records=self.units, n_answers=self.n)


@dataclass
class ExportSummary:
    """Totals of one export, filled while its tables are built; the card is written from it."""
    records: int = 0
    submitted: int = 0
    skipped: int = 0
    status: Counter[str] = field(default_factory=Counter)
    answer_counts: Counter[str] = field(default_factory=Counter)
    majority_counts: Counter[str] = field(default_factory=Counter)
    ties: int = 0
    annotators: set[str] = field(default_factory=set)
    missing_images: int = 0
    alpha: metrics.AgreementResult | None = None
    alpha_per_label: dict[str, metrics.AgreementResult] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def responses(self) -> int:
        return self.submitted + self.skipped


# --- building the tables --------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    records: pa.Table
    responses: pa.Table


class ExportTables:
    """The records and responses tables, produced shard by shard by iterating.

    One pass over a consistent snapshot of the store (`Store.iter_export`);
    each shard holds at most `shard_rows` records and about `shard_bytes` of
    image bytes, so memory does not grow with the store. `summary` is complete
    once iteration ends. Iterate once.
    """

    def __init__(self, store: StoreProtocol, task: TaskSpec, images_dir: Path, *, shard_rows: int = SHARD_ROWS,
                 shard_bytes: int = SHARD_BYTES, progress: Progress | None = None) -> None:
        self.store, self.task, self.images_dir = store, task, Path(images_dir)
        self._images_root = str(self.images_dir)
        self.shard_rows, self.shard_bytes = max(1, shard_rows), max(1, shard_bytes)
        self.progress = progress
        self.records_schema: pa.Schema = records_features(task).arrow_schema
        self.responses_schema: pa.Schema = responses_features().arrow_schema
        self.total_records = store.record_count()
        self.summary = ExportSummary()
        self._single = task.kind == "single_label"
        self._alpha = _AlphaAccumulator()
        self._alpha_labels: dict[str, _AlphaAccumulator] = {}

    def __iter__(self) -> Iterator[Shard]:
        done = 0
        rec_rows: list[dict[str, Any]] = []
        resp_rows: list[dict[str, Any]] = []
        size = 0
        if self.progress:
            self.progress(0, self.total_records)
        for records, responses in self.store.iter_export(self.shard_rows):
            by_record: dict[int, list[Response]] = {}
            for r in responses:
                by_record.setdefault(r.record_id, []).append(r)
            for record in records:
                answers = by_record.get(record.id, [])
                row = self._record_row(record, answers)
                image = row["image"]
                size += len(image["bytes"]) if image else 0
                rec_rows.append(row)
                resp_rows.extend(self._response_row(record, r) for r in answers)
                if len(rec_rows) >= self.shard_rows or size >= self.shard_bytes:
                    yield self._shard(rec_rows, resp_rows)
                    done += len(rec_rows)
                    rec_rows, resp_rows, size = [], [], 0
                    if self.progress:
                        self.progress(done, self.total_records)
        if rec_rows or resp_rows:
            yield self._shard(rec_rows, resp_rows)
            done += len(rec_rows)
        self._finish()
        if self.progress:
            self.progress(done, max(done, self.total_records))

    def _shard(self, rec_rows: list[dict[str, Any]], resp_rows: list[dict[str, Any]]) -> Shard:
        return Shard(pa.Table.from_pylist(rec_rows, schema=self.records_schema),
                     pa.Table.from_pylist(resp_rows, schema=self.responses_schema))

    def _image(self, record: Record) -> dict[str, Any] | None:
        try:  # os.path, not pathlib: pathlib interns every path part, a leak of ~100 B per record
            with open(os.path.join(self._images_root, record.image_path), "rb") as f:
                data = f.read()
        except OSError as exc:
            self.summary.missing_images += 1
            if self.summary.missing_images <= 5:
                log.warning("export: the image of record %d (%s) cannot be read (%s); exported without it",
                            record.id, record.image_path, exc.strerror or exc)
            return None
        return {"bytes": data, "path": posixpath.basename(record.image_path)}

    def _record_row(self, record: Record, answers: list[Response]) -> dict[str, Any]:
        s = self.summary
        submitted = [a for a in answers if a.status == "submitted"]
        s.records += 1
        s.submitted += len(submitted)
        s.skipped += len(answers) - len(submitted)
        s.annotators.update(a.user_id for a in answers)
        for a in submitted:
            s.answer_counts.update(a.answer)
        tied: list[str] = []
        if self._single:
            labels = [a.answer[0] if a.answer else None for a in submitted]
            vote = metrics.majority(labels)
            majority: Any = vote.label
            tied = list(vote.tied)
            agreement = metrics.record_agreement(labels)
            self._alpha.add(labels)
            if vote.label is not None:
                s.majority_counts[vote.label] += 1
        else:
            # a label is in the majority when more than half of the answers chose it; chosen by
            # exactly half it is tied (stated, not decided)
            sets = [frozenset(a.answer) for a in submitted]
            chosen = Counter(label for one in sets for label in one)
            half = len(sets) / 2
            majority = sorted(label for label, c in chosen.items() if c > half)
            tied = sorted(label for label, c in chosen.items() if c == half)
            agreement = metrics.record_agreement_multi(sets, self.task.label_names)
            for label in dict.fromkeys((*self.task.label_names, *sorted(chosen))):
                self._alpha_labels.setdefault(label, _AlphaAccumulator()).add([label in one for one in sets])
            s.majority_counts.update(majority)
        if len(tied) > 1 or (not self._single and tied):
            s.ties += 1
        needed = self.task.overlap + record.extra_answers
        status = "complete" if len(submitted) >= needed else "partial" if submitted else "untouched"
        s.status[status] += 1
        return {
            "image": self._image(record),
            "record_id": record.id,
            "source_key": record.source_key,
            "image_file": record.image_path,
            "sha256": record.sha256,
            "width": record.width,
            "height": record.height,
            "metadata": json.dumps(record.metadata, sort_keys=True, ensure_ascii=False, default=str),
            "suggestion": record.suggestion,
            "majority": majority,
            "tied": tied,
            "agreement": agreement,
            "n_answers": len(submitted),
            "n_skipped": len(answers) - len(submitted),
            "status": status,
            "answers": [{"annotator": a.user_id, "answer": list(a.answer), "comment": a.comment,
                         "time": a.updated_at, "time_spent_ms": a.time_spent_ms} for a in submitted],
            "position": record.position,
            "extra_answers": record.extra_answers,
        }

    @staticmethod
    def _response_row(record: Record, r: Response) -> dict[str, Any]:
        return {"record_id": r.record_id, "source_key": record.source_key, "annotator": r.user_id,
                "status": r.status, "answer": list(r.answer), "comment": r.comment,
                "time_spent_ms": r.time_spent_ms, "created_at": r.created_at, "updated_at": r.updated_at}

    def _finish(self) -> None:
        if self._single:
            self.summary.alpha = self._alpha.result()
        else:
            self.summary.alpha_per_label = {label: acc.result() for label, acc in self._alpha_labels.items()}


def build_tables(store: StoreProtocol, task: TaskSpec, images_dir: Path, *, shard_rows: int = SHARD_ROWS,
                 shard_bytes: int = SHARD_BYTES, progress: Progress | None = None) -> ExportTables:
    """The records and responses tables of `store`, to iterate shard by shard (see ExportTables)."""
    return ExportTables(store, task, images_dir, shard_rows=shard_rows, shard_bytes=shard_bytes,
                        progress=progress)


# --- writing ----------------------------------------------------------------------------

class _ParquetSink:
    """Writes shards of one table to parquet files, starting a new file past `max_bytes`.

    Files are named `<stem>-NNNNN.parquet` while written; `close()` returns
    them. Not meant to be used directly.
    """

    def __init__(self, folder: Path, stem: str, schema: pa.Schema, *, max_bytes: int | None,
                 row_group: int | None) -> None:
        self.folder, self.stem, self.schema = folder, stem, schema
        self.max_bytes, self.row_group = max_bytes, row_group
        self.paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            path = self.folder / f"{self.stem}-{len(self.paths):05d}.parquet"
            self.paths.append(path)
            self._writer = pq.ParquetWriter(path, self.schema)
        self._writer.write_table(table, row_group_size=self.row_group or table.num_rows)
        if self.max_bytes is not None and self.paths[-1].stat().st_size >= self.max_bytes:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not self.paths:  # an empty table still gets one (empty) file, so the config exists
            path = self.folder / f"{self.stem}-00000.parquet"
            pq.write_table(self.schema.empty_table(), path)
            self.paths.append(path)
        return self.paths


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _TextSink:
    """JSONL or CSV of one table without image bytes (lists and structs as JSON in CSV)."""

    def __init__(self, path: Path, schema: pa.Schema, columns: list[str], kind: str) -> None:
        self.path, self.columns, self.kind = path, columns, kind
        self._nested = [pa.types.is_nested(schema.field(c).type) for c in columns]
        self._file = open(path, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file) if kind == "csv" else None
        if self._csv is not None:
            self._csv.writerow(columns)

    def write(self, table: pa.Table) -> None:
        rows = table.select(self.columns).to_pylist()
        if self._csv is None:
            self._file.writelines(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n" for row in rows)
            return
        for row in rows:
            self._csv.writerow([
                json.dumps(v, ensure_ascii=False, default=_json_default) if nested and v is not None
                else v.isoformat() if isinstance(v, datetime) else v
                for v, nested in zip(row.values(), self._nested)])

    def close(self) -> None:
        self._file.close()


@dataclass(frozen=True)
class LocalExport:
    """What export_local wrote: file paths by (table, format), and the summary."""
    files: dict[tuple[str, str], Path]
    summary: ExportSummary
    seconds: float


def export_local(store: StoreProtocol, task: TaskSpec, out_dir: Path, images_dir: Path, *,
                 formats: Sequence[str] = ("parquet", "jsonl", "csv"), progress: Progress | None = None,
                 shard_rows: int = SHARD_ROWS) -> LocalExport:
    """Write records.{parquet,jsonl,csv} and responses.{parquet,jsonl,csv} into `out_dir`.

    Parquet has the images embedded (bytes, a `datasets` Image feature); JSONL
    and CSV carry no image bytes, only `image_file` (the path under the images
    folder) and the record id. Files are written under temporary names and
    renamed when complete, so a reader never sees half a file.
    """
    started = time.monotonic()
    unknown = sorted(set(formats) - {"parquet", "jsonl", "csv"})
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r}; use parquet, jsonl or csv")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".export-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        tables = build_tables(store, task, images_dir, shard_rows=shard_rows, progress=progress)
        schemas = {RECORDS: tables.records_schema, RESPONSES: tables.responses_schema}
        parquet: dict[str, _ParquetSink] = {}
        text: dict[tuple[str, str], _TextSink] = {}
        for name, schema in schemas.items():
            if "parquet" in formats:
                parquet[name] = _ParquetSink(work, name, schema, max_bytes=None,
                                             row_group=IMAGE_ROW_GROUP if name == RECORDS else None)
            columns = [c for c in schema.names if c != "image"]
            for kind in ("jsonl", "csv"):
                if kind in formats:
                    text[(name, kind)] = _TextSink(work / f"{name}.{kind}", schema, columns, kind)
        try:
            for shard in tables:
                for name, table in ((RECORDS, shard.records), (RESPONSES, shard.responses)):
                    if name in parquet:
                        parquet[name].write(table)
                    for kind in ("jsonl", "csv"):
                        if (name, kind) in text:
                            text[(name, kind)].write(table)
        finally:
            produced = {name: sink.close() for name, sink in parquet.items()}
            for sink in text.values():
                sink.close()
        files: dict[tuple[str, str], Path] = {}
        for name, paths in produced.items():
            target = out_dir / f"{name}.parquet"
            os.replace(paths[0], target)
            files[(name, "parquet")] = target
        for (name, kind), sink in text.items():
            target = out_dir / f"{name}.{kind}"
            os.replace(sink.path, target)
            files[(name, kind)] = target
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return LocalExport(files, tables.summary, time.monotonic() - started)


def write_hub_files(store: StoreProtocol, task: TaskSpec, images_dir: Path, folder: Path, *,
                    progress: Progress | None = None, shard_rows: int = SHARD_ROWS,
                    file_bytes: int = HUB_FILE_BYTES) -> tuple[dict[str, list[Path]], ExportSummary]:
    """Write `records/train-*.parquet` and `responses/train-*.parquet` under `folder` for a push."""
    tables = build_tables(store, task, images_dir, shard_rows=shard_rows, progress=progress)
    sinks = {}
    for name, schema in ((RECORDS, tables.records_schema), (RESPONSES, tables.responses_schema)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        sinks[name] = _ParquetSink(folder / name, "part", schema, max_bytes=file_bytes,
                                   row_group=IMAGE_ROW_GROUP if name == RECORDS else None)
    try:
        for shard in tables:
            sinks[RECORDS].write(shard.records)
            sinks[RESPONSES].write(shard.responses)
    finally:
        produced = {name: sink.close() for name, sink in sinks.items()}
    files: dict[str, list[Path]] = {}
    for name, paths in produced.items():
        files[name] = []
        for i, path in enumerate(paths):
            target = path.with_name(f"train-{i:05d}-of-{len(paths):05d}.parquet")
            os.replace(path, target)
            files[name].append(target)
    return files, tables.summary


# --- the dataset card ---------------------------------------------------------------------

def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _alpha_text(result: metrics.AgreementResult | None) -> str:
    if result is None or result.value is None:
        n = result.n_records if result else 0
        return f"not computable yet ({n} records with two or more answers)"
    return f"{result.value:.3f} over {result.n_records} records with two or more answers ({result.n_answers} answers)"


def dataset_card(task: TaskSpec, summary: ExportSummary, repo_id: str) -> str:
    """README.md for the export: YAML front matter (the two configs) and a description."""
    import yaml
    front = {
        "pretty_name": task.title,
        "tags": ["annotator", "image-annotation"],
        "task_categories": ["image-classification"],
        "size_categories": [_size_category(summary.records)],
        "configs": [
            {"config_name": RECORDS, "data_files": [{"split": "train", "path": f"{RECORDS}/*.parquet"}],
             "default": True},
            {"config_name": RESPONSES, "data_files": [{"split": "train", "path": f"{RESPONSES}/*.parquet"}]},
        ],
    }
    kind = "one label per image" if task.kind == "single_label" else "any number of labels per image"
    when = summary.created_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    status = summary.status
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
        f"# {task.title}", "",
        f"Image annotations exported by annotator on {when}.", "",
        f"- **Records:** {summary.records} ({status['complete']} complete, {status['partial']} partly done, "
        f"{status['untouched']} untouched)",
        f"- **Answers:** {summary.submitted} submitted and {summary.skipped} skipped, by "
        f"{len(summary.annotators)} annotators",
        f"- **Task:** {task.question} ({kind}); each image is wanted from {task.overlap} "
        f"annotator{'s' if task.overlap != 1 else ''}",
    ]
    if task.kind == "single_label":
        lines.append(f"- **Agreement:** Krippendorff's alpha (nominal) {_alpha_text(summary.alpha)}")
    else:
        lines.append("- **Agreement:** Krippendorff's alpha (nominal) per label, each label as present/absent, "
                     "in the table below")
    if summary.ties:
        lines.append(f"- **Ties:** {summary.ties} records have no majority (listed in `tied`)")
    if summary.missing_images:
        lines.append(f"- **Missing images:** {summary.missing_images} records were exported without their image "
                     f"(the file could not be read)")
    lines += ["", "## Labels", ""]
    names = list(dict.fromkeys((*task.label_names, *sorted(summary.answer_counts))))
    if task.kind == "single_label":
        lines += ["| label | answers | records with this majority |", "|---|---:|---:|"]
        lines += [f"| {_cell(n)} | {summary.answer_counts[n]} | {summary.majority_counts[n]} |" for n in names]
    else:
        lines += ["| label | answers | records with this label in the majority | alpha |", "|---|---:|---:|---|"]
        for n in names:
            alpha = summary.alpha_per_label.get(n)
            shown = f"{alpha.value:.3f} (n={alpha.n_records})" if alpha and alpha.value is not None else "n/a"
            lines.append(f"| {_cell(n)} | {summary.answer_counts[n]} | {summary.majority_counts[n]} | {shown} |")
    if task.guidelines.strip():
        lines += ["", "## Guidelines given to annotators", "", task.guidelines.strip()]
    lines += [
        "", "## Configs", "",
        f"- `{RECORDS}` (default): one row per image: `image`, `record_id`, `source_key`, `metadata` (JSON), "
        "`suggestion`, `majority` (None when tied), `tied`, `agreement` (share of agreeing answer pairs), "
        "`n_answers`, `n_skipped`, `status` (complete / partial / untouched) and `answers` "
        "(annotator, answer, comment, time, time_spent_ms).",
        f"- `{RESPONSES}`: one row per answer, skips included (`status` = skipped).", "",
        "```python", "from datasets import load_dataset", "",
        f'records = load_dataset("{repo_id}", "{RECORDS}", split="train")',
        f'responses = load_dataset("{repo_id}", "{RESPONSES}", split="train")', "```", "",
        "## How it was made", "",
        "Exported by annotator, a multi-user image annotation app: annotators signed in with their Hugging "
        "Face account and labelled images handed out by the server (each image to at most the wanted number "
        "of people at a time). A record is complete when that many people submitted an answer. Each export "
        "replaces the previous one; the repository history keeps the earlier versions.", "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- pushing to the Hub -----------------------------------------------------------------------

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
                 lock_wait: float = LOCK_WAIT) -> None:
        if not settings.export_repo:
            raise ConfigError("EXPORT_REPO is not set; set it to a dataset id (owner/name) to push results "
                              "to the Hub.")
        from huggingface_hub import HfApi
        self.store, self.task, self.settings = store, task, settings
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
        self._pushed_fingerprint: str | None = self._load_state()
        self._runs = 0

    def stop(self, *, final_push: bool = True, timeout: float | None = 300.0) -> None:
        """Final push if something changed (unless final_push=False), then end the thread. Idempotent."""
        self._stop(final=final_push, timeout=timeout)

    def push_now(self, progress: Progress | None = None) -> ExportResult:
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
            error = ExportError(_describe(exc, self._token))
            self._fail(str(error))
            log.error("export to %s failed: %s", self.repo_id, error)
            raise error from None

    # --- one export ----------------------------------------------------------------

    def _changed(self, fingerprint: str) -> bool:
        with self._cond:
            return fingerprint != self._pushed_fingerprint or self._version != self._pushed_version

    def _export(self, *, force: bool, attempts: int, wait: float, progress: Progress | None = None) -> ExportResult:
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

    def _export_held(self, *, force: bool, attempts: int, progress: Progress | None) -> ExportResult:
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
                                                 file_bytes=self.file_bytes)
                card = scrub(dataset_card(self.task, summary, self.repo_id), self._token)
            except Exception as exc:
                self._fail(_describe(exc, self._token))
                raise ExportError(f"building the export failed: {_describe(exc, self._token)}") from None
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
                reason = _describe(exc, self._token)
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
        operations += [CommitOperationDelete(path_in_repo=path) for path in existing
                       if path.split("/", 1)[0] in CONFIGS and path not in new_paths]
        info = self._api.create_commit(
            self.repo_id, operations, repo_type="dataset",
            commit_message=f"annotator export: {summary.records} records, {summary.responses} answers",
            commit_description=f"Exported by annotator on {summary.created_at:%Y-%m-%d %H:%M} UTC.")
        return getattr(info, "commit_url", None)

    # --- what was pushed, across restarts ----------------------------------------

    def _state_path(self) -> Path:
        return self.settings.data_dir / STATE_FILE

    def _load_state(self) -> str | None:
        try:
            state = json.loads(self._state_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state.get("fingerprint") if state.get("repo") == self.repo_id else None


def save_export_state(store: StoreProtocol, settings: Settings, fingerprint: str,
                      commit_url: str | None = None) -> None:
    """Remember that EXPORT_REPO holds the store state `fingerprint` (best effort: at worst one push more).

    In the store, for the other replicas on a PostgreSQL database, and in
    DATA_DIR, for this process after a restart (the DuckDB store keeps none).
    """
    try:
        store.record_push(settings.export_repo, fingerprint, commit_url)
    except Exception as exc:
        log.warning("export: cannot record the push in the store (%s); another replica may push it once more",
                    _describe(exc, settings.hf_token))
    path = settings.data_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps({"repo": settings.export_repo, "fingerprint": fingerprint,
                                   "commit_url": commit_url, "at": utcnow().isoformat()}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("export: cannot write %s (%s); the next start pushes once more", path, exc.strerror or exc)


# --- restore on an empty disk ------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreReport:
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
            text += f"; {self.missing_images} records had no image in the export"
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
                                           allow_patterns=[f"{c}/*.parquet" for c in CONFIGS],
                                           local_dir=work))
    except Exception as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise RestoreError(f"cannot download the export {repo}: {_describe(exc, token)}. Check HF_TOKEN and "
                           f"the network, or unset EXPORT_REPO to start without restoring.") from None
    counts = {"missing_images": 0, "unknown_labels": 0}
    labels = set(task.label_names) if task else None
    images_dir = settings.images_dir

    def record_batches() -> Iterator[list[Record]]:
        from annotator.images import ImageError
        from annotator.ingest import _save_image
        columns = ["image", "record_id", "source_key", "image_file", "sha256", "width", "height", "metadata",
                   "suggestion", "position", "extra_answers"]
        for path in sorted((local / RECORDS).glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=SHARD_ROWS, columns=columns):
                out = []
                for row in batch.to_pylist():
                    image = row["image"] or {}
                    data = image.get("bytes")
                    relative, sha = row["image_file"] or "", row["sha256"] or ""
                    width, height, size = row["width"] or 0, row["height"] or 0, 0
                    if data:
                        try:
                            relative, sha, width, height = _save_image(data, images_dir, settings.max_image_pixels)
                            size = len(data)
                        except ImageError as exc:
                            log.warning("restore: the image of record %s is unreadable (%s)", row["record_id"], exc)
                            counts["missing_images"] += 1
                    else:
                        counts["missing_images"] += 1
                    out.append(Record(
                        id=row["record_id"], source_key=row["source_key"], image_path=relative, sha256=sha,
                        width=width, height=height, size_bytes=size, metadata=json.loads(row["metadata"] or "{}"),
                        suggestion=row["suggestion"], position=row["position"] if row["position"] is not None
                        else row["record_id"], extra_answers=row["extra_answers"] or 0))
                yield out

    def response_batches() -> Iterator[list[Response]]:
        for path in sorted((local / RESPONSES).glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
                out = []
                for row in batch.to_pylist():
                    answer = tuple(row["answer"] or ())
                    if labels is not None and row["status"] == "submitted" and not set(answer) <= labels:
                        counts["unknown_labels"] += 1
                    out.append(Response(record_id=row["record_id"], user_id=row["annotator"],
                                        status=row["status"], answer=answer, comment=row["comment"],
                                        time_spent_ms=row["time_spent_ms"], created_at=row["created_at"],
                                        updated_at=row["updated_at"]))
                yield out

    try:
        audit = AuditWrite("annotator", "restore", {"repo": repo, "revision": revision}, utcnow())
        try:
            n_records, n_responses = store.import_snapshot(record_batches(), response_batches(), audit=audit)
        except StoreError:
            raise
        except Exception as exc:
            raise RestoreError(f"cannot restore from the export {repo}@{revision[:8] if revision else '?'}: "
                               f"{_describe(exc, token)}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save_export_state(store, settings, store.export_fingerprint())
    report = RestoreReport(repo, revision, n_records, n_responses, counts["missing_images"],
                           counts["unknown_labels"], time.monotonic() - started)
    log.info("restore: %s", report.summary())
    return report


# --- command line ------------------------------------------------------------------------------

def _run(args: argparse.Namespace) -> int:
    from annotator.config import load_settings, load_task
    if not args.out and not args.push:
        print("error: give --out DIR, --push, or both", file=sys.stderr)
        return 2
    settings = load_settings()
    task = load_task(settings.task_file)
    if args.push and not settings.export_repo:
        raise ConfigError("EXPORT_REPO is not set; set it to the dataset id (owner/name) to push to.")
    if settings.db_mode == "snapshot":
        from annotator.snapshot import restore_snapshot
        restore_snapshot(settings)
    store = open_store(settings)
    try:
        if store.record_count() == 0:
            print(f"error: the store {describe(settings)} has no records; nothing to export", file=sys.stderr)
            return 1

        def show(done: int, total: int) -> None:
            if not args.quiet:
                print(f"\r  {done}/{total} records", end="", file=sys.stderr, flush=True)

        if args.out:
            out = Path(args.out).expanduser()
            result = export_local(store, task, out, settings.images_dir, progress=show)
            if not args.quiet:
                print(file=sys.stderr)
            print(f"wrote {result.summary.records} records and {result.summary.responses} answers to {out} "
                  f"in {result.seconds:.1f}s:")
            for (_, _), path in sorted(result.files.items()):
                print(f"  {path}")
        if args.push:
            exporter = Exporter(store, task, settings, retries=3, retry_initial=2.0)
            try:
                pushed = exporter.push_now(progress=show)
            except ExportError as exc:
                print(f"\nerror: {exc}", file=sys.stderr)
                return 1
            if not args.quiet:
                print(file=sys.stderr)
            print(f"pushed {pushed.records} records and {pushed.responses} answers to {settings.export_repo} "
                  f"in {pushed.seconds:.1f}s" + (f": {pushed.commit_url}" if pushed.commit_url else ""))
    finally:
        store.close()
    return 0


def add_command(subparsers: Any) -> None:
    """Add `export` to the `python -m annotator` command line."""
    parser = subparsers.add_parser(
        "export", help="write the results to a folder and/or push them to EXPORT_REPO",
        description="Export records and answers: --out DIR writes records/responses as Parquet (images "
                    "embedded), JSONL and CSV; --push pushes them to the Hub dataset EXPORT_REPO with a "
                    "dataset card (token from HF_TOKEN). Do not run while the app uses the same DATA_DIR.")
    parser.add_argument("--out", metavar="DIR", help="folder to write the files into")
    parser.add_argument("--push", action="store_true", help="push to EXPORT_REPO")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(run=_run)


__all__ = ["CONFIGS", "ExportError", "ExportResult", "ExportStatus", "ExportSummary", "ExportTables", "Exporter",
           "ExporterClosedError", "LocalExport", "RestoreError", "RestoreReport", "add_command", "build_tables",
           "dataset_card", "export_local", "protect_token_in_logs", "records_features", "responses_features", "restore_from_hub",
           "save_export_state", "scrub", "write_hub_files"]
