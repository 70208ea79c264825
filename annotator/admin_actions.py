"""The admin actions as business rules: who may, what is valid, what is audited.

Every action takes the caller's Identity and refuses anyone who is not an
admin (`Access.require_admin` raises AuthError) before it reads or changes
anything; a refused or invalid request changes nothing and writes no audit
row. An action that is carried out writes one audit row (actor, action,
detail) through the writer and waits briefly for it to commit, so the
result can say whether the audit entry is saved.

Bad input raises `InputError` (from the service) with a message for the
organizer; the view shows it next to the action.

Review and adjudication (issue 17): `review_queue` and `review_record` read
what an admin settles, `set_final` / `clear_final` write the final answer
(through the writer, like every other write) and audit it with the answer.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shutil
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from annotator.answers import AnswerError, check_answer
from annotator.auth import Access, Identity
from annotator.backend import WorkBackend
from annotator.config import Settings
from annotator.task import TaskSpec
from annotator.export.hub import Exporter
from annotator.export.local import export_local
from annotator.model import Answer, Record
from annotator.nicknames import ACTION as NICKNAME, current_nicknames
from annotator.reports import EXPORT_NOT_CONFIGURED
from annotator.review import ReviewItem, review_item as build_review_item, review_queue as build_review_queue
from annotator.service import AnnotationService, InputError, checked_text
from annotator.store_protocol import StoreProtocol
from annotator.writer import WriteRejected

__all__ = ["ActionResult", "AdminDeps", "DownloadFolders", "MAX_EXTRA", "active_settings", "audit_log",
           "clear_final", "clear_nickname", "export_now", "prepare_downloads", "release_user", "reopen_record",
           "review_queue", "review_record", "set_final", "set_quota"]

MAX_EXTRA = 10
MAX_QUOTA = 1_000_000
AUDIT_WAIT = 5.0


@dataclass(frozen=True)
class AdminDeps:
    """What the admin actions use, handed over by the composition root (`Runtime.admin_deps`)."""
    settings: Settings               # the export repo, the images folder, the settings shown
    task: TaskSpec
    store: StoreProtocol                  # the local export and the audit log, read
    backend: WorkBackend             # records, reopen, and the audit rows written
    service: AnnotationService       # releasing a person's records
    exporter: Exporter | None        # None when EXPORT_REPO is unset


@dataclass(frozen=True)
class ActionResult:
    action: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)
    audited: bool = False            # the audit row is committed

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "message": self.message, "detail": self.detail, "audited": self.audited}


def export_now(deps: AdminDeps, who: Identity) -> ActionResult:
    """Ask the exporter for a push now; its outcome shows in the dashboard's health (last export)."""
    Access.require_admin(who)
    exporter = deps.exporter
    if exporter is None:
        raise InputError(EXPORT_NOT_CONFIGURED)
    try:
        exporter.trigger()
    except RuntimeError as exc:  # the exporter is stopped (shutting down)
        raise InputError(f"export cannot start: {exc}") from None
    repo = deps.settings.export_repo or ""
    return _audited(deps, who, "export_now", {"repo": repo},
                    f"Export to {repo} started; its result shows under Health, last export.")


class DownloadFolders:
    """One folder of prepared downloads per admin, under `root`; preparing again replaces the last one.

    Each "Prepare downloads" writes a full copy of the results with their
    images: one per admin is kept (the one their page links to), never one per
    click. `root` is where the UI can serve files from without copying them
    (Gradio's cache folder). Folder names are random (128 bits), so a link
    cannot be guessed. Thread-safe.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._latest: dict[str, Path] = {}
        self._lock = threading.Lock()

    def fresh(self) -> Path:
        """A new empty folder, readable by this user only."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.root / f"annotator-export-{secrets.token_hex(16)}"
        folder.mkdir(mode=0o700)
        return folder

    def keep(self, admin: str, folder: Path) -> None:
        """`folder` is now `admin`'s downloads: the one it replaces is removed."""
        with self._lock:
            previous, self._latest[admin] = self._latest.get(admin), folder
        if previous is not None and previous != folder:
            shutil.rmtree(previous, ignore_errors=True)


def prepare_downloads(deps: AdminDeps, who: Identity, folders: DownloadFolders) -> tuple[list[Path], ActionResult]:
    """Write the results as local files (Parquet with images, JSONL, CSV) for the admin to download.

    The files go to a fresh folder of `folders`, replacing this admin's previous
    one; they are handed only to the admin who asked, under an unguessable URL.
    """
    Access.require_admin(who)
    out_dir = folders.fresh()
    try:
        written = export_local(deps.store, deps.task, out_dir, deps.settings.images_dir,
                               box_iou=deps.settings.box_iou, gold=deps.service.gold)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    folders.keep(who.name, out_dir)
    files = sorted(written.files.values())
    summary = written.summary
    return files, _audited(deps, who, "download_export", {"files": [f.name for f in files]},
                           f"{summary.records} records and {summary.responses} answers written as "
                           f"{len(files)} files in {written.seconds:.1f} s.")


def release_user(deps: AdminDeps, who: Identity, user: object) -> ActionResult:
    """End every lease `user` holds (records on screen and in the prefetch buffer) at once."""
    Access.require_admin(who)
    name = _user_name(user, "whose records to release")
    released = deps.service.release(name)
    message = (f"Released {released} record(s) held by {name}; others can take them now." if released
               else f"{name} held no records; nothing to release.")
    return _audited(deps, who, "release_user", {"user": name, "released": released}, message)


def reopen_record(deps: AdminDeps, who: Identity, record_id: object, extra: object) -> ActionResult:
    """Ask for `extra` (1..MAX_EXTRA) more answers on one record than it needs now."""
    Access.require_admin(who)
    rid = _whole(record_id, "record id")
    more = _whole(extra, "number of extra answers")
    if not 1 <= more <= MAX_EXTRA:
        raise InputError(f"Ask for 1 to {MAX_EXTRA} extra answers, not {more}.")
    record = deps.backend.records([rid]).get(rid) if rid > 0 else None
    if record is None:
        raise InputError(f"There is no record {rid}; use an id from the export or the records table.")
    try:
        deps.backend.reopen(rid, more)
    except KeyError:
        raise InputError(f"Record {rid} is not in this run's queue; restart the app to include it.") from None
    need = deps.task.overlap + record.extra_answers + more
    return _audited(deps, who, "reopen", {"record_id": rid, "extra": more},
                    f"Record {rid} reopened: it now needs {need} answers.")


def set_quota(deps: AdminDeps, who: Identity, user: object, quota: object) -> ActionResult:
    """Give one annotator their own quota (1..MAX_QUOTA answers), or none ("" or "none": no limit).

    Overrides the task's max_answers_per_person for that person on every replica; records they hold
    stay theirs. The audit row is also how a DuckDB run remembers it after a restart."""
    Access.require_admin(who)
    name = _user_name(user, "whose quota to set")
    limit: int | None
    if quota is None or (isinstance(quota, str) and quota.strip().lower() in ("", "none")):
        limit = None
    else:
        limit = _whole(quota, "quota")
        if not 1 <= limit <= MAX_QUOTA:
            raise InputError(f"A quota is 1 to {MAX_QUOTA:,} answers (or none for no limit), not {limit}.")
    deps.backend.set_quota(name, limit)
    default = deps.task.quality.max_answers_per_person
    message = (f"{name} may now give {limit} answers (the task's quota is "
               f"{default if default is not None else 'none'})." if limit is not None
               else f"{name} may now give answers without a limit.")
    return _audited(deps, who, "set_quota", {"user": name, "quota": limit}, message)


def set_final(deps: AdminDeps, who: Identity, record_id: object, answer: object) -> ActionResult:
    """Settle a record: the admin's answer becomes its final one, which the export prefers to the consensus.

    `answer` is an answer as annotators send it (or its JSON text), checked against the task and the
    record's image size as theirs are; a gold record takes none (its answer is known). Setting it again
    replaces it."""
    Access.require_admin(who)
    record = _reviewable(deps, record_id)
    if isinstance(answer, str):  # the API's JSON text; a text that is no JSON may be a label's name
        try:
            answer = json.loads(answer)
        except ValueError:
            pass
        except RecursionError:  # nested past Python's limit: no task's answer is
            raise InputError(f"Record {record.id}: that answer is nested too deeply to be one; send an object "
                             f"with a value per question.") from None
    try:
        checked = check_answer(deps.task, answer, (record.width, record.height))
    except AnswerError as exc:
        raise InputError(f"Record {record.id}: {exc}") from None
    if not checked:
        raise InputError(f"Record {record.id}: a final answer needs a value for at least one question.")
    _write_final(deps, who, record.id, checked)
    return _audited(deps, who, "set_final", {"record_id": record.id, "answer": checked},
                    f"Record {record.id} now has the final answer {_shown(checked)}.")


def clear_final(deps: AdminDeps, who: Identity, record_id: object) -> ActionResult:
    """Take a record's final answer back: the export uses the consensus again."""
    Access.require_admin(who)
    record = _reviewable(deps, record_id)
    if deps.store.final(record.id) is None:
        raise InputError(f"Record {record.id} has no final answer; nothing to take back.")
    _write_final(deps, who, record.id, None)
    return _audited(deps, who, "clear_final", {"record_id": record.id},
                    f"Record {record.id}'s final answer is taken back; the export uses the consensus again.")


def review_queue(deps: AdminDeps, who: Identity, label: object = None, annotator: object = None
                 ) -> list[ReviewItem]:
    """The records people answered, lowest agreement first, each with every answer, the consensus and the
    final; `label` / `annotator` ("" or None: any) narrow it down. Reading it is not audited."""
    Access.require_admin(who)
    wanted = [_filter(v, what) for v, what in ((label, "label"), (annotator, "annotator"))]
    responses = (r for batch in deps.store.iter_responses() for r in batch)
    return build_review_queue(deps.task, responses, deps.store.finals(), deps.service.gold,
                              label=wanted[0] or None, annotator=wanted[1] or None, box_iou=deps.settings.box_iou)


def _filter(value: object, what: str) -> str:
    """A review filter as text ("": any). Another type is refused: taken as "any", a script's mistake would
    list every record as if it had matched."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"The {what} to filter by must be text (empty: any), not {type(value).__name__}.")
    return value.strip()


def review_record(deps: AdminDeps, who: Identity, record_id: object) -> tuple[Record, ReviewItem]:
    """One record to settle: the record (its images and size) and its answers, consensus and final."""
    Access.require_admin(who)
    record = _reviewable(deps, record_id)
    answers = [(r.user_id, r.answer) for r in deps.store.record_responses(record.id) if r.status == "submitted"]
    return record, build_review_item(deps.task, record.id, answers, deps.store.final(record.id),
                                     deps.settings.box_iou)


def _reviewable(deps: AdminDeps, record_id: object) -> Record:
    """The record a final answer is about: it exists and is not gold (InputError otherwise)."""
    rid = _whole(record_id, "record id")
    record = deps.backend.records([rid]).get(rid) if rid > 0 else None
    if record is None:
        raise InputError(f"There is no record {rid}; use an id from the review list or the export.")
    if rid in deps.service.gold:
        raise InputError(f"Record {rid} is a gold record: its answer is known, so it takes no final answer.")
    return record


def _write_final(deps: AdminDeps, who: Identity, record_id: int, answer: Answer | None) -> None:
    """Queue the final answer and wait briefly for its commit; a write storage refuses changes nothing."""
    try:
        deps.backend.set_final(record_id, answer, who.name).result(timeout=AUDIT_WAIT)
    except FutureTimeout:
        pass  # queued: the writer commits it (the message of the audit says when storage is slow)
    except WriteRejected as exc:
        raise InputError(f"Record {record_id}: storage refused the final answer ({exc.cause}); nothing changed."
                         ) from None


def _shown(answer: Answer) -> str:
    """An answer for a message: compact JSON, long ones cut."""
    text = json.dumps(answer, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def clear_nickname(deps: AdminDeps, who: Identity, user: object) -> ActionResult:
    """Take one person's nickname off the projector's leaderboard (a rude one in a live room): they show
    as their number again, and nobody may choose that nickname again (annotator.nicknames).

    Nicknames are audit entries, so the audit row written here is the change itself."""
    Access.require_admin(who)
    name = _user_name(user, "whose nickname to clear")
    current = current_nicknames(deps.store.audit_entries(NICKNAME)).get(name)
    if current is None:
        raise InputError(f"{name} has no nickname on the leaderboard; nothing to clear.")
    return _audited(deps, who, NICKNAME, {"user": name, "nickname": "", "cleared": current},
                    f"{name}'s nickname {current!r} is cleared: the room's screen shows them as a number from its "
                    f"next update, and nobody can choose that nickname again.")


def active_settings(deps: AdminDeps, who: Identity) -> tuple[dict[str, str], ActionResult]:
    """The settings in force, by environment name, secrets masked."""
    Access.require_admin(who)
    items = deps.settings.public_items()
    return items, _audited(deps, who, "view_settings", {}, f"{len(items)} settings in force.")


def audit_log(deps: AdminDeps, who: Identity, limit: int = 20) -> list[tuple[datetime, str, str, dict[str, Any]]]:
    """The latest audit entries, newest first: (at, actor, action, detail). Reading it is not audited."""
    Access.require_admin(who)
    return deps.store.audit_log(limit)


def _user_name(user: object, purpose: str) -> str:
    """The annotator an action names, checked: it goes into the audit log."""
    name = user.strip() if isinstance(user, str) else ""
    if not name or len(name) > 200:
        raise InputError(f"Name the annotator {purpose} (their user name, as in the table).")
    checked_text(name, "The user name")
    return name


def _whole(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise InputError(f"The {what} must be a whole number.")
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only: float() also reads "١٢" (Arabic-Indic digits) as 12
        if not re.fullmatch(r"[+-]?[0-9]{1,18}(\.0*)?", text):
            raise InputError(f"The {what} must be a whole number, not {text[:40]!r}.")
        value = float(text)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and abs(value) < 2**63:  # what the store's BIGINT holds
        return value
    raise InputError(f"The {what} must be a whole number.")


def _audited(deps: AdminDeps, who: Identity, action: str, detail: dict[str, Any], message: str) -> ActionResult:
    ack = deps.backend.audit(who.name, action, detail)
    try:
        ack.result(timeout=AUDIT_WAIT)
        audited = True
    except FutureTimeout:
        audited = False
        message += " (The audit entry is queued; storage is slow to commit it.)"
    except WriteRejected as exc:  # the action was carried out; only its record in the audit log is missing
        audited = False
        message += f" (The audit entry could not be saved: {exc.cause}.)"
    return ActionResult(action, message, detail, audited)
