"""Sign-in cookies that work inside the Hub's frame: `Partitioned` (CHIPS) on the session cookies.

A Space page on huggingface.co shows the app in an iframe from another site,
so there the app's cookies are third-party. Browsers that block third-party
cookies (Chromium's default here, Safari) refuse Gradio's session cookies,
`session` (hf mode, Starlette's SessionMiddleware added by Gradio's OAuth) and
`access-token-<id>` (password mode, Gradio's /login), and sign-in loops. A
partitioned cookie is kept apart per top-level site, so browsers accept it in
the frame; a person signs in once in the frame and once at the top level.

Gradio sets both cookies inside its own app, and its SessionMiddleware is that
app's outermost layer, so only a layer of the parent app sees the Set-Cookie:
`PartitionedSessionCookies` rewrites them on their way out.

Left alone: every other cookie, and Gradio's `access-token-unsecure-<id>`.
That one is SameSite=Lax and not Secure: it is the sign-in for a server
reached over plain HTTP (where browsers drop Secure cookies), and a
cross-site frame never gets it anyway. Partitioned cookies must be Secure, so
partitioning it would only break the plain-HTTP case it exists for.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = b"session"
TOKEN_PREFIX = b"access-token-"
UNSECURE_TOKEN_PREFIX = b"access-token-unsecure-"
# what the session cookies always carry: only the server reads them, they must reach a cross-site frame,
# and a partitioned cookie must be Secure
SESSION_FLAGS = b"; HttpOnly; Secure; SameSite=None; Partitioned"
_REPLACED = {b"httponly", b"secure", b"samesite", b"partitioned"}


class PartitionedSessionCookies:
    """Pure ASGI middleware: the session cookies' Set-Cookie headers go out partitioned.

    A header that sets `session` or `access-token-<id>` keeps its name, value,
    path and lifetime, and ends with `HttpOnly; Secure; SameSite=None;
    Partitioned` (an existing `Partitioned` is not repeated). A header that
    deletes one is also sent as Gradio wrote it, so that a cookie stored
    unpartitioned (before this layer, or by a browser that ignores the
    attribute) is cleared by sign-out too. Other headers and cookies, and
    non-HTTP scopes, pass untouched; nothing is buffered.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_partitioned(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if any(name.lower() == b"set-cookie" for name, _ in headers):
                    message["headers"] = partition_session_cookies(headers)
            await send(message)

        await self.app(scope, receive, send_partitioned)


def partition_session_cookies(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers with each session cookie's Set-Cookie rewritten (see the class)."""
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name.lower() != b"set-cookie" or not _is_session_cookie(value):
            out.append((name, value))
            continue
        parts = [p.strip() for p in value.split(b";")]
        kept = [p for p in parts[1:] if p and p.split(b"=", 1)[0].strip().lower() not in _REPLACED]
        out.append((name, b"; ".join([parts[0], *kept]) + SESSION_FLAGS))
        if _deletes(parts[1:]):
            out.append((name, value))
    return out


def _is_session_cookie(set_cookie: bytes) -> bool:
    cookie = set_cookie.split(b"=", 1)[0].strip()
    return cookie == SESSION_COOKIE or (cookie.startswith(TOKEN_PREFIX)
                                        and not cookie.startswith(UNSECURE_TOKEN_PREFIX))


def _deletes(attributes: list[bytes]) -> bool:
    """True when the cookie's lifetime is over at once (Max-Age <= 0 or an Expires in the past)."""
    for attribute in attributes:
        key, _, val = attribute.partition(b"=")
        key = key.strip().lower()
        try:
            if key == b"max-age" and int(val.strip()) <= 0:
                return True
            if key == b"expires" and parsedate_to_datetime(val.strip().decode("latin-1")).timestamp() <= time.time():
                return True
        except (ValueError, TypeError):
            continue
    return False
