"""The dashboard in a real browser: an admin sees the plots drawn and the annotator table; an annotator
sees team progress only.

Needs Debian's chromium at /usr/bin/chromium and the playwright package (never `playwright install`).
Without them the test is skipped, or fails when ANNOTATOR_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browserhelpers import chromium
from dashhelpers import annotate, sign_in, signed_in_page, start_password_app

@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def open_dashboard(browser, url: str, user: str):
    page = signed_in_page(browser, url, user, viewport={"width": 1300, "height": 1000})
    page.get_by_role("tab", name="Dashboard").click()
    return page


def test_admin_sees_plots_and_annotator_table(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = start_password_app(tmp_path)
    try:
        for seed, user in enumerate(("ann", "bob")):
            with sign_in(server, user) as api:
                assert annotate(api, 6, seed=seed)

        page = open_dashboard(browser, server.url, "admin")
        expect(page.locator("#dash-progress")).to_contain_text("Team progress", timeout=30_000)
        expect(page.locator("#dash-n-complete")).not_to_have_text("0")
        for plot in ("#dash-timeline", "#dash-labels"):   # vega draws into a canvas (or an svg)
            expect(page.locator(f"{plot} canvas, {plot} svg").first).to_be_visible(timeout=20_000)
        table = page.locator("#dash-annotators")
        expect(table).to_be_visible()
        expect(table).to_contain_text("ann")
        expect(table).to_contain_text("bob")
        expect(page.locator("#dash-agreement-box")).to_contain_text("Krippendorff")
        expect(page.locator("#dash-health-box")).to_contain_text("export not configured: set EXPORT_REPO and HF_TOKEN")
        expect(page.locator("#admin-export")).to_be_visible()
        page.screenshot(path=str(tmp_path / "dashboard-admin.png"), full_page=True)

        # an admin action from the page: its result and the audit log show at once
        page.locator("#admin-user input, #admin-user textarea").first.fill("bob")
        page.locator("#admin-release").click()
        expect(page.locator("#admin-result")).to_contain_text("bob")
        expect(page.locator("#admin-audit")).to_contain_text("release_user")
        page.locator("#admin-clear-nickname").click()  # the same Annotator box names whose nickname to clear
        expect(page.locator("#admin-result")).to_contain_text("bob has no nickname on the leaderboard")

        # the results as files, offered for download to the admin
        page.locator("#admin-download").click()
        expect(page.locator("#admin-result")).to_contain_text("written as 6 files", timeout=30_000)
        expect(page.locator("#admin-files a[href$='records.parquet']")).to_have_count(1)
        with page.expect_download() as download:
            page.locator("#admin-files a[href$='responses.csv']").first.click()
        assert "ann" in Path(download.value.path()).read_text()

        annotator = open_dashboard(browser, server.url, "ann")
        expect(annotator.locator("#dash-progress")).to_contain_text("Team progress", timeout=30_000)
        expect(annotator.locator("#dash-labels canvas, #dash-labels svg").first).to_be_visible(timeout=20_000)
        expect(annotator.locator("#dash-admin")).to_be_hidden()
        expect(annotator.locator("#dash-status")).to_contain_text("press Refresh")
        annotator.screenshot(path=str(tmp_path / "dashboard-annotator.png"), full_page=True)
    finally:
        for context in browser.contexts:  # open pages keep a stream that would delay the server's shutdown
            context.close()
        server.stop()
