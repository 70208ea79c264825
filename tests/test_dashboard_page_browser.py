"""The dashboard page in a real browser (issue 14, items 4-6 and the accessibility scan).

- the label chart's y-axis starts at zero (read from the axis Vega draws as SVG, with its ARIA label);
- every time on the dashboard is in the viewer's time zone and names it (the browser runs as Asia/Tokyo);
- an admin action's message replaces the previous one; the record id field is empty until filled, and an
  empty or invalid id gets a clear message and changes nothing;
- no Gradio footer for a participant; the admin section links to the API's description;
- axe-core finds no serious or critical violation on the admin's dashboard.

Needs Debian's chromium and playwright; skipped without them, failing when ANNOTATOR_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from axehelpers import serious_violations
from browserhelpers import chromium
from dashhelpers import password, sign_in, start_password_app

ZONE = "Asia/Tokyo"  # far from UTC, so a time shown in UTC (or unlabelled) cannot pass
WAIT = 30_000


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def answer(api, labels: list[str]) -> None:
    """Answer one record per label, with that label."""
    view = api.next()
    for label in labels:
        assert view["state"] == "ready", view
        view = api.submit(view["item"]["record"], [label])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    found = start_password_app(tmp_path_factory.mktemp("dash-page"), images=24)
    try:
        # every label used, the smallest 11 times: an axis from the smallest count would start at 11
        with sign_in(found, "ann") as api:
            answer(api, ["circle"] * 8 + ["square"] * 6 + ["triangle"] * 5 + ["other"] * 5)
        with sign_in(found, "bob") as api:
            answer(api, ["circle", "square", "triangle", "other"] * 6)
        yield found
    finally:
        found.stop()


@pytest.fixture
def open_dashboard(browser, server):
    contexts = []

    def open_as(user: str):
        from playwright.sync_api import expect

        ctx = browser.new_context(viewport={"width": 1300, "height": 1000}, timezone_id=ZONE)
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(server.url)
        page.get_by_label("username").fill(user)
        page.get_by_label("password").fill(password(user))
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Dashboard").click()
        expect(page.locator("#dash-progress")).to_contain_text("Team progress", timeout=WAIT)
        return page

    yield open_as
    for ctx in contexts:  # an open page keeps a stream that would delay the server's shutdown
        ctx.close()


def axis_label(page, plot: str, axis: str) -> str:
    """The ARIA label Vega gives a plot's axis ("Y-axis titled 'answers' for a linear scale with values from 0 to 7")."""
    from playwright.sync_api import expect

    found = page.locator(f"#{plot} svg [aria-roledescription='axis'][aria-label^='{axis}-axis']")
    expect(found).to_have_count(1, timeout=WAIT)
    return found.get_attribute("aria-label")


def test_label_chart_starts_at_zero(open_dashboard) -> None:
    page = open_dashboard("ann")  # a participant sees the charts too
    assert re.search(r"values from 0 to \d", axis_label(page, "dash-labels", "Y")), axis_label(page, "dash-labels", "Y")
    assert re.search(r"values from 0 to \d", axis_label(page, "dash-timeline", "Y"))


def test_every_time_is_in_the_viewers_zone_and_names_it(open_dashboard) -> None:
    from playwright.sync_api import expect

    page = open_dashboard("admin")
    expect(page.locator("#dash-status")).to_contain_text(f"({ZONE})", timeout=WAIT)
    shown = re.search(r"Updated (\d\d:\d\d:\d\d) \(", page.locator("#dash-status").inner_text()).group(1)
    now = datetime.now(ZoneInfo(ZONE))
    at = datetime.combine(now.date(), datetime.strptime(shown, "%H:%M:%S").time(), ZoneInfo(ZONE))
    assert abs(now - at) < timedelta(minutes=2) or abs(now - at) > timedelta(hours=23, minutes=58), (shown, now)
    assert f"time ({ZONE})" in axis_label(page, "dash-timeline", "X")  # Vega draws the axis in the browser's zone
    expect(page.locator("#dash-annotators")).to_contain_text(f"last active ({ZONE})")
    expect(page.locator("#admin-audit")).to_contain_text(f"at ({ZONE})")
    page.locator("#admin-user input, #admin-user textarea").first.fill("nobody-here")
    page.locator("#admin-release").click()  # an admin action's audit table keeps the zone
    expect(page.locator("#admin-audit")).to_contain_text("release_user", timeout=WAIT)
    expect(page.locator("#admin-audit")).to_contain_text(f"at ({ZONE})")
    assert "UTC" not in page.locator("#tab-dashboard").inner_text()


def test_admin_messages_replace_each_other_and_the_record_id_starts_empty(open_dashboard) -> None:
    from playwright.sync_api import expect

    page = open_dashboard("admin")
    record = page.locator("#admin-record input, #admin-record textarea").first
    result = page.locator("#admin-result-box")
    audit = page.locator("#admin-audit")
    expect(record).to_have_value("")

    expect(audit).to_be_visible()
    page.locator("#admin-reopen").click()  # nothing typed
    expect(result).to_contain_text("Enter a record id", timeout=WAIT)
    expect(result).to_contain_text("nothing was changed")
    # Tab after typing: the field's value reaches Gradio before the click (on a loaded machine a click right
    # after fill() once went with the previous value, 'abc')
    record.fill("abc")
    record.press("Tab")
    page.locator("#admin-reopen").click()
    expect(result).to_contain_text("whole number", timeout=WAIT)
    record.fill("999")
    record.press("Tab")
    page.locator("#admin-reopen").click()
    expect(result).to_contain_text("no record 999", timeout=WAIT)
    expect(audit).not_to_contain_text("reopen")  # the refusals changed nothing (no action in the audit log)

    page.locator("#admin-settings").click()
    expect(page.locator("#admin-settings-table")).to_be_visible(timeout=WAIT)
    expect(result).not_to_contain_text("999")
    page.locator("#admin-user input, #admin-user textarea").first.fill("bob")
    page.locator("#admin-release").click()
    expect(result).to_contain_text("bob", timeout=WAIT)
    expect(result).not_to_contain_text("999")
    expect(result.locator(".admin-error")).to_have_count(0)
    expect(page.locator("#admin-settings-table")).to_be_hidden()  # the previous action's table went with it

    record.fill("1")
    page.locator("#admin-reopen").click()
    expect(result).to_contain_text("Record 1 reopened", timeout=WAIT)
    expect(result).not_to_contain_text("bob")


def test_no_gradio_footer_for_a_participant_and_the_api_link_for_an_admin(open_dashboard) -> None:
    from playwright.sync_api import expect

    page = open_dashboard("ann")
    expect(page.locator("#dash-admin")).to_be_hidden()
    expect(page.locator("footer")).to_have_count(0)
    for text in ("Use via API", "Built with Gradio", "Settings"):
        expect(page.get_by_text(text, exact=True)).to_have_count(0)
    expect(page.locator("#admin-api a")).not_to_be_visible()

    admin = open_dashboard("admin")
    link = admin.locator("#admin-api a[href='/gradio_api/info']")
    expect(link).to_be_visible()
    described = admin.evaluate("fetch('/gradio_api/info').then(r => r.json())")
    assert "/admin_export" in described["named_endpoints"] and "/dashboard" in described["named_endpoints"]


def test_admin_dashboard_has_no_serious_accessibility_violations(open_dashboard) -> None:
    from playwright.sync_api import expect

    page = open_dashboard("admin")
    expect(page.locator("#dash-labels svg").first).to_be_visible(timeout=WAIT)
    expect(page.locator("#dash-annotators")).to_contain_text("bob")
    found = serious_violations(page)
    assert not found, "axe-core:\n" + "\n".join(found)
