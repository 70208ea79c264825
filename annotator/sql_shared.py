"""What the DuckDB store (store.py) and the PostgreSQL store (pg_store.py) share: columns, row converters,
batch helpers and the errors that come from data.

Only what both dialects agree on lives here; SQL that differs by dialect stays
in each store, which says why.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable, Sequence

from annotator.model import (Final, LegacyQuestion, Record, Response, ResponseWrite, StoreError, UserSeen,
                             decode_answer, decode_images, encode_answer)

# Errors of apply() that come from the data of an op, not from storage: building its rows failed (text that
# cannot be encoded, a number out of range, a wrong type). They fail again on every retry, so the writer
# isolates and refuses the op instead (writer.py). Each store adds its engine's data errors.
DATA_ERRORS: tuple[type[BaseException], ...] = (UnicodeError, ValueError, TypeError, OverflowError)

# the columns of `responses` (and of `response_history`, before replaced_at), in table order
RESPONSE_COLUMNS = "record_id, user_id, status, answer, comment, time_spent_ms, created_at, updated_at"
# the columns of `records` a Record is read from, in the order of its fields
RECORD_COLUMNS = ("id, source_key, image_path, sha256, width, height, size_bytes, metadata, suggestion, "
                  "position, extra_answers, more_images")

# the columns of `finals`, in table order
FINAL_COLUMNS = 'record_id, answer, admin, "at"'


def record_from_row(row: tuple) -> Record:
    """A Record from a row of RECORD_COLUMNS (metadata and the further images are stored as JSON text)."""
    return Record(*row[:7], json.loads(row[7]), *row[8:11], decode_images(row[11]))  # type: ignore[arg-type]


def response_from_row(row: tuple) -> Response:
    """A Response from a row of RESPONSE_COLUMNS (answer: JSON text from DuckDB, a dict from PostgreSQL)."""
    return Response(row[0], row[1], row[2], decode_answer(row[3]), *row[4:])


def final_from_row(row: tuple) -> Final:
    """A Final from a row of FINAL_COLUMNS (answer: JSON text from DuckDB, a dict from PostgreSQL)."""
    return Final(row[0], decode_answer(row[1]), row[2], row[3])


def typed_answers(rows: Iterable[tuple[str, Any]], legacy: LegacyQuestion | None, where: str
                  ) -> dict[str, list[Any]]:
    """The migration to typed answers: {status, old, new} columns for each distinct (status, old answer).

    `rows` are the distinct (status, list of labels) of a table; `old` is that
    list as given, so the store joins on it exactly, and `new` the canonical
    JSON text of the typed answer (LegacyQuestion.answer). Raises StoreError
    when there are answers and no label question to give them to.
    """
    columns: dict[str, list[Any]] = {"status": [], "old": [], "new": []}
    for status, old in rows:
        if legacy is None:
            raise StoreError(f"the database {where} holds answers from before typed answers (lists of labels); "
                             f"the first question of the task (TASK_FILE) must be the label or labels question "
                             f"they answered, so that they can be carried over.")
        columns["status"].append(status)
        columns["old"].append(old)
        columns["new"].append(encode_answer(legacy.answer(old, status)))
    return columns


def stats_result(records: int, submitted: int, skipped: int, overlap_rows: Iterable[tuple[int, int, int]],
                 users: Iterable[tuple[str, int, int]]) -> dict[str, Any]:
    """The `stats()` dict from its counts, the same for both engines."""
    return {
        "records": records,
        "responses": submitted + skipped,
        "submitted": submitted,
        "skipped": skipped,
        "answers_per_record": [(rid, extra, n) for rid, extra, n in overlap_rows],
        "users": {u: {"submitted": s, "skipped": k} for u, s, k in users},
    }


def user_spans(seen: Iterable[UserSeen]) -> dict[str, tuple[datetime, datetime]]:
    """user -> (earliest, latest) sighting in one batch."""
    span: dict[str, tuple[datetime, datetime]] = {}
    for op in seen:
        first, last = span.get(op.user_id, (op.at, op.at))
        span[op.user_id] = (min(first, op.at), max(last, op.at))
    return span


def answers_in_record_order(records: Sequence[Record], rows: Iterable[tuple]) -> list[Response]:
    """Response rows (sorted by record, then oldest first) regrouped in the order of `records`."""
    by_record: dict[int, list[Response]] = {}
    for row in rows:
        by_record.setdefault(row[0], []).append(response_from_row(row))
    return [resp for r in records for resp in by_record.get(r.id, ())]


def split_answers(rows: Iterable[ResponseWrite], trust_first: bool
                  ) -> tuple[list[ResponseWrite], list[tuple[int, ResponseWrite]]]:
    """(plain inserts, (round, answer) for the upsert path).

    No (record, user) may appear twice in one INSERT (DuckDB refuses that),
    and each round's copy to the history must see the answer it replaces, so
    the n-th answer of a person to a record in this batch goes in round n.
    Only a first round answer the scheduler marked `first` skips the upsert.
    """
    fresh: list[ResponseWrite] = []
    changed: list[tuple[int, ResponseWrite]] = []
    seen: dict[tuple[int, str], int] = {}
    for row in rows:
        key = (row.record_id, row.user_id)
        g = seen.get(key, 0)
        seen[key] = g + 1
        if g == 0 and trust_first and row.first:
            fresh.append(row)
        else:
            changed.append((g, row))
    return fresh, changed
