"""The domain: records, answers and the writes that change them, and the rules every layer shares.

Plain data and plain functions, importing nothing from the rest of the app, so
the stores, the schedulers, the service, the dashboard and the export take
their types and rules from one place. Timestamps are naive UTC everywhere.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Sequence, Union

__all__ = [
    "Answer", "AnswerValue", "AuditWrite", "Box", "Final", "FinalWrite", "GoldHandout", "LastPush", "LeaseKind",
    "LegacyQuestion", "NewRecord",
    "QueueState", "Record", "RecordImage", "RecordStatus", "ReopenWrite", "Response", "ResponseWrite",
    "StoreClosedError", "StoreError", "SubmitOutcome", "UserSeen", "WriteOp", "decode_answer", "decode_images",
    "encode_answer", "encode_images", "hand_out_order", "latest_finals", "record_status", "utcnow",
]


def utcnow() -> datetime:
    """Now as naive UTC, the form every store keeps timestamps in."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


# --- errors ---------------------------------------------------------------------

class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says what to change."""


class StoreClosedError(StoreError):
    """The store was closed; nothing more can be read or written."""


# --- records and answers --------------------------------------------------------

# One typed value per question: label -> str; labels -> list[str] (may be empty); rating -> int; text -> str;
# boxes -> list of {"label": str, "bbox": [x, y, w, h] (original pixels), "suggested": True (optional)}.
Box = dict[str, Any]
AnswerValue = Union[str, int, list[str], list[Box]]
# An answer by question name: an optional question left open is absent; a skip is {}.
Answer = dict[str, AnswerValue]


def encode_answer(answer: Answer) -> str:
    """The one JSON text of an answer (sorted keys, UTF-8 kept, compact).

    Every store writes this form, so the same answer is the same bytes: the
    DuckDB store keeps the text as given, and its export fingerprint hashes it.
    Raises TypeError for anything but an object, a data error the writer
    refuses to its owner rather than a value every reader would trip on.
    """
    if not isinstance(answer, dict):
        raise TypeError(f"an answer is an object by question name, not {type(answer).__name__}")
    return json.dumps(answer, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def decode_answer(stored: str | Answer) -> Answer:
    """An answer as a store reads it back: DuckDB returns the JSON text, psycopg the parsed jsonb."""
    return json.loads(stored) if isinstance(stored, str) else stored


@dataclass(frozen=True)
class LegacyQuestion:
    """The question answers of the old form (a list of label names) were given to.

    Before typed answers a response held a list of labels for the task's one
    question; the store migration, the recovery files and the restore of an old
    export all read such a list through `answer`, so they agree.
    """
    name: str
    kind: Literal["label", "labels"]

    def answer(self, labels: Sequence[str], status: str) -> Answer:
        """A skip is {}; a label question takes the one label; a labels question the list (maybe empty)."""
        if status != "submitted":
            return {}
        if self.kind == "labels":
            return {self.name: list(labels)}
        return {self.name: labels[0]} if labels else {}


@dataclass(frozen=True)
class RecordImage:
    """A record's second, third... image (the first keeps the record's own columns, as before there were
    several): stored and checked like the first, its dataset or metadata column named in `column`."""
    column: str
    path: str
    sha256: str
    width: int
    height: int
    size_bytes: int


def encode_images(images: Sequence[RecordImage]) -> str:
    """The `more_images` column's JSON text (a list of objects; "[]" for a record of one image)."""
    return json.dumps([vars(i) for i in images], sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def decode_images(stored: str | None) -> tuple[RecordImage, ...]:
    """The `more_images` column read back (NULL or "[]": a record of one image)."""
    return tuple(RecordImage(**item) for item in json.loads(stored or "[]"))


@dataclass(frozen=True)
class NewRecord:
    """A record as ingest hands it over; the store assigns the id."""
    source_key: str
    image_path: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    suggestion: str | None = None
    more_images: tuple[RecordImage, ...] = ()


@dataclass(frozen=True)
class Record:
    id: int
    source_key: str
    image_path: str
    sha256: str
    width: int
    height: int
    size_bytes: int
    metadata: dict[str, Any]
    suggestion: str | None
    position: int
    extra_answers: int
    more_images: tuple[RecordImage, ...] = ()

    @property
    def image_count(self) -> int:
        return 1 + len(self.more_images)

    def image(self, number: int) -> tuple[str, str, int, int]:
        """Image `number` (1 is the record's own) as (path, sha256, width, height); IndexError past the last."""
        if number == 1:
            return self.image_path, self.sha256, self.width, self.height
        if not 2 <= number <= self.image_count:
            raise IndexError(number)
        more = self.more_images[number - 2]
        return more.path, more.sha256, more.width, more.height


@dataclass(frozen=True)
class Response:
    record_id: int
    user_id: str
    status: str
    answer: Answer
    comment: str | None
    time_spent_ms: int | None
    created_at: datetime
    updated_at: datetime

    __hash__ = None  # type: ignore[assignment]  # the answer is a dict: equal rows compare, none is a key


# --- write operations: what the writer thread hands to a store's apply() --------

@dataclass(frozen=True)
class ResponseWrite:
    """One person's answer (or skip) for one record; a later one replaces it."""
    record_id: int
    user_id: str
    status: str  # "submitted" | "skipped"
    answer: Answer
    comment: str | None
    time_spent_ms: int | None
    at: datetime
    first: bool = False  # no earlier answer by this person (the service or the scheduler knows): a plain insert

    __hash__ = None  # type: ignore[assignment]  # the answer is a dict: equal ops compare, none is a key


@dataclass(frozen=True)
class UserSeen:
    user_id: str
    at: datetime


@dataclass(frozen=True)
class AuditWrite:
    actor: str
    action: str
    detail: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class ReopenWrite:
    """Ask for `extra` more answers on a record than the task's overlap."""
    record_id: int
    extra: int


@dataclass(frozen=True)
class FinalWrite:
    """An admin's final answer to a record (issue 17, adjudication); `answer` None takes it back."""
    record_id: int
    answer: Answer | None
    admin: str
    at: datetime

    __hash__ = None  # type: ignore[assignment]  # the answer is a dict


@dataclass(frozen=True)
class GoldHandout:
    """A gold record was leased to a person (issue 17): stored so that after a restart it is still never handed
    to them again, even when that lease lapsed unanswered."""
    user_id: str
    record_id: int


WriteOp = Union[ResponseWrite, UserSeen, AuditWrite, ReopenWrite, FinalWrite, GoldHandout]


@dataclass(frozen=True)
class Final:
    """A record's final answer, set by an admin over the answers given; the export prefers it to the consensus."""
    record_id: int
    answer: Answer
    admin: str
    at: datetime  # naive UTC

    __hash__ = None  # type: ignore[assignment]  # the answer is a dict


def latest_finals(ops: Sequence[WriteOp]) -> tuple[list[FinalWrite], list[int]]:
    """A batch's final answers as a store writes them: the last write per record wins; (to set, to clear)."""
    latest = {op.record_id: op for op in ops if isinstance(op, FinalWrite)}
    return ([op for op in latest.values() if op.answer is not None],
            [rid for rid, op in latest.items() if op.answer is None])


@dataclass(frozen=True)
class LastPush:
    """What an export repo last received, as any replica's exporter recorded it."""
    fingerprint: str
    commit_url: str | None
    pushed_at: datetime  # naive UTC, like every timestamp in the stores


# --- assignment: what the in-memory scheduler and the PostgreSQL leases both answer --

SubmitOutcome = Literal["new", "edit", "late"]
LeaseKind = Literal["soft", "hard"]


@dataclass(frozen=True)
class QueueState:
    """What a user's queue looks like right now.

    ready: `record_id` is (or, from `state`, would be) theirs to annotate.
    waiting: everything left for them is leased by others; `held_by_others`
    records, the first lease ends at `frees_at` unless its holder stays active.
    done: nothing is left that they could annotate.
    quota: they gave the most answers one person gives (issue 17); work may remain for others.
    """

    kind: Literal["ready", "waiting", "done", "quota"]
    record_id: int | None = None
    held_by_others: int = 0
    frees_at: float | None = None


# --- shared rules -----------------------------------------------------------------

RecordStatus = Literal["complete", "partial", "skipped", "untouched"]


def record_status(submitted: int, need: int, skipped: int = 0) -> RecordStatus:
    """Where a record stands: complete, partly done, only skipped, or untouched.

    `need` is the task's overlap plus the extra answers a reopen asked for.
    Complete when the submitted answers reach it; partly done with at least
    one submitted answer but fewer. Skips are not answers: a record with
    skips and no submitted answer is "skipped" when `skipped` is given, and
    "untouched" when it is left 0. The scheduler, the PostgreSQL leases, the
    stats command and the export publish three classes (complete / partial /
    untouched) and leave it 0; the dashboard passes it to show the fourth.
    """
    if submitted >= need:
        return "complete"
    if submitted:
        return "partial"
    return "skipped" if skipped else "untouched"


def hand_out_order(ids: Sequence[int], order: str, seed: int | None) -> list[int]:
    """The order records are handed out in: dataset order (`ids`), or the task's seeded shuffle of it.

    Both assignment engines take this order (records already started still come first).
    """
    ids = list(ids)
    if order == "shuffle":
        random.Random(seed).shuffle(ids)
    return ids
