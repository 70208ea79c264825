"""The projector view in a real browser (issue 17): the goal bar, the estimate in the viewer's time zone,
the dark big-screen page, the leaderboard off by default and on by setting, nicknames chosen on the
Dashboard tab; axe-core finds no serious or critical violation on the page (signed out, leaderboard off and
on).

Needs Debian's chromium at /usr/bin/chromium and the playwright package (never `playwright install`).
Without them the test is skipped, or fails when ANNOTATOR_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from axehelpers import serious_violations
from browserhelpers import chromium
import dashhelpers
from dashhelpers import annotate, sign_in, start_password_app

ZONE = "Asia/Tokyo"


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def assert_accessible(page) -> None:
    found = serious_violations(page)
    assert not found, "axe-core on /projector:\n" + "\n".join(found)


def signed_in_page(browser, url: str, user: str):
    return dashhelpers.signed_in_page(browser, url, user, viewport={"width": 1920, "height": 1080}, timezone_id=ZONE)


def test_goal_bar_estimate_and_no_leaderboard_by_default(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = start_password_app(tmp_path, env={"GOAL": "10 answers"})
    try:
        with sign_in(server, "ann") as api:
            annotate(api, 3, seed=1)
        with sign_in(server, "bob") as api:
            annotate(api, 1, seed=2)
        anonymous = browser.new_context().new_page()
        anonymous.goto(server.url + "/projector")
        expect(anonymous.locator("#proj-status")).to_contain_text("signed in", timeout=20_000)
        expect(anonymous.locator("#proj-status a")).to_have_attribute("href", "/")
        assert_accessible(anonymous)

        page = signed_in_page(browser, server.url, "bob")
        # the annotator's own screen: their count and their share of the goal (1 of 10 answers)
        expect(page.locator("#ann-progress")).to_contain_text("1 in total", timeout=20_000)
        expect(page.locator("#ann-goal-share")).to_have_text("10%")
        page.goto(server.url + "/projector")
        expect(page.locator("#proj-goal-text")).to_contain_text("of 10 answers", timeout=20_000)
        expect(page.locator("#proj-goal-text")).to_contain_text("40%")
        assert page.locator("#proj-bar-fill").evaluate("e => e.style.width") == "40%"
        expect(page.locator("#proj-bar")).to_have_attribute("aria-valuenow", "40")
        estimate = page.locator("#proj-estimate")
        expect(estimate).to_contain_text("Estimated finish at the current pace")
        expect(estimate).to_contain_text(f"({ZONE})")
        expect(estimate).to_contain_text("6 answers to go")
        expect(page.locator("#proj-board")).to_be_hidden()
        expect(page.locator("#proj-label-bars")).to_contain_text("circle")
        expect(page.locator("#proj-status")).to_contain_text(f"({ZONE}) · refreshes every 10 s")
        style = page.evaluate("() => [getComputedStyle(document.body).backgroundColor, "
                              "parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)]")
        assert style[0] == "rgb(11, 15, 25)" and style[1] >= 48  # dark, and large type on a 1920 px screen
        page.screenshot(path=str(tmp_path / "projector-off.png"))
        assert_accessible(page)

        # it refreshes itself: a new answer shows without a reload
        with sign_in(server, "ann") as api:
            annotate(api, 2, seed=3)
        expect(page.locator("#proj-goal-text")).to_contain_text("60%", timeout=45_000)  # cache + poll: <= 20 s
    finally:
        server.stop()


def test_leaderboard_on_shows_a_chosen_nickname_and_numbers(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = start_password_app(tmp_path, env={"GOAL": "200 records", "LEADERBOARD": "on"})
    try:
        with sign_in(server, "ann") as ann, sign_in(server, "bob") as bob:
            annotate(ann, 6, seed=1)
            annotate(bob, 6, seed=2)
        page = signed_in_page(browser, server.url, "bob")
        page.get_by_role("tab", name="Dashboard").click()
        page.get_by_text("Your name on the room's screen").click()
        expect(page.locator("#dash-shown-as")).to_have_text("Annotator 2", timeout=20_000)  # ann was seen first
        page.locator("#dash-nickname-box textarea, #dash-nickname-box input").first.fill("Owl")
        page.locator("#dash-nickname-save").click()
        expect(page.locator("#dash-shown-as")).to_have_text("Owl", timeout=20_000)

        page.goto(server.url + "/projector")
        board = page.locator("#proj-board")
        expect(board).to_be_visible(timeout=20_000)
        expect(board).to_contain_text("Owl")
        assert page.locator(".proj-who", has_text="Owl").bounding_box()["width"] > 30  # drawn, not squeezed away
        expect(board).to_contain_text("Annotator ")
        expect(board).to_contain_text("agree")
        expect(page.locator("#proj-board-how")).to_contain_text("never by speed")
        assert "ann" not in page.locator("#proj-board-rows").inner_text().split()
        expect(page.locator("#proj-estimate")).to_contain_text("more than this task holds")
        page.screenshot(path=str(tmp_path / "projector-on.png"))
        assert_accessible(page)
    finally:
        server.stop()
