"""Forged Hugging Face OAuth session cookies, to act as many users of a simulated Space.

Gradio keeps the OAuth login in Starlette's signed (not encrypted) `session`
cookie; its key is sha256(OAUTH_CLIENT_SECRET + "-v4"). A server started with
`oauth_space_env()` accepts a cookie from `forge_session_cookie(name,
OAUTH_SECRET)` as if `name` had signed in with Hugging Face: the same code path
as production, without the Hub (see gradio-hub-facts.md, sections 1.3 and 1.4B).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import itsdangerous

OAUTH_SECRET = "test-secret"


def oauth_space_env(secret: str = OAUTH_SECRET) -> dict[str, str]:
    """Environment that makes `python app.py` believe it runs on a Space with `hf_oauth: true`."""
    return {
        "SYSTEM": "spaces", "SPACE_ID": "test/app", "AUTH_MODE": "hf",
        "OAUTH_CLIENT_ID": "x", "OAUTH_CLIENT_SECRET": secret, "OAUTH_SCOPES": "openid profile",
        "OPENID_PROVIDER_URL": "http://127.0.0.1:9",  # nothing listens: no real sign-in can happen
    }


def forge_session_cookie(username: str, client_secret: str = OAUTH_SECRET, access_token: str = "fake-token",
                         ttl: int = 8 * 3600, orgs: list[str] | None = None) -> str:
    """The value of the `session` cookie Gradio sets after `username` signed in with Hugging Face.

    A negative `ttl` gives a session whose OAuth token has expired (Gradio treats it as signed out).
    """
    secret = hashlib.sha256((client_secret + "-v4").encode()).hexdigest()
    userinfo = {"sub": username, "name": username, "preferred_username": username,
                "profile": f"https://huggingface.co/{username}", "picture": ""}
    if orgs is not None:
        userinfo["orgs"] = [{"preferred_username": o, "name": o} for o in orgs]
    session = {"oauth_info": {"access_token": access_token, "token_type": "bearer", "scope": "openid profile",
                              "expires_at": int(time.time()) + ttl, "userinfo": userinfo}}
    payload = base64.b64encode(json.dumps(session).encode())
    return itsdangerous.TimestampSigner(secret).sign(payload).decode()


def playwright_cookie(username: str, host: str = "127.0.0.1", client_secret: str = OAUTH_SECRET) -> dict:
    """The cookie for `BrowserContext.add_cookies` (the domain+path form; the url form did not sign in)."""
    return {"name": "session", "value": forge_session_cookie(username, client_secret), "domain": host,
            "path": "/", "httpOnly": True, "secure": True, "sameSite": "None"}
