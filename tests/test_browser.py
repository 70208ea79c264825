"""The annotate view in a real browser: Playwright driving Debian's chromium against the real server.

- password mode: sign in through Gradio's login form, label five images with the keyboard, skip
  one, go back with Backspace and change an answer, watch the saved indicator reach "All answers
  saved", reload and find the progress kept;
- a fast burst of key presses records exactly one answer per image shown, and nothing else;
- simulated-Space OAuth mode (forged `session` cookies, one browser context per person): at
  overlap 1 a second person is never shown the first person's records.
- offline (the click routes unreachable): the page counts the answers only it holds, never says
  saved, warns before the tab closes, and sends each answer once when the server is back;
- "All answers saved" shows soon after the last answer's commit, not seconds later;
- an image whose link fails makes the page ask once for a fresh view, then say what to do.

The last test stops the servers and compares their DuckDB files with what the browsers did.
Without chromium the tests skip, or fail when ANNOTATOR_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from browserhelpers import chromium
from clients import add_users, labels_of, make_images, read_store, start_many, write_task
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000  # ms; generous, the machine may be busy
LABELS = {"1": "circle", "2": "square", "3": "triangle", "4": "other"}
SHOTS = Path(os.environ.get("ANNOTATOR_SCREENSHOTS", "")) if os.environ.get("ANNOTATOR_SCREENSHOTS") else None

# Every record id the page has put in #ann-img, in order (a MutationObserver, so nothing is missed
# between two Playwright polls).
WATCH_SHOWN = """() => {
  window.__shown = [];
  const note = () => {
    const img = document.querySelector('#ann-img');
    const rid = img && img.getAttribute('data-record');
    if (rid && window.__shown[window.__shown.length - 1] !== rid) window.__shown.push(rid);
  };
  note();
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     attributeFilter: ['data-record']});
}"""

# What the browser tests did, for the final comparison with the stores: user -> {record: (status, answer)}
EXPECTED: dict[str, dict[str, dict[int, tuple[str, tuple[str, ...]]]]] = {"password": {}, "oauth": {}}
HISTORY: dict[str, set[tuple[int, str]]] = {"password": set(), "oauth": set()}  # (record, user) changed once
# people who try the Back-before-refill race in turn, until one gets it (test_back_pressed_before_...)
RACERS = ("dave", "dave2", "dave3")


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def servers(browser, tmp_path_factory):
    """A password-mode server and a simulated-Space OAuth server, both at overlap 1, started together."""
    specs = []
    for mode in ("password", "oauth"):
        base = tmp_path_factory.mktemp(f"browser-{mode}")
        make_images(base / "source", 30)
        env = {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(write_task(base / "task.toml", overlap=1)),
               "MAX_COMMENT_CHARS": "40"}
        if mode == "password":
            env["AUTH_MODE"] = "password"
            add_users(base / "data" / "passwords.json", ["alice", "bob", "carol", *RACERS])
        else:
            env.update(oauth_space_env())
        specs.append((base / "data", env))
    pw, oauth = start_many(*specs)
    found = {"password": pw, "oauth": oauth}
    yield found
    for s in found.values():
        s.stop()


def shot(page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login_form_filled(browser, url: str, user: str):
    """A new browser context on Gradio's login form, filled in for `user`; Login is not clicked yet."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(f"pw-{user}-secret")  # clients.add_users
    return page


def sign_in_with_password(browser, url: str, user: str):
    from playwright.sync_api import expect

    page = login_form_filled(browser, url, user)
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.evaluate(WATCH_SHOWN)
    return page


def sign_in_with_oauth(browser, url: str, user: str):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.goto(url)
    expect(page.get_by_role("button", name=f"Logout ({user})")).to_be_visible(timeout=WAIT)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.evaluate(WATCH_SHOWN)
    return page


def on_screen(page) -> int:
    return int(page.locator("#ann-img").get_attribute("data-record"))


def press_and_wait(page, key: str) -> int:
    """Press a key and wait for the page to show another record; returns the record now shown."""
    from playwright.sync_api import expect

    before = page.locator("#ann-img").get_attribute("data-record")
    page.keyboard.press(key)
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", before, timeout=WAIT)
    return on_screen(page)


def shown(page) -> list[int]:
    return [int(r) for r in page.evaluate("window.__shown")]


def my_progress(page) -> tuple[int, int]:
    text = page.locator("#ann-progress").inner_text()
    m = re.search(r"You: (\d+) today, (\d+) in total", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def test_password_sign_in_keyboard_skip_back_saved_reload(browser, servers):
    from playwright.sync_api import expect

    server = servers["password"]
    page = sign_in_with_password(browser, server.url, "alice")
    expect(page.locator("#ann-progress")).to_contain_text("You: 0 today, 0 in total")
    mine: dict[int, tuple[str, tuple[str, ...]]] = {}

    # five images labelled with the label keys
    for key in "12341":
        rid = on_screen(page)
        press_and_wait(page, key)
        mine[rid] = ("submitted", (LABELS[key],))
    # skip one with S
    skipped = on_screen(page)
    current = press_and_wait(page, "s")
    mine[skipped] = ("skipped", ())
    assert current not in mine
    # Backspace: the latest answer (the skip) comes back, marked as an earlier answer; again: the fifth label
    assert press_and_wait(page, "Backspace") == skipped
    expect(page.locator("#ann-editing")).to_contain_text("skipped")
    fifth = list(mine)[4]
    assert press_and_wait(page, "Backspace") == fifth
    expect(page.locator("#ann-editing")).to_contain_text("circle")
    # the earlier answer is marked on its button, and Enter's button says it keeps it
    expect(page.locator("#label-0")).to_have_class(re.compile(r"\bann-earlier\b"))
    expect(page.locator("#label-1")).not_to_have_class(re.compile(r"\bann-earlier\b"))
    expect(page.locator("#btn-accept")).to_have_text("Keep earlier answer (Enter)")
    shot(page, "browser-password-editing")
    # change it: triangle instead of circle; then the record that was on screen comes back
    assert press_and_wait(page, "3") == current
    mine[fifth] = ("submitted", ("triangle",))
    HISTORY["password"].add((fifth, "alice"))

    # the saved indicator: "Saving…" while the writer works, then "All answers saved" after a pause
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    expect(page.locator("#ann-progress")).to_contain_text("You: 5 today, 5 in total")
    assert set(shown(page)) == set(mine) | {current}
    shot(page, "browser-password-saved")

    # reload: a new page session, the same person; the progress is kept and nothing answered comes back
    page.reload()
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    expect(page.locator("#ann-progress")).to_contain_text("You: 5 today, 5 in total", timeout=WAIT)
    assert on_screen(page) not in mine
    shot(page, "browser-password-reloaded")
    EXPECTED["password"]["alice"] = mine
    page.context.close()


def test_a_burst_of_key_presses_records_one_answer_per_image_shown(browser, servers):
    """The page swaps to buffered records at once, so a burst answers several images, each once, in order."""
    from playwright.sync_api import expect

    server = servers["password"]
    page = sign_in_with_password(browser, server.url, "bob")
    page.wait_for_timeout(1000)  # the buffer fills while the person looks at the first image
    sent: list[int] = []
    responses = []
    page.on("request", lambda r: sent.append(int(json.loads(r.post_data)["ticket"].split(".")[0]))
            if r.url.split("?")[0].endswith("/ann/answer") else None)
    page.on("response", lambda r: responses.append(r) if r.url.split("?")[0].endswith("/ann/answer") else None)
    for _ in range(10):
        page.keyboard.press("2")  # as fast as Playwright can type: presses overtake the responses
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    page.wait_for_timeout(500)
    displayed = shown(page)
    last = on_screen(page)
    assert displayed[-1] == last
    assert len(displayed) == len(set(displayed)), f"a record came back after it was answered: {displayed}"
    answered = displayed[:-1]
    # one answer per image shown, in the order shown, none twice; a press while the shown image's answer
    # was still on its way (nothing buffered) answered nothing
    assert sent == answered, (sent, displayed)
    assert 2 <= len(answered) <= 10, displayed  # at least one press was applied ahead of the server
    assert all(r.ok for r in responses) and len(responses) == len(sent)
    # every record a response put on screen was shown (none was answered behind the person's back)
    carried = {r.json()["item"]["record_id"] for r in responses}
    assert carried <= set(displayed), (carried, displayed)
    _, total = my_progress(page)
    assert total == len(answered), (total, displayed)
    shot(page, "browser-burst")
    EXPECTED["password"]["bob"] = {rid: ("submitted", ("square",)) for rid in answered}
    page.context.close()


def test_a_refusal_is_shown_on_the_page_and_enter_keeps_a_changed_answer(browser, servers):
    from playwright.sync_api import expect

    server = servers["password"]
    page = sign_in_with_password(browser, server.url, "carol")
    first = on_screen(page)
    press_and_wait(page, "2")
    current = on_screen(page)
    # a comment over MAX_COMMENT_CHARS: the click is refused, the page says why and keeps the record
    page.keyboard.press("c")  # the comment opens with C
    page.locator("#ann-comment textarea").fill("x" * 41)
    page.locator("#label-0").click()
    expect(page.locator("#ann-error")).to_contain_text("too long", timeout=WAIT)
    page.wait_for_timeout(2000)  # the deferred saved check must not wipe the message
    expect(page.locator("#ann-error")).to_contain_text("too long")
    expect(page.locator("#ann-error")).to_be_visible()
    assert on_screen(page) == current
    shot(page, "browser-refusal")
    page.locator("#ann-comment textarea").fill("short")
    page.locator("#label-0").click()
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", str(current), timeout=WAIT)
    expect(page.locator("#ann-error")).to_be_hidden()
    expect(page.locator("#ann-comment textarea")).to_have_value("")
    # back to the first answer (square) and Enter: the earlier answer is kept, not the suggestion
    now = on_screen(page)
    press_and_wait(page, "Backspace")
    assert press_and_wait(page, "Backspace") == first
    expect(page.locator("#ann-editing")).to_contain_text("square")
    assert press_and_wait(page, "Enter") == now
    press_and_wait(page, "Backspace")
    press_and_wait(page, "Backspace")
    expect(page.locator("#ann-editing")).to_contain_text("square")
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    EXPECTED["password"]["carol"] = {first: ("submitted", ("square",)), current: ("submitted", ("circle",))}
    HISTORY["password"].add((first, "carol"))  # Enter re-submitted the same answer
    page.context.close()


def test_back_pressed_before_the_buffer_refill_keeps_the_earlier_answer_on_screen(browser, servers):
    """The first view comes with nothing buffered, so the page asks for the buffer 0.7 s later. Its reply
    must not replace an earlier answer the person opened with Backspace in the meantime (a flake once).

    The race needs the refill asked for after Backspace: a person answering and pressing Backspace within
    0.7 s of the first view. A loaded machine may be slower than that; then the refill went out before
    Back, the same steps check the plainer order, and the next person tries the race again."""
    raced = next((user for user in RACERS if _back_before_refill(browser, servers["password"].url, user)), None)
    assert raced, f"none of {len(RACERS)} people pressed Backspace within 0.7 s of the first view: the race " \
                  f"this test is about never happened (the machine is too slow for it)"


def _back_before_refill(browser, url: str, user: str) -> bool:
    """Answer the first record, go back to it while Back is held, and change it; whether the page asked for
    the refill after Backspace (the race)."""
    from playwright.sync_api import expect

    # signed in by hand: the usual helper's waits could use up the 0.7 s before the refill
    page = login_form_filled(browser, url, user)
    held, refills = [], []
    page.route("**/ann/back", lambda route: held.append(route))
    page.on("request", lambda request: refills.append(request) if request.url.endswith("/ann/next") else None)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#ann-img", timeout=WAIT)  # the first view is applied: the refill is 0.7 s away
    first = on_screen(page)
    page.keyboard.press("1")
    page.wait_for_function(f"document.getElementById('ann-img').dataset.record !== '{first}'", timeout=WAIT)
    second = on_screen(page)
    page.keyboard.press("Backspace")
    page.wait_for_timeout(1200)  # the refill, if not sent yet, is queued behind the held Back
    assert len(held) == 1, "Back was not sent"
    raced = not refills
    if raced:
        with page.expect_request("**/ann/next", timeout=5000):  # the refill goes out after Back's reply
            held[0].continue_()
    else:
        held[0].continue_()
    expect(page.locator("#ann-editing")).to_contain_text("circle", timeout=WAIT)
    assert on_screen(page) == first
    page.wait_for_timeout(1000)  # the refill's reply has come
    assert on_screen(page) == first, "the refill's reply replaced the earlier answer opened with Backspace"
    expect(page.locator("#ann-editing")).to_contain_text("circle")
    # change it; then the record that was on screen before Backspace comes back
    page.keyboard.press("2")
    expect(page.locator("#ann-img")).to_have_attribute("data-record", str(second), timeout=WAIT)
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    EXPECTED["password"][user] = {first: ("submitted", ("square",))}
    HISTORY["password"].add((first, user))
    page.context.close()
    return raced


def test_oauth_second_person_never_sees_the_first_persons_records(browser, servers):
    from playwright.sync_api import expect

    server = servers["oauth"]
    alice = sign_in_with_oauth(browser, server.url, "alice")
    bob = sign_in_with_oauth(browser, server.url, "bob")
    done: dict[str, dict[int, tuple[str, tuple[str, ...]]]] = {"alice": {}, "bob": {}}
    for i in range(4):
        for name, page in (("alice", alice), ("bob", bob)):
            key = "1234"[i]
            rid = on_screen(page)
            press_and_wait(page, key)
            done[name][rid] = ("submitted", (LABELS[key],))
    # a quick burst from alice while bob keeps going: still nothing of hers reaches bob
    for _ in range(3):
        alice.keyboard.press("1")
    # the team count a page shows is the server's as of that person's last action: bob answers once
    # alice's burst has landed, so his reply counts it
    expect(alice.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    rid = on_screen(bob)
    press_and_wait(bob, "2")
    done["bob"][rid] = ("submitted", ("square",))
    for page in (alice, bob):
        expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    a_shown, b_shown = set(shown(alice)), set(shown(bob))
    assert not a_shown & b_shown, f"both were shown {sorted(a_shown & b_shown)}"
    # alice's burst answered what she was shown, one answer each
    a_answered = shown(alice)[:-1]
    assert set(done["alice"]) <= set(a_answered)
    for rid in a_answered:
        done["alice"].setdefault(rid, ("submitted", ("circle",)))
    assert my_progress(alice)[1] == len(done["alice"])
    assert my_progress(bob)[1] == len(done["bob"])
    expect(bob.locator("#ann-progress")).to_contain_text(f"Team: {len(done['alice']) + len(done['bob'])} of 30")
    shot(alice, "browser-oauth-alice")
    EXPECTED["oauth"].update(done)
    alice.context.close()
    bob.context.close()


def test_a_signed_out_visitor_sees_how_to_sign_in_and_no_controls(browser, servers):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    page.goto(servers["oauth"].url)
    expect(page.locator("#ann-signin")).to_contain_text("sign in", ignore_case=True, timeout=WAIT)
    for control in ("#label-0", "#btn-skip", "#btn-accept", "#btn-back", "#ann-comment"):
        expect(page.locator(control)).to_be_hidden()
    page.keyboard.press("1")
    page.keyboard.press("Backspace")
    page.wait_for_timeout(500)
    expect(page.locator("#ann-error")).to_be_hidden()
    shot(page, "browser-oauth-signed-out")
    ctx.close()


def test_the_next_image_is_shown_before_the_server_answers(browser, servers):
    """With the answer held back, a key press still shows the next (preloaded) image at once."""
    from playwright.sync_api import expect

    page = sign_in_with_oauth(browser, servers["oauth"].url, "carol")
    page.wait_for_timeout(1500)  # the page asks once for the buffer that filled after it loaded
    held = []
    page.route("**/ann/answer*", lambda route: held.append(route))
    first = on_screen(page)
    page.keyboard.press("3")
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", str(first), timeout=1000)
    second = on_screen(page)
    assert page.evaluate("document.getElementById('ann-img').complete")  # its pixels were already there
    assert len(held) == 1 and "You: 0 today" in page.locator("#ann-progress").inner_text()  # still unanswered
    held[0].continue_()
    page.unroute("**/ann/answer*")
    expect(page.locator("#ann-progress")).to_contain_text("You: 1 today", timeout=WAIT)  # the answer landed
    assert on_screen(page) == second
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    EXPECTED["oauth"]["carol"] = {first: ("submitted", ("triangle",))}
    page.context.close()


# Every text the saved indicator shows, in order, and when (performance.now) the last key was pressed
# and "All answers saved" first showed after it.
WATCH_STATUS = """() => {
  window.__statuses = []; window.__lastKey = null; window.__savedAt = null;
  document.addEventListener('keydown', () => { window.__lastKey = performance.now(); window.__savedAt = null; },
                            true);
  const note = () => {
    const el = document.querySelector('#ann-saved');
    const text = el ? el.textContent : '';
    if (window.__statuses[window.__statuses.length - 1] !== text) window.__statuses.push(text);
    if (text === 'All answers saved' && window.__lastKey !== null && window.__savedAt === null)
      window.__savedAt = performance.now();
  };
  note();
  new MutationObserver(note).observe(document.querySelector('#ann-status'),
                                     {subtree: true, childList: true, characterData: true});
}"""


def with_buffer(page, n: int) -> None:
    """Wait until the page has preloaded the images of at least `n` records beyond those it showed."""
    requested: set[int] = set()
    page.on("request", lambda r: requested.add(int(r.url.split("/img/")[1].split("?")[0]))
            if "/img/" in r.url else None)
    page.reload()  # the listener sees every image request from the start
    page.wait_for_selector("#ann-img", timeout=WAIT)
    page.evaluate(WATCH_SHOWN)
    for _ in range(WAIT // 100):
        if len(requested - set(shown(page))) >= n:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"the page preloaded {sorted(requested)} beyond {shown(page)}; expected {n} more")


def test_offline_the_page_counts_unsent_answers_warns_on_close_and_sends_them_once_back(browser, servers):
    """The click routes unreachable: the page keeps answering from its buffer, says how many answers
    only it holds (never "saved"), arms the unload warning; back online, each answer arrives once."""
    from playwright.sync_api import expect

    page = sign_in_with_oauth(browser, servers["oauth"].url, "erin")
    with_buffer(page, 3)
    page.evaluate(WATCH_STATUS)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.dismiss()))
    answered = {}
    page.route("**/ann/**", lambda route: route.abort("connectionrefused"))  # the server is unreachable
    offline_from = len(page.evaluate("window.__statuses"))
    for key in "123":
        rid = on_screen(page)
        press_and_wait(page, key)
        answered[rid] = ("submitted", (LABELS[key],))
    expect(page.locator("#ann-saved")).to_have_text("3 answers not sent yet — keep this tab open", timeout=WAIT)
    expect(page.locator("#ann-error")).to_contain_text("connection to the server was lost")
    shot(page, "browser-offline")
    # closing the tab now would lose them: the browser asks first (dismissed: the tab stays)
    page.close(run_before_unload=True)
    for _ in range(50):
        if dialogs:
            break
        page.wait_for_timeout(100)
    assert dialogs == ["beforeunload"] and not page.is_closed()
    offline_statuses = page.evaluate("window.__statuses")[offline_from:]
    assert "All answers saved" not in offline_statuses, offline_statuses

    page.unroute("**/ann/**")  # reachable again: the queue drains by itself
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    expect(page.locator("#ann-error")).to_be_hidden()
    expect(page.locator("#ann-progress")).to_contain_text("You: 3 today, 3 in total", timeout=WAIT)
    # everything is committed: closing asks nothing any more
    page.close(run_before_unload=True)
    page.wait_for_event("close", timeout=WAIT)
    assert dialogs == ["beforeunload"]
    EXPECTED["oauth"]["erin"] = answered  # the final comparison: each answer stored once
    page.context.close()


def test_saved_is_shown_soon_after_the_last_answer_is_committed(browser, servers):
    """Not ~3 s after the last key press (the old deferred check): the page asks as soon as nothing is
    left to send, and the server replies when the commit is done (tens of ms here)."""
    from playwright.sync_api import expect

    page = sign_in_with_oauth(browser, servers["oauth"].url, "frank")
    page.wait_for_timeout(1500)  # the buffer fills after the page loaded
    page.evaluate(WATCH_STATUS)
    answered = {}
    for key in "21":
        rid = on_screen(page)
        press_and_wait(page, key)
        answered[rid] = ("submitted", (LABELS[key],))
    expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
    took_ms = page.evaluate("window.__savedAt - window.__lastKey")
    # the old page could not say it before 3000 ms; a commit and two requests take well under a second
    # here, so 2000 ms leaves a wide margin for a busy machine
    assert took_ms < 2000, f"'All answers saved' came {took_ms:.0f} ms after the last key press"
    assert "Saving…" in page.evaluate("window.__statuses")
    expect(page.locator("#ann-progress")).to_contain_text("You: 2 today, 2 in total")
    EXPECTED["oauth"]["frank"] = answered
    page.context.close()


def test_saved_needs_no_request_of_its_own_per_answer(browser, servers):
    """An answer sent with nothing queued behind it gets a reply that waits for its commit, so a person
    who pauses after each answer is told "All answers saved" without a /ann/saved request per answer
    (the page used to send one per pause: one more request per click at a workshop's pace)."""
    from playwright.sync_api import expect

    page = sign_in_with_oauth(browser, servers["oauth"].url, "ivy")
    page.wait_for_timeout(1500)  # the buffer fills after the page loaded
    checks: list[str] = []
    page.on("request", lambda r: checks.append(r.url) if r.url.endswith("/ann/saved") else None)
    answered = {}
    for key in "123":
        rid = on_screen(page)
        press_and_wait(page, key)
        answered[rid] = ("submitted", (LABELS[key],))
        expect(page.locator("#ann-saved")).to_have_text("All answers saved", timeout=WAIT)
        page.wait_for_timeout(1200)  # a person's pause
    # a commit here takes tens of ms against the reply's 0.5 s wait; a very slow one may still need a
    # check of its own, but never one per answer
    assert len(checks) < 3, f"{len(checks)} saved checks for 3 answers: {checks}"
    EXPECTED["oauth"]["ivy"] = answered
    page.context.close()


def test_an_image_that_fails_to_load_makes_the_page_ask_once_for_fresh_links(browser, servers):
    """An expired link (403) is not a dead end: the page asks for a fresh view once and shows the image
    at its new link; an image that still fails is reported with what to do, without asking in a loop."""
    from playwright.sync_api import expect

    url = servers["oauth"].url
    # gina: her first links are "expired" (refused); the views she asks for carry re-signed links (the
    # test marks them: the image route ignores the extra query parameter, the signature still holds)
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.add_cookies([playwright_cookie("gina")])
    asked: list[str] = []

    def image(route):
        if "fresh=1" in route.request.url:
            route.continue_()
        else:
            route.fulfill(status=403, body="this image link has expired")

    def fresh_view(route):
        asked.append(route.request.url)
        view = route.fetch().json()
        for item in ([view["item"]] if view.get("item") else []) + view.get("upcoming", []):
            item["image_url"] += "&fresh=1"
        route.fulfill(json=view)

    ctx.route("**/img/**", image)
    ctx.route("**/ann/next", fresh_view)
    page = ctx.new_page()
    page.goto(url)
    expect(page.locator("#ann-img")).to_have_attribute("src", re.compile(r"fresh=1"), timeout=WAIT)
    page.wait_for_function("document.getElementById('ann-img').naturalWidth > 0", timeout=WAIT)
    expect(page.locator("#ann-error")).to_be_hidden()
    page.wait_for_timeout(1500)
    assert len(asked) <= 2, asked  # the buffer refill after the first view, and the one fresh view
    ctx.close()

    # hank: every image fails, whatever the link
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.add_cookies([playwright_cookie("hank")])
    asked.clear()
    ctx.route("**/img/**", lambda route: route.fulfill(status=422, body="this image cannot be shown"))
    ctx.route("**/ann/next", lambda route: (asked.append(route.request.url), route.continue_()))
    page = ctx.new_page()
    page.goto(url)
    expect(page.locator("#ann-error")).to_contain_text("press S to skip", timeout=WAIT)
    page.wait_for_timeout(2000)
    assert len(asked) <= 2, asked  # not a request per failure: once, then the message
    ctx.close()


def test_stores_hold_exactly_what_the_browsers_did(servers):
    if not any(EXPECTED.values()):
        pytest.skip("run the whole module: the tests above make the answers")
    for mode, server in servers.items():
        assert server.stop() in (0, -signal.SIGTERM), server.log()[-2000:]
        snap = read_store(server.data_dir)
        stored = {(r.record_id, r.user_id): (r.status, labels_of(r.answer)) for r in snap.responses}
        expected = {(rid, user): a for user, answers in EXPECTED[mode].items() for rid, a in answers.items()}
        assert stored == expected, mode
        assert set(snap.history) == HISTORY[mode], mode  # the changed answer, and no answer applied twice
        assert all(len(rows) == 1 for rows in snap.history.values())
        assert max(snap.submitted_per_record().values()) <= 1  # overlap 1
