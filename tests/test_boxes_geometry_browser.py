"""Pre-labels and EXIF-rotated images under the boxes layer (issue 16), in Debian's chromium through Playwright.

Record 0 (1600x1200, shown through a 480 px display rendition) carries COCO pre-labels in its metadata: the
circle exactly, the square a little off, a box of an unknown category (dropped) and one reaching past the
image's corner (clamped). Enter accepts them as they came (each `suggested: true`); moving one first drops
its mark, and Ctrl+Z gives it back. Record 1 is a JPEG whose pixels are stored turned a quarter with EXIF
orientation 6: it is shown upright (1400x1600), and a box drawn on it is stored in the pixels as shown.
The last test stops the app and finds every answer sent in its store.
"""

from __future__ import annotations

import pytest

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import read_store
from oauth_cookies import oauth_space_env
from test_boxes_browser import (CIRCLE, SQUARE, TASK, boxes, click_at, draw, make_shapes, near, open_page, shown,
                                submit, wait_boxes)

from apphelpers import start_app

WAIT = 20_000
PRELABELS = [{"bbox": list(CIRCLE), "category": "circle"},
             {"bbox": [890, 590, 520, 420], "label": "square"},
             {"bbox": [10, 10, 50, 50], "category": "dog"},
             {"bbox": [1500, 1100, 300, 300], "category": "circle"}]
SUGGESTED = [{"label": "circle", "bbox": [200, 150, 400, 300], "suggested": True},
             {"label": "square", "bbox": [890, 590, 520, 420], "suggested": True},
             {"label": "circle", "bbox": [1500, 1100, 100, 100], "suggested": True}]
ROTATED = (1400, 1600)  # the EXIF image as shown: portrait; its file holds 1600x1400 pixels
SENT: dict[tuple[str, int], list[dict]] = {}


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("boxes-geometry")
    make_shapes(base / "source", 1, prelabels=PRELABELS)
    make_shapes(base / "source", 1, size=ROTATED, exif_rotate=True, start=1)
    make_shapes(base / "source", 2, start=2)
    (base / "task.toml").write_text(TASK)
    app = start_app(base / "data", env={"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(base / "task.toml"),
                                        "IMAGE_MAX_SIDE": "480", **oauth_space_env()})
    yield app
    app.stop()


def test_pre_labels_are_dashed_suggestions_accepted_by_enter_as_they_are(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "paula")
    found = wait_boxes(page, 3)
    assert all(b["suggested"] for b in found) and [b["label"] for b in found] == ["circle", "square", "circle"]
    assert [b["bbox"] for b in found] == [b["bbox"] for b in SUGGESTED]
    dash = page.evaluate("getComputedStyle(document.querySelector('#ann-boxes g.ann-box rect')).strokeDasharray")
    assert dash not in ("", "none"), dash
    expect(page.locator("#ann-q-0-boxes")).to_have_text("3 boxes: circle, square, circle.")
    sent = submit(page, "paula", SENT)
    assert sent == SUGGESTED
    page.context.close()


def test_a_corrected_pre_label_loses_its_mark_and_undo_gives_it_back(browser, server):
    page = open_page(browser, server.url, "carl")
    wait_boxes(page, 3)
    click_at(page, 1200, 800)  # the square's suggestion
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(100)
    assert [b["suggested"] for b in boxes(page)] == [True, False, True]
    page.keyboard.press("Control+z")
    page.wait_for_timeout(100)
    assert [b["suggested"] for b in boxes(page)] == [True, True, True]
    page.keyboard.press("Shift+ArrowLeft")  # narrower, then the circle in the corner becomes a square
    page.keyboard.press("Escape")
    click_at(page, 1550, 1150)
    page.keyboard.press("2")
    page.wait_for_timeout(100)
    sent = submit(page, "carl", SENT)
    assert sent[0] == SUGGESTED[0]
    assert "suggested" not in sent[1] and sent[1]["bbox"][2] < 520 and sent[1]["bbox"][:2] == [890, 590]
    assert sent[2] == {"label": "square", "bbox": [1500, 1100, 100, 100]}
    page.context.close()


def test_a_box_on_an_exif_rotated_image_is_stored_in_the_pixels_as_shown(browser, server):
    page = open_page(browser, server.url, "oriel", 1000, 900)
    page.keyboard.press("s")  # record 0 has pre-labels: on to the rotated one
    page.wait_for_function("document.querySelector('#ann-img').dataset.record === '2'", timeout=WAIT)
    page.wait_for_function("() => { const i = document.querySelector('#ann-img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=WAIT)
    assert page.locator("#ann-img").get_attribute("width") == str(ROTATED[0])
    ratio = page.evaluate("(() => { const i = document.querySelector('#ann-img'); return i.naturalWidth / i.naturalHeight; })()")
    assert ratio == pytest.approx(ROTATED[0] / ROTATED[1], rel=0.01)  # the rendition is upright too
    circle = draw(page, CIRCLE, ROTATED)
    page.keyboard.press("2")
    square = draw(page, SQUARE, ROTATED)
    wait_boxes(page, 2)
    sent = submit(page, "oriel", SENT)
    assert near(sent[0]["bbox"], circle) and near(sent[1]["bbox"], square), (sent, circle, square)
    page.context.close()


def test_the_store_holds_the_pre_labels_as_sent(browser, server):
    """(Runs last: it stops the app to read its DuckDB file.)"""
    assert SENT, "run the module's drawing tests first: they send what this test finds stored"
    server.stop()
    stored = {(r.user_id, r.record_id): r.answer for r in read_store(server.data_dir).responses
              if r.status == "submitted"}
    for key, sent in SENT.items():
        assert stored[key]["objects"] == sent, (key, stored[key], sent)
