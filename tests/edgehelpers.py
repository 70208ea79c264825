"""The real app as a simulated Space, for the edge's tests (tests/test_edge_*.py).

A Space's proxy sends the Space's own Host (and X-Forwarded-Proto: https);
Gradio's CORS reflects any Origin whenever the Host is not a local one, so
every request here carries that Host. Two servers: OAuth (forged session
cookies, oauth_cookies.py) and password mode; carol is the admin in both.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from clients import add_users, make_images, start_many, write_task
from oauth_cookies import forge_session_cookie, oauth_space_env

SPACE_HOST = "someone-annotator.hf.space"
SPACE_ORIGIN = f"https://{SPACE_HOST}"
EVIL = "https://evil.example"
USERS = ("alice", "bob", "carol")
ADMIN = "carol"


def start_space_servers(tmp_path_factory: Any, *, records: int = 12,
                        modes: tuple[str, ...] = ("oauth", "password")) -> dict[str, Any]:
    """{mode: server} for "oauth" and "password"; the password server has `.passwords`."""
    specs, passwords = [], {}
    for mode in modes:
        base: Path = tmp_path_factory.mktemp(f"edge-{mode}")
        make_images(base / "source", records)
        env = {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(write_task(base / "task.toml", overlap=2)),
               "SECRET_KEY": "edge-test-key", "ADMINS": ADMIN}
        if mode == "password":
            env["AUTH_MODE"] = "password"
            passwords = add_users(base / "data" / "passwords.json", USERS)
        else:
            env.update(oauth_space_env())
        specs.append((base / "data", env))
    servers = dict(zip(modes, start_many(*specs)))
    for server in servers.values():
        server.passwords = passwords
    return servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    """Both servers (`start_space_servers`) for a test module, stopped after it; a module uses it by importing
    the name (`from edgehelpers import servers`)."""
    found = start_space_servers(tmp_path_factory)
    yield found
    for server in found.values():
        server.stop()


def space_client(server: Any, user: str | None = None, **headers: str) -> httpx.Client:
    """A client that talks to `server` as the Space's proxy forwards it; signed in as `user` (OAuth) if given."""
    base = {"Host": SPACE_HOST, "X-Forwarded-Proto": "https"}
    if user is not None:
        base["Cookie"] = f"session={forge_session_cookie(user)}"
    return httpx.Client(base_url=server.url, headers={**base, **headers}, timeout=60)


@contextmanager
def password_client(server: Any, user: str) -> Iterator[httpx.Client]:
    """Signed in through Gradio's login form (password mode), as a script would."""
    with httpx.Client(base_url=server.url, headers={"Host": SPACE_HOST, "X-Forwarded-Proto": "https"},
                      timeout=60) as client:
        r = client.post("/login", data={"username": user, "password": server.passwords[user]})
        assert r.status_code == 200, r.text
        # over https a browser also holds the Secure `access-token-*` twin, which /gradio_api/token reads
        for name, value in list(client.cookies.items()):
            if name.startswith("access-token-unsecure-"):
                client.cookies.set(name.replace("-unsecure", ""), value)
        yield client


def my_progress(client: httpx.Client) -> dict[str, Any]:
    """The person's counts, through the page's own route as the page sends it (same-origin)."""
    r = client.post("/ann/saved", json={}, headers={"Sec-Fetch-Site": "same-origin", "Origin": SPACE_ORIGIN})
    assert r.status_code == 200, r.text
    return r.json()["progress"]
