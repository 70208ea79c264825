"""Who the leaderboard names, and how a person chooses a nickname for it.

Privacy first: a person's user name (their Hugging Face account) is never
shown on the room's screen unless they chose it. Everyone starts as a neutral
"Annotator N", N their place in the order the app first saw people (stable,
the same on every replica: it comes from the store's users table). With
`LEADERBOARD=on` a person may choose a nickname, their own user name
included (that is the opt-in); `LEADERBOARD=anonymous` shows numbers only.

A nickname is stored as an audit entry (action "nickname", through the one
writer like every write), so replicas share it, admins see who chose what in
the audit log, and no table is added: a person's current nickname is their
latest entry; an empty one goes back to the number. Rules, checked here and
nowhere else: at most MAX_CHARS printable characters; not another person's
user name, nor a nickname someone else holds (case and width folded), nor
"Annotator <number>"; at most MAX_CHANGES changes a person, so the log stays
small. Two people choosing the same name at once on two replicas: the first
stored keeps it, the other shows as their number.

An admin can clear a person's nickname (a rude one in a live room,
admin_actions.clear_nickname): an entry of the same action, written by the
admin for the person (detail "user", and "cleared": the nickname taken off).
The person shows as their number again, and nobody may choose a cleared
nickname again.
"""

from __future__ import annotations

import re
import unicodedata
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Mapping, Protocol, Sequence

from annotator.auth import Identity
from annotator.config import LeaderboardMode
from annotator.service import InputError
from annotator.store_protocol import StoreProtocol
from annotator.text import TextError, check_text
from annotator.writer import WriteRejected

__all__ = ["ACTION", "MAX_CHANGES", "MAX_CHARS", "NicknameError", "Nicknames", "cleared_nicknames",
           "current_nicknames", "display_names", "neutral_name"]

ACTION = "nickname"
MAX_CHARS = 24
MAX_CHANGES = 20
SAVE_WAIT_S = 5.0  # how long setting a nickname waits for its commit, so the next read shows it
_NEUTRAL = re.compile(r"annotator\s*#?\s*[0-9]+")


class NicknameError(InputError):
    """The nickname cannot be used; the message tells the person what to choose instead."""


class AuditWriter(Protocol):
    """The one thing written here: an audit entry, through the group-commit writer (backend.audit)."""

    def audit(self, actor: str, action: str, detail: dict[str, Any]) -> Any: ...


def neutral_name(number: int) -> str:
    return f"Annotator {number}"


def _fold(name: str) -> str:
    """What two names must not share: case, width and compatibility forms folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _subject(actor: str, detail: Mapping[str, Any]) -> str:
    """Whose nickname an entry sets: the actor's own, or the person an admin cleared it for."""
    return str(detail.get("user") or actor)


def _changes(entries: Iterable[tuple[datetime, str, Mapping[str, Any]]], user: str) -> int:
    """How many times the person chose a nickname themselves (an admin's clear is not one of theirs)."""
    return sum(1 for _, actor, detail in entries if actor == user and _subject(actor, detail) == user)


def cleared_nicknames(entries: Iterable[tuple[datetime, str, Mapping[str, Any]]]) -> set[str]:
    """The nicknames admins cleared (folded): nobody may choose them again."""
    return {_fold(str(detail["cleared"])) for _, _, detail in entries if detail.get("cleared")}


def current_nicknames(entries: Iterable[tuple[datetime, str, Mapping[str, Any]]]) -> dict[str, str]:
    """user -> nickname from the audit entries (oldest first): each person's latest (an admin's clear
    included); a nickname held by someone stored earlier is not taken over (the later claimant shows as
    their number)."""
    latest: dict[str, tuple[datetime, str]] = {}
    for at, actor, detail in entries:
        nickname = str(detail.get("nickname") or "")
        latest[_subject(actor, detail)] = (at, nickname)
    holders: dict[str, str] = {}
    out: dict[str, str] = {}
    for actor, (_, nickname) in sorted(latest.items(), key=lambda kv: kv[1][0]):
        key = _fold(nickname)
        if not nickname or holders.setdefault(key, actor) != actor:
            continue
        out[actor] = nickname
    return out


def display_names(users_in_order: Sequence[str], nicknames: Mapping[str, str],
                  mode: LeaderboardMode) -> dict[str, str]:
    """user -> what the leaderboard shows: their nickname (mode "on"), else "Annotator N".

    A nickname that is another person's user name (chosen before that person
    arrived) is not shown: nobody appears under someone else's name.
    """
    owners = {_fold(user): user for user in users_in_order}
    shown = {}
    for i, user in enumerate(users_in_order, start=1):
        nickname = nicknames.get(user) if mode == "on" else None
        ok = nickname and owners.get(_fold(nickname), user) == user
        shown[user] = str(nickname) if ok else neutral_name(i)
    return shown


@dataclass(frozen=True)
class NicknameStatus:
    """What a person's own screen says about their name on the leaderboard."""
    shown_as: str          # what the room sees now
    nickname: str | None   # their chosen nickname, None: none (or the mode shows numbers only)
    can_choose: bool       # LEADERBOARD=on
    changes_left: int


class Nicknames:
    """Reads the names the leaderboard shows and sets a person's nickname (see the module's rules).

    Args:
        store: the audit entries and the users table (shared by replicas).
        writer: where the audit entry goes (the backend: its one writer).
        mode: the LEADERBOARD setting.
    """

    def __init__(self, store: StoreProtocol, writer: AuditWriter, mode: LeaderboardMode) -> None:
        self.store, self.writer, self.mode = store, writer, mode

    def names(self) -> dict[str, str]:
        """user -> the name the leaderboard shows, for everyone the store has seen (two small reads)."""
        chosen = current_nicknames(self.store.audit_entries(ACTION)) if self.mode == "on" else {}
        return display_names(self.store.users_by_first_seen(), chosen, self.mode)

    def status(self, who: Identity) -> NicknameStatus:
        entries = self.store.audit_entries(ACTION) if self.mode == "on" else []
        chosen = current_nicknames(entries)
        names = display_names(self.store.users_by_first_seen(), chosen, self.mode)
        changes = _changes(entries, who.name)
        return NicknameStatus(shown_as=names.get(who.name, "a number, once you have answered"),
                              nickname=chosen.get(who.name), can_choose=self.mode == "on",
                              changes_left=max(0, MAX_CHANGES - changes))

    def set(self, who: Identity, raw: object) -> str:
        """Choose `raw` as `who`'s nickname (empty: back to the number); the sentence to show them.

        Raises NicknameError with what to do instead; the entry is committed before this returns
        (or the message says it is still on its way).
        """
        if self.mode != "on":
            raise NicknameError("This Space's leaderboard shows numbers only (LEADERBOARD="
                                f"{self.mode}); nicknames are not used.")
        if not isinstance(raw, str):
            raise NicknameError("Send the nickname as text.")
        nickname = " ".join(raw.split())
        try:
            check_text(nickname, "The nickname")
        except TextError as exc:
            raise NicknameError(str(exc)) from None
        if len(nickname) > MAX_CHARS:
            raise NicknameError(f"That nickname has {len(nickname)} characters; choose one of at most {MAX_CHARS}.")
        odd = next((c for c in nickname if unicodedata.category(c)[0] == "C"), None)
        if odd is not None:
            raise NicknameError(f"The nickname contains an invisible or control character (U+{ord(odd):04X}); "
                                f"use letters, digits, spaces and punctuation.")
        entries = self.store.audit_entries(ACTION)
        chosen = current_nicknames(entries)
        if _changes(entries, who.name) >= MAX_CHANGES:
            raise NicknameError(f"You have changed your nickname {MAX_CHANGES} times, the most allowed; ask an "
                                f"organizer if it must change again.")
        key = _fold(nickname)
        if nickname:
            if _NEUTRAL.fullmatch(key):
                raise NicknameError(f"{nickname!r} looks like the numbers the leaderboard gives people who chose "
                                    f"no nickname; choose another.")
            others = {_fold(u) for u in self.store.users_by_first_seen() if u != who.name}
            held = {_fold(n) for u, n in chosen.items() if u != who.name}
            if key in others or key in held:
                raise NicknameError(f"{nickname!r} is someone else's name or nickname here; choose another.")
            if key in cleared_nicknames(entries):
                raise NicknameError(f"An organizer took {nickname!r} off the room's screen; choose another.")
        if (chosen.get(who.name) or "") == nickname:
            return "That is already your nickname." if nickname else "You already show as a number."
        ack = self.writer.audit(who.name, ACTION, {"nickname": nickname})
        try:
            ack.result(timeout=SAVE_WAIT_S)
        except FutureTimeout:
            return "Your nickname is on its way; storage is slow, it shows within a minute."
        except WriteRejected as exc:
            raise NicknameError(f"Your nickname could not be saved ({exc.cause}); try another.") from None
        later = " from its next update of the leaderboard (within a minute)"
        return (f"The room's screen shows you as {nickname!r}{later}." if nickname
                else f"The room's screen shows you as a number{later}.")
