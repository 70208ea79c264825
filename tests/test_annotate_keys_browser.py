"""The annotate page's keyboard model, help overlay, keys past nine labels, local times and live regions
(issue 14 items 1, 2, 3, 7 and the waiting message of item 4) and the comment behind C, in Debian's chromium
through Playwright.

Each test failed on the page before this change:
- typing "blurry edge12" in the comment answered with label 1 and 2 keys' meaning lost (the export held
  the comment, but Esc did nothing and the keys stayed swallowed); Ctrl+Enter did nothing;
- in a multi-label task the suggestion was pre-ticked, so pressing its key to confirm it un-ticked it;
- `?` toggled one line of text under the buttons, not a dialog;
- a task with more than nine labels could not be written without inventing keys;
- the waiting message showed the server's clock ("frees up at 18:12" in UTC on a Space).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import SHAPES, make_images, start_many, write_task
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000
MANY = [*SHAPES, "ellipse", "star", "hexagon", "pentagon", "arrow", "cross", "heart", "moon"]  # 12 labels


@pytest.fixture(scope="module")
def servers(browser, tmp_path_factory):
    """many: 12 single-label labels with no key in the task file; multi: a multi-label task; wait: one
    record at overlap 1, so a second person waits while the first has it on screen."""
    specs = []
    base = tmp_path_factory.mktemp("keys-many")
    make_images(base / "source", 30)
    task = base / "task.toml"
    task.write_text('title = "Many labels"\nkind = "single_label"\ncomment = true\noverlap = 1\n'
                    'suggestion_column = "label"\n' + "".join(f'\n[[labels]]\nname = "{n}"\n' for n in MANY))
    specs.append((base / "data", {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(task), **oauth_space_env()}))
    base = tmp_path_factory.mktemp("keys-multi")
    make_images(base / "source", 30)
    specs.append((base / "data", {"SOURCE_DIR": str(base / "source"), **oauth_space_env(),
                                  "TASK_FILE": str(write_task(base / "task.toml", overlap=1, kind="multi_label"))}))
    base = tmp_path_factory.mktemp("keys-wait")
    make_images(base / "source", 1)
    specs.append((base / "data", {"SOURCE_DIR": str(base / "source"), "LEASE_TTL": "900", **oauth_space_env(),
                                  "TASK_FILE": str(write_task(base / "task.toml", overlap=1))}))
    found = dict(zip(("many", "multi", "wait"), start_many(*specs)))
    yield found
    for s in found.values():
        s.stop()


def open_page(browser, url: str, user: str, **context):
    """A signed-in page (forged OAuth cookie) showing its first image; `page.sent` collects the clicks sent."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1100, "height": 900}, **context)
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.sent = []
    page.on("request", lambda r: page.sent.append((r.url.split("?")[0].rsplit("/", 1)[1], json.loads(r.post_data)))
            if re.search(r"/ann/(answer|skip|back)\b", r.url) else None)
    page.goto(url)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.wait_for_timeout(1200)  # the buffer fills after the first view
    return page


def shown(page) -> str:
    return page.locator("#ann-img").get_attribute("data-record")


def wait_next(page, before: str) -> str:
    from playwright.sync_api import expect

    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", before, timeout=WAIT)
    return shown(page)


def wait_sent(page, n: int) -> None:
    """Until `n` answers have gone out (the page sends them one at a time, after showing the next image)."""
    for _ in range(WAIT // 50):
        if len(page.sent) >= n:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"{len(page.sent)} answers sent, expected {n}: {page.sent}")


def focused_id(page) -> str:
    return page.evaluate("document.activeElement ? document.activeElement.id : ''")


def test_typing_a_comment_answers_nothing_and_esc_gives_the_keys_back(browser, servers):
    from playwright.sync_api import expect

    page = open_page(browser, servers["many"].url, "alice")
    first = shown(page)
    box = page.locator("#ann-comment textarea")
    page.keyboard.press("c")  # the comment opens with C (issue 14: it takes no room until then)
    expect(box).to_be_focused()
    box.click()
    page.keyboard.type("blurry edge12 s?")  # label keys, the skip key and the help key, typed as text
    page.keyboard.press("Backspace")
    page.keyboard.type("?")
    page.wait_for_timeout(500)
    assert box.input_value() == "blurry edge12 s?"
    assert page.sent == [] and shown(page) == first
    expect(page.locator("#ann-help")).to_be_hidden()
    # Esc leaves the box for the image's stage; then 1 answers label 1, with the comment as typed
    page.keyboard.press("Escape")
    assert focused_id(page) == "ann-image"
    page.keyboard.press("1")
    second = wait_next(page, first)
    assert page.sent[0][0] == "answer" and page.sent[0][1]["answer"] == [MANY[0]]
    assert page.sent[0][1]["comment"] == "blurry edge12 s?"
    assert box.input_value() == ""  # the next record's comment starts empty
    # after a click on a button, focus goes back to the stage: the next key is not swallowed by the button
    page.locator("#label-1").click()
    third = wait_next(page, second)
    assert focused_id(page) == "ann-image"
    page.keyboard.press("3")
    wait_next(page, third)
    assert [a[1]["answer"] for a in page.sent] == [[MANY[0]], [MANY[1]], [MANY[2]]]
    # the live region said which image came
    expect(page.locator("#ann-live")).to_contain_text(f"Image {shown(page)}")
    expect(page.locator("#ann-live-status")).to_have_text("All answers saved", timeout=WAIT)
    page.context.close()


def test_ctrl_enter_submits_from_the_comment(browser, servers):
    page = open_page(browser, servers["many"].url, "bob")
    first = shown(page)
    suggestion = page.locator(".ann-suggestion b").inner_text()
    page.locator("#btn-comment").click()  # its button opens it as C does
    page.locator("#ann-comment textarea").click()
    page.keyboard.type("looks fine")
    page.keyboard.press("Control+Enter")
    second = wait_next(page, first)
    assert page.sent == [("answer", page.sent[0][1])]
    assert page.sent[0][1]["answer"] == [suggestion] and page.sent[0][1]["comment"] == "looks fine"
    assert focused_id(page) == "ann-image"  # the keys work again at once
    page.keyboard.press("2")
    wait_next(page, second)
    assert page.sent[1][1]["answer"] == [MANY[1]] and page.sent[1][1]["comment"] == ""
    page.context.close()


def test_the_comment_takes_no_room_until_c_and_goes_with_the_answer(browser, servers):
    """An optional comment is folded away behind C: opening it moves neither the image nor the controls; Esc
    leaves it (an empty one folds again, one with text stays in view); the text goes with the answer; the
    next record starts folded. Before this change the comment box sat in the bar on every record."""
    from playwright.sync_api import expect

    page = open_page(browser, servers["many"].url, "grace")
    comment, box = page.locator("#ann-comment"), page.locator("#ann-comment textarea")
    where = "(sels) => sels.map((s) => { const r = document.querySelector(s).getBoundingClientRect(); " \
            "return [r.x, r.y, r.width, r.height]; })"
    fixed = ["#ann-image", "#label-0", "#label-11", "#btn-skip", "#btn-accept", "#btn-comment"]
    before = page.evaluate(where, fixed)
    expect(comment).to_be_hidden()
    expect(page.locator("#btn-comment")).to_have_attribute("aria-expanded", "false")
    first = shown(page)
    page.keyboard.press("c")
    expect(comment).to_be_visible()
    expect(box).to_be_focused()
    expect(page.locator("#btn-comment")).to_have_attribute("aria-expanded", "true")
    assert box.input_value() == ""  # the C that opened it was not typed
    assert page.evaluate(where, fixed) == before, "opening the comment moved the image or the controls"
    page.keyboard.press("Escape")  # empty: it folds away again
    expect(comment).to_be_hidden()
    assert focused_id(page) == "ann-image"
    page.keyboard.press("c")
    page.keyboard.type("cut off 1 c")
    page.keyboard.press("Escape")  # with text: it stays in view, the keys work again
    expect(comment).to_be_visible()
    assert focused_id(page) == "ann-image" and shown(page) == first and page.sent == []
    page.keyboard.press("2")
    second = wait_next(page, first)
    wait_sent(page, 1)
    assert page.sent[0][1]["answer"] == [MANY[1]] and page.sent[0][1]["comment"] == "cut off 1 c"
    expect(comment).to_be_hidden()  # the next record starts folded, and empty
    assert box.input_value() == ""
    page.keyboard.press("3")
    wait_next(page, second)
    wait_sent(page, 2)
    assert page.sent[1][1]["comment"] == ""
    page.context.close()


def test_twelve_labels_load_and_answer_with_their_shown_keys(browser, servers):
    from playwright.sync_api import expect

    page = open_page(browser, servers["many"].url, "carol")
    for i, key in ((8, "9"), (9, "0"), (10, "a"), (11, "b")):
        expect(page.locator(f"#label-{i} .ann-key")).to_have_text(key)
        expect(page.locator(f"#label-{i}")).to_have_attribute("aria-keyshortcuts", key)
    for n, (i, key) in enumerate(((9, "0"), (10, "a"), (11, "b"))):
        before = shown(page)
        page.keyboard.press(key)
        wait_next(page, before)
        wait_sent(page, n + 1)  # the next image shows before its answer goes out (one at a time)
        assert page.sent[-1][1]["answer"] == [MANY[i]], (key, page.sent)
    page.context.close()


def test_question_mark_opens_a_dialog_listing_every_key_and_esc_closes_it(browser, servers):
    from playwright.sync_api import expect

    page = open_page(browser, servers["many"].url, "dave")
    buttons = page.locator("#ann-root button:visible")
    assert buttons.count() >= len(MANY) + 4
    for n in range(buttons.count()):  # every button on screen has an accessible name
        expect(buttons.nth(n)).to_have_accessible_name(re.compile(r"\w"))
    hint = page.locator("#btn-help")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("?")
    dialog = page.get_by_role("dialog", name="Keyboard keys")
    expect(dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    keys = page.locator("#ann-keys kbd").all_inner_texts()
    assert keys == [*"1234567890ab", "Enter", "Ctrl+Enter", "S", "Backspace", "C", "Esc", "G", "+ / -", "?"], keys
    for name in MANY:
        expect(dialog).to_contain_text(name)
    first = shown(page)
    page.keyboard.press("1")  # behind the dialog, keys do nothing
    page.wait_for_timeout(300)
    assert page.sent == [] and shown(page) == first
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused_id(page) == "ann-image"
    page.keyboard.press("?")
    expect(dialog).to_be_visible()
    page.keyboard.press("?")  # ? closes it too
    expect(dialog).to_be_hidden()
    hint.click()  # the visible hint opens it as well
    expect(dialog).to_be_visible()
    page.locator("#btn-help-close").click()
    expect(dialog).to_be_hidden()
    page.keyboard.press("1")  # and the keys work again
    wait_next(page, first)
    page.context.close()


def test_multi_label_a_suggested_labels_key_confirms_it(browser, servers):
    from playwright.sync_api import expect

    page = open_page(browser, servers["multi"].url, "erin")
    first = shown(page)
    suggestion = page.locator(".ann-suggestion b").inner_text()
    i = SHAPES.index(suggestion)
    chip = page.locator(f"#label-{i}")
    # suggested, not chosen: marked as such, not pressed
    expect(chip).to_have_class(re.compile(r"\bann-suggested\b"))
    expect(chip).not_to_have_class(re.compile(r"\bann-selected\b"))
    expect(chip).to_have_attribute("aria-pressed", "false")
    expect(chip).to_have_accessible_name(re.compile(r"suggested"))  # a screen reader hears it too
    page.keyboard.press(str(i + 1))  # its key confirms it (it used to un-tick it)
    expect(chip).to_have_attribute("aria-pressed", "true")
    expect(chip).to_have_class(re.compile(r"\bann-selected\b"))
    other = (i + 1) % 3
    page.keyboard.press(str(other + 1))  # and another label beside it
    expect(page.locator(f"#label-{other}")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    second = wait_next(page, first)
    assert page.sent[0][1]["answer"] == [SHAPES[n] for n in sorted((i, other))]
    # the next record: nothing is chosen; Enter with nothing chosen accepts the suggestion alone
    for n in range(len(SHAPES)):
        expect(page.locator(f"#label-{n}")).to_have_attribute("aria-pressed", "false")
    suggestion = page.locator(".ann-suggestion b").inner_text()
    expect(page.locator("#btn-accept")).to_have_text("Accept suggestion (Enter)")
    page.keyboard.press("Enter")
    third = wait_next(page, second)
    assert page.sent[1][1]["answer"] == [suggestion]
    # a key pressed twice un-chooses: with nothing left chosen... the suggestion is still only suggested
    page.keyboard.press("4")
    expect(page.locator("#btn-accept")).to_have_text("Submit (Enter)")
    page.keyboard.press("4")
    expect(page.locator("#label-3")).to_have_attribute("aria-pressed", "false")
    assert shown(page) == third and len(page.sent) == 2
    page.context.close()


def test_the_waiting_message_shows_the_browsers_local_time(browser, servers):
    from playwright.sync_api import expect

    url = servers["wait"].url
    holder = open_page(browser, url, "alice")  # has the only record on screen
    ctx = browser.new_context(viewport={"width": 1100, "height": 900}, timezone_id="Asia/Tokyo")
    ctx.add_cookies([playwright_cookie("bob")])
    page = ctx.new_page()
    page.goto(url)
    waiting = page.locator("#ann-waiting")
    expect(waiting).to_be_visible(timeout=WAIT)
    frees_at = page.evaluate("JSON.parse(document.getElementById('ann-boot-data').dataset.view).frees_at")
    assert frees_at, "the view carries when the first lease ends, as epoch seconds"
    tokyo = datetime.fromtimestamp(frees_at, ZoneInfo("Asia/Tokyo")).strftime("%H:%M")
    utc = datetime.fromtimestamp(frees_at, ZoneInfo("UTC")).strftime("%H:%M")
    assert tokyo != utc
    expect(waiting).to_contain_text(f"frees up at {tokyo} your local time (Asia/Tokyo)")
    ctx.close()
    holder.context.close()


def test_a_script_that_loads_after_the_view_was_drawn_still_starts(browser, servers):
    """The script is a fetched file now, not inline: when it arrives after Gradio drew the view and handed
    over the first record, it must still show it (it used to wait for a DOM change that may never come)."""
    import time

    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.add_cookies([playwright_cookie("frank")])
    ctx.route("**/ann-static/*.js", lambda route: (time.sleep(4), route.continue_()))
    page = ctx.new_page()
    page.goto(servers["many"].url)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    first = shown(page)
    page.keyboard.press("1")
    wait_next(page, first)
    ctx.close()
