"""The domain: records, answers and the writes that change them.

Plain data, importing nothing from the rest of the app, so the stores, the
schedulers, the service, the dashboard and the export take their types from
one place. Timestamps are naive UTC everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Union

__all__ = [
    "AuditWrite", "LastPush", "LeaseKind", "NewRecord", "QueueState", "Record", "ReopenWrite", "Response",
    "ResponseWrite", "StoreClosedError", "StoreError", "SubmitOutcome", "UserSeen", "WriteOp", "utcnow",
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


@dataclass(frozen=True)
class Response:
    record_id: int
    user_id: str
    status: str
    answer: tuple[str, ...]
    comment: str | None
    time_spent_ms: int | None
    created_at: datetime
    updated_at: datetime


# --- write operations: what the writer thread hands to a store's apply() --------

@dataclass(frozen=True)
class ResponseWrite:
    """One person's answer (or skip) for one record; a later one replaces it."""
    record_id: int
    user_id: str
    status: str  # "submitted" | "skipped"
    answer: tuple[str, ...]
    comment: str | None
    time_spent_ms: int | None
    at: datetime
    first: bool = False  # no earlier answer by this person (the service or the scheduler knows): a plain insert


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


WriteOp = Union[ResponseWrite, UserSeen, AuditWrite, ReopenWrite]


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
    """

    kind: Literal["ready", "waiting", "done"]
    record_id: int | None = None
    held_by_others: int = 0
    frees_at: float | None = None
