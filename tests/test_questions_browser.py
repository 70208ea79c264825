"""A task of four questions (label, labels, rating, text) on the annotate page (issue 15), in Debian's
chromium through Playwright against the real app running examples/questions/task.toml.

The active question takes the keys and says so (outline, aria-current); Tab and Shift+Tab move between
questions; a key that answers a question moves on; Enter with a required question unanswered names it
and sends nothing; in the text box every key types, Esc leaves it, its key comes back to it, and
Ctrl+Enter submits from it; Back shows all four answers again; what is stored is what was typed.
"""

from __future__ import annotations

import re

import pytest

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import make_images, read_store
from oauth_cookies import oauth_space_env
from test_annotate_keys_browser import open_page as open_first_image

from apphelpers import ROOT, start_app

WAIT = 20_000
TASK = ROOT / "examples" / "questions" / "task.toml"


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("questions")
    make_images(base / "source", 8)
    app = start_app(base / "data", env={"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(TASK),
                                        **oauth_space_env()})
    yield app
    app.stop()


def open_page(browser, url: str, user: str):
    """A signed-in page on its first image, the first question active; `page.sent`: the clicks sent."""
    from playwright.sync_api import expect

    page = open_first_image(browser, url, user)
    expect(page.locator("#ann-q-0")).to_have_attribute("aria-current", "true")
    return page


def active(page) -> list[int]:
    """The questions outlined as active (exactly one, when all is well)."""
    return page.evaluate("[...document.querySelectorAll('.ann-q')].filter(b => b.getAttribute('aria-current')"
                         " === 'true' && b.classList.contains('ann-active')).map(b => Number(b.dataset.q))")


def focused(page) -> str:
    return page.evaluate("(() => { const a = document.activeElement; if (!a) return '';"
                         " const q = a.closest('.ann-q'); return q ? q.id + ' ' + a.tagName : a.id; })()")


def shown(page) -> str:
    return page.locator("#ann-img").get_attribute("data-record")


def test_the_keys_dialog_lists_each_questions_keys(browser, server):
    """(Runs first: the other test stops the app to read its store.)"""
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "bob")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard keys")
    for text in ("Which shape?", "What else is in it? (optional)", "How clear is the shape?", "Caption (optional)",
                 "rate 1 to 5 (barely to obvious)", "the next question"):
        expect(dialog).to_contain_text(text)
    keys = page.locator("#ann-keys kbd").all_inner_texts()
    assert keys[:11] == ["Tab", "Enter", "1", "2", "3", "4", "n", "o", "m", "1-5", "T"], keys
    page.context.close()


def test_four_questions_by_keys_tab_enter_back_and_the_stored_answer(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "alice")
    first = shown(page)
    # the image's folder is the shape's suggestion: marked "suggested", not chosen
    suggested = page.locator("#ann-q-0 button.ann-suggested")
    expect(suggested).to_have_count(1)
    expect(page.locator("#ann-q-0 button.ann-selected")).to_have_count(0)

    # Tab walks the questions, landing in the text box on the fourth; Shift+Tab walks back
    for expected in (1, 2, 3):
        page.keyboard.press("Tab")
        assert active(page) == [expected]
    assert focused(page) == "ann-q-3 TEXTAREA"
    page.keyboard.press("Tab")  # round to the first: the text box is left, the keys work again
    assert active(page) == [0] and focused(page) == "ann-image"
    page.keyboard.press("Shift+Tab")
    assert active(page) == [3]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert active(page) == [0]

    # keys belong to the active question: 2 answers the shape and moves on; n and m choose two issues
    page.keyboard.press("2")
    expect(page.locator("#ann-q-0-1")).to_have_attribute("aria-pressed", "true")
    assert active(page) == [1]
    page.keyboard.press("n")
    page.keyboard.press("m")
    page.keyboard.press("3")  # no key of this question: the shape stays square
    assert active(page) == [1]
    expect(page.locator("#ann-q-1 button.ann-selected")).to_have_count(2)
    expect(page.locator("#ann-q-0-1")).to_have_attribute("aria-pressed", "true")

    # Enter without the required rating: nothing is sent, the rating is named and made active
    page.keyboard.press("Enter")
    expect(page.locator("#ann-error")).to_contain_text("How clear is the shape?")
    assert active(page) == [2] and page.sent == []
    expect(page.locator("#ann-q-2")).to_have_class(re.compile("ann-missing"))

    # 4 rates and moves on, into the caption's box, where every key types
    page.keyboard.press("4")
    assert active(page) == [3] and focused(page) == "ann-q-3 TEXTAREA"
    page.keyboard.type("a big square 12 s?")
    assert page.sent == [] and shown(page) == first
    expect(page.locator("#ann-q-3-count")).to_contain_text("18 / 3–200")
    page.keyboard.press("Escape")  # leaves the box; its key (t) comes back to it
    assert focused(page) == "ann-image"
    page.keyboard.press("t")
    assert focused(page) == "ann-q-3 TEXTAREA"
    page.keyboard.press("Control+Enter")
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", first, timeout=WAIT)
    typed = {"shape": "square", "issues": ["noise", "small"], "clarity": 4, "caption": "a big square 12 s?"}
    assert page.sent == [("answer", page.sent[0][1])] and page.sent[0][1]["answer"] == typed
    # the next record starts afresh, on its first question, with an empty box
    assert active(page) == [0] and focused(page) == "ann-image"
    expect(page.locator("#ann-q-3 textarea")).to_have_value("")
    expect(page.locator(".ann-q button.ann-selected")).to_have_count(0)

    # Back: all four answers as they were given
    page.keyboard.press("Backspace")
    expect(page.locator("#ann-img")).to_have_attribute("data-record", first, timeout=WAIT)
    expect(page.locator("#ann-editing")).to_contain_text("square")
    expect(page.locator("#ann-q-0-1")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#ann-q-1 button.ann-selected")).to_have_count(2)
    expect(page.locator("#ann-q-2-4")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#ann-q-3 textarea")).to_have_value("a big square 12 s?")
    expect(page.locator("#ann-q-0 button.ann-suggested")).to_have_count(0)  # an earlier answer, no suggestion
    # changing one (the clarity) and Enter sends the other three unchanged
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("5")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", first, timeout=WAIT)
    changed = {**typed, "clarity": 5}
    assert page.sent[-1][1]["answer"] == changed
    expect(page.locator("#ann-live-status")).to_have_text("All answers saved", timeout=WAIT)
    page.context.close()

    server.stop()  # one process owns the DuckDB file: read it once the app has closed it
    stored = {(r.record_id, r.user_id): r for r in read_store(server.data_dir).responses}
    assert stored[(int(first), "alice")].answer == changed
    assert stored[(int(first), "alice")].status == "submitted"
