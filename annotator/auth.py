"""Who is asking and what they may do.

Identity always comes from the server side (the OAuth session, Gradio's
password login, or the single local user), never from anything the client
sends. OAuth does not gate Gradio's endpoints, so every handler asks
`Access.identify` and gets an error for an anonymous caller.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from annotator.config import Settings

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

    def __len__(self) -> int:
        return len(self._users)

    def check(self, username: str, password: str) -> bool:
        stored = self._users.get(username)
        return stored is not None and check_password(password, stored)

    def add(self, username: str, password: str) -> None:
        if not username or any(c.isspace() for c in username) or len(username) > 64:
            raise AuthError(f"user name {username!r} must be 1-64 characters without spaces")
        self._users[username] = hash_password(password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".passwords-")
        with os.fdopen(fd, "w") as out:
            json.dump(self._users, out, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser("adduser", help="add or change a user for AUTH_MODE=password")
    cmd.add_argument("name")
    cmd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    cmd.set_defaults(run=_adduser)


def _adduser(args: argparse.Namespace) -> int:
    from annotator.config import load_settings
    settings = load_settings()
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    if len(password) < 8:
        print("error: the password must have at least 8 characters", file=sys.stderr)
        return 2
    PasswordFile(settings.password_file).add(args.name, password)
    print(f"{args.name} can now sign in (users are kept in {settings.password_file})")
    return 0
