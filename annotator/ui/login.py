"""Gradio's password sign-in (`POST /login`) made safe to expose: checked off the event loop, limited per address.

Gradio awaits an `async` auth callable on the event loop and calls a plain
one right there, so a synchronous PBKDF2 check stalled every request while it
ran. `password_sign_in` gives Gradio an async callable that hands the check
to `annotator.auth.SignIn`, and puts a small ASGI gate in front of `/login`
that refuses a limited client address at once (429, before the form is read)
and tells the callable who is asking: Gradio passes it only the name and the
password.

Which address is trusted: uvicorn already puts the `X-Forwarded-For` client
in place of the peer when the peer is a trusted proxy (`FORWARDED_ALLOW_IPS`,
by default 127.0.0.1). On a Space (`SPACE_ID` set) the peer is Hugging Face's
proxy, which appends the address it saw as the last `X-Forwarded-For` entry;
entries before it are whatever the client wrote, so only the last one counts.
"""

from __future__ import annotations

import math
import os
from contextvars import ContextVar
from typing import Awaitable, Callable

from fastapi import FastAPI, HTTPException
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from annotator.auth import PasswordFile, SignIn, SignInLimits, SignInRefused

_ADDRESS: ContextVar[str] = ContextVar("sign_in_address", default="unknown")
LOGIN_PATHS = ("/login", "/login/")  # Gradio's password form posts here (gradio/routes.py `login`)


def client_address(scope: Scope) -> str:
    """The sign-in's client address, as far as it can be trusted (see the module docstring)."""
    if os.environ.get("SPACE_ID"):
        forwarded = Headers(scope=scope).get("x-forwarded-for")
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()[:64] or "unknown"
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def password_sign_in(app: FastAPI, passwords: PasswordFile, limits: SignInLimits
                     ) -> Callable[[str, str], Awaitable[bool]]:
    """The `auth=` callable for Gradio; installs the gate on `app` (call before the app starts)."""
    sign_in = SignIn(passwords, limits)
    app.add_middleware(_SignInGate, sign_in=sign_in)

    async def auth(username: str, password: str) -> bool:
        try:
            return await sign_in.attempt(_ADDRESS.get(), username, password)
        except SignInRefused as exc:
            raise HTTPException(429, detail=str(exc), headers=_retry_after(exc)) from None

    return auth


class _SignInGate:
    """Pure ASGI (nothing else is buffered): refuses a limited address's sign-in before Gradio reads it."""

    def __init__(self, app: ASGIApp, sign_in: SignIn) -> None:
        self.app, self.sign_in = app, sign_in

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        address = client_address(scope)
        refusal = self.sign_in.refuse_address(address)
        if refusal is not None:
            await JSONResponse({"detail": str(refusal)}, 429, headers=_retry_after(refusal))(scope, receive, send)
            return
        token = _ADDRESS.set(address)
        try:
            await self.app(scope, receive, send)
        finally:
            _ADDRESS.reset(token)


def _retry_after(refusal: SignInRefused) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(refusal.retry_after)))}
