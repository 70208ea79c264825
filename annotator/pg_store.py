"""The PostgreSQL store: `PgStore` implements StoreProtocol (store_protocol.py) for several app replicas.

Same signatures and return values as the DuckDB `store.Store`, so the
service, export, dashboard and CLI do not know which one they talk to; the
row converters and batch helpers both use are in sql_shared.py. What
differs is underneath: a connection pool instead of one file, migrations
guarded by an advisory lock (replicas starting together migrate once), and
bookkeeping columns the lease code (`pg_leases.py`) relies on: records.submitted,
records.leased, records.touched and the `leases` table. `apply()` keeps
submitted/touched right and drops the answering person's lease in the same
transaction as the answer. Every replica runs an exporter: `export_lock()`
lets one push at a time, and `record_push()` / `last_push()` tell
the others what it pushed.

The schema and the read queries mirror store.py's line for line where the
dialects differ: TEXT for VARCHAR, `FILTER (WHERE ...)`, `COLLATE "C"` for
DuckDB's byte order, `ANY(%s)` for IN lists, unnest instead of Arrow scans.
Pure helpers both sides share live in sql_shared.py.

Transient errors (connection lost, serialization failure, deadlock) are raised
as psycopg errors; the writer retries the whole batch. Timestamps are naive UTC
in TIMESTAMP columns, as in DuckDB.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from annotator.config import scrub_url
from annotator.model import (Answer, AuditWrite, Final, GoldHandout, LastPush, LegacyQuestion, NewRecord, Record,
                             ReopenWrite, Response, ResponseWrite, StoreClosedError, StoreError, UserSeen, WriteOp,
                             encode_answer, encode_images, latest_finals, utcnow)
from annotator.sql_shared import (DATA_ERRORS, FINAL_COLUMNS, RECORD_COLUMNS, RESPONSE_COLUMNS,
                                  answers_in_record_order, final_from_row, record_from_row, response_from_row,
                                  split_answers, stats_result, typed_answers, user_spans)


def _typed_answer_columns(conn: psycopg.Connection, legacy: LegacyQuestion | None, where: str) -> None:
    """Migration 5: `answer` turns from a list of labels (text[]) into one typed jsonb answer (model.Answer).

    Each list becomes a JSON array in place (the column keeps its position),
    then each distinct (status, array) is replaced by its typed answer
    (LegacyQuestion.answer). Runs in the migration's transaction, so a crash
    leaves the old schema or the new one.
    """
    for table in ("responses", "response_history"):
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN answer TYPE jsonb USING to_jsonb(answer)")
        conv = typed_answers(conn.execute(f"SELECT DISTINCT status, answer FROM {table}").fetchall(), legacy, where)
        conn.execute(f"UPDATE {table} t SET answer = c.new::jsonb FROM unnest(%s::text[], %s::text[], %s::text[]) "
                     f"AS c(status, old, new) WHERE t.status = c.status AND t.answer = c.old::jsonb",
                     [conv["status"], [json.dumps(old) for old in conv["old"]], conv["new"]])
        left = conn.execute(f"SELECT count(*) FROM {table} WHERE jsonb_typeof(answer) <> 'object'").fetchone()[0]
        if left:
            raise StoreError(f"the database {where}: {left} answers in {table} could not be carried over to typed "
                             f"answers; nothing was changed.")


# each step is SQL, or a function of (connection, the question old answers were given to, the database's name)
_MIGRATIONS: tuple[str | Callable[[psycopg.Connection, LegacyQuestion | None, str], None], ...] = (
    # 1: the DuckDB schema, plus what the lease code needs
    """
    CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        source_key TEXT NOT NULL UNIQUE,
        image_path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        size_bytes BIGINT NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{}',
        suggestion TEXT,
        position INTEGER NOT NULL,
        extra_answers INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMP NOT NULL,
        submitted INTEGER NOT NULL DEFAULT 0,
        leased INTEGER NOT NULL DEFAULT 0,
        touched BOOLEAN NOT NULL DEFAULT false
    );
    CREATE INDEX records_position ON records (position);
    CREATE TABLE responses (
        record_id INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL,
        answer TEXT[] NOT NULL,
        comment TEXT,
        time_spent_ms INTEGER,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (record_id, user_id)
    );
    CREATE INDEX responses_user ON responses (user_id);
    CREATE TABLE response_history (
        record_id INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        status TEXT NOT NULL,
        answer TEXT[] NOT NULL,
        comment TEXT,
        time_spent_ms INTEGER,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        replaced_at TIMESTAMP NOT NULL
    );
    CREATE INDEX response_history_key ON response_history (record_id, user_id);
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        first_seen TIMESTAMP NOT NULL,
        last_seen TIMESTAMP NOT NULL
    );
    CREATE TABLE audit (
        "at" TIMESTAMP NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE leases (
        record_id INTEGER NOT NULL REFERENCES records(id),
        user_id TEXT NOT NULL,
        hard BOOLEAN NOT NULL DEFAULT false,
        replica TEXT NOT NULL,
        expires_at TIMESTAMP NOT NULL,
        PRIMARY KEY (record_id, user_id)
    );
    CREATE INDEX leases_user ON leases (user_id);
    CREATE INDEX leases_expires ON leases (expires_at);
    """,
    # 2: the hand-out rank (dataset order or the task's seeded shuffle), written by pg_leases.set_order
    """
    ALTER TABLE records ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX records_hand_out ON records (touched DESC, rank, id);
    """,
    # 3: each record's overlap as a column (written by pg_leases.set_order), so the records still open
    # and still incomplete have partial indexes in hand-out order: a hand-out no longer walks past every
    # completed record (18 ms per lease at 50,000 completed of 100,000 before)
    """
    ALTER TABLE records ADD COLUMN overlap INTEGER NOT NULL DEFAULT 1;
    DROP INDEX records_hand_out;
    CREATE INDEX records_open ON records (touched DESC, rank, id) WHERE submitted + leased < overlap + extra_answers;
    CREATE INDEX records_incomplete ON records (touched DESC, rank, id) WHERE submitted < overlap + extra_answers;
    """,
    # 4: what each export repo last received, shared by the replicas' exporters (record_push)
    """
    CREATE TABLE export_pushes (
        repo TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        commit_url TEXT,
        pushed_at TIMESTAMP NOT NULL
    );
    """,
    # 5: answers are typed, one jsonb object per response (model.Answer)
    _typed_answer_columns,
    # 6: gold records (issue 17; pg_leases.set_order marks them: outside the hand-out order and every count)
    # and the admins' per-person quota overrides (NULL: no limit), shared by every replica
    """
    ALTER TABLE records ADD COLUMN gold BOOLEAN NOT NULL DEFAULT false;
    CREATE TABLE quotas (
        user_id TEXT PRIMARY KEY,
        quota INTEGER
    );
    """,
    # 7: a record's second, third... image (model.RecordImage, JSON); a record of one image keeps "[]";
    # and the one-time upkeep done on the data (`mark`), first the sizes as shown (ingest.fix_shown_sizes)
    """
    ALTER TABLE records ADD COLUMN more_images TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE marks (name TEXT PRIMARY KEY, "at" TIMESTAMP NOT NULL);
    """,
    # 8: an admin's final answer per record (issue 17, adjudication): the typed answer object, as responses keep it
    """
    CREATE TABLE finals (
        record_id INTEGER PRIMARY KEY,
        answer jsonb NOT NULL,
        admin TEXT NOT NULL,
        "at" TIMESTAMP NOT NULL
    );
    """,
    # 9: every gold record ever leased to each person (issue 17; pg_leases._gold_lease), kept when the lease
    # row expires or is released, so no replica hands that gold record to that person again
    """
    CREATE TABLE gold_handouts (
        user_id TEXT NOT NULL,
        record_id INTEGER NOT NULL REFERENCES records(id),
        PRIMARY KEY (user_id, record_id)
    );
    """,
)

# pg_advisory_xact_lock keys: one for migrations, one for ingest (ids continue after max(id));
# a session-level pg_advisory_lock key held for a whole export (one replica pushes at a time)
_MIGRATE_LOCK = 0x616E6E01
_INGEST_LOCK = 0x616E6E02
_EXPORT_LOCK = 0x616E6E03

_RECORD_INSERT = ("id, source_key, image_path, sha256, width, height, size_bytes, metadata, suggestion, position, "
                  "extra_answers, created_at, more_images")
_RECORD_TYPES = ["int4", "text", "text", "text", "int4", "int4", "int8", "text", "text", "int4", "int4", "timestamp",
                 "text"]
_RESPONSE_TYPES = ["int4", "text", "text", "jsonb", "text", "int4", "timestamp", "timestamp"]
# number of current submitted answers and "ever answered", for the given record ids
_SET_SUBMITTED = ("UPDATE records r SET touched = true, submitted = (SELECT count(*) FROM responses s "
                  "WHERE s.record_id = r.id AND s.status = 'submitted') WHERE r.id = ANY(%s)")


def _metadata_json(metadata: dict[str, Any]) -> str:
    return json.dumps(metadata, sort_keys=True, default=str)


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def connect_error(exc: psycopg.OperationalError, url: str) -> StoreError:
    """What failed when connecting, naming STORE_URL and the host, never the password."""
    password = urlsplit(url).password
    detail = " ".join(str(exc).split())
    if password:
        detail = detail.replace(password, "***")
    lowered, host, where = detail.lower(), _host(url), scrub_url(url)
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return StoreError(f"STORE_URL: the PostgreSQL server at {host} refused the user name or password "
                          f"({detail}); fix the credentials in STORE_URL ({where}).")
    if "database" in lowered and "does not exist" in lowered:
        database = urlsplit(url).path.lstrip("/")
        return StoreError(f"STORE_URL: the database {database!r} does not exist on the PostgreSQL server at "
                          f"{host}; create it or fix STORE_URL ({where}).")
    return StoreError(f"STORE_URL: cannot connect to the PostgreSQL server at {host} ({detail}); check that it "
                      f"runs and that STORE_URL ({where}) names the right host and port.")


class PgStore:
    """The store on a PostgreSQL database shared by every replica.

    Lifecycle: `PgStore(url)` connects, applies pending migrations (once,
    whoever starts first) and opens a pool of up to `pool_size` connections;
    `close()` is idempotent; after it every call raises StoreClosedError.
    Several processes may hold a PgStore on the same database at once.
    `legacy`: as for the DuckDB Store, the question answers stored as lists of
    labels were given to; needed only to migrate such a database.
    """

    SCHEMA_VERSION = len(_MIGRATIONS)

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 10.0,
                 legacy: LegacyQuestion | None = None) -> None:
        self.where = scrub_url(url)
        self._legacy = legacy
        self._url, self._connect_timeout = url, connect_timeout
        self._closed = False
        with self._connect() as conn:
            self._migrate(conn)
        self._pool = ConnectionPool(url, min_size=1, max_size=max(1, pool_size), open=False,
                                    kwargs={"autocommit": True}, timeout=30.0, name="annotator-store")
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self._pool.close()
            raise StoreError(f"STORE_URL: the PostgreSQL server at {_host(url)} accepted one connection but not "
                             f"a pool of {pool_size}; check its max_connections or lower STORE_POOL_SIZE.") from None

    # --- lifecycle ---------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        """A new autocommit connection outside the pool; connection errors say what to fix in STORE_URL."""
        try:
            # TCP keepalives: the export lock's connection idles through an upload, and proxies drop quiet ones
            return psycopg.connect(self._url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout)),
                                   keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)
        except psycopg.OperationalError as exc:
            raise connect_error(exc, self._url) from None

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection; use `conn.transaction()` for writes."""
        if self._closed:
            raise StoreClosedError(f"the store {self.where} is closed")
        with self._pool.connection() as conn:
            yield conn

    def _one(self, sql: str, params: Sequence[Any] | None = None) -> tuple | None:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self._conn() as conn:
            return conn.execute(sql, params).fetchall()

    @property
    def pool(self) -> ConnectionPool:
        """The pool (autocommit connections) for the lease code that shares this database."""
        if self._closed:
            raise StoreClosedError(f"the store {self.where} is closed")
        return self._pool

    def close(self) -> None:
        """Close the pool. Idempotent. The caller stops the writer first."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Apply pending migrations in one transaction under an advisory lock, so concurrent starts migrate once."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATE_LOCK])
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                         "applied_at TIMESTAMP NOT NULL)")
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > self.SCHEMA_VERSION:
                raise StoreError(f"the database {self.where} has schema version {current}, newer than this app "
                                 f"({self.SCHEMA_VERSION}); upgrade the app or point STORE_URL at another database.")
            for version in range(current + 1, self.SCHEMA_VERSION + 1):
                step = _MIGRATIONS[version - 1]
                if isinstance(step, str):
                    conn.execute(step)
                else:
                    step(conn, self._legacy, self.where)
                conn.execute("INSERT INTO schema_version VALUES (%s, %s)", [version, utcnow()])

    def schema_version(self) -> int:
        return self._one("SELECT max(version) FROM schema_version")[0]

    # --- records -----------------------------------------------------------

    def add_records(self, rows: Sequence[NewRecord]) -> list[int]:
        """Insert records whose source_key is new, in one transaction; return the new ids.

        Ids and positions continue after the existing ones. An advisory lock
        serializes concurrent ingests (replicas starting on an empty database),
        so the later one adds nothing instead of failing on a duplicate id.
        """
        fresh: dict[str, NewRecord] = {}
        for row in rows:
            fresh.setdefault(row.source_key, row)
        if not fresh:
            return []
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_INGEST_LOCK])
            existing = {k for (k,) in conn.execute("SELECT source_key FROM records WHERE source_key = ANY(%s)",
                                                   [list(fresh)]).fetchall()}
            new_rows = [r for k, r in fresh.items() if k not in existing]
            if not new_rows:
                return []
            start = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()[0] + 1
            ids = list(range(start, start + len(new_rows)))
            now = utcnow()
            with conn.cursor().copy(f"COPY records ({_RECORD_INSERT}) FROM STDIN") as copy:
                copy.set_types(_RECORD_TYPES)
                for rid, r in zip(ids, new_rows):
                    copy.write_row((rid, r.source_key, r.image_path, r.sha256, r.width, r.height, r.size_bytes,
                                    _metadata_json(r.metadata), r.suggestion, rid, 0, now,
                                    encode_images(r.more_images)))
        return ids

    def source_keys(self) -> set[str]:
        return {k for (k,) in self._all("SELECT source_key FROM records")}

    def record(self, record_id: int) -> Record | None:
        row = self._one(f"SELECT {RECORD_COLUMNS} FROM records WHERE id = %s", [record_id])
        return record_from_row(row) if row else None

    def records(self, record_ids: Sequence[int]) -> dict[int, Record]:
        if not record_ids:
            return {}
        rows = self._all(f"SELECT {RECORD_COLUMNS} FROM records WHERE id = ANY(%s)", [list(record_ids)])
        return {row[0]: record_from_row(row) for row in rows}

    def record_ids(self) -> list[int]:
        """All record ids in dataset order."""
        return [i for (i,) in self._all("SELECT id FROM records ORDER BY position, id")]

    def record_count(self) -> int:
        return self._one("SELECT count(*) FROM records")[0]

    def marked(self, name: str) -> bool:
        return self._one("SELECT count(*) FROM marks WHERE name = %s", [name])[0] > 0

    def mark(self, name: str) -> None:
        with self._conn() as conn:
            conn.execute("INSERT INTO marks VALUES (%s, %s) ON CONFLICT DO NOTHING", [name, utcnow()])

    def set_image_sizes(self, sizes: Sequence[tuple[int, int, int]]) -> None:
        if not sizes:
            return
        with self._conn() as conn, conn.transaction():
            conn.cursor().executemany("UPDATE records SET width = %s, height = %s WHERE id = %s",
                                      [(w, h, rid) for rid, w, h in sizes])

    def extra_answers(self) -> dict[int, int]:
        return dict(self._all("SELECT id, extra_answers FROM records WHERE extra_answers > 0"))

    # --- responses ---------------------------------------------------------

    def assignment_facts(self) -> list[tuple[int, str, str]]:
        """(record_id, user_id, status) for every current answer: what the scheduler is rebuilt from."""
        return self._all("SELECT record_id, user_id, status FROM responses")

    def gold_handouts(self) -> list[tuple[str, int]]:
        """(user_id, record_id) for every gold record ever leased to someone (pg_leases writes them)."""
        return self._all("SELECT user_id, record_id FROM gold_handouts")

    def response(self, record_id: int, user_id: str) -> Response | None:
        row = self._one(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE record_id = %s AND user_id = %s",
                        [record_id, user_id])
        return response_from_row(row) if row else None

    def user_responses(self, user_id: str) -> list[Response]:
        """One person's current answers, oldest first."""
        rows = self._all(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE user_id = %s "
                         f"ORDER BY created_at, record_id", [user_id])
        return [response_from_row(r) for r in rows]

    def record_responses(self, record_id: int) -> list[Response]:
        rows = self._all(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE record_id = %s "
                         f"ORDER BY created_at, user_id COLLATE \"C\"", [record_id])
        return [response_from_row(r) for r in rows]

    def history(self, record_id: int, user_id: str) -> list[Response]:
        rows = self._all(f"SELECT {RESPONSE_COLUMNS} FROM response_history WHERE record_id = %s "
                         f"AND user_id = %s ORDER BY replaced_at, updated_at", [record_id, user_id])
        return [response_from_row(r) for r in rows]

    def iter_responses(self, batch_size: int = 10_000) -> Iterator[list[Response]]:
        """Every current answer in record order, in batches, through a server-side cursor (flat memory)."""
        with self._conn() as conn, conn.transaction(), conn.cursor(name="iter_responses") as cur:
            cur.execute(f"SELECT {RESPONSE_COLUMNS} FROM responses ORDER BY record_id, created_at, "
                        f"user_id COLLATE \"C\"")
            while batch := cur.fetchmany(batch_size):
                yield [response_from_row(r) for r in batch]

    def finals(self) -> dict[int, Final]:
        """Every final answer an admin set, by record id."""
        return {row[0]: final_from_row(row) for row in self._all(f"SELECT {FINAL_COLUMNS} FROM finals ORDER BY record_id")}

    def final(self, record_id: int) -> Final | None:
        row = self._one(f"SELECT {FINAL_COLUMNS} FROM finals WHERE record_id = %s", [record_id])
        return final_from_row(row) if row else None

    def audit_log(self, limit: int = 100) -> list[tuple[datetime, str, str, dict[str, Any]]]:
        rows = self._all('SELECT "at", actor, action, detail FROM audit ORDER BY "at" DESC LIMIT %s', [limit])
        return [(at, actor, action, json.loads(detail)) for at, actor, action, detail in rows]

    # --- projector (annotator/projector.py, annotator/nicknames.py) ---
    def audit_entries(self, action: str) -> list[tuple[datetime, str, dict[str, Any]]]:
        rows = self._all('SELECT "at", actor, detail FROM audit WHERE action = %s ORDER BY "at"', [action])
        return [(at, actor, json.loads(detail)) for at, actor, detail in rows]

    def users_by_first_seen(self) -> list[str]:
        return [u for (u,) in self._all('SELECT user_id FROM users ORDER BY first_seen, user_id COLLATE "C"')]
    # --- end projector ---

    def answered_questions(self) -> set[str]:
        with self._conn() as conn:
            return {name for (name,) in conn.execute("SELECT DISTINCT jsonb_object_keys(answer) FROM responses")}

    def stats(self) -> dict[str, Any]:
        """Counts for `python -m annotator stats` and the dashboard's first paint."""
        with self._conn() as conn:
            records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
            submitted, skipped = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'submitted'), count(*) FILTER (WHERE status = 'skipped') "
                "FROM responses").fetchone()
            overlap_rows = conn.execute(
                "SELECT r.id, r.extra_answers, s.n FROM records r JOIN "
                "(SELECT record_id, count(*) AS n FROM responses WHERE status = 'submitted' GROUP BY 1) s "
                "ON s.record_id = r.id").fetchall()
            users = conn.execute(
                "SELECT user_id, count(*) FILTER (WHERE status = 'submitted'), "
                "count(*) FILTER (WHERE status = 'skipped') FROM responses GROUP BY 1 ORDER BY user_id COLLATE \"C\"",
            ).fetchall()
        return stats_result(records, submitted, skipped, overlap_rows, users)

    # --- the write path (writer thread only) -------------------------------

    @staticmethod
    def refuses(exc: BaseException) -> bool:
        """Whether `apply` failed because of the data (it will fail again) rather than the server.

        Data: DATA_ERRORS and PostgreSQL's data and integrity errors (a NUL
        in text, a value out of range, a constraint). Retried: a lost
        connection, a serialization failure, a pool timeout, anything else.
        """
        return isinstance(exc, DATA_ERRORS + (psycopg.DataError, psycopg.IntegrityError))

    def audit_exists(self, entry: AuditWrite) -> bool:
        """Whether this audit entry (same time, actor and action) is stored (see Store.audit_exists)."""
        return self._one('SELECT count(*) FROM audit WHERE "at" = %s AND actor = %s AND action = %s',
                         [entry.at, entry.actor, entry.action])[0] > 0

    def apply(self, ops: Sequence[WriteOp]) -> None:
        """Write a batch in one transaction; all or nothing.

        Same semantics as `Store.apply`. Besides: the record rows the batch
        touches are locked first, in ascending id order (the lease code locks
        them the same way, so the two cannot deadlock); each answering person's
        lease on the record is deleted and records.leased lowered to match; and
        records.submitted/touched are set for every answered record.
        """
        responses = [op for op in ops if isinstance(op, ResponseWrite)]
        reopens: Counter[int] = Counter()
        for op in ops:
            if isinstance(op, ReopenWrite):
                reopens[op.record_id] += op.extra
        answered = sorted({r.record_id for r in responses})
        with self._conn() as conn, conn.transaction():
            locked = sorted(set(answered) | set(reopens))
            if locked:
                conn.execute("SELECT id FROM records WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [locked])
            _, rounds = split_answers(responses, trust_first=False)  # one answer per (record, person) a round
            for g in range(max((g for g, _ in rounds), default=-1) + 1):
                self._write_responses(conn, [row for k, row in rounds if k == g])
            if responses:
                pairs = sorted({(r.record_id, r.user_id) for r in responses})
                conn.execute(
                    "WITH gone AS (DELETE FROM leases l USING unnest(%s::int[], %s::text[]) AS b(record_id, user_id) "
                    "WHERE l.record_id = b.record_id AND l.user_id = b.user_id RETURNING l.record_id), "
                    "freed AS (SELECT record_id, count(*) AS n FROM gone GROUP BY 1) "
                    "UPDATE records r SET leased = r.leased - freed.n FROM freed WHERE r.id = freed.record_id",
                    [[p[0] for p in pairs], [p[1] for p in pairs]])
                conn.execute(_SET_SUBMITTED, [answered])
            self._write_users(conn, [op for op in ops if isinstance(op, UserSeen)])
            audits = [op for op in ops if isinstance(op, AuditWrite)]
            if audits:
                conn.execute('INSERT INTO audit ("at", actor, action, detail) '
                             'SELECT * FROM unnest(%s::timestamp[], %s::text[], %s::text[], %s::text[])',
                             [[a.at for a in audits], [a.actor for a in audits], [a.action for a in audits],
                              [json.dumps(a.detail, sort_keys=True, default=str) for a in audits]])
            if reopens:
                ids = sorted(reopens)
                conn.execute("UPDATE records r SET extra_answers = r.extra_answers + b.n "
                             "FROM unnest(%s::int[], %s::int[]) AS b(id, n) WHERE r.id = b.id",
                             [ids, [reopens[i] for i in ids]])
            self._write_finals(conn, ops)
            handouts = sorted({(op.user_id, op.record_id) for op in ops if isinstance(op, GoldHandout)})
            if handouts:  # pg_leases writes them itself; a GoldHandout op means the same
                conn.execute("INSERT INTO gold_handouts (user_id, record_id) SELECT * FROM unnest(%s::text[], "
                             "%s::int[]) ON CONFLICT DO NOTHING", [[u for u, _ in handouts], [r for _, r in handouts]])

    @staticmethod
    def _write_finals(conn: psycopg.Connection, ops: Sequence[WriteOp]) -> None:
        """The batch's final answers (the last per record): set ones upserted, taken back ones deleted."""
        to_set, to_clear = latest_finals(ops)
        if to_clear:
            conn.execute("DELETE FROM finals WHERE record_id = ANY(%s)", [to_clear])
        if to_set:
            conn.execute(f"INSERT INTO finals ({FINAL_COLUMNS}) SELECT * FROM unnest(%s::int[], %s::jsonb[], "
                         "%s::text[], %s::timestamp[]) ON CONFLICT (record_id) DO UPDATE SET answer = excluded.answer, "
                         'admin = excluded.admin, "at" = excluded."at"',
                         [[f.record_id for f in to_set], [encode_answer(f.answer) for f in to_set],  # type: ignore[arg-type]
                          [f.admin for f in to_set], [f.at for f in to_set]])

    @staticmethod
    def _write_responses(conn: psycopg.Connection, rows: Sequence[ResponseWrite]) -> None:
        """One generation (no (record, user) twice): the replaced answers go to the history, then upsert."""
        conn.execute(
            f"INSERT INTO response_history SELECT {', '.join('r.' + c for c in RESPONSE_COLUMNS.split(', '))}, "
            "b.at FROM responses r JOIN unnest(%s::int[], %s::text[], %s::timestamp[]) AS b(record_id, user_id, at) "
            "ON r.record_id = b.record_id AND r.user_id = b.user_id",
            [[r.record_id for r in rows], [r.user_id for r in rows], [r.at for r in rows]])
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO responses ({RESPONSE_COLUMNS}) VALUES (%s, %s, %s, %s::jsonb, %s, %s, %s, %s) "
                "ON CONFLICT (record_id, user_id) DO UPDATE SET status = excluded.status, answer = excluded.answer, "
                "comment = excluded.comment, time_spent_ms = excluded.time_spent_ms, "
                "updated_at = excluded.updated_at",
                [(r.record_id, r.user_id, r.status, encode_answer(r.answer), r.comment, r.time_spent_ms, r.at, r.at)
                 for r in rows])

    @staticmethod
    def _write_users(conn: psycopg.Connection, seen: Sequence[UserSeen]) -> None:
        span = user_spans(seen)
        if not span:
            return
        users = sorted(span)
        conn.execute("INSERT INTO users SELECT * FROM unnest(%s::text[], %s::timestamp[], %s::timestamp[]) "
                     "ON CONFLICT (user_id) DO UPDATE SET first_seen = least(users.first_seen, excluded.first_seen), "
                     "last_seen = greatest(users.last_seen, excluded.last_seen)",
                     [users, [span[u][0] for u in users], [span[u][1] for u in users]])

    # --- export and restore ------------------------------------------------

    def export_fingerprint(self) -> str:
        """A short string that changes whenever a record, an answer, a reopen or a final answer changes (see Store)."""
        row = self._one(
            "SELECT (SELECT count(*) FROM records), (SELECT coalesce(sum(extra_answers), 0) FROM records), "
            "count(*), coalesce(bit_xor(hashtextextended(row(record_id, user_id, status, answer, comment, "
            "time_spent_ms, updated_at)::text, 0)), 0), (SELECT count(*) FROM finals), (SELECT coalesce(bit_xor("
            'hashtextextended(row(record_id, answer, admin, "at")::text, 0)), 0) FROM finals) FROM responses')
        return ":".join(str(v) for v in row)

    def iter_export(self, batch_size: int = 500) -> Iterator[tuple[list[Record], list[Response]]]:
        """Every record in dataset order with its current answers, `batch_size` records at a time.

        All batches come from one REPEATABLE READ read-only transaction on a
        pooled connection of their own: a consistent snapshot while writers
        commit. Answers are in record order, then oldest first. Close the
        generator (or exhaust it) to give the connection back.
        """
        with self._conn() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            last: tuple[int, int] | None = None
            while True:
                if last is None:
                    rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records ORDER BY position, id LIMIT %s",
                                        [batch_size]).fetchall()
                else:
                    rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE (position, id) > (%s, %s) "
                                        f"ORDER BY position, id LIMIT %s", [*last, batch_size]).fetchall()
                if not rows:
                    break
                records = [record_from_row(row) for row in rows]
                last = (records[-1].position, records[-1].id)
                found = conn.execute(f"SELECT {RESPONSE_COLUMNS} FROM responses WHERE record_id = ANY(%s) "
                                     f"ORDER BY record_id, created_at, user_id COLLATE \"C\"",
                                     [[r.id for r in records]]).fetchall()
                yield records, answers_in_record_order(records, found)

    def import_snapshot(self, records: Iterable[Sequence[Record]], responses: Iterable[Sequence[Response]],
                        audit: AuditWrite | None = None, finals: Iterable[Final] = ()) -> tuple[int, int]:
        """Load records, answers and final answers into an EMPTY store, in one transaction (see Store.import_snapshot).

        Also sets records.submitted and touched from the answers. Raises
        StoreError, and changes nothing, when the store holds a record or an answer.
        """
        n_records = n_responses = 0
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_INGEST_LOCK])
            present = conn.execute("SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM responses)"
                                   ).fetchone()[0]
            if present:
                raise StoreError(f"the store {self.where} is not empty; a restore only fills an empty store")
            now = utcnow()
            cur = conn.cursor()
            with cur.copy(f"COPY records ({_RECORD_INSERT}) FROM STDIN") as copy:
                copy.set_types(_RECORD_TYPES)
                for batch in records:
                    for r in batch:
                        copy.write_row((r.id, r.source_key, r.image_path, r.sha256, r.width, r.height, r.size_bytes,
                                        _metadata_json(r.metadata), r.suggestion, r.position, r.extra_answers, now,
                                        encode_images(r.more_images)))
                    n_records += len(batch)
            with cur.copy(f"COPY responses ({RESPONSE_COLUMNS}) FROM STDIN") as copy:
                copy.set_types(_RESPONSE_TYPES)
                for batch in responses:
                    for s in batch:
                        copy.write_row((s.record_id, s.user_id, s.status, Jsonb(s.answer, encode_answer), s.comment,
                                        s.time_spent_ms, s.created_at, s.updated_at))
                    n_responses += len(batch)
            conn.execute("UPDATE records r SET touched = true, submitted = s.n FROM (SELECT record_id, "
                         "count(*) FILTER (WHERE status = 'submitted') AS n FROM responses GROUP BY 1) s "
                         "WHERE s.record_id = r.id")
            conn.execute("INSERT INTO users SELECT user_id, min(created_at), max(updated_at) FROM responses "
                         "GROUP BY user_id ON CONFLICT DO NOTHING")
            with cur.copy(f"COPY finals ({FINAL_COLUMNS}) FROM STDIN") as copy:
                copy.set_types(["int4", "jsonb", "text", "timestamp"])
                for f in finals:
                    copy.write_row((f.record_id, Jsonb(f.answer, encode_answer), f.admin, f.at))
            if audit is not None:
                conn.execute('INSERT INTO audit VALUES (%s, %s, %s, %s)',
                             [audit.at, audit.actor, audit.action,
                              json.dumps(audit.detail, sort_keys=True, default=str)])
        return n_records, n_responses

    # --- one exporter at a time across replicas ------------------------------

    @contextmanager
    def export_lock(self, wait: float = 0.0) -> Iterator[bool]:
        """Hold the database-wide export lock while the block runs; yields False if another replica holds it.

        Every replica runs an exporter on the same database; this keeps their
        pushes one at a time. A session-level advisory lock on a connection of
        its own, beside the pool, waiting up to `wait` seconds (0: not at all):
        closing that connection releases the lock even if this process dies or
        the unlock fails, so a lock can never stay behind in a pooled connection.
        """
        if self._closed:
            raise StoreClosedError(f"the store {self.where} is closed")
        with self._connect() as conn:
            # the session holds the lock through a long upload while it sits idle: a server-side idle
            # timeout must not end it (and with it the lock)
            conn.execute("SELECT set_config('idle_session_timeout', '0', false)")
            held = self._take_export_lock(conn, wait)
            yield held
            if held:
                with suppress(psycopg.Error):  # a lost connection has released the lock already
                    conn.execute("SELECT pg_advisory_unlock(%s)", [_EXPORT_LOCK])

    @staticmethod
    def _take_export_lock(conn: psycopg.Connection, wait: float) -> bool:
        """Try once, or wait under lock_timeout (never 0 ms: that would mean no limit at all)."""
        if wait <= 0:
            return conn.execute("SELECT pg_try_advisory_lock(%s)", [_EXPORT_LOCK]).fetchone()[0]
        conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{max(1, int(wait * 1000))}ms"])
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", [_EXPORT_LOCK])
        except psycopg.errors.LockNotAvailable:
            return False
        return True

    def last_push(self, repo: str) -> LastPush | None:
        """What `repo` last received from any replica (record_push), None before the first push."""
        row = self._one("SELECT fingerprint, commit_url, pushed_at FROM export_pushes WHERE repo = %s", [repo])
        return LastPush(*row) if row else None

    def record_push(self, repo: str, fingerprint: str, commit_url: str | None = None) -> None:
        """Remember that `repo` holds the store state `fingerprint`, for every replica's exporter to read."""
        with self._conn() as conn:
            conn.execute("INSERT INTO export_pushes VALUES (%s, %s, %s, %s) ON CONFLICT (repo) DO UPDATE SET "
                         "fingerprint = excluded.fingerprint, commit_url = excluded.commit_url, "
                         "pushed_at = excluded.pushed_at", [repo, fingerprint, commit_url, utcnow()])

    # --- dashboard reads (see Store) ------------------------------------------

    def dashboard_record_groups(self) -> list[tuple[int, int, int, int]]:
        """(extra_answers, submitted, skipped, records): how many records share each combination."""
        return self._all(
            "SELECT r.extra_answers, coalesce(s.submitted, 0), coalesce(s.skipped, 0), count(*) FROM records r "
            "LEFT JOIN (SELECT record_id, count(*) FILTER (WHERE status = 'submitted') AS submitted, "
            "count(*) FILTER (WHERE status = 'skipped') AS skipped FROM responses GROUP BY 1) s "
            "ON s.record_id = r.id GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")

    def dashboard_timeline(self, since: datetime, bucket_seconds: int, exclude: Sequence[int] = ()
                           ) -> list[tuple[datetime, str, int]]:
        """(bucket start, status, answers) of current answers first given at or after `since`, oldest first,
        without the answers to the records in `exclude`.

        Buckets start from 2000-01-03, DuckDB's time_bucket origin, so both engines cut alike.
        """
        return self._all(
            "SELECT date_bin(make_interval(secs => %s), created_at, timestamp '2000-01-03') AS bucket, status, "
            "count(*) FROM responses WHERE created_at >= %s AND record_id <> ALL(%s::int[]) "
            "GROUP BY 1, 2 ORDER BY 1, status COLLATE \"C\"",
            [int(bucket_seconds), since, list(exclude)])

    def dashboard_label_counts(self, questions: Sequence[str]) -> list[tuple[str, str, int]]:
        """(question, label, submitted answers carrying it) for the named questions (reports.labels_in):
        a boxes answer counts once per box."""
        return self._all(
            "SELECT question, label, count(*) FROM (SELECT q.key AS question, CASE jsonb_typeof(l.value) "
            "WHEN 'object' THEN l.value ->> 'label' ELSE l.value #>> '{}' END AS label "
            "FROM responses, jsonb_each(answer) q, jsonb_array_elements("
            "CASE jsonb_typeof(q.value) WHEN 'array' THEN q.value ELSE jsonb_build_array(q.value) END) l(value) "
            "WHERE status = 'submitted' AND q.key = ANY(%s)) carried GROUP BY 1, 2 "
            "ORDER BY question COLLATE \"C\", label COLLATE \"C\"", [list(questions)])

    def dashboard_text_lengths(self, questions: Sequence[str]) -> list[tuple[str, int, int, float | None]]:
        """(question, records, submitted answers, mean characters) for the named text questions that have answers."""
        return self._all(
            "SELECT q.key, count(DISTINCT record_id), count(*), avg(char_length(q.value))::float8 "
            "FROM responses, jsonb_each_text(answer) q WHERE status = 'submitted' AND q.key = ANY(%s) "
            "GROUP BY 1 ORDER BY q.key COLLATE \"C\"", [list(questions)])

    def dashboard_users(self) -> list[tuple[str, int, int, float | None, datetime | None]]:
        """(user, submitted, skipped, median ms per submitted answer, last activity) for everyone seen."""
        return self._all(
            "WITH a AS (SELECT user_id, count(*) FILTER (WHERE status = 'submitted') AS submitted, "
            "count(*) FILTER (WHERE status = 'skipped') AS skipped, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY time_spent_ms) FILTER (WHERE status = 'submitted') "
            "AS median_ms, max(updated_at) AS last_answer FROM responses GROUP BY 1) "
            "SELECT coalesce(a.user_id, u.user_id), coalesce(a.submitted, 0), coalesce(a.skipped, 0), a.median_ms, "
            "greatest(a.last_answer, u.last_seen) FROM a FULL OUTER JOIN users u ON u.user_id = a.user_id "
            "ORDER BY coalesce(a.user_id, u.user_id) COLLATE \"C\"")

    def dashboard_answers_version(self) -> tuple[int, datetime | None]:
        """(current answers, latest change): differs whenever an answer is added or changed."""
        return self._one("SELECT count(*), max(updated_at) FROM responses")  # type: ignore[return-value]

    def dashboard_overlapping_answers(self) -> list[tuple[int, str, Answer]]:
        """(record_id, user_id, answer) of the submitted answers on records that have at least two of them."""
        return self._all(  # type: ignore[return-value]  # psycopg parses jsonb into the answer dict
            "SELECT record_id, user_id, answer FROM (SELECT record_id, user_id, answer, "
            "count(*) OVER (PARTITION BY record_id) AS n FROM responses WHERE status = 'submitted') t "
            "WHERE n >= 2 ORDER BY record_id, user_id COLLATE \"C\"")
