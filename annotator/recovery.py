"""Writes the app could not commit before it stopped: kept in DATA_DIR, committed at the next start.

When the writer stops while storage fails (or a commit hangs), what it still
holds is saved with `save()` as one JSON-lines file under
`DATA_DIR/recovery/` (written to a temporary name, fsynced, renamed), never
over an earlier file. At the next start, before assignment is rebuilt,
`replay()` commits every such file once and deletes it only after the
commit:

- an answer is written only when the store has no answer of that person to
  that record, or an older one (updated_at): never over a newer answer, and
  never twice (the same op committed before the stop has the same time);
- an audit entry only when no entry with its time, actor and action exists;
- a final answer (an admin's, issue 17) is written as it is: the latest
  write of a record's final wins, and replaying one that was committed
  changes nothing but its time;
- user sightings are idempotent; a reopen (more answers asked for) is
  replayed as it is (it carries no time to compare; it is only spilled when
  its commit failed).

File format, version 2: the first line is a header
`{"kind": "annotator-unsaved-writes", "version": 2, "ops": N, "written_at": ISO}`;
each further line one op: `{"type": "response" | "user_seen" | "audit" |
"reopen" | "final", ...its fields}` (a final's answer null: taken back), times as naive-UTC ISO strings, a response's
answer as its typed object (model.Answer). Version 1 files, written before
typed answers, hold the answer as a list of labels; they are read through the
task's first question (model.LegacyQuestion), as the store migration reads them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from annotator.files import fsync_dir, write_atomic
from annotator.model import (AuditWrite, FinalWrite, GoldHandout, LegacyQuestion, ReopenWrite, ResponseWrite, UserSeen,
                             WriteOp, utcnow)
from annotator.store_protocol import StoreProtocol
from annotator.writer import Writer, WriteRejected

log = logging.getLogger(__name__)

FOLDER = "recovery"
KIND = "annotator-unsaved-writes"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: answers as lists of labels


class RecoveryError(RuntimeError):
    """A recovery file cannot be read or committed; the message names the file and what to do."""


@dataclass(frozen=True)
class Replayed:
    """What `replay` did with one file."""
    path: Path
    ops: int
    committed: int
    already_stored: int
    refused: int

    def summary(self) -> str:
        return (f"committed {self.committed} of {self.ops} writes the last run could not save, from {self.path} "
                f"({self.already_stored} were already stored, {self.refused} refused); the file is removed")


# --- the file format ---------------------------------------------------------------------------


def encode(op: WriteOp) -> dict[str, Any]:
    if isinstance(op, ResponseWrite):
        return {"type": "response", "record_id": op.record_id, "user_id": op.user_id, "status": op.status,
                "answer": op.answer, "comment": op.comment, "time_spent_ms": op.time_spent_ms,
                "at": op.at.isoformat()}
    if isinstance(op, UserSeen):
        return {"type": "user_seen", "user_id": op.user_id, "at": op.at.isoformat()}
    if isinstance(op, AuditWrite):
        # as the store keeps it: a detail that is not JSON becomes text
        return {"type": "audit", "actor": op.actor, "action": op.action,
                "detail": json.loads(json.dumps(op.detail, default=str)), "at": op.at.isoformat()}
    if isinstance(op, ReopenWrite):
        return {"type": "reopen", "record_id": op.record_id, "extra": op.extra}
    if isinstance(op, FinalWrite):
        return {"type": "final", "record_id": op.record_id, "answer": op.answer, "admin": op.admin,
                "at": op.at.isoformat()}
    if isinstance(op, GoldHandout):
        return {"type": "gold_handout", "user_id": op.user_id, "record_id": op.record_id}
    raise TypeError(f"not a write op: {op!r}")


def decode(row: dict[str, Any], legacy: LegacyQuestion | None = None) -> WriteOp:
    """The op of one line; a list answer (a version 1 file) is read as an answer to `legacy`."""
    kind = row["type"]
    if kind == "response":
        answer = row["answer"]
        if isinstance(answer, list):
            if legacy is None:
                raise ValueError("its answers are lists of labels, from before typed answers, and the task's first "
                                 "question is not a label or labels question to give them to")
            answer = legacy.answer(answer, row["status"])
        elif not isinstance(answer, dict):
            raise ValueError(f"an answer is {type(answer).__name__}, not an object")
        # first=False: replayed answers take the careful path (upsert, the replaced answer to the history)
        return ResponseWrite(int(row["record_id"]), row["user_id"], row["status"], answer,
                             row["comment"], row["time_spent_ms"], datetime.fromisoformat(row["at"]))
    if kind == "user_seen":
        return UserSeen(row["user_id"], datetime.fromisoformat(row["at"]))
    if kind == "audit":
        return AuditWrite(row["actor"], row["action"], row["detail"], datetime.fromisoformat(row["at"]))
    if kind == "reopen":
        return ReopenWrite(int(row["record_id"]), int(row["extra"]))
    if kind == "final":
        return FinalWrite(int(row["record_id"]), row["answer"], row["admin"], datetime.fromisoformat(row["at"]))
    if kind == "gold_handout":
        return GoldHandout(row["user_id"], int(row["record_id"]))
    raise ValueError(f"unknown op type {kind!r}")


def save(data_dir: Path, ops: Sequence[WriteOp]) -> Path:
    """Write `ops` to a new file under DATA_DIR/recovery (atomic: temp file, fsync, rename); its path."""
    folder = data_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
    final = folder / f"unsaved-{stamp}-{os.getpid()}.jsonl"
    lines = [json.dumps({"kind": KIND, "version": VERSION, "ops": len(ops), "written_at": utcnow().isoformat()})]
    lines += [json.dumps(encode(op), sort_keys=True) for op in ops]  # ASCII: any string survives the round trip
    write_atomic(final, ("\n".join(lines) + "\n").encode("ascii"), durable=True)
    return final


def pending(data_dir: Path) -> list[Path]:
    """The recovery files waiting to be committed, oldest first."""
    folder = data_dir / FOLDER
    return sorted(folder.glob("unsaved-*.jsonl")) if folder.is_dir() else []


def load(path: Path, legacy: LegacyQuestion | None = None) -> list[WriteOp]:
    """The ops of a recovery file; `legacy` reads the list answers of a version 1 file (see decode)."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
        header = json.loads(lines[0]) if lines else {}
        if header.get("kind") != KIND or header.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"not a version {' or '.join(map(str, READABLE_VERSIONS))} recovery file "
                             f"(header {lines[0][:200] if lines else ''!r})")
        ops = [decode(json.loads(line), legacy) for line in lines[1:] if line.strip()]
        if len(ops) != header.get("ops"):
            raise ValueError(f"the header announces {header.get('ops')} ops, the file holds {len(ops)}")
        return ops
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecoveryError(f"cannot read the recovery file {path} ({exc}); it holds writes the last run could "
                            f"not commit. Move it out of {path.parent} to start without them.") from None


# --- committing at start ---------------------------------------------------------------------


def replay(store: StoreProtocol, data_dir: Path, *, legacy: LegacyQuestion | None = None,
           timeout: float = 60.0) -> list[Replayed]:
    """Commit every pending recovery file once, oldest first, and delete each after its commit.

    Runs before the app's writer starts (nothing else writes meanwhile).
    Raises RecoveryError, keeping the file, when storage does not take the
    writes within `timeout`. `legacy`: see load.
    """
    done = []
    for path in pending(data_dir):
        ops = load(path, legacy)
        todo = _not_stored(store, ops)
        refused = _commit(store, todo, path, timeout)
        path.unlink()
        fsync_dir(path.parent)
        result = Replayed(path, len(ops), len(todo) - refused, len(ops) - len(todo), refused)
        log.warning("recovery: %s", result.summary())
        done.append(result)
    return done


def _not_stored(store: StoreProtocol, ops: Iterable[WriteOp]) -> list[WriteOp]:
    out: list[WriteOp] = []
    stored: dict[tuple[int, str], datetime | None] = {}
    for op in ops:
        if isinstance(op, ResponseWrite):
            key = (op.record_id, op.user_id)
            if key not in stored:
                current = store.response(*key)
                stored[key] = current.updated_at if current is not None else None
            if stored[key] is not None and stored[key] >= op.at:  # type: ignore[operator]
                continue  # committed before the stop, or a newer answer came since
        elif isinstance(op, AuditWrite) and store.audit_exists(op):
            continue
        out.append(op)
    return out


def _commit(store: StoreProtocol, ops: list[WriteOp], path: Path, timeout: float) -> int:
    """Commit through a Writer (data errors isolated as in the app); how many were refused for good."""
    if not ops:
        return 0
    writer: Writer[WriteOp] = Writer(store.apply, refuses=store.refuses, spill=lambda _: str(path),
                                     name="annotator-recovery")
    with writer:
        acks = [writer.put(op) for op in ops]
        if not writer.flush(timeout):
            raise RecoveryError(f"storage did not take the {len(ops)} writes of the recovery file {path} within "
                                f"{timeout:.0f}s ({writer.failure() or 'no error reported'}); the file is kept and "
                                f"committed at the next start. Check that DATA_DIR (or STORE_URL) can be written.")
    return sum(isinstance(ack.exception(0), WriteRejected) for ack in acks)


