"""Who is asking and what they may do.

Identity always comes from the server side (the OAuth session, Gradio's
password login, or the single local user), never from anything the client
sends. OAuth does not gate Gradio's endpoints, so every handler asks
`Access.identify` and gets an error for an anonymous caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from annotator.config import Settings

log = logging.getLogger(__name__)

_ITERATIONS = 200_000


class AuthError(PermissionError):
    """The caller may not do this; the message says what to do next."""


@dataclass(frozen=True)
class Identity:
    name: str
    is_admin: bool


def _orgs(profile: Mapping[str, Any]) -> set[str]:
    names = set()
    for org in profile.get("orgs", []) or []:
        if isinstance(org, Mapping):
            names.update(str(org[k]) for k in ("preferred_username", "name") if org.get(k))
        elif isinstance(org, str):
            names.add(org)
    return names


class Access:
    """Turns what the server knows about a request into an Identity, or refuses."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.auth_mode
        self.admins = settings.admins
        self.allowed_users = settings.allowed_users
        self.allowed_orgs = settings.allowed_orgs
        self.local_user = settings.local_user
        self.sign_in_limits = SignInLimits()  # failed password sign-ins; used in password mode only

    def identify(self, profile: Mapping[str, Any] | None, username: str | None) -> Identity:
        """`profile` is the OAuth userinfo (hf mode), `username` Gradio's login name (password mode)."""
        if self.mode == "local":
            name = self.local_user
        elif self.mode == "hf":
            name = (profile or {}).get("preferred_username") if profile else None
            if not name:
                raise AuthError("Please sign in with Hugging Face (the button at the top) to annotate.")
            if self.allowed_users and name not in self.allowed_users and \
                    not (self.allowed_orgs and _orgs(profile or {}) & self.allowed_orgs):
                raise AuthError(f"{name} is not on this workshop's list of annotators; ask the organizer "
                                f"to add you to ALLOWED_USERS.")
            if self.allowed_orgs and not self.allowed_users and not _orgs(profile or {}) & self.allowed_orgs:
                raise AuthError(f"{name} is not a member of {', '.join(sorted(self.allowed_orgs))}; ask the "
                                f"organizer to invite you, then sign out and in again.")
        else:
            name = username
            if not name:
                raise AuthError("Please sign in to annotate.")
        return Identity(name=name, is_admin=name in self.admins)

    @staticmethod
    def require_admin(identity: Identity) -> None:
        if not identity.is_admin:
            raise AuthError(f"{identity.name} is not an admin of this Space; admins are named in ADMINS.")


# --- password mode --------------------------------------------------------

def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _ITERATIONS)
    return f"pbkdf2_sha256${_ITERATIONS}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    return hmac.compare_digest(actual.hex(), digest)


class PasswordFile:
    """Users and salted password hashes in a JSON file; read once, checked per login."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._users: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError) as exc:
            raise AuthError(f"PASSWORD_FILE={str(path)!r} cannot be read ({exc}); recreate it with "
                            f"`python -m annotator adduser NAME`.") from None
        # an unknown name is checked against this, so its answer takes as long as a known name's
        self._dummy = hash_password(secrets.token_hex(16))

    def __len__(self) -> int:
        return len(self._users)

    def check(self, username: str, password: str) -> bool:
        """Blocking (one PBKDF2, tens of ms): run it off the event loop, see `SignIn`."""
        stored = self._users.get(username)
        matches = check_password(password, stored or self._dummy)
        return stored is not None and matches

    def add(self, username: str, password: str) -> None:
        if not username or any(c.isspace() for c in username) or len(username) > 64:
            raise AuthError(f"user name {username!r} must be 1-64 characters without spaces")
        self._users[username] = hash_password(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".passwords-")
        with os.fdopen(fd, "w") as out:
            json.dump(self._users, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


# --- limits on failed sign-ins --------------------------------------------

@dataclass(frozen=True)
class SignInStatus:
    """What the admin's health view shows about password sign-ins since the start."""
    failed: int                       # wrong name or password
    refused: int                      # refused without a check: limited, or too many checks at once
    limited_addresses: tuple[str, ...]  # client addresses refused right now
    limited_names: tuple[str, ...]      # user names refused right now


FORGET_AFTER_S = 3600.0  # failures older than this no longer count
BUSY_RETRY_S = 1.0  # past the free failures, one check at a time per address and name


@dataclass
class _Strikes:
    failures: int = 0
    last: float = 0.0
    until: float = 0.0                # refused until this time


class _StrikeTable:
    """Failures per key with growing delays; the least recently failed keys are forgotten past `capacity`."""

    def __init__(self, free: int, first_delay: float, max_delay: float, capacity: int) -> None:
        self.free, self.first_delay, self.max_delay, self.capacity = free, first_delay, max_delay, capacity
        self._keys: OrderedDict[str, _Strikes] = OrderedDict()
        self._checking: Counter[str] = Counter()  # checks in progress per key (at most the waiting ones)

    def wait(self, key: str, now: float) -> float:
        strikes = self._keys.get(key)
        return max(0.0, strikes.until - now) if strikes else 0.0

    def busy(self, key: str, now: float) -> bool:
        """True when a check for `key` is in progress and it could be the one that uses up the free failures:
        past that, one check at a time, so a burst cannot slip many guesses in before the first failure counts."""
        checking = self._checking[key]
        if not checking:
            return False
        strikes = self._keys.get(key)
        failures = strikes.failures if strikes and now - strikes.last <= FORGET_AFTER_S else 0
        return failures + checking >= self.free

    def begin(self, key: str) -> None:
        self._checking[key] += 1

    def end(self, key: str) -> None:
        self._checking[key] -= 1
        if self._checking[key] <= 0:
            del self._checking[key]

    def fail(self, key: str, now: float) -> float:
        """Count a failure; the delay it starts (0 while within the free failures)."""
        strikes = self._keys.pop(key, None) or _Strikes()
        if now - strikes.last > FORGET_AFTER_S:
            strikes = _Strikes()
        strikes.failures += 1
        strikes.last = now
        over = strikes.failures - self.free
        delay = min(self.max_delay, self.first_delay * 2 ** min(over - 1, 32)) if over > 0 else 0.0
        strikes.until = now + delay
        self._keys[key] = strikes
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return delay

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def limited(self, now: float) -> tuple[str, ...]:
        return tuple(k for k, s in self._keys.items() if s.until > now)


class SignInLimits:
    """Failed password sign-ins per client address and per user name, with growing delays. No I/O.

    A key (address or name) gets some free failures; each further failure
    refuses that key for twice as long as the last, from 1 s (address) or 2 s
    (name) up to 15 min (address) or 5 min (name). While refused, nothing is
    checked, so a flood costs no PBKDF2. An address gets many free failures
    because a whole workshop room can share one; a name gets few, and its limit
    is short so a stranger cannot lock a person out for long. A success clears
    the name's failures. Memory is bounded: past `capacity` keys per table, the
    least recently failed are forgotten. Thread-safe (the health view reads it).
    """

    def __init__(self, *, address_free: int = 10, name_free: int = 5, capacity: int = 10_000) -> None:
        self._addresses = _StrikeTable(address_free, 1.0, 900.0, capacity)
        self._names = _StrikeTable(name_free, 2.0, 300.0, capacity)
        self._lock = threading.Lock()
        self._failed = 0
        self._refused = 0

    def wait(self, address: str, name: str | None = None, now: float | None = None) -> float:
        """Seconds until `address` (and `name`) may try again; 0 when allowed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(self._addresses.wait(address, now), self._names.wait(name, now) if name is not None else 0.0)

    def admit(self, address: str, name: str, now: float | None = None) -> float:
        """0 and a check begins (end it with `fail`, `succeed` or `abandon`); else seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            wait = max(self._addresses.wait(address, now), self._names.wait(name, now))
            if not wait and (self._addresses.busy(address, now) or self._names.busy(name, now)):
                wait = BUSY_RETRY_S
            if not wait:
                self._addresses.begin(address)
                self._names.begin(name)
            return wait

    def fail(self, address: str, name: str, now: float | None = None) -> tuple[float, float]:
        """End a check that failed; the delays it starts for the address and the name (0: none)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._end(address, name)
            self._failed += 1
            return self._addresses.fail(address, now), self._names.fail(name, now)

    def abandon(self, address: str, name: str) -> None:
        """End a check that did not finish (the request went away)."""
        with self._lock:
            self._end(address, name)

    def _end(self, address: str, name: str) -> None:
        self._addresses.end(address)
        self._names.end(name)

    def refused(self) -> None:
        """Count one attempt refused without a check."""
        with self._lock:
            self._refused += 1

    def succeed(self, address: str, name: str) -> None:
        with self._lock:
            self._end(address, name)
            self._names.forget(name)

    def status(self, now: float | None = None) -> SignInStatus:
        now = time.monotonic() if now is None else now
        with self._lock:
            return SignInStatus(self._failed, self._refused, self._addresses.limited(now), self._names.limited(now))


class SignInRefused(AuthError):
    """A sign-in refused without checking the password; `retry_after` is in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SignIn:
    """Password checks off the event loop, a few at a time, behind `SignInLimits`.

    PBKDF2 takes tens of ms of CPU: it runs on its own `checks_at_once`
    threads (default: half the cores) at a lower CPU priority, never on the
    event loop or the worker threads that serve clicks, and at most
    `max_waiting` attempts wait for them; beyond that an attempt is refused at
    once. Call `attempt` from the event loop.
    """

    def __init__(self, passwords: PasswordFile, limits: SignInLimits, *, checks_at_once: int | None = None,
                 max_waiting: int = 32) -> None:
        self.passwords, self.limits = passwords, limits
        workers = checks_at_once or max(1, (os.cpu_count() or 2) // 2)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sign-in", initializer=_yield_cpu)
        self._max_waiting = max_waiting
        self._waiting = 0

    def refuse_address(self, address: str) -> SignInRefused | None:
        """The refusal for an address that is limited now, else None (cheap: no body read, no hash)."""
        wait = self.limits.wait(address)
        if not wait:
            return None
        self.limits.refused()
        return SignInRefused(_try_again(wait), wait)

    async def attempt(self, address: str, username: str, password: str) -> bool:
        """True for the right password; False for a wrong one; SignInRefused while limited or overloaded."""
        if self._waiting >= self._max_waiting:
            self.limits.refused()
            raise SignInRefused("Many people are signing in at this moment; try again in a few seconds.", 5.0)
        wait = self.limits.admit(address, username)
        if wait:
            self.limits.refused()
            raise SignInRefused(_try_again(wait), wait)
        self._waiting += 1
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._pool, self.passwords.check, username,
                                                                  password)
        except BaseException:
            self.limits.abandon(address, username)
            raise
        finally:
            self._waiting -= 1
        if ok:
            self.limits.succeed(address, username)
            return True
        address_delay, name_delay = self.limits.fail(address, username)
        if address_delay:
            log.warning("sign-in: repeated failed attempts from address %r; it is refused for %.0f s",
                        address, address_delay)
        if name_delay:
            log.warning("sign-in: repeated failed attempts for user name %r; it is refused for %.0f s",
                        username[:64], name_delay)
        return False


def _yield_cpu() -> None:
    """A sign-in thread runs at a lower CPU priority (Linux per-thread nice): clicks first when the CPU is short."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + 10))
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the checks run at normal priority
        log.info("sign-in checks run at normal CPU priority (%s)", exc)


def _try_again(seconds: float) -> str:
    return (f"Too many failed sign-in attempts; try again in {max(1, round(seconds))} s. If you forgot your "
            f"password, ask the organizer.")
