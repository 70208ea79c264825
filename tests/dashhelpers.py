"""A real app in password mode with an admin and two annotators, for the dashboard tests."""

from __future__ import annotations

import random
from pathlib import Path

from apphelpers import AppServer, start_app
from clients import SHAPES, ApiUser, make_images

from annotator.auth import PasswordFile

USERS = ("admin", "ann", "bob")


def password(user: str) -> str:
    return f"pw-{user}-12345"


def start_password_app(tmp_path: Path, images: int = 12, env: dict[str, str] | None = None) -> AppServer:
    """app.py with AUTH_MODE=password, ADMINS=admin, users admin/ann/bob, `images` small images.

    No export unless `env` sets EXPORT_REPO (and the Hub to push to)."""
    make_images(tmp_path / "src", images)
    passwords = PasswordFile(tmp_path / "passwords.json")
    for user in USERS:
        passwords.add(user, password(user))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return start_app(data_dir, env={"AUTH_MODE": "password", "PASSWORD_FILE": str(tmp_path / "passwords.json"),
                                    "ADMINS": "admin", "SOURCE_DIR": str(tmp_path / "src"), "EXPORT_REPO": "",
                                    **(env or {})})


def sign_in(server: AppServer, user: str) -> ApiUser:
    return ApiUser.with_password(server.url, user, password(user))


def annotate(api: ApiUser, n: int, seed: int) -> list[int]:
    """Answer up to n records through the API; returns the record ids answered."""
    rng = random.Random(seed)
    view = api.next()
    done = []
    while view["state"] == "ready" and len(done) < n:
        item = view["item"]
        suggested = item["suggestion"].get("label")  # the one question of the shapes task
        label = suggested if suggested and rng.random() < 0.7 else rng.choice(SHAPES[:3])
        done.append(item["record_id"])
        view = api.submit(item["record"], [label])
    return done


def signed_in_page(browser, url: str, user: str, **context: object):
    """A new page in `browser` (a Playwright Browser; `context` its new_context options), signed in as
    `user` through the password form, once the app's tabs show."""
    page = browser.new_context(**context).new_page()
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password(user))
    page.get_by_role("button", name="Login").click()
    page.get_by_role("tab", name="Dashboard").wait_for()
    return page
