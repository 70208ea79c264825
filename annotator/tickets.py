"""Signed tickets: proof that the server issued a record, or an image URL, to one person.

A ticket travels through the browser and comes back with an answer. Its HMAC
binds the record id to the user it was issued to, so a forged id, another
user's ticket or a hand-edited one is refused, and the proof survives a
restart (the key is kept on DATA_DIR), so an answer to a record shown before
a restart is still accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from urllib.parse import urlencode

IMAGE_ROUTE = "/img"  # served by annotator.ui.server
# ASCII digits only: str.isdigit() also accepts "²" or "٣", which int() then refuses or reads as another number
_WHOLE = re.compile(r"[0-9]{1,18}")


class TicketError(ValueError):
    """The ticket or signed URL is not one this server issued to this person."""


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """SECRET_KEY if set, else a random key created once in DATA_DIR/.secret_key."""
    if configured:
        return configured.encode()
    path = data_dir / ".secret_key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex())
    return key


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, *parts: object) -> str:
        # surrogatepass: a ticket from JSON may hold a lone surrogate, which is simply not a valid nonce
        message = "\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:24]

    def issue(self, record_id: int, user: str, *, edit: bool = False) -> str:
        """A ticket 'record.nonce.mac'; the nonce makes each showing distinct.

        Only a ticket issued for going back ('e' nonce) may change an answer
        already given; any other ticket for an answered record is a repeat,
        which the service can tell even after a restart.
        """
        nonce = ("e" if edit else "n") + secrets.token_hex(6)
        return f"{record_id}.{nonce}.{self._mac('ticket', record_id, nonce, user)}"

    @staticmethod
    def allows_edit(nonce: str) -> bool:
        return nonce.startswith("e")

    def verify(self, ticket: object, user: str) -> tuple[int, str]:
        """Return (record_id, nonce) of a ticket issued to `user`, else raise TicketError."""
        if not isinstance(ticket, str) or len(ticket) > 100:
            raise TicketError("the record reference is missing or malformed")
        parts = ticket.split(".")
        if len(parts) != 3 or not _WHOLE.fullmatch(parts[0]):
            raise TicketError("the record reference is malformed")
        record, nonce, mac = parts
        if not _same(mac, self._mac("ticket", int(record), nonce, user)):
            raise TicketError("this record was not issued to you")
        return int(record), nonce

    def image_url(self, record_id: int, user: str, ttl: int, now: float | None = None, number: int = 1) -> str:
        """A record's image URL for one user, valid for at most `ttl` seconds and at least half of it.

        `number` > 1: the record's further image (`/img/<record>/<number>`), its signature over
        "<record>/<number>", which no record id can be, so no link to one image opens another.

        The expiry is rounded up to the end of the next half-`ttl` window, so every call in one
        window gives the same URL (a preloaded image is not fetched again) while a link handed out
        always has at least half its life left: asking again re-signs what is past half its life.
        """
        half = max(1, ttl // 2)
        expires = (int(time.time() if now is None else now) // half + 2) * half
        query = urlencode({"u": user, "e": expires, "s": self._mac("image", _image_id(record_id, number), user,
                                                                  expires)})
        return f"{IMAGE_ROUTE}/{_image_id(record_id, number)}?{query}"

    def verify_image(self, record_id: int, user: str, expires: str, mac: str, now: float | None = None,
                     number: int = 1) -> None:
        if not _WHOLE.fullmatch(expires):
            raise TicketError("this image link is not valid")
        if int(expires) < (now or time.time()):
            raise TicketError("this image link has expired; reload the page")
        if not _same(mac, self._mac("image", _image_id(record_id, number), user, int(expires))):
            raise TicketError("this image link is not valid")


def _image_id(record_id: int, number: int) -> str:
    """How a link names image `number` of a record: the record alone for its first image (as before records
    had several), else "<record>/<number>"."""
    return str(record_id) if number == 1 else f"{record_id}/{number}"


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII text (compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())
