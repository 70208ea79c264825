"""The operations people perform: next, submit, skip, back, release, progress; and a person's tabs.

Every method here is on the click path and touches memory only: the
scheduler decides, the writer queues, the prefetch buffer has the next
record ready. The rules (which record a person may answer, what counts as
a repeat; what a valid answer is, from annotator.answers) are applied here,
not in the UI.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter, OrderedDict
from concurrent import futures
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Mapping, Sequence

from annotator.answers import AnswerError, check_answer, suggested_answer
from annotator.auth import Identity
from annotator.backend import WorkBackend
from annotator.goal import Goal
from annotator.gold import GoldAnswer, QuotaFull, quota_late_message, quota_message, visible_metadata
from annotator.task import TaskSpec
from annotator.images import ImageCache, ImageError, Rendition
from annotator.metrics import LatencyWindow
from annotator.model import Answer, Record, ResponseWrite, utcnow
from annotator.prefetch import PrefetchBuffers, Slot
from annotator.text import TextError, check_text
from annotator.tickets import Signer, TicketError
from annotator.writer import WriteRejected

log = logging.getLogger(__name__)

_REMEMBERED_TICKETS = 512
# waits for a commit one person may hold at once (two tabs and a retry); more are answered at once
MAX_SAVED_WAITS = 3


class InputError(ValueError):
    """The request is wrong; the message tells the person what to do instead."""


def checked_text(value: str, what: str) -> str:
    """`value` if a store can keep it (text.check_text), else InputError with the reason."""
    try:
        return check_text(value, what)
    except TextError as exc:
        raise InputError(str(exc)) from None


@dataclass(frozen=True)
class PersonProgress:
    """One person's counts and the team's, as their page shows them."""
    mine_today: int
    mine_total: int
    team_complete: int
    team_total: int
    team_answers: int
    remaining_for_me: int
    goal_share: float = 0.0  # projector (issue 17): mine_total as % of the answers GOAL takes (annotator/goal.py)


@dataclass(frozen=True)
class SaveStatus:
    """How many of this person's answers are still waiting for a commit, and which could never be saved."""
    pending: int
    retrying: bool
    error: str | None
    # answers refused for good since the last status (writer.WriteRejected): said once, and the record
    # is open to this person again
    rejected: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.rejected:
            more = f" ({len(self.rejected)} answers were refused.)" if len(self.rejected) > 1 else ""
            return self.rejected[0] + more
        if self.retrying:
            return "Not saved yet: storage is failing, your answers are kept and retried"
        if self.pending:
            return "Saving…"
        return "All answers saved"


@dataclass(frozen=True)
class Shown:
    """A record on screen: what the page needs to show it and to answer it."""
    ticket: str
    record_id: int
    image_url: str
    width: int
    height: int
    suggestion: Answer  # per question (answers.suggested_answer); {} when none
    metadata: dict[str, Any]
    # every image of the record, the first being image_url's: {"url", "width", "height"}; and the task's
    # [record] texts this record holds: {"name", "text"}
    images: tuple[dict[str, Any], ...] = ()
    texts: tuple[dict[str, str], ...] = ()
    answer: Answer = field(default_factory=dict)  # the earlier answer when editing; {} for a skip or none
    comment: str = ""
    editing: bool = False
    previous_status: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.ticket, "record_id": self.record_id, "image_url": self.image_url,
                "width": self.width, "height": self.height, "suggestion": self.suggestion,
                "metadata": self.metadata, "answer": self.answer, "comment": self.comment,
                "editing": self.editing, "images": list(self.images), "texts": list(self.texts)}


@dataclass(frozen=True)
class View:
    state: Literal["ready", "waiting", "done", "quota"]
    progress: PersonProgress
    saved: SaveStatus
    record: Shown | None = None
    # the buffered records that come next, each with its ticket: the page answers and swaps to them
    # without waiting for the server, which hands them out in this order
    upcoming: tuple[Shown, ...] = ()
    held_by_others: int = 0
    frees_at: float | None = None
    message: str | None = None
    # after a gold answer with feedback on (issue 17): the expected answer and why (GoldAnswer.feedback)
    feedback: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The programmatic API's answer: plain JSON types only."""
        out = {"state": self.state, "item": self.record.as_dict() if self.record else None,
               "preload": [i["url"] for u in self.upcoming for i in u.images], "upcoming": [u.as_dict() for u in self.upcoming],
               "held_by_others": self.held_by_others, "frees_at": self.frees_at,
               "message": self.message, "saved": self.saved.text, "pending": self.saved.pending,
               "retrying": self.saved.retrying, "rejected": list(self.saved.rejected),
               "progress": vars(self.progress)}
        if self.feedback is not None:
            out["feedback"] = self.feedback
        return out


@dataclass
class _Person:
    """What the service remembers of one annotator while the process runs."""
    answers: dict[int, tuple[str, Answer, str]]  # record -> (status, answer, comment)
    order: list[int]  # records in the order first answered
    today: set[int]  # records submitted (or changed to submitted) today; skips do not count
    today_date: str
    pending: dict[int, Future[None]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)  # refusals not told yet (see SaveStatus.rejected)
    shown_at: dict[int, float] = field(default_factory=dict)  # record -> when last shown
    used_tickets: OrderedDict[str, None] = field(default_factory=OrderedDict)
    # record -> the ticket of its current showing: showing the same record again (a repeated key
    # press, a second tab, `next` twice) hands out the same ticket until it is used, so a burst of
    # presses carries one ticket and counts once
    issued: dict[int, str] = field(default_factory=dict)
    saved_waits: int = 0  # requests of this person waiting for a commit right now (MAX_SAVED_WAITS)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # one click of this person at a time (answer, next, back), so a press never sees the state
    # half-way through the previous one; different people never wait for each other
    serial: threading.RLock = field(default_factory=threading.RLock)


class AnnotationService:
    """Lifecycle: `start()` runs the lease sweeper; `close()` stops it and the prefetch pool."""

    def __init__(self, task: TaskSpec, backend: WorkBackend, prefetch: PrefetchBuffers, signer: Signer,
                 images: ImageCache, *, max_comment_chars: int = 2000, sweep_every: float = 5.0,
                 goal: Goal = Goal(), gold: Mapping[int, GoldAnswer] | None = None) -> None:
        self.task = task
        # gold records (issue 17): placed by the backend; here their answers are left out of every count of
        # work done and, with feedback on or during the warm-up, answered with the expected answer
        self.gold: Mapping[int, GoldAnswer] = gold or {}
        self.goal = goal  # projector (issue 17): each person's share of it in their progress
        self.backend = backend
        self.prefetch = prefetch
        self.signer = signer
        self.images = images
        self.max_comment_chars = max_comment_chars
        self.click_latency = LatencyWindow()
        self._people: dict[str, _Person] = {}
        self._people_lock = threading.Lock()
        self._screens: dict[str, Slot] = {}  # the record each person has on screen
        self._tabs: dict[str, str] = {}  # open tab (Gradio session) -> the person in it
        self._open_tabs: Counter[str] = Counter()  # person -> how many tabs they have open
        self._tabs_lock = threading.Lock()
        self._stop = threading.Event()
        self._sweep_every = sweep_every
        self._sweeper = threading.Thread(target=self._sweep, name="lease-sweeper", daemon=True)

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self._sweeper.start()

    def close(self) -> None:
        self._stop.set()
        if self._sweeper.is_alive():
            self._sweeper.join(5)
        self.prefetch.close()

    def _sweep(self) -> None:
        while not self._stop.wait(self._sweep_every):
            try:
                self.backend.expire()
            except Exception:
                log.exception("lease sweep failed")

    # --- the operations ----------------------------------------------------

    def next(self, who: Identity) -> View:
        """The record on screen for this person, or the next one, or why there is none."""
        started = time.perf_counter()
        person = self._person(who.name)
        self.backend.touch(who.name)
        with person.serial:
            view = self._advance(who.name, person)
        self.click_latency.add(time.perf_counter() - started)
        return view

    def submit(self, who: Identity, ticket: object, answer: object, comment: object = None,
               time_spent_ms: object = None) -> View:
        """Record an answer and return the next record at once; the commit follows in the background."""
        started = time.perf_counter()
        record_id, nonce = self._verify(ticket, who)
        try:
            checked = check_answer(self.task, answer, self._box_size(record_id))
        except AnswerError as exc:
            raise InputError(str(exc)) from None
        text = self._check_comment(comment)
        spent = self._check_time(time_spent_ms)
        view = self._answer(who.name, record_id, nonce, "submitted", checked, text, spent)
        self.click_latency.add(time.perf_counter() - started)
        return view

    def _box_size(self, record_id: int) -> tuple[int, int] | None:
        """The record's (width, height) that a boxes question's boxes must lie in; None (no read) when
        the task has no boxes question."""
        if not any(q.kind == "boxes" for q in self.task.questions):
            return None
        record = self.prefetch.rows([record_id]).get(record_id)
        if record is None:
            raise InputError("That record does not exist (any more). Reload the page.")
        return record.width, record.height

    def skip(self, who: Identity, ticket: object) -> View:
        started = time.perf_counter()
        record_id, nonce = self._verify(ticket, who)
        view = self._answer(who.name, record_id, nonce, "skipped", {}, "", None)
        self.click_latency.add(time.perf_counter() - started)
        return view

    def back(self, who: Identity, ticket: object = None) -> View:
        """Reopen the answer before the one on screen (or the latest), to look at or change it."""
        person = self._person(who.name)
        self.backend.touch(who.name)
        shown = None
        if ticket not in (None, ""):
            shown, _ = self._verify(ticket, who)
        with person.serial:
            return self._back(who.name, person, shown)

    def _back(self, user: str, person: _Person, shown: int | None) -> View:
        with person.lock:
            order = list(person.order)
        if shown in order:
            index = order.index(shown) - 1
        else:
            index = len(order) - 1
        if index < 0:
            if shown in order:
                return _with_message(self._show_answered(user, person, shown),
                                     "This is your first answer; there is none before it.")
            return _with_message(self._advance(user, person), "You have not answered anything yet.")
        return self._show_answered(user, person, order[index])

    def release(self, user: str) -> int:
        """The person's last session ended: free their leases at once (I4)."""
        self.prefetch.drop(user)
        self._screens.pop(user, None)
        return self.backend.release(user)

    def tab_opened(self, tab: str | None, user: str) -> None:
        """A page tab showed `user`'s view; `tab` names it until `tab_closed` (None: a caller with no tab)."""
        if not tab:
            return
        with self._tabs_lock:
            if self._tabs.get(tab) != user:
                if tab in self._tabs:
                    self._open_tabs[self._tabs[tab]] -= 1
                self._tabs[tab] = user
                self._open_tabs[user] += 1

    def tab_closed(self, tab: str | None) -> None:
        """A tab closed: when it was its person's last one, free their leases at once (I4)."""
        with self._tabs_lock:
            user = self._tabs.pop(tab, None) if tab else None
            if user is None:
                return
            self._open_tabs[user] -= 1
            last = self._open_tabs[user] <= 0
            if last:
                del self._open_tabs[user]
        if last:
            self.release(user)

    def cached_image(self, record_id: int, *, large: bool = False, number: int = 1) -> Rendition | None:
        """The record's rendered image `number` when its row is in memory and it is rendered already: no
        store read and no rendering, so the image route can answer on the event loop. None: ask `image`.
        `large`: the zoomed view's rendition (`ImageCache.large`)."""
        row = self.prefetch.row_in_memory(record_id)
        if row is None or not 1 <= number <= row.image_count:
            return None
        cache = self.images.large if large else self.images
        return cache.rendition(row.image(number)[1])

    def image(self, record_id: int, *, large: bool = False, number: int = 1) -> Rendition | None:
        """The record's rendered image `number`, read and rendered when needed (blocking: call it from a
        worker thread); None when there is no such record or image. Raises ImageError when it cannot be
        shown."""
        record = self.prefetch.rows([record_id]).get(record_id)
        if record is None or not 1 <= number <= record.image_count:
            return None
        path, sha256, _, _ = record.image(number)
        cache = self.images.large if large else self.images
        cache.prepare(sha256, path)
        found = cache.rendition(sha256)
        if found is None:
            raise ImageError(f"{path}: its rendition was removed while it was sent; reload the page")
        return found

    def progress(self, who: Identity, *, wait: float = 1.0) -> PersonProgress:
        """Counts that include this person's own answers: their commits are waited for (up to `wait`
        seconds, blocking) first and the team counts read afresh, since a shared backend counts what is
        committed. `wait=0`: the caller already waited; the cached counts do (the page's saved check,
        once per pause, must not cost a scan of every record on PostgreSQL)."""
        if wait > 0:
            self.wait_saved(who, wait, tell=False)
        return self._progress(who.name, self._person(who.name), fresh=wait > 0)

    def wait_saved(self, who: Identity, timeout: float, *, tell: bool = True) -> SaveStatus:
        """Block (a worker thread, e.g. the programmatic API's) until this person's pending answers
        are committed or refused, or `timeout` passes; the page's check uses `await_saved`, which holds
        no thread. `tell`: the status carries (and so uses up) the refusals not told yet."""
        person = self._person(who.name)
        with person.lock:
            pending = list(person.pending.values())
        futures.wait(pending, timeout)
        return self._saved(person, who.name, tell=tell)

    async def await_saved(self, who: Identity, timeout: float) -> tuple[SaveStatus, bool]:
        """On the event loop: wait until this person's pending answers are committed (or `timeout`).

        Returns (status, waited). No thread is held while waiting, and one person holds at most
        MAX_SAVED_WAITS waits at once: a further request gets the current status at once
        (waited False), so a tab or a script asking in a loop cannot pile up waiters. Giving up
        (timeout, or the request cancelled) never cancels an acknowledgement: an answer not yet
        committed is never counted as saved.
        """
        person = self._people.get(who.name)
        if person is None:  # not seen since the start: nothing pending, and no store read on the loop
            return SaveStatus(pending=0, retrying=False, error=None), False
        with person.lock:
            pending = list(person.pending.values())
            waiting = bool(pending) and person.saved_waits < MAX_SAVED_WAITS
            if waiting:
                person.saved_waits += 1
        if waiting:
            try:
                await asyncio.wait([asyncio.wrap_future(_settled(pending))], timeout=timeout)
            finally:
                with person.lock:
                    person.saved_waits -= 1
        return self._saved(person, who.name), waiting

    # --- internals -----------------------------------------------------------

    def _person(self, user: str) -> _Person:
        person = self._people.get(user)
        if person is not None:
            return person
        with self._people_lock:
            person = self._people.get(user)
            if person is None:
                # a name is stored with every answer: checked once, on first sight
                checked_text(user, "Your user name")
                # first sight in this process: one read of the person's earlier answers
                rows = self.backend.user_responses(user)
                today = _today()
                person = _Person(
                    answers={r.record_id: (r.status, r.answer, r.comment or "") for r in rows},
                    order=[r.record_id for r in rows],
                    today={r.record_id for r in rows
                           if r.status == "submitted" and r.updated_at.date().isoformat() == today},
                    today_date=today,
                )
                self._people[user] = person
                self.backend.user_seen(user)
        return person

    def _verify(self, ticket: object, who: Identity) -> tuple[int, str]:
        try:
            return self.signer.verify(ticket, who.name)
        except TicketError as exc:
            raise InputError(f"{exc}. Reload the page to get your next record.") from None

    def _check_comment(self, comment: object) -> str:
        if comment is None:
            return ""
        if not isinstance(comment, str):
            raise InputError("The comment must be text.")
        checked_text(comment, "The comment")
        if comment and not self.task.comment:
            raise InputError("This task takes no comments.")
        if len(comment) > self.max_comment_chars:
            raise InputError(f"The comment is too long ({len(comment)} characters); keep it to at most "
                             f"{self.max_comment_chars}.")
        return comment.strip()

    @staticmethod
    def _check_time(time_spent_ms: object) -> int | None:
        if time_spent_ms in (None, ""):
            return None
        if isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, (int, float)):
            raise InputError("time_spent_ms must be a number of milliseconds.")
        if isinstance(time_spent_ms, float) and not math.isfinite(time_spent_ms):  # JSON's NaN, Infinity, 1e400
            raise InputError("time_spent_ms must be a finite number of milliseconds.")
        return max(0, min(int(time_spent_ms), 86_400_000))

    def _answer(self, user: str, record_id: int, nonce: str, status: str, answer: Answer,
                comment: str, spent: int | None) -> View:
        person = self._person(user)
        self.backend.touch(user)
        with person.serial:
            return self._answer_locked(user, person, record_id, nonce, status, answer, comment, spent)

    def _answer_locked(self, user: str, person: _Person, record_id: int, nonce: str, status: str,
                       answer: Answer, comment: str, spent: int | None) -> View:
        with person.lock:
            # a first-answer ticket for a record this person already answered is a repeat too,
            # which still holds after a restart, when the used tickets are forgotten
            first_ticket = not self.signer.allows_edit(nonce)
            repeat = nonce in person.used_tickets or (first_ticket and self.backend.has_seen(user, record_id))
            if not repeat:
                person.used_tickets[nonce] = None
                person.issued.pop(record_id, None)
                while len(person.used_tickets) > _REMEMBERED_TICKETS:
                    person.used_tickets.popitem(last=False)
        if repeat:  # a key pressed twice, or a replay: the first one counted
            return _with_message(self._advance(user, person), "That answer was already recorded.")
        feedback = self._feedback(person, record_id, status, answer)
        with person.lock:
            shown = person.shown_at.pop(record_id, None)
        if spent is None and shown is not None:
            spent = int((time.monotonic() - shown) * 1000)
        # a first-answer ticket that is no repeat is a first answer (answers of one person are serial here)
        write = ResponseWrite(record_id, user, status, answer, comment or None, spent, utcnow(), first=first_ticket)
        try:
            _, ack = self.backend.answer(write)
        except KeyError:
            raise InputError("That record does not exist (any more). Reload the page.") from None
        except QuotaFull:
            with person.lock:
                person.used_tickets.pop(nonce, None)  # not recorded: the same answer may come again later
            view = self._advance(user, person)
            return _with_message(view, quota_late_message(view.progress.mine_total))
        with person.lock:
            if record_id not in person.answers:
                person.order.append(record_id)
            self._count_today(person, record_id, status)
            person.answers[record_id] = (status, answer, comment)
            person.pending[record_id] = ack
        view = self._advance(user, person)
        return View(**{**vars(view), "feedback": feedback}) if feedback else view

    def _feedback(self, person: _Person, record_id: int, status: str, answer: Answer) -> dict[str, Any] | None:
        """The expected answer after a first answer to a gold record, when the task gives feedback or the
        person is still in their warm-up (their first `warmup` gold answers)."""
        gold = self.gold.get(record_id)
        quality = self.task.quality
        if gold is None or status != "submitted":
            return None
        with person.lock:
            if record_id in person.answers:
                return None
            met = sum(1 for rid in person.answers if rid in self.gold)
        return gold.feedback(answer) if quality.gold_feedback or met < quality.warmup else None

    @staticmethod
    def _count_today(person: _Person, record_id: int, status: str) -> None:
        """Today's count, like the total, counts submitted answers only (a skip is not work done)."""
        today = _today()
        if person.today_date != today:
            person.today, person.today_date = set(), today
        if status == "submitted":
            person.today.add(record_id)
        else:
            person.today.discard(record_id)

    def _advance(self, user: str, person: _Person) -> View:
        """Whatever comes next for this person: the record on screen, a buffered one, or a fresh lease."""
        slot = self._current_slot(user)
        if slot is None:
            slot = self.prefetch.pop(user)
        if slot is None:
            state = self.backend.next(user)
            if state.kind != "ready":
                self.prefetch.refill(user)
                progress = self._progress(user, person)
                return View(state=state.kind, progress=progress,
                            saved=self._saved(person, user), held_by_others=state.held_by_others,
                            frees_at=state.frees_at,
                            message=quota_message(progress.mine_total) if state.kind == "quota" else None)
            slot = self._slot_for_record(user, state.record_id)  # type: ignore[arg-type]
        self._screens[user] = slot
        self.prefetch.refill(user)
        upcoming = tuple(self._shown(user, s, upcoming=True) for s in self.prefetch.peek(user))
        return View(state="ready", record=self._shown(user, slot), upcoming=upcoming,
                    progress=self._progress(user, person), saved=self._saved(person, user))

    def _current_slot(self, user: str) -> Slot | None:
        """The record this person still holds on screen, so that asking again shows the same one."""
        record_id = self.backend.current(user)
        if record_id is None:
            return None
        slot = self._screens.get(user)
        if slot is not None and slot.record.id == record_id:
            return slot
        return self._slot_for_record(user, record_id)

    def _slot_for_record(self, user: str, record_id: int) -> Slot:
        record = self.prefetch.rows([record_id]).get(record_id)
        if record is None:
            raise InputError("That record does not exist (any more). Reload the page.")
        return Slot(record)  # leased outside the buffer: first call, takeover, going back

    def _shown(self, user: str, slot: Slot, *, editing: bool = False, upcoming: bool = False,
               previous: tuple[str, Answer, str] | None = None) -> Shown:
        """What the page needs for a record; `upcoming`: not on screen yet (no time-spent clock starts)."""
        record: Record = slot.record
        status, answer, comment = previous if previous else (None, {}, "")
        person = self._people.get(user)
        ticket = None
        if person is not None:
            with person.lock:
                if not upcoming:
                    person.shown_at.setdefault(record.id, time.monotonic())
                    if len(person.shown_at) > _REMEMBERED_TICKETS:
                        person.shown_at.pop(next(iter(person.shown_at)))
                if not editing:
                    ticket = person.issued.get(record.id)
                    if ticket is None:
                        ticket = person.issued[record.id] = self.signer.issue(record.id, user)
                        if len(person.issued) > _REMEMBERED_TICKETS:
                            person.issued.pop(next(iter(person.issued)))
        return Shown(ticket=ticket or self.signer.issue(record.id, user, edit=editing), record_id=record.id,
                     image_url=self.prefetch.image_url(record.id, user),
                     width=record.width, height=record.height, suggestion=suggested_answer(self.task, record),
                     metadata=visible_metadata(record.metadata, self.task.quality.gold_column),
                     images=self._images_shown(record, user),
                     texts=tuple({"name": c, "text": record.metadata[c]} for c in self.task.text_columns
                                 if isinstance(record.metadata.get(c), str)),
                     answer=answer, comment=comment, editing=editing, previous_status=status)

    def _images_shown(self, record: Record, user: str) -> tuple[dict[str, Any], ...]:
        """Every image of the record as the page shows it: its signed link and size."""
        out = []
        for number in range(1, record.image_count + 1):
            _, _, width, height = record.image(number)
            out.append({"url": self.prefetch.image_url(record.id, user, number), "width": width, "height": height})
        return tuple(out)

    def _show_answered(self, user: str, person: _Person, record_id: int) -> View:
        slot = self._slot_for_record(user, record_id)
        with person.lock:
            previous = person.answers.get(record_id)
        return View(state="ready", record=self._shown(user, slot, editing=True, previous=previous),
                    progress=self._progress(user, person), saved=self._saved(person, user))

    def _progress(self, user: str, person: _Person, *, fresh: bool = False) -> PersonProgress:
        counts = self.backend.counts(0.0 if fresh else None)
        with person.lock:
            if person.today_date != _today():
                person.today, person.today_date = set(), _today()
            # gold answers are no work done for the dataset
            mine_total = sum(1 for rid, (s, _, _) in person.answers.items()
                             if s == "submitted" and rid not in self.gold)
            today = sum(1 for rid in person.today if rid not in self.gold)
        return PersonProgress(mine_today=today, mine_total=mine_total, team_complete=counts["complete"],
                              team_total=counts["records"], team_answers=counts["submissions"],
                              remaining_for_me=self.backend.remaining_for(user),
                              goal_share=round(100 * self.goal.share(mine_total, counts["records"],
                                                                     self.task.overlap), 1))

    def _saved(self, person: _Person, user: str, *, tell: bool = True) -> SaveStatus:
        refused: dict[int, WriteRejected] = {}
        with person.lock:
            for rid in [r for r, ack in person.pending.items() if ack.done()]:
                ack = person.pending.pop(rid)
                error = None if ack.cancelled() else ack.exception()
                if isinstance(error, WriteRejected):
                    refused[rid] = error
            pending = len(person.pending)
        if refused:
            self._forget_refused(user, person, refused)
        with person.lock:
            rejected = tuple(person.rejected)
            if tell:
                person.rejected = []
        failure = self.backend.write_failure() if pending else None
        return SaveStatus(pending=pending, retrying=failure is not None, error=failure, rejected=rejected)

    def _forget_refused(self, user: str, person: _Person, refused: dict[int, WriteRejected]) -> None:
        """The person's view of their answers goes back to what the store holds for records whose last
        answer was refused for good (the backend already opened those records to them again)."""
        stored = {r.record_id: r for r in self.backend.user_responses(user) if r.record_id in refused}
        today = _today()
        with person.lock:
            for rid, error in refused.items():
                if rid in person.pending:  # answered again meanwhile: that answer decides
                    continue
                row = stored.get(rid)
                if row is None:
                    person.answers.pop(rid, None)
                    if rid in person.order:
                        person.order.remove(rid)
                    person.today.discard(rid)
                else:
                    person.answers[rid] = (row.status, row.answer, row.comment or "")
                    if row.status == "submitted" and row.updated_at.date().isoformat() == today:
                        person.today.add(rid)
                    else:
                        person.today.discard(rid)
                person.rejected.append(str(error))


def _settled(acks: Sequence[Future[None]]) -> Future[None]:
    """A Future that gets a result once every acknowledgement is done (committed or failed).

    Waiters wait on this one instead of the acknowledgements: cancelling it (an asyncio timeout, a
    closed request) leaves the writer's Futures untouched, and since it only ever gets a result, an
    acknowledgement that failed is never reported as an unretrieved exception.
    """
    together: Future[None] = Future()
    left = [len(acks)]
    lock = threading.Lock()

    def one_done(_: Future[None]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            try:
                together.set_result(None)
            except InvalidStateError:  # the waiter gave up and cancelled it
                pass

    for ack in acks:
        ack.add_done_callback(one_done)
    return together


def _with_message(view: View, message: str) -> View:
    return View(**{**vars(view), "message": message})


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()

