"""Drawing boxes on the annotate page (issue 16), in Debian's chromium through Playwright against the real app.

The task asks a `boxes` question (circle 1, square 2, triangle 3; min_boxes 1) and an optional label question
(crowded? y / n) over 1600x1200 images shown
through a 480 px display rendition; every image has a circle in CIRCLE and a square in SQUARE (original
pixels). The tests draw with the mouse, a finger (touch emulation) and while zoomed, and use every key of the
boxes layer, one test per key; what the page sends is checked at once, and the last test stops the app and
finds the same boxes in its store, within one original pixel of where they were drawn.
Before this change a task could not ask for boxes at all, and a drag on the image only panned a zoomed view.
"""

from __future__ import annotations

import json
import re

import pytest

from axehelpers import serious_violations
from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import read_store
from oauth_cookies import oauth_space_env, playwright_cookie

from apphelpers import start_app

WAIT = 20_000
SIZE = (1600, 1200)
CIRCLE = (200, 150, 400, 300)   # x, y, w, h in the original's pixels
SQUARE = (900, 600, 500, 400)
TASK = """title = "Shapes, boxed"
guidelines = "Draw a box around every shape."
overlap = 30
order = "sequential"

[[questions]]
name = "objects"
title = "Draw a box around every shape"
kind = "boxes"
min_boxes = 1
suggestion_column = "boxes"
labels = [{ name = "circle", key = "1" }, { name = "square", key = "2" }, { name = "triangle", key = "3" }]

[[questions]]
name = "crowded"
title = "Is the picture crowded?"
kind = "label"
required = false
labels = [{ name = "yes", key = "y" }, { name = "no", key = "n" }]
"""
STORED: dict[tuple[str, int], list[dict]] = {}  # (user, record) -> the boxes sent: the last test finds them stored


def make_shapes(folder, n: int, size=SIZE, prelabels=None, exif_rotate: bool = False, start: int = 0) -> None:
    """`n` PNGs (JPEGs when rotated) with a blue circle in CIRCLE and a green square in SQUARE, listed in a
    metadata.jsonl; `prelabels` (COCO boxes) go to each record's `boxes` field. `exif_rotate`: the file holds
    the picture turned a quarter left with EXIF orientation 6, so it is shown (and measured) as drawn here."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(start, start + n):
        img = Image.new("RGB", size, (245, 245, 240))
        draw = ImageDraw.Draw(img)
        x, y, w, h = CIRCLE
        draw.ellipse((x, y, x + w - 1, y + h - 1), fill=(37, 99, 235))
        x, y, w, h = SQUARE
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=(22, 163, 74))
        draw.text((10, 10), f"#{i}", fill=(0, 0, 0))
        if exif_rotate:
            name = f"shape_{i:03d}.jpg"
            exif = Image.Exif()
            exif[0x0112] = 6  # "rotate 90 clockwise to show": the stored pixels are turned the other way
            img.transpose(Image.Transpose.ROTATE_90).save(folder / name, quality=92, exif=exif)
        else:
            name = f"shape_{i:03d}.png"
            img.save(folder / name)
        row = {"file_name": name}
        if prelabels is not None:
            row["boxes"] = prelabels
        rows.append(json.dumps(row))
    with open(folder / "metadata.jsonl", "a") as f:
        f.write("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("boxes")
    make_shapes(base / "source", 8)
    (base / "task.toml").write_text(TASK)
    app = start_app(base / "data", env={"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(base / "task.toml"),
                                        "IMAGE_MAX_SIDE": "480", **oauth_space_env()})
    yield app
    app.stop()


def open_page(browser, url: str, user: str, width: int = 1280, height: int = 800, **context):
    """A signed-in page on its first image, decoded, the first-visit card closed; `page.sent`: the answers
    and backs sent (path, body)."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": width, "height": height}, **context)
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.sent = []
    page.on("request", lambda r: page.sent.append((r.url.split("?")[0].rsplit("/", 1)[1], json.loads(r.post_data)))
            if re.search(r"/ann/(answer|skip|back)\b", r.url) else None)
    page.goto(url)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.wait_for_function("() => { const i = document.querySelector('#ann-img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=WAIT)
    expect(page.locator("#ann-welcome")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#ann-welcome")).to_be_hidden()
    expect(page.locator("#ann-boxes")).to_have_count(1)
    page.wait_for_timeout(800)  # the buffer fills after the first view
    return page


def shown(page) -> int:
    return int(page.locator("#ann-img").get_attribute("data-record"))


def fit(page, size=SIZE) -> tuple[float, float, float]:
    """Where the image lies on the screen now (zoom included): its left, top and screen px per original px
    (the layer's rectangle, the image contained in it)."""
    x, y, w, h = page.evaluate("(() => { const r = document.querySelector('#ann-img').getBoundingClientRect();"
                               " return [r.x, r.y, r.width, r.height]; })()")
    s = min(w / size[0], h / size[1])
    return x + (w - size[0] * s) / 2, y + (h - size[1] * s) / 2, s


def to_screen(page, bbox, size=SIZE) -> tuple[tuple[int, int], tuple[int, int]]:
    """The screen points (whole pixels, as a mouse sits) at a box's corners."""
    ox, oy, s = fit(page, size)
    x, y, w, h = bbox
    return (round(ox + x * s), round(oy + y * s)), (round(ox + (x + w) * s), round(oy + (y + h) * s))


def drawn_at(page, corners, size=SIZE) -> list[float]:
    """The box, in original pixels, that a drag between two screen points stands for."""
    ox, oy, s = fit(page, size)
    (x0, y0), (x1, y1) = corners
    return [(x0 - ox) / s, (y0 - oy) / s, (x1 - x0) / s, (y1 - y0) / s]


def drag(page, corners, steps: int = 8) -> None:
    (x0, y0), (x1, y1) = corners
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=steps)
    page.mouse.up()


def draw(page, bbox, size=SIZE) -> list[float]:
    """Drag around `bbox` (original pixels); returns where it was drawn, in original pixels."""
    corners = to_screen(page, bbox, size)
    drag(page, corners)
    return drawn_at(page, corners, size)


def click_at(page, x: float, y: float, size=SIZE) -> None:
    ox, oy, s = fit(page, size)
    page.mouse.click(round(ox + x * s), round(oy + y * s))


def boxes(page) -> list[dict]:
    """What the page would send now (the boxes layer's list)."""
    return page.evaluate("(() => [...document.querySelectorAll('#ann-boxes g.ann-box:not([display])')]"
                         ".map(g => { const r = g.querySelector('rect'); return {"
                         "label: g.querySelector('text').textContent.replace(' (suggested)', ''),"
                         "bbox: ['x', 'y', 'width', 'height'].map(a => Number(r.getAttribute(a))),"
                         "selected: g.classList.contains('ann-box-selected'),"
                         "suggested: g.classList.contains('ann-box-suggested')}; }))()")


def wait_boxes(page, n: int) -> list[dict]:
    page.wait_for_function(f"document.querySelectorAll('#ann-boxes g.ann-box:not([display])').length === {n}",
                           timeout=WAIT)
    page.wait_for_timeout(50)  # one frame: the SVG is written in requestAnimationFrame
    return boxes(page)


def active(page) -> list[int]:
    """The questions outlined as active (exactly one, when all is well)."""
    return page.evaluate("[...document.querySelectorAll('.ann-q')].filter(b => b.getAttribute('aria-current')"
                         " === 'true').map(b => Number(b.dataset.q))")


def selected(page) -> list[int]:
    return [i for i, b in enumerate(boxes(page)) if b["selected"]]


def near(a, b, tolerance: float = 1.0) -> bool:
    return all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True))


def submit(page, user: str, into: dict | None = None) -> list[dict]:
    """Enter; the boxes sent for the record shown, remembered in `into` (STORED) for the store check."""
    record, before = shown(page), len(page.sent)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#ann-img').dataset.record !== '{record}'", timeout=WAIT)
    for _ in range(200):
        if len(page.sent) > before:
            break
        page.wait_for_timeout(50)
    path, body = page.sent[-1]
    assert path == "answer", page.sent
    (STORED if into is None else into)[(user, record)] = body["answer"]["objects"]
    return body["answer"]["objects"]


def test_the_keys_dialog_lists_the_box_keys_and_axe_finds_nothing_serious(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "axel")
    draw(page, CIRCLE)
    wait_boxes(page, 1)
    expect(page.locator("#ann-q-0-boxes")).to_have_text("1 box: circle.")
    expect(page.locator("#ann-q-0-label")).to_have_text("circle")  # the label of new boxes, as text
    expect(page.locator("#ann-q-0-0")).to_have_attribute("aria-pressed", "true")
    assert not serious_violations(page, include="#ann-root"), serious_violations(page, include="#ann-root")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard keys")
    for text in ("draw a box on the image", "the next box", "remove the selected box", "resize it",
                 "undo the last drawing", "deselect the box", "move a zoomed image"):
        expect(dialog).to_contain_text(text)
    keys = page.locator("#ann-keys kbd").all_inner_texts()
    for key in ("1", "2", "3", "Drag", "Click", "Delete", "Arrows", "Ctrl+Z", "Space+drag", "Backspace"):
        assert key in keys, keys
    page.context.close()


def test_a_drag_draws_a_box_in_original_pixels_at_two_window_sizes(browser, server):
    """The display rendition is 480x360, shown at whatever the window gives: the box is the original's."""
    for user, (width, height) in (("wendy", (1280, 800)), ("walt", (820, 1000))):
        page = open_page(browser, server.url, user, width, height)
        circle = draw(page, CIRCLE)
        page.keyboard.press("2")  # the label of new boxes: square
        square = draw(page, SQUARE)
        found = wait_boxes(page, 2)
        assert [b["label"] for b in found] == ["circle", "square"]
        sent = submit(page, user)
        assert [b["label"] for b in sent] == ["circle", "square"] and not any("suggested" in b for b in sent)
        for got, where, shape in ((sent[0]["bbox"], circle, CIRCLE), (sent[1]["bbox"], square, SQUARE)):
            assert near(got, where), (got, where)
            assert near(got, shape, 1.5 / fit(page)[2]), (got, shape)  # within a screen pixel of the shape
            assert all(round(v, 1) == v for v in got)
        page.context.close()


def test_a_click_selects_the_smallest_box_under_it_and_esc_deselects(browser, server):
    page = open_page(browser, server.url, "selma")
    draw(page, (100, 100, 1200, 900))   # a big box around both...
    draw(page, SQUARE)                   # ...and one inside it
    wait_boxes(page, 2)
    assert selected(page) == []  # a new box is not selected: the next label key is for the next box
    click_at(page, 1100, 800)
    page.wait_for_timeout(100)
    assert selected(page) == [1]
    click_at(page, 150, 1000)
    page.wait_for_timeout(100)
    assert selected(page) == [0]
    page.keyboard.press("Escape")
    page.wait_for_timeout(100)
    assert selected(page) == []
    click_at(page, 1500, 1150)  # beside every box: nothing selected
    page.wait_for_timeout(100)
    assert selected(page) == []
    page.context.close()


def test_a_label_key_relabels_the_selected_box_and_sets_the_label_of_new_ones(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "rita")
    draw(page, CIRCLE)
    draw(page, SQUARE)
    wait_boxes(page, 2)
    click_at(page, 1100, 800)
    page.keyboard.press("2")
    page.wait_for_timeout(100)
    assert [b["label"] for b in boxes(page)] == ["circle", "square"]
    expect(page.locator("#ann-q-0-label")).to_have_text("square")
    expect(page.locator("#ann-q-0-boxes")).to_have_text("2 boxes: circle, square. Selected: box 2, square.")
    page.keyboard.press("Escape")
    page.keyboard.press("3")  # nothing selected: only new boxes change
    draw(page, (700, 100, 200, 200))
    assert [b["label"] for b in wait_boxes(page, 3)] == ["circle", "square", "triangle"]
    sent = submit(page, "rita")
    assert [b["label"] for b in sent] == ["circle", "square", "triangle"]
    page.context.close()


def test_tab_walks_the_boxes_then_goes_on_to_the_next_question(browser, server):
    page = open_page(browser, server.url, "tabitha")
    for bbox in (CIRCLE, SQUARE, (700, 100, 200, 200)):
        draw(page, bbox)
    wait_boxes(page, 3)
    walk = []
    for _ in range(6):
        page.keyboard.press("Tab")
        page.wait_for_timeout(60)
        walk.append((active(page), selected(page)))
    # the boxes one by one; after the last, the next question (nothing selected), then round to the boxes
    assert walk == [([0], [0]), ([0], [1]), ([0], [2]), ([1], []), ([0], []), ([0], [0])], walk
    page.keyboard.press("Shift+Tab")  # from the first box: off the boxes, to the question before (round: 1)
    page.wait_for_timeout(60)
    assert (active(page), selected(page)) == ([1], [])
    page.keyboard.press("y")  # the other question's key answers it
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.wait_for_timeout(60)
    assert (active(page), selected(page)) == ([0], [2])  # from the question after: the last box first
    record = shown(page)
    page.keyboard.press("Escape")
    submit(page, "tabitha")
    assert page.sent[-1][1]["answer"]["crowded"] == "yes" and shown(page) != record
    page.context.close()


def test_delete_and_backspace_remove_the_selected_box(browser, server):
    page = open_page(browser, server.url, "dora")
    for bbox in (CIRCLE, SQUARE, (700, 100, 200, 200)):
        draw(page, bbox)
    wait_boxes(page, 3)
    click_at(page, 1100, 800)
    page.keyboard.press("Delete")
    assert [b["bbox"][0] for b in wait_boxes(page, 2)] == pytest.approx([CIRCLE[0], 700], abs=3)
    click_at(page, 400, 300)
    page.keyboard.press("Backspace")  # with a box selected Backspace removes it, and goes back nowhere
    assert wait_boxes(page, 1)[0]["bbox"][0] == pytest.approx(700, abs=3)
    assert page.sent == []
    page.context.close()


def test_arrows_move_the_selected_box_and_pan_without_one(browser, server):
    page = open_page(browser, server.url, "arrow")
    draw(page, SQUARE)
    before = wait_boxes(page, 1)[0]["bbox"]
    click_at(page, 1100, 800)
    step = 1 / fit(page)[2]  # a screen pixel, in original pixels
    for key in ("ArrowRight", "ArrowRight", "ArrowDown"):
        page.keyboard.press(key)
    page.wait_for_timeout(100)
    after = boxes(page)[0]["bbox"]
    assert near(after, [before[0] + 2 * step, before[1] + step, before[2], before[3]], 0.15), (before, after, step)
    # no box selected: the arrows pan a zoomed image as before
    page.keyboard.press("Escape")
    page.keyboard.press("+")
    x = page.evaluate("document.querySelector('#ann-img').getBoundingClientRect().x")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.querySelector('#ann-img').getBoundingClientRect().x") < x - 10
    page.context.close()


def test_shift_arrows_resize_the_selected_box(browser, server):
    page = open_page(browser, server.url, "shifty")
    draw(page, SQUARE)
    before = wait_boxes(page, 1)[0]["bbox"]
    click_at(page, 1100, 800)
    step = 1 / fit(page)[2]
    for key in ("Shift+ArrowRight", "Shift+ArrowRight", "Shift+ArrowRight", "Shift+ArrowUp"):
        page.keyboard.press(key)
    page.wait_for_timeout(100)
    after = boxes(page)[0]["bbox"]
    assert near(after, [before[0], before[1], before[2] + 3 * step, before[3] - step], 0.15), (before, after)
    page.context.close()


def test_ctrl_z_undoes_draw_move_resize_relabel_and_delete(browser, server):
    page = open_page(browser, server.url, "undine")
    draw(page, CIRCLE)
    page.keyboard.press("2")
    draw(page, SQUARE)
    first = wait_boxes(page, 2)
    click_at(page, 1100, 800)
    page.keyboard.press("ArrowLeft")                # move
    page.keyboard.press("Shift+ArrowDown")          # resize
    page.keyboard.press("3")                        # relabel
    page.keyboard.press("Delete")                   # delete
    wait_boxes(page, 1)
    page.keyboard.press("Control+z")
    assert wait_boxes(page, 2)[1]["label"] == "triangle"
    page.keyboard.press("Control+z")
    page.wait_for_timeout(100)
    assert boxes(page)[1]["label"] == "square"
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    page.wait_for_timeout(100)
    assert [b["bbox"] for b in boxes(page)] == [b["bbox"] for b in first]
    page.keyboard.press("Control+z")                # the square's drawing
    wait_boxes(page, 1)
    page.keyboard.press("Meta+z")                   # Cmd+Z on a Mac: the circle's
    wait_boxes(page, 0)
    page.context.close()


def test_enter_needs_min_boxes_then_submits_and_the_next_image_starts_empty(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "enzo")
    first = shown(page)
    page.keyboard.press("Enter")
    expect(page.locator("#ann-error")).to_contain_text("Draw at least 1 box")
    assert page.sent == [] and shown(page) == first
    for bbox in (CIRCLE, SQUARE, (700, 100, 200, 200), (50, 900, 100, 100)):  # the message lets a drag through
        draw(page, bbox)
    wait_boxes(page, 4)
    expect(page.locator("#ann-error")).to_be_hidden()  # a box drawn: the message is stale
    sent = submit(page, "enzo")
    assert len(sent) == 4
    assert wait_boxes(page, 0) == []  # the next record: an empty layer, the same SVG
    expect(page.locator("#ann-q-0-boxes")).to_have_text("No boxes.")
    page.context.close()


def test_backspace_goes_back_and_shows_the_stored_boxes(browser, server):
    page = open_page(browser, server.url, "bert")
    first = shown(page)
    drawn = draw(page, CIRCLE)
    submit(page, "bert")
    assert shown(page) != first
    page.keyboard.press("Backspace")  # nothing selected: back to the previous record, as today
    page.wait_for_function(f"document.querySelector('#ann-img').dataset.record === '{first}'", timeout=WAIT)
    found = wait_boxes(page, 1)
    assert found[0]["label"] == "circle" and near(found[0]["bbox"], drawn) and not found[0]["suggested"]
    page.keyboard.press("1")  # the label of new boxes; then a second box on the earlier answer
    draw(page, SQUARE)
    wait_boxes(page, 2)
    sent = submit(page, "bert")
    assert len(sent) == 2 and near(sent[0]["bbox"], drawn)
    page.context.close()


def test_a_finger_draws_a_box(browser, server):
    """Touch emulation: a one-finger drag through the DevTools protocol draws, as the mouse does."""
    page = open_page(browser, server.url, "fingers", has_touch=True)
    (x0, y0), (x1, y1) = corners = to_screen(page, CIRCLE)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0, "id": 1}]})
    for i in range(1, 9):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
            {"x": x0 + (x1 - x0) * i / 8, "y": y0 + (y1 - y0) * i / 8, "id": 1}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    found = wait_boxes(page, 1)
    assert near(found[0]["bbox"], drawn_at(page, corners), 1.0), found
    sent = submit(page, "fingers")
    assert near(sent[0]["bbox"], drawn_at(page, corners))
    page.context.close()


def test_drawing_while_zoomed_lands_on_the_original_and_the_boxes_follow_the_zoom(browser, server):
    page = open_page(browser, server.url, "zoe")
    whole = fit(page)[2]
    for _ in range(3):
        page.keyboard.press("+")  # 3.4x, around the centre: the square is in view
    page.wait_for_timeout(200)
    assert fit(page)[2] == pytest.approx(3.375 * whole, rel=0.01)
    part = (950, 650, 300, 250)  # inside the square, in view at this zoom
    drawn = draw(page, part)
    found = wait_boxes(page, 1)
    assert near(found[0]["bbox"], drawn, 0.6)
    # the box sits on the image as it moves: after a pan, its screen place moved with the image
    rect = "(() => { const r = document.querySelector('#ann-boxes g.ann-box rect').getBoundingClientRect(); return [r.x, r.y]; })()"
    before, ox = page.evaluate(rect), fit(page)[0]
    page.keyboard.down(" ")  # Space+drag pans instead of drawing
    drag(page, ((640, 400), (560, 380)))
    page.keyboard.up(" ")
    moved = fit(page)[0] - ox
    assert moved < -50
    assert abs(page.evaluate(rect)[0] - (before[0] + moved)) < 1.5
    assert len(boxes(page)) == 1  # the pan drew nothing
    page.keyboard.press("0")
    page.wait_for_timeout(150)
    # the label's text keeps its screen size through the zoom (drawn at 3.4x, shown now at 1x)
    label = page.evaluate("document.querySelector('#ann-boxes g.ann-box text').getBoundingClientRect().height")
    assert 8 < label < 25, label
    sent = submit(page, "zoe")
    assert near(sent[0]["bbox"], drawn, 0.6) and near(drawn, part, 1.5 / (3.375 * whole))
    page.context.close()


def test_the_store_holds_the_boxes_sent(browser, server):
    """(Runs last: it stops the app to read its DuckDB file.) Every answer sent above is stored as sent."""
    assert STORED, "run the module's drawing tests first: they send what this test finds stored"
    server.stop()
    snapshot = read_store(server.data_dir)
    stored = {(r.user_id, r.record_id): r.answer for r in snapshot.responses if r.status == "submitted"}
    for key, sent in STORED.items():
        assert stored[key]["objects"] == sent, (key, stored[key], sent)
