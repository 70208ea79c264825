"""The DuckDB store: `Store` implements StoreProtocol (store_protocol.py) on one DuckDB file.

One `Store` owns one DuckDB file for the life of the process (DuckDB allows one
process per file). Reads use one cursor per thread; every write made while the
app runs goes through `apply()`, which only the writer thread calls, so there
are never two write transactions at once (no conflicts, no lost updates). Bulk
ingest (`add_records`) runs before the writer starts, or from the CLI.

Timestamps are stored as naive UTC.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import duckdb
import pyarrow as pa

from annotator.model import (Answer, AuditWrite, Final, FinalWrite, GoldHandout, LastPush, LegacyQuestion, NewRecord,
                             Record, ReopenWrite, Response, ResponseWrite, StoreClosedError, StoreError, UserSeen,
                             WriteOp, decode_answer, encode_answer, encode_images, latest_finals, utcnow)
from annotator.sql_shared import (DATA_ERRORS, FINAL_COLUMNS, RECORD_COLUMNS, RESPONSE_COLUMNS,
                                  answers_in_record_order, final_from_row, record_from_row, response_from_row,
                                  split_answers, stats_result, typed_answers, user_spans)

log = logging.getLogger(__name__)


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file."""


_T = TypeVar("_T")


def _read(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a read again on a fresh connection when the database was invalidated under it.

    A failed fsync in the writer's commit invalidates the whole DuckDB
    database; a read racing it (a person's click) would otherwise fail with
    FatalException before the writer marks the store for reconnection. Reads
    need no fsync, so the reconnected database serves them while the writer
    retries. A reconnection by another thread closes this thread's cursor
    (ConnectionException): the next attempt takes a new one.
    """
    @functools.wraps(method)
    def run(self: "Store", *args: Any, **kwargs: Any) -> _T:
        for _ in range(2):
            generation = self._generation
            try:
                return method(self, *args, **kwargs)
            except (duckdb.FatalException, duckdb.ConnectionException):
                if self._closed:
                    raise
                if self._generation == generation:
                    self._invalid = True  # _cur() reconnects
        return method(self, *args, **kwargs)
    return run


def _typed_answer_columns(cur: duckdb.DuckDBPyConnection, legacy: LegacyQuestion | None, where: str) -> None:
    """Migration 2: `answer` turns from a list of labels (VARCHAR[]) into one typed JSON answer (model.Answer).

    Each table is copied into a new one of the same columns with a JSON
    answer, each distinct (status, list) replaced by its typed answer
    (LegacyQuestion.answer), and takes the old one's name. Not ALTER ... TYPE
    JSON USING: DuckDB 2.0.1 cannot replay that from the WAL (it tries to
    download the json extension), so a crash before the next checkpoint
    would leave a file that does not open. Part of the migration's
    transaction: a crash leaves the old schema or the new one, never half.
    """
    for table, extra in (("responses", ", PRIMARY KEY (record_id, user_id)"),
                         ("response_history", ", replaced_at TIMESTAMP NOT NULL")):
        pairs = cur.execute(f"SELECT DISTINCT status, answer FROM {table}").fetchall()
        conv = pa.table(typed_answers(pairs, legacy, where), schema=_CONVERSION)
        cur.execute(f"CREATE TABLE {table}_typed (record_id INTEGER NOT NULL, user_id VARCHAR NOT NULL, "
                    f"status VARCHAR NOT NULL, answer JSON NOT NULL, comment VARCHAR, time_spent_ms INTEGER, "
                    f"created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL{extra})")
        columns = RESPONSE_COLUMNS + (", replaced_at" if table == "response_history" else "")
        picked = ", ".join("conv.new" if c == "answer" else f"t.{c}" for c in columns.split(", "))
        cur.execute(f"INSERT INTO {table}_typed SELECT {picked} FROM {table} t "
                    f"JOIN conv ON conv.status = t.status AND conv.old = t.answer")
        [(before,), (after,)] = cur.execute(f"SELECT count(*) FROM {table} UNION ALL "
                                            f"SELECT count(*) FROM {table}_typed").fetchall()
        if before != after:
            raise StoreError(f"the database {where}: {before - after} answers in {table} could not be carried "
                             f"over to typed answers; nothing was changed.")
        cur.execute(f"DROP TABLE {table}")
        cur.execute(f"ALTER TABLE {table}_typed RENAME TO {table}")


_CONVERSION = pa.schema([("status", pa.string()), ("old", pa.list_(pa.string())), ("new", pa.string())])

# each step is SQL, or a function of (cursor, the question old answers were given to, the database's name)
_MIGRATIONS: tuple[str | Callable[[duckdb.DuckDBPyConnection, LegacyQuestion | None, str], None], ...] = (
    # 1: the initial schema
    """
    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        source_key VARCHAR NOT NULL UNIQUE,
        image_path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        size_bytes BIGINT NOT NULL,
        metadata VARCHAR NOT NULL DEFAULT '{}',
        suggestion VARCHAR,
        position INTEGER NOT NULL,
        extra_answers INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE responses (
        record_id INTEGER NOT NULL,
        user_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        answer VARCHAR[] NOT NULL,
        comment VARCHAR,
        time_spent_ms INTEGER,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (record_id, user_id)
    );
    CREATE TABLE response_history (
        record_id INTEGER NOT NULL,
        user_id VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        answer VARCHAR[] NOT NULL,
        comment VARCHAR,
        time_spent_ms INTEGER,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        replaced_at TIMESTAMP NOT NULL
    );
    CREATE TABLE users (
        user_id VARCHAR PRIMARY KEY,
        first_seen TIMESTAMP NOT NULL,
        last_seen TIMESTAMP NOT NULL
    );
    CREATE TABLE audit (
        "at" TIMESTAMP NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        detail VARCHAR NOT NULL
    );
    """,
    # 2: answers are typed, one JSON object per response (model.Answer)
    _typed_answer_columns,
    # 3: a record's second, third... image (model.RecordImage, JSON); a record of one image keeps "[]";
    # and the one-time upkeep done on the data (`mark`), first the sizes as shown (ingest.fix_shown_sizes)
    """
    ALTER TABLE records ADD COLUMN more_images VARCHAR NOT NULL DEFAULT '[]';
    CREATE TABLE marks (name VARCHAR PRIMARY KEY, "at" TIMESTAMP NOT NULL);
    """,
    # 4: an admin's final answer per record (issue 17, adjudication): the typed answer object, as responses keep it
    """
    CREATE TABLE finals (
        record_id INTEGER PRIMARY KEY,
        answer JSON NOT NULL,
        admin VARCHAR NOT NULL,
        "at" TIMESTAMP NOT NULL
    );
    """,
    # 5: every gold record ever leased to each person (issue 17; model.GoldHandout), read back into the scheduler
    # at start, so a restart does not hand it to them again after that lease lapsed unanswered
    """
    CREATE TABLE gold_handouts (
        user_id VARCHAR NOT NULL,
        record_id INTEGER NOT NULL,
        PRIMARY KEY (user_id, record_id)
    );
    """,
)

# One DuckDB worker thread: the store's work is many small queries (a group commit, a row read), where
# waking a second thread costs more than it saves (a one-row commit: 2.1 -> 1.3 ms CPU; 50 annotators:
# ~0.8 ms less server CPU per annotation), and the other core stays free for the web server. The
# dashboard's aggregates at 100,000 records take ~1.5x longer (18 -> 28 ms); Python dominates the rest.
_DUCKDB_CONFIG = {"threads": 1}

def _owner_only(*paths: Path) -> None:
    """Answers are as private as the key and the passwords: mode 0600 for the database and its WAL.

    DuckDB creates both with the process umask (app.py sets 077); this covers a file made by another
    process (a CLI command, an older version). A file system without modes (a bucket) may refuse.
    """
    for path in paths:
        try:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
        except OSError:
            pass


class Store:
    """The one owner of the DuckDB file.

    Lifecycle: `Store(path)` opens (or creates) the file and applies pending
    migrations; `close()` is idempotent and checkpoints; after it every call
    raises StoreClosedError. The caller stops the writer before closing.
    `legacy` names the question that answers stored before typed answers (lists
    of labels) were given to; it is needed only to migrate such a file.
    """

    SCHEMA_VERSION = len(_MIGRATIONS)

    def __init__(self, path: Path | str, *, legacy: LegacyQuestion | None = None) -> None:
        self.path = Path(path)
        self._legacy = legacy
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder {self.path.parent} for the database ({exc.strerror}); "
                             f"set DATA_DIR to a writable folder.") from None
        try:
            self._db = duckdb.connect(str(self.path), config=_DUCKDB_CONFIG)
        except duckdb.IOException as exc:
            message = str(exc)
            if "lock" in message.lower():
                pid = re.search(r"PID (\d+)", message)
                holder = f" (process {pid.group(1)})" if pid else ""
                raise StoreLockedError(
                    f"the database {self.path} is already open in another process{holder}. Only one "
                    f"annotator process may own it: stop the other one (the app, or an ingest/export "
                    f"command), or set DATA_DIR to another folder.") from None
            raise StoreError(f"cannot open the database {self.path}: {message}. Check that DATA_DIR is "
                             f"writable and not full.") from None
        _owner_only(self.path, self.path.with_name(self.path.name + ".wal"))
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._closed = False
        self._generation = 0  # bumped when the database is reopened after a fatal error
        self._invalid = False
        try:
            self._migrate()
        except BaseException:
            self._close_quietly()
            raise

    # --- lifecycle ---------------------------------------------------------

    def _cur(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreClosedError(f"the store {self.path} is closed")
        if self._invalid:
            self._reopen()
        cur = getattr(self._local, "cur", None)
        if cur is None or getattr(self._local, "generation", -1) != self._generation:
            with self._cursors_lock:
                cur = self._db.cursor()
                self._cursors.append(cur)
            self._local.cur, self._local.generation = cur, self._generation
        return cur

    def _reopen(self) -> None:
        """Connect again after DuckDB invalidated the database (a failed fsync or write does that).

        Committed data is in the file and its WAL; the failed transaction was
        never acknowledged and the writer retries it. While the disk keeps
        failing this raises, and the writer keeps retrying with backoff.
        """
        with self._cursors_lock:
            if not self._invalid:
                return
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
            try:
                self._db.close()
            except duckdb.Error:
                pass
            self._db = duckdb.connect(str(self.path), config=_DUCKDB_CONFIG)
            self._generation += 1
            self._invalid = False

    def close(self) -> None:
        """Checkpoint and close. Idempotent.

        The per-thread cursors are closed first: one left holding a half-read
        result keeps a transaction open, and CHECKPOINT refuses to run beside it.
        A checkpoint that storage fails is logged, not raised: what was
        committed is in the WAL, replayed when the file is opened again.
        """
        if self._closed:
            return
        self._closed = True
        with self._cursors_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        try:
            self._db.execute("CHECKPOINT")
        except (duckdb.IOException, duckdb.FatalException) as exc:
            log.warning("could not checkpoint %s at close (%s); its committed answers are in the WAL beside it, "
                        "replayed when it is opened again", self.path, str(exc).splitlines()[0])
        finally:
            self._db.close()

    def _close_quietly(self) -> None:
        """Close without checkpointing (used when opening failed half-way)."""
        if self._closed:
            return
        self._closed = True
        with self._cursors_lock:
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
        self._db.close()

    def checkpoint(self) -> None:
        self._cur().execute("CHECKPOINT")

    def _migrate(self) -> None:
        cur = self._cur()
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
        current = cur.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
        if current > self.SCHEMA_VERSION:
            raise StoreError(f"the database {self.path} has schema version {current}, newer than this app "
                             f"({self.SCHEMA_VERSION}); upgrade the app or use another DATA_DIR.")
        for version in range(current + 1, self.SCHEMA_VERSION + 1):
            cur.execute("BEGIN")
            try:
                step = _MIGRATIONS[version - 1]
                if isinstance(step, str):
                    cur.execute(step)
                else:
                    step(cur, self._legacy, str(self.path))
                cur.execute("INSERT INTO schema_version VALUES (?, ?)", [version, utcnow()])
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise

    @_read
    def schema_version(self) -> int:
        return self._cur().execute("SELECT max(version) FROM schema_version").fetchone()[0]

    # --- records -----------------------------------------------------------

    def add_records(self, rows: Sequence[NewRecord]) -> list[int]:
        """Insert records whose source_key is new, in one transaction; return the new ids.

        Ids and positions continue after the existing ones, so re-running an
        ingest adds nothing and a grown source appends at the end.
        """
        cur = self._cur()
        fresh: dict[str, NewRecord] = {}
        for row in rows:
            fresh.setdefault(row.source_key, row)
        if not fresh:
            return []
        keys = pa.table({"source_key": list(fresh)})
        existing = {k for (k,) in cur.execute(
            "SELECT r.source_key FROM records r JOIN keys k USING (source_key)").fetchall()}
        new_rows = [r for k, r in fresh.items() if k not in existing]
        if not new_rows:
            return []
        start = cur.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0] + 1
        ids = list(range(start, start + len(new_rows)))
        now = utcnow()
        new_records = pa.table({
            "id": pa.array(ids, pa.int32()),
            "source_key": [r.source_key for r in new_rows],
            "image_path": [r.image_path for r in new_rows],
            "sha256": [r.sha256 for r in new_rows],
            "width": pa.array([r.width for r in new_rows], pa.int32()),
            "height": pa.array([r.height for r in new_rows], pa.int32()),
            "size_bytes": pa.array([r.size_bytes for r in new_rows], pa.int64()),
            "metadata": [json.dumps(r.metadata, sort_keys=True, default=str) for r in new_rows],
            "suggestion": pa.array([r.suggestion for r in new_rows], pa.string()),
            "position": pa.array(ids, pa.int32()),
            "created_at": pa.array([now] * len(new_rows), pa.timestamp("us")),
            "more_images": pa.array([encode_images(r.more_images) for r in new_rows], pa.string()),
        })
        cur.execute("BEGIN")
        try:
            cur.execute("INSERT INTO records (id, source_key, image_path, sha256, width, height, size_bytes, "
                        "metadata, suggestion, position, created_at, more_images) SELECT * FROM new_records")
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
        return ids

    @_read
    def source_keys(self) -> set[str]:
        return {k for (k,) in self._cur().execute("SELECT source_key FROM records").fetchall()}

    @_read
    def record(self, record_id: int) -> Record | None:
        row = self._cur().execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE id = ?", [record_id]).fetchone()
        return record_from_row(row) if row else None

    @_read
    def records(self, record_ids: Sequence[int]) -> dict[int, Record]:
        """Rows by id. A few ids (a buffer refill) take an IN list, half the cost of the join."""
        if not record_ids:
            return {}
        if len(record_ids) <= 64:
            rows = self._cur().execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE id IN "
                                       f"({', '.join('?' * len(record_ids))})", list(record_ids)).fetchall()
            return {row[0]: record_from_row(row) for row in rows}
        ids = pa.table({"id": pa.array(list(record_ids), pa.int32())})
        rows = self._cur().execute(
            f"SELECT {', '.join('r.' + c.strip() for c in RECORD_COLUMNS.split(','))} "
            f"FROM records r JOIN ids USING (id)").fetchall()
        return {row[0]: record_from_row(row) for row in rows}

    @_read
    def record_ids(self) -> list[int]:
        """All record ids in dataset order."""
        return [i for (i,) in self._cur().execute("SELECT id FROM records ORDER BY position").fetchall()]

    @_read
    def record_count(self) -> int:
        return self._cur().execute("SELECT count(*) FROM records").fetchone()[0]

    @_read
    def marked(self, name: str) -> bool:
        return self._cur().execute("SELECT count(*) FROM marks WHERE name = ?", [name]).fetchone()[0] > 0

    def mark(self, name: str) -> None:
        self._cur().execute("INSERT INTO marks VALUES (?, ?) ON CONFLICT DO NOTHING", [name, utcnow()])

    def set_image_sizes(self, sizes: Sequence[tuple[int, int, int]]) -> None:
        if not sizes:
            return
        cur = self._cur()
        fixed = pa.table({"id": pa.array([s[0] for s in sizes], pa.int32()),
                          "width": pa.array([s[1] for s in sizes], pa.int32()),
                          "height": pa.array([s[2] for s in sizes], pa.int32())})
        cur.execute("BEGIN")
        try:
            cur.execute("UPDATE records SET width = f.width, height = f.height FROM fixed f WHERE records.id = f.id")
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise

    @_read
    def extra_answers(self) -> dict[int, int]:
        return dict(self._cur().execute("SELECT id, extra_answers FROM records WHERE extra_answers > 0").fetchall())

    # --- responses ---------------------------------------------------------

    @_read
    def assignment_facts(self) -> list[tuple[int, str, str]]:
        """(record_id, user_id, status) for every current answer: what the scheduler is rebuilt from."""
        return self._cur().execute("SELECT record_id, user_id, status FROM responses").fetchall()

    @_read
    def gold_handouts(self) -> list[tuple[str, int]]:
        """(user_id, record_id) for every gold record ever leased to someone (GoldHandout)."""
        return self._cur().execute("SELECT user_id, record_id FROM gold_handouts").fetchall()

    @_read
    def response(self, record_id: int, user_id: str) -> Response | None:
        row = self._cur().execute(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE record_id = ? AND user_id = ?",
                                  [record_id, user_id]).fetchone()
        return response_from_row(row) if row else None

    @_read
    def user_responses(self, user_id: str) -> list[Response]:
        """One person's current answers, oldest first."""
        rows = self._cur().execute(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE user_id = ? "
                                   f"ORDER BY created_at, record_id", [user_id]).fetchall()
        return [response_from_row(r) for r in rows]

    @_read
    def record_responses(self, record_id: int) -> list[Response]:
        rows = self._cur().execute(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE record_id = ? "
                                   f"ORDER BY created_at", [record_id]).fetchall()
        return [response_from_row(r) for r in rows]

    @_read
    def history(self, record_id: int, user_id: str) -> list[Response]:
        rows = self._cur().execute(f"SELECT {RESPONSE_COLUMNS} FROM response_history WHERE record_id = ? "
                                   f"AND user_id = ? ORDER BY replaced_at", [record_id, user_id]).fetchall()
        return [response_from_row(r) for r in rows]

    def iter_responses(self, batch_size: int = 10_000) -> Iterator[list[Response]]:
        """Every current answer in record order, in batches (memory stays flat for export)."""
        if self._closed:
            raise StoreClosedError(f"the store {self.path} is closed")
        cur = self._db.cursor()
        try:
            cur.execute(f"SELECT {RESPONSE_COLUMNS} FROM responses ORDER BY record_id, created_at")
            while batch := cur.fetchmany(batch_size):
                yield [response_from_row(r) for r in batch]
        finally:
            cur.close()

    @_read
    def finals(self) -> dict[int, Final]:
        """Every final answer an admin set, by record id."""
        rows = self._cur().execute(f"SELECT {FINAL_COLUMNS} FROM finals ORDER BY record_id").fetchall()
        return {row[0]: final_from_row(row) for row in rows}

    @_read
    def final(self, record_id: int) -> Final | None:
        rows = self._cur().execute(f"SELECT {FINAL_COLUMNS} FROM finals WHERE record_id = ?", [record_id]).fetchall()
        return final_from_row(rows[0]) if rows else None

    @_read
    def audit_log(self, limit: int = 100) -> list[tuple[datetime, str, str, dict[str, Any]]]:
        rows = self._cur().execute('SELECT "at", actor, action, detail FROM audit ORDER BY "at" DESC LIMIT ?',
                                   [limit]).fetchall()
        return [(at, actor, action, json.loads(detail)) for at, actor, action, detail in rows]

    # --- projector (annotator/projector.py, annotator/nicknames.py) ---
    @_read
    def audit_entries(self, action: str) -> list[tuple[datetime, str, dict[str, Any]]]:
        rows = self._cur().execute('SELECT "at", actor, detail FROM audit WHERE action = ? ORDER BY "at"',
                                   [action]).fetchall()
        return [(at, actor, json.loads(detail)) for at, actor, detail in rows]

    @_read
    def users_by_first_seen(self) -> list[str]:
        return [u for (u,) in self._cur().execute("SELECT user_id FROM users ORDER BY first_seen, user_id").fetchall()]
    # --- end projector ---

    @_read
    def answered_questions(self) -> set[str]:
        rows = self._cur().execute("SELECT DISTINCT unnest(json_keys(answer)) FROM responses").fetchall()
        return {name for (name,) in rows}

    @_read
    def stats(self) -> dict[str, Any]:
        """Counts for `python -m annotator stats` and the dashboard's first paint."""
        cur = self._cur()
        records = cur.execute("SELECT count(*) FROM records").fetchone()[0]
        submitted, skipped = cur.execute(
            "SELECT count(*) FILTER (status = 'submitted'), count(*) FILTER (status = 'skipped') "
            "FROM responses").fetchone()
        overlap_rows = cur.execute(
            "SELECT r.id, r.extra_answers, coalesce(s.n, 0) FROM records r LEFT JOIN "
            "(SELECT record_id, count(*) AS n FROM responses WHERE status = 'submitted' GROUP BY 1) s "
            "ON s.record_id = r.id WHERE s.n > 0").fetchall()
        users = cur.execute(
            "SELECT user_id, count(*) FILTER (status = 'submitted'), count(*) FILTER (status = 'skipped') "
            "FROM responses GROUP BY 1 ORDER BY 1").fetchall()
        return stats_result(records, submitted, skipped, overlap_rows, users)

    # --- the write path (writer thread only) -------------------------------

    @staticmethod
    def refuses(exc: BaseException) -> bool:
        """Whether `apply` failed because of the data (it will fail again) rather than storage.

        Data: DATA_ERRORS, DuckDB's data and constraint errors, and its
        invalid input (a string it cannot convert). Storage, retried:
        IOException, FatalException (the database is reopened), anything else.
        """
        return isinstance(exc, DATA_ERRORS + (duckdb.DataError, duckdb.IntegrityError, duckdb.InvalidInputException))

    @_read
    def audit_exists(self, entry: AuditWrite) -> bool:
        """Whether this audit entry (same time, actor and action) is stored: replaying the recovery file
        must not write it twice."""
        return bool(self._cur().execute('SELECT count(*) FROM audit WHERE "at" = ? AND actor = ? AND action = ?',
                                        [entry.at, entry.actor, entry.action]).fetchall()[0][0])

    def apply(self, ops: Sequence[WriteOp]) -> None:
        """Write a batch in one transaction; all or nothing.

        Several answers of one person to one record in the same batch keep the
        last as current and the earlier ones in the history, as separate
        transactions would. Answers marked `first` take a plain insert (the
        upsert and history lookup cost several times more per batch); should
        one exist after all, the batch is written again the careful way.
        """
        try:
            self._apply(ops, trust_first=True)
        except duckdb.ConstraintException:
            self._apply(ops, trust_first=False)
        except duckdb.FatalException:
            self._invalid = True  # the next call reconnects
            raise

    def _insert_few(self, rows: Sequence[ResponseWrite]) -> None:
        """A few new answers and nothing else, a crowd's usual batch: one INSERT of parameters, a transaction
        of its own. Half the CPU of the Arrow path (`_apply`), whose set-up outweighs a handful of rows."""
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        self._cur().execute(
            f"INSERT INTO responses ({RESPONSE_COLUMNS}) VALUES {values}",
            [v for r in rows for v in (r.record_id, r.user_id, r.status, encode_answer(r.answer), r.comment,
                                       r.time_spent_ms, r.at, r.at)])

    def _apply(self, ops: Sequence[WriteOp], *, trust_first: bool) -> None:
        """Build the batch's Arrow tables, then run BEGIN ... COMMIT as one execute(); a batch of a few new
        answers and nothing else takes `_insert_few` instead.

        One call instead of one per statement: each call is a Python/DuckDB
        round trip and a GIL hand-off on the writer thread, which every
        acknowledgement in the batch waits for. DuckDB finds the tables by
        their local names in this frame.
        """
        fresh, changed = split_answers([op for op in ops if isinstance(op, ResponseWrite)], trust_first)
        if fresh and len(fresh) == len(ops) <= FEW_ANSWERS:
            self._insert_few(fresh)
            return
        seen_users = _seen_table([op for op in ops if isinstance(op, UserSeen)])
        audit_rows = _audit_table([op for op in ops if isinstance(op, AuditWrite)])
        reopened = _reopen_table([op for op in ops if isinstance(op, ReopenWrite)])
        handouts = _handout_table([op for op in ops if isinstance(op, GoldHandout)])
        to_set, to_clear = latest_finals(ops)
        set_finals = _finals_table(to_set) if to_set else None
        cleared_finals = pa.table({"record_id": pa.array(to_clear, pa.int32())}) if to_clear else None
        fresh_answers = _answer_table(fresh) if fresh else None
        changed_answers = _answer_table([row for _, row in changed], [g for g, _ in changed]) if changed else None
        statements = ["BEGIN"]
        if fresh_answers is not None:
            statements.append(f"INSERT INTO responses SELECT {_ANSWER_VALUES} FROM fresh_answers")
        rounds = max((g for g, _ in changed), default=-1) + 1
        for g in range(rounds):  # an answer replaced within the batch goes to the history first
            source = "changed_answers" if rounds == 1 else f"(SELECT * FROM changed_answers WHERE g = {g})"
            statements += [
                f"INSERT INTO response_history SELECT {', '.join('r.' + c for c in RESPONSE_COLUMNS.split(', '))}, "
                f'b."at" FROM responses r JOIN {source} b USING (record_id, user_id)',
                f"INSERT INTO responses SELECT {_ANSWER_VALUES} FROM {source} ON CONFLICT DO UPDATE SET "
                "status = excluded.status, answer = excluded.answer, comment = excluded.comment, "
                "time_spent_ms = excluded.time_spent_ms, updated_at = excluded.updated_at"]
        if seen_users is not None:
            statements.append(
                "INSERT INTO users SELECT user_id, first_at, last_at FROM seen_users ON CONFLICT DO UPDATE SET "
                "first_seen = least(users.first_seen, excluded.first_seen), "
                "last_seen = greatest(users.last_seen, excluded.last_seen)")
        if audit_rows is not None:
            statements.append("INSERT INTO audit SELECT * FROM audit_rows")
        if handouts is not None:
            statements.append("INSERT INTO gold_handouts SELECT * FROM handouts ON CONFLICT DO NOTHING")
        if reopened is not None:
            statements.append("UPDATE records SET extra_answers = extra_answers + r.extra FROM "
                              "(SELECT record_id, sum(extra)::INTEGER AS extra FROM reopened GROUP BY record_id) r "
                              "WHERE records.id = r.record_id")
        if cleared_finals is not None:
            statements.append("DELETE FROM finals WHERE record_id IN (SELECT record_id FROM cleared_finals)")
        if set_finals is not None:
            statements.append(f'INSERT INTO finals ({FINAL_COLUMNS}) SELECT * FROM set_finals ON CONFLICT DO UPDATE '
                              'SET answer = excluded.answer, admin = excluded.admin, "at" = excluded."at"')
        statements.append("COMMIT")
        cur = self._cur()
        try:
            cur.execute(";\n".join(statements))
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise

    # --- export and restore ------------------------------------------------

    @_read
    def export_fingerprint(self) -> str:
        """A short string that changes whenever a record, an answer, a reopen or a final answer changes.

        Cheap (one scan of `responses` and of `finals`); the exporter and the snapshotter
        compare it with the value at their last run to skip work when nothing
        changed. Users and the audit log are not part of it.
        """
        row = self._cur().execute(
            "SELECT (SELECT count(*) FROM records), (SELECT coalesce(sum(extra_answers), 0) FROM records), "
            "count(*), coalesce(bit_xor(hash(record_id, user_id, status, answer, comment, time_spent_ms, "
            "updated_at)), 0), (SELECT count(*) FROM finals), (SELECT coalesce(bit_xor(hash(record_id, answer, "
            'admin, "at")), 0) FROM finals) FROM responses').fetchone()
        return ":".join(str(v) for v in row)

    def iter_export(self, batch_size: int = 500) -> Iterator[tuple[list[Record], list[Response]]]:
        """Every record in dataset order with its current answers, `batch_size` records at a time.

        All batches come from one read transaction on a cursor of their own,
        so they form a consistent snapshot even while the writer commits.
        Answers are in record order, then oldest first. Memory stays flat in
        the number of records. Close the generator (or exhaust it) to end the
        transaction; the caller must not close the store before.
        """
        self._cur()  # raises StoreClosedError after close()
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            last_position, last_id = None, None
            while True:
                if last_position is None:
                    rows = cur.execute(f"SELECT {RECORD_COLUMNS} FROM records ORDER BY position, id LIMIT ?",
                                       [batch_size]).fetchall()
                else:
                    rows = cur.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE position > ? OR "
                                       f"(position = ? AND id > ?) ORDER BY position, id LIMIT ?",
                                       [last_position, last_position, last_id, batch_size]).fetchall()
                if not rows:
                    break
                records = [record_from_row(row) for row in rows]
                last_position, last_id = records[-1].position, records[-1].id
                ids = pa.table({"id": pa.array([r.id for r in records], pa.int32())})
                lo, hi = min(r.id for r in records), max(r.id for r in records)
                found = cur.execute(
                    f"SELECT {', '.join('s.' + c for c in RESPONSE_COLUMNS.split(', '))} FROM responses s "
                    f"JOIN ids ON ids.id = s.record_id WHERE s.record_id BETWEEN ? AND ? "
                    f"ORDER BY s.record_id, s.created_at, s.user_id", [lo, hi]).fetchall()
                yield records, answers_in_record_order(records, found)
            cur.execute("COMMIT")
        finally:
            cur.close()

    def import_snapshot(self, records: Iterable[Sequence[Record]], responses: Iterable[Sequence[Response]],
                        audit: AuditWrite | None = None, finals: Iterable[Final] = ()) -> tuple[int, int]:
        """Load records (ids, positions and extra answers kept), answers and final answers into an EMPTY store.

        Everything is written in one transaction: an interrupted restore
        leaves the store empty, so it can simply run again. Raises StoreError,
        and changes nothing, when the store already holds a record or an
        answer. `records` is consumed before `responses`, and `finals` last; the
        first two may be lazy iterables of batches. Users are derived from the answers (first and
        last seen). Returns (records, responses) written. Not for use while
        the writer runs.
        """
        self._cur()  # raises StoreClosedError after close()
        cur = self._db.cursor()
        n_records = n_responses = 0
        try:
            cur.execute("BEGIN")
            try:
                present = cur.execute("SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM responses)"
                                      ).fetchone()[0]
                if present:
                    raise StoreError(f"the store {self.path} is not empty; a restore only fills an empty store")
                now = utcnow()
                for batch in records:
                    if not batch:
                        continue
                    incoming = pa.table({
                        "id": pa.array([r.id for r in batch], pa.int32()),
                        "source_key": pa.array([r.source_key for r in batch], pa.string()),
                        "image_path": pa.array([r.image_path for r in batch], pa.string()),
                        "sha256": pa.array([r.sha256 for r in batch], pa.string()),
                        "width": pa.array([r.width for r in batch], pa.int32()),
                        "height": pa.array([r.height for r in batch], pa.int32()),
                        "size_bytes": pa.array([r.size_bytes for r in batch], pa.int64()),
                        "metadata": pa.array([json.dumps(r.metadata, sort_keys=True, default=str) for r in batch],
                                             pa.string()),
                        "suggestion": pa.array([r.suggestion for r in batch], pa.string()),
                        "position": pa.array([r.position for r in batch], pa.int32()),
                        "extra_answers": pa.array([r.extra_answers for r in batch], pa.int32()),
                        "created_at": pa.array([now] * len(batch), pa.timestamp("us")),
                        "more_images": pa.array([encode_images(r.more_images) for r in batch], pa.string()),
                    })
                    cur.execute("INSERT INTO records (id, source_key, image_path, sha256, width, height, size_bytes, "
                                "metadata, suggestion, position, extra_answers, created_at, more_images) "
                                "SELECT * FROM incoming")
                    n_records += len(batch)
                for batch in responses:
                    if not batch:
                        continue
                    incoming = pa.table({
                        "record_id": pa.array([r.record_id for r in batch], pa.int32()),
                        "user_id": pa.array([r.user_id for r in batch], pa.string()),
                        "status": pa.array([r.status for r in batch], pa.string()),
                        "answer": pa.array([encode_answer(r.answer) for r in batch], pa.string()),
                        "comment": pa.array([r.comment for r in batch], pa.string()),
                        "time_spent_ms": pa.array([r.time_spent_ms for r in batch], pa.int32()),
                        "created_at": pa.array([r.created_at for r in batch], pa.timestamp("us")),
                        "updated_at": pa.array([r.updated_at for r in batch], pa.timestamp("us")),
                    })
                    cur.execute(f"INSERT INTO responses ({RESPONSE_COLUMNS}) SELECT * FROM incoming")
                    n_responses += len(batch)
                cur.execute("INSERT INTO users SELECT user_id, min(created_at), max(updated_at) FROM responses "
                            "GROUP BY user_id ON CONFLICT DO NOTHING")
                restored_finals = list(finals)
                if restored_finals:
                    incoming = _finals_table(restored_finals)
                    cur.execute(f"INSERT INTO finals ({FINAL_COLUMNS}) SELECT * FROM incoming")
                if audit is not None:
                    cur.execute("INSERT INTO audit VALUES (?, ?, ?, ?)",
                                [audit.at, audit.actor, audit.action,
                                 json.dumps(audit.detail, sort_keys=True, default=str)])
                cur.execute("COMMIT")
            except BaseException:
                try:
                    cur.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise
        finally:
            cur.close()
        return n_records, n_responses

    def backup_to(self, path: Path | str) -> None:
        """Write a consistent copy of the whole database into a NEW DuckDB file at `path`.

        Uses ATTACH + COPY FROM DATABASE: one statement reading one snapshot,
        so the writer need not pause (checked with DuckDB 2.0.1 under
        concurrent commits). The copy is detached, hence complete and
        checkpointed (no .wal beside it), when this returns. Raises
        StoreError when `path` already exists.
        """
        target = Path(path)
        if target.exists():
            raise StoreError(f"{target} already exists; a backup is only written to a new file")
        self._cur()  # raises StoreClosedError after close()
        cur = self._db.cursor()
        alias = f"backup_{threading.get_ident()}_{id(cur)}"
        try:
            name = cur.execute("SELECT current_database()").fetchone()[0]
            literal = str(target).replace("'", "''")
            cur.execute(f"ATTACH '{literal}' AS \"{alias}\"")
            try:
                cur.execute(f"COPY FROM DATABASE \"{name}\" TO \"{alias}\"")
            finally:
                cur.execute(f"DETACH \"{alias}\"")
        finally:
            cur.close()

    # --- one exporter at a time (StoreProtocol) ---------------------------------
    # Part of the contract because PostgreSQL replicas share a database and must coordinate their
    # exporters; on DuckDB one process owns the file, so the answers are trivial, not stubs to delete.

    @contextmanager
    def export_lock(self, wait: float = 0.0) -> Iterator[bool]:
        """Always held: one process owns the DuckDB file, and its Exporter already exports one at a time."""
        yield True

    def last_push(self, repo: str) -> LastPush | None:
        """None: no other process exports this file; the Exporter remembers its pushes in DATA_DIR."""
        return None

    def record_push(self, repo: str, fingerprint: str, commit_url: str | None = None) -> None:
        """Nothing to share (see last_push); writes while the app runs go through apply() only."""

    # --- dashboard reads ---------------------------------------------------
    # Aggregates for the organizer's dashboard. Each is one query whose result
    # is small (a row per group, label, bucket or user), except
    # dashboard_overlapping_answers, which returns the answers agreement is
    # computed from.

    @_read
    def dashboard_record_groups(self) -> list[tuple[int, int, int, int]]:
        """(extra_answers, submitted, skipped, records): how many records share each combination.

        A handful of rows whatever the number of records; the caller derives
        complete / partly done / only skipped / untouched with the overlap.
        """
        return self._cur().execute(
            "SELECT r.extra_answers, coalesce(s.submitted, 0), coalesce(s.skipped, 0), count(*) FROM records r "
            "LEFT JOIN (SELECT record_id, count(*) FILTER (status = 'submitted') AS submitted, "
            "count(*) FILTER (status = 'skipped') AS skipped FROM responses GROUP BY 1) s ON s.record_id = r.id "
            "GROUP BY ALL ORDER BY ALL").fetchall()

    @_read
    def dashboard_timeline(self, since: datetime, bucket_seconds: int, exclude: Sequence[int] = ()
                           ) -> list[tuple[datetime, str, int]]:
        """(bucket start, status, answers) of current answers first given at or after `since`, oldest first,
        without the answers to the records in `exclude`."""
        return self._cur().execute(
            "SELECT time_bucket(to_seconds(?), created_at) AS bucket, status, count(*) FROM responses "
            "WHERE created_at >= ? AND NOT list_contains(?::INTEGER[], record_id) GROUP BY ALL ORDER BY ALL",
            [int(bucket_seconds), since, list(exclude)]).fetchall()

    @_read
    def dashboard_label_counts(self, questions: Sequence[str]) -> list[tuple[str, str, int]]:
        """(question, label, submitted answers carrying it) for the named questions (reports.labels_in).

        A labels answer counts once per label it holds, a boxes answer once per box; a question left open
        counts nowhere.
        """
        return self._cur().execute(
            "SELECT q.key, CASE json_type(l.value) WHEN 'OBJECT' THEN l.value ->> 'label' ELSE l.value ->> '$' END, "
            "count(*) FROM responses, json_each(answer) q, "
            "json_each(CASE json_type(q.value) WHEN 'ARRAY' THEN q.value ELSE json_array(q.value) END) l "
            "WHERE status = 'submitted' AND q.key IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1, 2 ORDER BY 1, 2",
            [list(questions)]).fetchall()

    @_read
    def dashboard_text_lengths(self, questions: Sequence[str]) -> list[tuple[str, int, int, float | None]]:
        """(question, records, submitted answers, mean characters) for the named text questions that have answers."""
        return self._cur().execute(
            "SELECT q.key, count(DISTINCT record_id), count(*), avg(length(q.value ->> '$')) "
            "FROM responses, json_each(answer) q WHERE status = 'submitted' "
            "AND q.key IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1 ORDER BY 1", [list(questions)]).fetchall()

    @_read
    def dashboard_users(self) -> list[tuple[str, int, int, float | None, datetime | None]]:
        """(user, submitted, skipped, median ms per submitted answer, last activity) for everyone seen.

        Last activity is the latest answer or sign-in the store knows of.
        """
        return self._cur().execute(
            "WITH a AS (SELECT user_id, count(*) FILTER (status = 'submitted') AS submitted, "
            "count(*) FILTER (status = 'skipped') AS skipped, "
            "median(time_spent_ms) FILTER (status = 'submitted') AS median_ms, max(updated_at) AS last_answer "
            "FROM responses GROUP BY 1) "
            "SELECT coalesce(a.user_id, u.user_id), coalesce(a.submitted, 0), coalesce(a.skipped, 0), a.median_ms, "
            "greatest(a.last_answer, u.last_seen) FROM a FULL OUTER JOIN users u ON u.user_id = a.user_id "
            "ORDER BY 1").fetchall()

    @_read
    def dashboard_answers_version(self) -> tuple[int, datetime | None]:
        """(current answers, latest change): differs whenever an answer is added or changed."""
        # fetchall, not fetchone: a result left unexhausted keeps this thread's read transaction open, and
        # once the writer commits an UPDATE, close()'s CHECKPOINT then fails ("other write transactions").
        [(count, latest)] = self._cur().execute("SELECT count(*), max(updated_at) FROM responses").fetchall()
        return count, latest

    @_read
    def dashboard_overlapping_answers(self) -> list[tuple[int, str, Answer]]:
        """(record_id, user_id, answer) of the submitted answers on records that have at least two of them."""
        rows = self._cur().execute(
            "SELECT record_id, user_id, answer FROM (SELECT record_id, user_id, answer, "
            "count(*) OVER (PARTITION BY record_id) AS n FROM responses WHERE status = 'submitted') "
            "WHERE n >= 2 ORDER BY record_id, user_id").fetchall()
        # the same answer text recurs on many records: each is parsed once (the dicts are shared, read-only)
        decoded: dict[str, Answer] = {}
        for text in {answer for _, _, answer in rows}:
            decoded[text] = decode_answer(text)
        return [(rid, user, decoded[answer]) for rid, user, answer in rows]


# new answers up to this many, and nothing else, in a batch take one parameterized INSERT (Store._insert_few)
FEW_ANSWERS = 3  # measured: 1.3-2.0 ms of CPU a commit of 1-2 answers against 2.6-3.2 by Arrow; even at 4
_ANSWER_VALUES = 'record_id, user_id, status, answer, comment, time_spent_ms, "at", "at"'


def _answer_table(rows: Sequence[ResponseWrite], rounds: Sequence[int] | None = None) -> pa.Table:
    columns = {
        "record_id": pa.array([r.record_id for r in rows], pa.int32()),
        "user_id": pa.array([r.user_id for r in rows], pa.string()),
        "status": pa.array([r.status for r in rows], pa.string()),
        "answer": pa.array([encode_answer(r.answer) for r in rows], pa.string()),
        "comment": pa.array([r.comment for r in rows], pa.string()),
        "time_spent_ms": pa.array([r.time_spent_ms for r in rows], pa.int32()),
        "at": pa.array([r.at for r in rows], pa.timestamp("us")),
    }
    if rounds is not None:
        columns["g"] = pa.array(rounds, pa.int32())
    return pa.table(columns)


def _seen_table(seen: Sequence[UserSeen]) -> pa.Table | None:
    """One row per user: the earliest and latest sighting in this batch."""
    span = user_spans(seen)
    if not span:
        return None
    return pa.table({"user_id": list(span),
                     "first_at": pa.array([f for f, _ in span.values()], pa.timestamp("us")),
                     "last_at": pa.array([l for _, l in span.values()], pa.timestamp("us"))})


def _audit_table(audits: Sequence[AuditWrite]) -> pa.Table | None:
    if not audits:
        return None
    return pa.table({
        "at": pa.array([a.at for a in audits], pa.timestamp("us")),
        "actor": [a.actor for a in audits],
        "action": [a.action for a in audits],
        "detail": [json.dumps(a.detail, sort_keys=True, default=str) for a in audits],
    })


def _finals_table(finals: Sequence[FinalWrite | Final]) -> pa.Table:
    return pa.table({"record_id": pa.array([f.record_id for f in finals], pa.int32()),
                     "answer": pa.array([encode_answer(f.answer) for f in finals], pa.string()),  # type: ignore[arg-type]
                     "admin": pa.array([f.admin for f in finals], pa.string()),
                     "at": pa.array([f.at for f in finals], pa.timestamp("us"))})


def _handout_table(handouts: Sequence[GoldHandout]) -> pa.Table | None:
    """The batch's gold hand-outs, each pair once (a duplicate key would abort the batch)."""
    pairs = list(dict.fromkeys((h.user_id, h.record_id) for h in handouts))
    if not pairs:
        return None
    return pa.table({"user_id": pa.array([u for u, _ in pairs], pa.string()),
                     "record_id": pa.array([r for _, r in pairs], pa.int32())})


def _reopen_table(reopens: Sequence[ReopenWrite]) -> pa.Table | None:
    if not reopens:
        return None
    return pa.table({"record_id": pa.array([op.record_id for op in reopens], pa.int32()),
                     "extra": pa.array([op.extra for op in reopens], pa.int32())})
