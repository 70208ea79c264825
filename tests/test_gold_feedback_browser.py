"""The gold feedback card (issue 17) in a real browser: after a warm-up answer the expected answer shows
over the next record, keys do nothing behind it, and Enter dismisses it.

Debian's chromium through Playwright; the warm-up (first record gold, with feedback) makes the first
answer a gold one whatever the shuffle.
"""

from __future__ import annotations

import json
import re

import pytest

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import make_images, start_many, write_task
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("goldcard")
    paths = make_images(base / "source", 9)
    for i in (0, 1, 2):  # circle_000, square_001, triangle_002: gold, each with its own class as the answer
        shape = paths[i].parent.name
        line = {"file_name": paths[i].name, "gold": shape, "gold_explanation": f"It is a {shape}."}
        (paths[i].parent / "metadata.jsonl").write_text(json.dumps(line) + "\n")
    task = write_task(base / "task.toml", overlap=2)
    task.write_text('gold_column = "gold"\nwarmup = 1\n' + task.read_text())
    (found,) = start_many((base / "data", {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(task),
                                           **oauth_space_env()}))
    yield found
    found.stop()


def test_the_feedback_card_shows_the_expected_answer_and_enter_dismisses_it(browser, server):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1280, "height": 720})
    ctx.add_cookies([playwright_cookie("alice")])
    page = ctx.new_page()
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if re.search(r"/ann/(answer|skip)\b", r.url) else None)
    page.goto(server.url)
    img = page.locator("#ann-img")
    expect(img).to_be_visible(timeout=WAIT)
    page.keyboard.press("Enter")  # closes the first-visit card
    first = img.get_attribute("data-record")
    page.keyboard.press("4")  # "other": wrong for every gold record
    card = page.get_by_role("alertdialog")
    expect(card).to_be_visible(timeout=WAIT)
    expect(card).to_contain_text("Not quite.")
    expect(card).to_contain_text(re.compile(r"expected answer is (circle|square|triangle)\.\s*It is a \1\."))
    assert img.get_attribute("data-record") != first  # shown over the next record
    page.keyboard.press("1")  # keys do nothing while the card is open
    page.wait_for_timeout(500)
    assert len(sent) == 1
    expect(card).to_be_visible()
    page.keyboard.press("Enter")
    expect(card).to_have_count(0)
    page.keyboard.press("1")  # and work again once it is dismissed
    expect(page.locator("#ann-feedback")).to_have_count(0)
    page.wait_for_timeout(1000)
    assert len(sent) == 2
    ctx.close()
