"""A preference task (records of two images and a prompt, issue 15) on the annotate page, in Debian's chromium
through Playwright against the real app running the shipped sample (examples/preference).

The prompt is shown above the two images; at desktop width they stand side by side, on a phone's width one
under the other, each with its number as a badge; keys 1 / T and Enter answer; on the swap to the next record
both of its images are already loaded (no request for them after the key press); what is stored is what
was chosen.
"""

from __future__ import annotations

import json
import re

import pytest

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import read_store
from oauth_cookies import oauth_space_env, playwright_cookie

from apphelpers import ROOT, start_app

WAIT = 20_000
SAMPLE = ROOT / "examples" / "preference"


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("preference")
    app = start_app(base / "data", env={"SOURCE_DIR": str(SAMPLE / "pairs"), "TASK_FILE": str(SAMPLE / "task.toml"),
                                        **oauth_space_env()})
    yield app
    app.stop()


def open_page(browser, url: str, user: str, width: int, height: int):
    """A signed-in page on its first record; `page.sent`: the answers sent, `page.images`: the image URLs
    the page asked the server for, in order."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.sent, page.images = [], []
    page.on("request", lambda r: page.sent.append(json.loads(r.post_data)["answer"])
            if re.search(r"/ann/answer\b", r.url) else None)
    page.on("request", lambda r: page.images.append(r.url) if "/img/" in r.url else None)
    page.goto(url)
    expect(page.locator("#ann-img-2")).to_be_visible(timeout=WAIT)
    page.wait_for_timeout(1500)  # the buffer (and its preloaded images) fills after the first view
    page.keyboard.press("Enter")  # closes the first-visit card
    return page


def boxes(page) -> list[dict]:
    return [page.locator(f"#ann-img-{n}").bounding_box() for n in (1, 2)]


def shown(page) -> str:
    return page.locator("#ann-img-1").get_attribute("data-record")


def loaded(page) -> list[bool]:
    """Whether each image of the record on screen was decoded the moment it was shown."""
    return page.evaluate("[1, 2].map(n => { const i = document.getElementById('ann-img-' + n);"
                         " return i.complete && i.naturalWidth > 0; })")


def test_side_by_side_on_a_desktop_keys_answer_and_the_next_pair_is_preloaded(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "alice", 1200, 900)
    one, two = boxes(page)
    assert two["x"] >= one["x"] + one["width"] - 1 and abs(two["y"] - one["y"]) < 2, (one, two)
    prompt = page.locator("#ann-image .ann-text")
    expect(prompt).to_have_text(re.compile(r"^[123] (red|blue|green|orange) (circle|square|triangle)s?$"))
    assert prompt.bounding_box()["y"] + prompt.bounding_box()["height"] <= one["y"]  # the text above the images
    expect(page.locator(".ann-badge")).to_have_text(["1", "2"])
    expect(page.locator("#ann-q-0 button.ann-chip")).to_have_text(
        [re.compile(r"1\s*Image 1"), re.compile(r"2\s*Image 2"), re.compile(r"T\s*Tie"), re.compile(r"B\s*Both bad")])

    first = shown(page)
    asked = len(page.images)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#ann-img-1")).not_to_have_attribute("data-record", first, timeout=WAIT)
    assert loaded(page) == [True, True]
    second = shown(page)
    page.wait_for_timeout(300)
    urls = page.evaluate("[1, 2].map(n => document.getElementById('ann-img-' + n).src)")
    assert not [u for u in page.images[asked:] if u in urls], "the second pair's images were fetched after the key"
    assert all(u in page.images[:asked] for u in urls)  # ...because they had been, before it

    page.keyboard.press("t")
    page.keyboard.press("Enter")
    expect(page.locator("#ann-img-1")).not_to_have_attribute("data-record", second, timeout=WAIT)
    assert loaded(page) == [True, True]
    for _ in range(WAIT // 50):
        if len(page.sent) >= 2:
            break
        page.wait_for_timeout(50)
    assert page.sent == [{"preferred": "1"}, {"preferred": "tie"}]
    page.context.close()


def test_stacked_on_a_phone(browser, server):
    page = open_page(browser, server.url, "bob", 390, 800)
    one, two = boxes(page)
    assert two["y"] >= one["y"] + one["height"] - 1 and one["width"] > 300, (one, two)
    page.context.close()


def test_the_answers_are_stored_as_chosen(browser, server):
    """(Runs last: it stops the app to read its store.)"""
    server.stop()
    stored = read_store(server.data_dir)
    answers = sorted(json.dumps(r.answer) for r in stored.responses if r.user_id == "alice")
    assert answers == ['{"preferred": "1"}', '{"preferred": "tie"}']
