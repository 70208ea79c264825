"""PartitionedSessionCookies on raw ASGI messages: which Set-Cookie headers change, and how.

The browser tests (test_frame_signin_browser.py) show what it is for: sign-in
inside a cross-site frame with third-party cookies blocked.
"""

from __future__ import annotations

import asyncio
from typing import Any

from annotator.ui.cookies import PartitionedSessionCookies

FLAGS = b"; HttpOnly; Secure; SameSite=None; Partitioned"


def run(headers: list[tuple[bytes, bytes]], scope_type: str = "http") -> list[dict[str, Any]]:
    """What the middleware sends on when the app behind it answers with `headers`."""
    sent: list[dict[str, Any]] = []

    async def inner(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(PartitionedSessionCookies(inner)({"type": scope_type}, receive, send))
    return sent


def cookies(message: dict[str, Any]) -> list[bytes]:
    return [v for k, v in message["headers"] if k.lower() == b"set-cookie"]


def test_both_session_cookies_are_partitioned_and_nothing_else_changes():
    headers = [
        (b"content-type", b"application/json"),
        (b"set-cookie", b"session=eyJ4Ijox.sig; path=/; Max-Age=1209600; httponly; samesite=none; secure"),
        (b"set-cookie", b"access-token-abc123=tok; HttpOnly; Path=/; SameSite=none; Secure"),
        (b"set-cookie", b"access-token-unsecure-abc123=tok; HttpOnly; Path=/; SameSite=lax"),
        (b"set-cookie", b"theme=dark; Path=/; SameSite=Lax"),
        (b"set-cookie", b"sessionid=x; Path=/"),  # only the exact name `session` is the OAuth session
        (b"x-other", b"session=not-a-cookie"),
    ]
    start, body = run(headers)
    assert start["headers"] == [
        (b"content-type", b"application/json"),
        (b"set-cookie", b"session=eyJ4Ijox.sig; path=/; Max-Age=1209600" + FLAGS),
        (b"set-cookie", b"access-token-abc123=tok; Path=/" + FLAGS),
        (b"set-cookie", b"access-token-unsecure-abc123=tok; HttpOnly; Path=/; SameSite=lax"),
        (b"set-cookie", b"theme=dark; Path=/; SameSite=Lax"),
        (b"set-cookie", b"sessionid=x; Path=/"),
        (b"x-other", b"session=not-a-cookie"),
    ]
    assert body == {"type": "http.response.body", "body": b"ok"}


def test_an_already_partitioned_cookie_is_not_marked_twice():
    start, _ = run([(b"set-cookie", b"session=v; path=/; Partitioned; httponly; samesite=none; secure")])
    assert cookies(start) == [b"session=v; path=/" + FLAGS]
    assert cookies(start)[0].lower().count(b"partitioned") == 1


def test_a_lax_or_insecure_session_cookie_is_made_cross_site():
    """Gradio's sign-out deletes the token cookie as SameSite=Lax, not Secure: a frame would ignore that."""
    start, _ = run([(b"set-cookie", b'access-token-abc=""; Path=/; SameSite=lax')])
    assert cookies(start) == [b'access-token-abc=""; Path=/' + FLAGS]


def test_a_deletion_also_goes_out_unpartitioned_for_cookies_stored_before():
    oauth_out = b"session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=none; secure"
    token_out = b'access-token-abc=""; expires=Sun, 06 Dec 2026 20:00:00 GMT; Max-Age=0; Path=/; SameSite=lax'
    start, _ = run([(b"set-cookie", oauth_out), (b"set-cookie", token_out)])
    assert cookies(start) == [
        b"session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT" + FLAGS, oauth_out,
        b'access-token-abc=""; expires=Sun, 06 Dec 2026 20:00:00 GMT; Max-Age=0; Path=/' + FLAGS, token_out,
    ]


def test_a_response_without_cookies_keeps_its_headers():
    headers = [(b"content-type", b"text/plain")]
    start, _ = run(headers)
    assert start["headers"] == headers


def test_other_scopes_pass_untouched():
    raw = b"session=v; path=/; httponly; samesite=none; secure"
    start, _ = run([(b"set-cookie", raw)], scope_type="websocket")
    assert cookies(start) == [raw]
