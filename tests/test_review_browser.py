"""The Review section in a real browser (issue 17): the admin lists records by disagreement, opens one, sees
every answer, chooses the final answer with the task's key and saves it with Enter, which opens the next
record of the list, and takes it back; an annotator's dashboard has no Review section. Chromium as browserhelpers gives it.
"""

from __future__ import annotations

from pathlib import Path

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from dashhelpers import sign_in, signed_in_page, start_password_app

from annotator.store import Store


def test_admin_settles_records_with_the_keys_and_enter(browser, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    server = start_password_app(tmp_path, images=4)
    try:
        answered = []
        with sign_in(server, "ann") as ann, sign_in(server, "bob") as bob:
            for ann_label, bob_label in (("circle", "circle"), ("circle", "square")):
                item = ann.next()["item"]
                ann.submit(item["record"], [ann_label])
                view = bob.next()
                assert view["item"]["record_id"] == item["record_id"]
                bob.submit(view["item"]["record"], [bob_label])
                answered.append(item["record_id"])
        agreed, disputed = answered

        page = signed_in_page(browser, server.url, "admin", viewport={"width": 1300, "height": 1000})
        page.get_by_role("tab", name="Dashboard").click()
        page.locator("#review-load").click()
        rows = page.locator("#review-list [role='row']")
        expect(rows.nth(1)).to_contain_text(str(disputed), timeout=30_000)   # lowest agreement first
        expect(rows.nth(2)).to_contain_text("100")
        record = page.locator("#review-record input, #review-record textarea").first
        expect(record).to_have_value(str(disputed))
        expect(page.locator("#review-answers")).to_contain_text("square")
        page.locator("#review-box").screenshot(path=str(tmp_path / "review.png"))
        page.locator("#review-detail").click()  # focus out of any field: the keys choose
        page.keyboard.press("3")                 # triangle, the task's key 3
        expect(page.locator("#review-q-label input[value='triangle']")).to_be_checked()
        page.keyboard.press("Enter")
        expect(page.locator("#review-result")).to_contain_text(f"Record {disputed} now has the final answer")
        expect(record).to_have_value(str(agreed))  # the next record of the list
        expect(rows.nth(1)).to_contain_text("yes")  # the list says the first has a final answer now
        expect(page.locator("#review-q-label input[value='circle']")).to_be_checked()  # its consensus

        # back to the first: its final answer is shown, and taken back
        rows.nth(1).locator("[role='gridcell']").first.click()
        expect(record).to_have_value(str(disputed))
        expect(page.locator("#review-answers")).to_contain_text("final (admin)")
        expect(page.locator("#review-q-label input[value='triangle']")).to_be_checked()
        page.locator("#review-clear").click()
        expect(page.locator("#review-result")).to_contain_text("taken back")
        expect(rows.nth(1)).not_to_contain_text("yes")

        annotator = signed_in_page(browser, server.url, "ann")
        annotator.get_by_role("tab", name="Dashboard").click()
        expect(annotator.locator("#dash-progress")).to_contain_text("Team progress", timeout=30_000)
        expect(annotator.locator("#review-load")).to_be_hidden()
    finally:
        server.stop()
    store = Store(server.data_dir / "annotator.duckdb")
    try:
        assert store.finals() == {}
        assert [(d["record_id"], d.get("answer")) for a in ("set_final", "clear_final")
                for _, _, d in store.audit_entries(a)] == [(disputed, {"label": "triangle"}), (disputed, None)]
    finally:
        store.close()
