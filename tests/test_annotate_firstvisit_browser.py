"""The first-visit card (issue 14): the guidelines and the keys, once per task in a browser.

In Debian's chromium through Playwright, a fresh browser profile per person:
- the first visit shows the card over the image with the task's guidelines (its Markdown rendered, its
  raw HTML not) and the keys; focus is on its button; an axe-core scan with the card open finds no serious
  or critical violation;
- Enter closes it and answers nothing; the keys work at once; a reload does not show it again;
- a browser that saw another task's card (another task key in localStorage) is shown this task's card;
- starting right away (a label's key with the card open) answers and closes it for good.
Before this change a first-time participant saw no guidelines unless they opened the accordion.
"""

from __future__ import annotations

import json
import re

import pytest

from axehelpers import serious_violations
from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import make_images, start_many, write_task
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000
GUIDELINES = "Pick the **outline**, not the colour.\n\n- Skip a cut-off shape.\n\n<b id=raw>raw html</b>"


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("firstvisit")
    make_images(base / "source", 20)
    task = write_task(base / "task.toml", overlap=3)
    task.write_text(task.read_text().replace('guidelines = "Pick the shape."', f"guidelines = {json.dumps(GUIDELINES)}"))
    (found,) = start_many((base / "data", {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(task),
                                           **oauth_space_env()}))
    yield found
    found.stop()


def open_page(browser, url: str, user: str):
    """A fresh profile, signed in, with its first image on screen; `page.sent` lists the answers sent."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.sent = []
    page.on("request", lambda r: page.sent.append(r.url) if re.search(r"/ann/(answer|skip)\b", r.url) else None)
    page.goto(url)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    return page


def reload(page) -> None:
    from playwright.sync_api import expect

    page.reload()
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.wait_for_timeout(1000)  # time for a card to appear, were it going to


def record(page) -> str:
    return page.locator("#ann-img").get_attribute("data-record")


def test_the_card_is_shown_once_enter_closes_it_and_the_keys_work(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "alice")
    card = page.get_by_role("dialog", name=re.compile("Before you start"))
    expect(card).to_be_visible(timeout=WAIT)
    expect(card.locator("strong")).to_have_text("outline")  # the guidelines' Markdown, rendered
    expect(card).to_contain_text("Skip a cut-off shape.")
    expect(card).to_contain_text("<b id=raw>raw html</b>")  # raw HTML in them stays text
    assert page.locator("#raw").count() == 0
    keys = card.locator("kbd").all_inner_texts()
    assert keys[:3] == ["1", "2", "3"] and {"Enter", "S", "C", "G", "+ / -", "0", "?"} <= set(keys), keys
    expect(page.locator("#btn-welcome")).to_be_focused()
    found = serious_violations(page)
    assert not found, "\n".join(found)

    first = record(page)
    page.keyboard.press("Enter")  # closes the card, answers nothing
    expect(card).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "ann-image"
    page.wait_for_timeout(500)
    assert record(page) == first and page.sent == []
    page.keyboard.press("2")  # the keys work at once
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", first, timeout=WAIT)
    assert len(page.sent) == 1

    reload(page)
    expect(page.locator("#ann-welcome")).to_be_hidden()
    task = page.evaluate("JSON.parse(document.getElementById('ann-config').textContent).task")
    assert page.evaluate("Object.keys(localStorage)") == [f"ann-welcomed:{task}"]

    # a card seen for another task does not count for this one: shown again, closed with its button
    page.evaluate("localStorage.clear(); localStorage.setItem('ann-welcomed:0123456789ab', '1')")
    reload(page)
    expect(card).to_be_visible()
    page.locator("#btn-welcome").click()
    expect(card).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "ann-image"
    reload(page)
    expect(page.locator("#ann-welcome")).to_be_hidden()
    page.context.close()


def test_a_label_key_with_the_card_open_answers_and_closes_it_for_good(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "bob")
    expect(page.locator("#ann-welcome")).to_be_visible(timeout=WAIT)
    first = record(page)
    page.keyboard.press("1")
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", first, timeout=WAIT)
    expect(page.locator("#ann-welcome")).to_be_hidden()
    assert len(page.sent) == 1
    reload(page)
    expect(page.locator("#ann-welcome")).to_be_hidden()
    page.context.close()
