"""`StoreProtocol`: what the app asks of a store, whichever engine holds the data.

`store.Store` (one DuckDB file) and `pg_store.PgStore` (PostgreSQL shared by
replicas) both implement it with the same signatures and the same answers;
everything above the stores (backends, writer, recovery, export, stats,
dashboard, runtime, service) is typed against this protocol only. What a
single engine alone offers stays off it: DuckDB's `backup_to` and
`checkpoint` (DB_MODE=snapshot), PostgreSQL's connection `pool` (its leases).
Timestamps are naive UTC; every call after `close()` raises StoreClosedError. An answer is a
`model.Answer` (one typed value per question), stored as one JSON value per response.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ContextManager, Iterable, Iterator, Protocol, Sequence

from annotator.model import Answer, AuditWrite, Final, LastPush, NewRecord, Record, Response, WriteOp


class StoreProtocol(Protocol):
    # --- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Release the database. Idempotent; the caller stops the writer first."""

    def schema_version(self) -> int: ...

    # --- records -------------------------------------------------------------------

    def add_records(self, rows: Sequence[NewRecord]) -> list[int]:
        """Insert records whose source_key is new, in one transaction; return the new ids."""

    def source_keys(self) -> set[str]: ...

    def record(self, record_id: int) -> Record | None: ...

    def records(self, record_ids: Sequence[int]) -> dict[int, Record]: ...

    def record_ids(self) -> list[int]:
        """All record ids in dataset order."""

    def record_count(self) -> int: ...

    def set_image_sizes(self, sizes: Sequence[tuple[int, int, int]]) -> None:
        """(record id, width, height): correct the size of records' first images, in one transaction."""

    def marked(self, name: str) -> bool:
        """Whether the one-time upkeep `name` was done on this database (`mark`)."""

    def mark(self, name: str) -> None:
        """Record that the one-time upkeep `name` is done (again: nothing changes)."""

    def extra_answers(self) -> dict[int, int]:
        """record id -> extra answers asked for by a reopen, for records that have any."""

    # --- answers -------------------------------------------------------------------

    def assignment_facts(self) -> list[tuple[int, str, str]]:
        """(record_id, user_id, status) for every current answer: what assignment is rebuilt from."""

    def gold_handouts(self) -> list[tuple[str, int]]:
        """(user_id, record_id) for every gold record ever leased to someone: never handed to them again."""

    def response(self, record_id: int, user_id: str) -> Response | None: ...

    def user_responses(self, user_id: str) -> list[Response]:
        """One person's current answers, oldest first."""

    def record_responses(self, record_id: int) -> list[Response]: ...

    def history(self, record_id: int, user_id: str) -> list[Response]:
        """The answers this person's current one replaced, oldest first."""

    def iter_responses(self, batch_size: int = 10_000) -> Iterator[list[Response]]:
        """Every current answer in record order, in batches."""

    def audit_log(self, limit: int = 100) -> list[tuple[datetime, str, str, dict[str, Any]]]: ...

    # --- final answers (issue 17, adjudication; written through `apply` as FinalWrite) ---
    def finals(self) -> dict[int, Final]:
        """Every final answer an admin set, by record id."""

    def final(self, record_id: int) -> Final | None: ...

    # --- projector (annotator/projector.py, annotator/nicknames.py) ---
    def audit_entries(self, action: str) -> list[tuple[datetime, str, dict[str, Any]]]:
        """(at, actor, detail) of every audit entry of `action`, oldest first (the nicknames: the latest wins)."""

    def users_by_first_seen(self) -> list[str]:
        """Everyone the store has seen, in the order first seen (ties by name): a stable number per person."""
    # --- end projector ---

    def stats(self) -> dict[str, Any]:
        """Counts for the stats command and the dashboard (sql_shared.stats_result)."""

    def answered_questions(self) -> set[str]:
        """The question names the stored answers hold values for (task.check_answers_fit)."""

    # --- the write path (writer thread only) -----------------------------------------

    @staticmethod
    def refuses(exc: BaseException) -> bool:
        """Whether `apply` failed because of the data (it will fail again) rather than storage."""

    def audit_exists(self, entry: AuditWrite) -> bool:
        """Whether this audit entry is stored (a recovery replay must not write it twice)."""

    def apply(self, ops: Sequence[WriteOp]) -> None:
        """Write a batch in one transaction; all or nothing."""

    # --- export and restore ------------------------------------------------------------

    def export_fingerprint(self) -> str:
        """A short string that changes whenever a record, an answer, a reopen or a final answer changes."""

    def iter_export(self, batch_size: int = 500) -> Iterator[tuple[list[Record], list[Response]]]:
        """Every record in dataset order with its current answers, from one consistent snapshot."""

    def import_snapshot(self, records: Iterable[Sequence[Record]], responses: Iterable[Sequence[Response]],
                        audit: AuditWrite | None = None, finals: Iterable[Final] = ()) -> tuple[int, int]:
        """Load records, answers and final answers into an EMPTY store, in one transaction (`finals` read last)."""

    # one exporter at a time: several PostgreSQL replicas share a database; a DuckDB file has one process,
    # so there the lock is always held and nothing is shared between exporters

    def export_lock(self, wait: float = 0.0) -> ContextManager[bool]:
        """Hold the export lock while the block runs; the block gets False when another process holds it."""

    def last_push(self, repo: str) -> LastPush | None:
        """What `repo` last received from any process's exporter (None when nothing is shared)."""

    def record_push(self, repo: str, fingerprint: str, commit_url: str | None = None) -> None:
        """Tell the other processes' exporters that `repo` now holds the state `fingerprint`."""

    # --- dashboard aggregates ------------------------------------------------------------

    def dashboard_record_groups(self) -> list[tuple[int, int, int, int]]:
        """(extra_answers, submitted, skipped, records): how many records share each combination."""

    def dashboard_timeline(self, since: datetime, bucket_seconds: int, exclude: Sequence[int] = ()
                           ) -> list[tuple[datetime, str, int]]:
        """(bucket start, status, answers) of current answers first given at or after `since`, without the
        answers to the records in `exclude` (the gold records: checks, not work done)."""

    def dashboard_label_counts(self, questions: Sequence[str]) -> list[tuple[str, str, int]]:
        """(question, label, submitted answers carrying it) for the named questions; a boxes answer counts
        once per box (reports.labels_in reads an answer alike)."""

    def dashboard_text_lengths(self, questions: Sequence[str]) -> list[tuple[str, int, int, float | None]]:
        """(question, records, submitted answers, mean characters) for the named text questions that have answers."""

    def dashboard_users(self) -> list[tuple[str, int, int, float | None, datetime | None]]: ...

    def dashboard_answers_version(self) -> tuple[int, datetime | None]: ...

    def dashboard_overlapping_answers(self) -> list[tuple[int, str, Answer]]: ...


__all__ = ["StoreProtocol"]
