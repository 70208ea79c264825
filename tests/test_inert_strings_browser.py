"""Every string a task file, an image folder or a user name brings is shown as text, never run: in Chromium.

One app (password mode) whose task title, question, guidelines, label names and
keys, suggestion values (from metadata.jsonl), other metadata, an image's file
name and an annotator's user name are all hostile markup: each one, if it ran,
would set `window.__pwned` or open a dialog. The hostile annotator signs in,
labels with the keyboard and sees the next image; the admin opens the
dashboard (progress, label plot, annotator table, health, audit log after
releasing the hostile annotator's records). Nothing may run, and both pages
must work.

Needs Debian's chromium and the playwright package; without them the test
fails when ANNOTATOR_REQUIRE_BROWSER=1 (CI) and is skipped otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browserhelpers import chromium
from clients import make_images

from annotator.auth import PasswordFile

WAIT = 30_000  # ms; the machine may be busy


def hostile(where: str) -> str:
    """Markup that sets window.__pwned (and opens a dialog) if it is ever parsed as HTML or run as script."""
    run = f"window.__pwned=(window.__pwned||[]).concat('{where}');alert('{where}')"
    return (f'</script><script>{run}</script><img src=x onerror="{run}">'
            f'<!--\u2028\u2029&amp;<svg onload="{run}">')


LABELS = [hostile("label-0"), hostile("label-1"), "plain"]
USER = "<img/src=x/onerror=window.__pwned=1>"  # a password-mode user name has no spaces
ADMIN = "admin"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string with ASCII escapes is a TOML basic string


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    from apphelpers import start_app

    base = tmp_path_factory.mktemp("inert")
    source = base / "source"
    images = make_images(source, 6, classes=["a"])
    odd = images[0].with_name(hostile("file").replace("/", "_")[:150] + ".png")
    images[0].rename(odd)
    images[0] = odd
    with open(source / "metadata.jsonl", "w") as out:
        for i, path in enumerate(images):
            out.write(json.dumps({"file_name": str(path.relative_to(source)), "label": LABELS[i % 2],
                                  "caption": hostile("metadata")}) + "\n")
    task = base / "task.toml"
    lines = [f"title = {_toml(hostile('title'))}", f"question = {_toml(hostile('question'))}",
             f"guidelines = {_toml('[click](javascript:window.__pwned=1) ' + hostile('guidelines'))}",
             'kind = "single_label"', "overlap = 1", 'suggestion_column = "label"']
    for name, key in zip(LABELS, ["<", "&", "3"]):
        lines += ["", "[[labels]]", f"name = {_toml(name)}", f"key = {_toml(key)}"]
    task.write_text("\n".join(lines) + "\n")
    passwords = PasswordFile(base / "passwords.json")
    for user in (USER, ADMIN):
        passwords.add(user, "pw-inert-12345")
    srv = start_app(base / "data", env={"AUTH_MODE": "password", "PASSWORD_FILE": str(base / "passwords.json"),
                                        "ADMINS": ADMIN, "SOURCE_DIR": str(source), "TASK_FILE": str(task),
                                        "EXPORT_REPO": ""})
    yield srv
    srv.stop()


def _page(browser, url: str, user: str):
    """A signed-in page that records every dialog; the login form itself is Gradio's."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 1000})
    page = ctx.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill("pw-inert-12345")
    page.get_by_role("button", name="Login").click()
    return page


def _nothing_ran(page) -> None:
    assert page.evaluate("window.__pwned === undefined"), page.evaluate("window.__pwned")
    assert page.dialogs == []


def test_hostile_task_and_names_stay_text_and_the_pages_work(browser, server):
    from playwright.sync_api import expect

    page = _page(browser, server.url, USER)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)  # not stuck at "Loading…"
    for i, name in enumerate(LABELS):
        expect(page.locator(f"#label-{i}")).to_contain_text(name, timeout=WAIT)
    expect(page.locator(".ann-suggestion")).to_contain_text(LABELS[0][:20])
    first = page.locator("#ann-img").get_attribute("data-record")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("<")  # the first label's key: answers, and the next image comes
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", first, timeout=WAIT)
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    page.get_by_text("Guidelines", exact=True).click()  # the accordion, not the keys help row naming G
    link = page.locator("a", has_text="click")
    if link.count():  # a javascript: link must not run when followed
        link.first.click()
    expect(page.locator("body")).to_contain_text("window.__pwned", timeout=WAIT)  # the title, shown as text
    _nothing_ran(page)

    admin = _page(browser, server.url, ADMIN)
    expect(admin.locator("#ann-img")).to_be_visible(timeout=WAIT)
    admin.get_by_role("tab", name="Dashboard").click()
    expect(admin.locator("#dash-annotators")).to_contain_text(USER, timeout=WAIT)
    expect(admin.locator("#dash-health-box")).to_contain_text(USER, timeout=WAIT)  # the leases it holds
    admin.locator("#admin-user textarea, #admin-user input").first.fill(USER)
    admin.locator("#admin-release").click()
    expect(admin.locator("#admin-result")).to_contain_text("Released", timeout=WAIT)
    expect(admin.locator("#admin-audit")).to_contain_text("release_user", timeout=WAIT)
    admin.locator("#dash-refresh").click()
    expect(admin.locator("#dash-progress")).to_contain_text("1 answers", timeout=WAIT)
    _nothing_ran(admin)
    _nothing_ran(page)
