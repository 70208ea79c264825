"""Zoom and pan on the annotate screen (issue 14), in Debian's chromium through Playwright.

The app shows 1200x900 JPEGs at IMAGE_MAX_SIDE=480 (and one 300x200 original, smaller than that):
- `+` zooms in around the centre and loads the record's large rendition (`/img/<id>/large`, seen on the
  network, 960 px: twice the display size), laid exactly over the display image; a drag and the arrow
  keys move the view, never past the image's edge; `0` and Esc fit it again; `-` zooms back out;
- the mouse wheel zooms around the pointer, a two-finger pinch (touch, through the DevTools protocol) too;
- the next record starts whole, and loads no large rendition until someone zooms again; an original no
  larger than the display size is zoomed as it is, with no large request;
- the label chips and buttons do not move while zooming.
Before this change none of these keys did anything and the image could not be enlarged.
"""

from __future__ import annotations

import re

import pytest

from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import start_many, write_task
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000
SIDE = 480
BIG, SMALL = (1200, 900), (300, 200)
ORDER = [BIG, SMALL, BIG, BIG, BIG, BIG]  # the records in the dataset's order


def make_photos(folder) -> None:
    """JPEGs with fine detail (a 10 px checkerboard and the record's number), named in ORDER."""
    from PIL import Image, ImageDraw

    sub = folder / "circle"
    sub.mkdir(parents=True)
    for i, (w, h) in enumerate(ORDER):
        img = Image.new("RGB", (w, h), (250, 250, 250))
        draw = ImageDraw.Draw(img)
        for y in range(0, h, 10):
            for x in range((y // 10) % 2 * 10, w, 20):
                draw.rectangle((x, y, x + 9, y + 9), fill=(30, 60 + 20 * i, 200))
        draw.text((w // 2, h // 2), f"#{i}", fill=(0, 0, 0))
        img.save(sub / f"photo_{i:02d}.jpg", quality=90)


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("zoom")
    make_photos(base / "source")
    env = {"SOURCE_DIR": str(base / "source"), "IMAGE_MAX_SIDE": str(SIDE), **oauth_space_env(),
           "TASK_FILE": str(write_task(base / "task.toml", overlap=3))}
    (found,) = start_many((base / "data", env))
    yield found
    found.stop()


def open_page(browser, url: str, user: str, **context):
    """The page at 1280x720 with its first image shown and the first-visit card closed; `page.large` lists
    the large renditions the page asked for."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1280, "height": 720}, **context)
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.large = []
    page.on("request", lambda r: page.large.append(r.url) if "/large?" in r.url else None)
    page.goto(url)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.wait_for_function("() => { const i = document.querySelector('#ann-img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=WAIT)
    expect(page.locator("#ann-welcome")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#ann-welcome")).to_be_hidden()
    page.wait_for_timeout(1000)  # the buffer fills after the first view
    return page


BOX = "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"


def box(page, selector: str) -> list[float]:
    return page.evaluate(BOX, selector)


def record(page) -> str:
    return page.locator("#ann-img").get_attribute("data-record")


def controls(page) -> list[list[float]]:
    return [box(page, s) for s in ("#label-0", "#btn-skip", "#btn-accept", "#btn-back")]


def close(a: float, b: float, tolerance: float = 1.5) -> bool:
    return abs(a - b) <= tolerance


def test_plus_loads_the_large_rendition_drag_and_arrows_pan_and_zero_fits(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "alice")
    stage, bar, first = box(page, "#ann-image"), controls(page), record(page)
    assert page.locator("#ann-img").get_attribute("width") == str(BIG[0])
    assert page.large == []  # the display rendition alone until someone zooms
    fitted = box(page, "#ann-img")
    assert fitted == stage

    page.keyboard.press("+")
    large = page.locator("#ann-img-large")
    expect(large).to_have_count(1, timeout=WAIT)
    assert len(page.large) == 1 and re.search(rf"/img/{first}/large\?u=alice&e=\d+&s=\w+$", page.large[0]), page.large
    assert page.evaluate("document.querySelector('#ann-img-large').naturalWidth") == 2 * SIDE
    zoomed = box(page, "#ann-img")
    assert close(zoomed[2], 1.5 * stage[2]) and close(zoomed[3], 1.5 * stage[3]), (zoomed, stage)
    # around the centre: the stage's middle stays where it was
    assert close(zoomed[0] + zoomed[2] / 2, stage[0] + stage[2] / 2)
    assert box(page, "#ann-img-large") == zoomed  # the large one lies exactly over the display one

    # a drag moves the view by as much as the mouse moved
    cx, cy = stage[0] + stage[2] / 2, stage[1] + stage[3] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy + 40, steps=5)
    page.mouse.up()
    dragged = box(page, "#ann-img")
    assert close(dragged[0], zoomed[0] + 60) and close(dragged[1], zoomed[1] + 40), (dragged, zoomed)
    # ...but never past the image's edge: the top-left corner stays at the stage's at most
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 2000, cy + 2000, steps=5)
    page.mouse.up()
    corner = box(page, "#ann-img")
    assert close(corner[0], stage[0]) and close(corner[1], stage[1]), (corner, stage)
    page.keyboard.press("ArrowRight")  # the arrow keys move it too
    assert box(page, "#ann-img")[0] < corner[0] - 10

    page.keyboard.press("+")
    assert close(box(page, "#ann-img")[2], 2.25 * stage[2])
    assert len(page.large) == 1  # loaded once per record
    page.keyboard.press("-")
    assert close(box(page, "#ann-img")[2], 1.5 * stage[2])
    page.keyboard.press("0")
    assert box(page, "#ann-img") == stage
    expect(page.locator("#ann-image")).not_to_have_class(re.compile(r"\bann-zoomed\b"))
    page.keyboard.press("+")
    page.keyboard.press("Escape")  # Esc fits as well
    assert box(page, "#ann-img") == stage
    assert controls(page) == bar, "the chips or buttons moved while zooming"
    assert record(page) == first  # none of it answered anything

    # the next record starts whole; its small original is zoomed as it is, with no large request
    page.keyboard.press("+")
    page.keyboard.press("1")
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", first, timeout=WAIT)
    second = record(page)
    assert page.locator("#ann-img").get_attribute("width") == str(SMALL[0])
    assert box(page, "#ann-img") == stage and page.locator("#ann-img-large").count() == 0
    page.keyboard.press("+")
    assert close(box(page, "#ann-img")[2], 1.5 * stage[2])
    page.wait_for_timeout(500)
    assert len(page.large) == 1 and page.locator("#ann-img-large").count() == 0, page.large
    page.keyboard.press("1")
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", second, timeout=WAIT)
    third = record(page)
    assert box(page, "#ann-img") == stage
    page.keyboard.press("=")  # + without Shift
    expect(page.locator("#ann-img-large")).to_have_count(1, timeout=WAIT)
    assert len(page.large) == 2 and f"/img/{third}/large?" in page.large[1]
    page.context.close()


def test_the_wheel_zooms_around_the_pointer_and_a_pinch_zooms(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "bob", has_touch=True)
    stage = box(page, "#ann-image")
    px, py = stage[0] + stage[2] * 0.25, stage[1] + stage[3] * 0.25
    page.mouse.move(px, py)
    page.mouse.wheel(0, -200)
    expect(page.locator("#ann-image")).to_have_class(re.compile(r"\bann-zoomed\b"))
    zoomed = box(page, "#ann-img")
    scale = zoomed[2] / stage[2]
    assert scale > 1.2, zoomed
    # the point under the pointer stays under it
    assert close(zoomed[0] + (px - stage[0]) * scale, px, 2) and close(zoomed[1] + (py - stage[1]) * scale, py, 2)
    expect(page.locator("#ann-img-large")).to_have_count(1, timeout=WAIT)
    page.mouse.wheel(0, 2000)  # out again, no further than whole
    assert box(page, "#ann-img") == stage

    cdp = page.context.new_cdp_session(page)
    cx, cy = stage[0] + stage[2] / 2, stage[1] + stage[3] / 2

    def touch(kind: str, spread: float) -> None:
        points = [] if kind == "touchEnd" else [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 40)
    for spread in (60, 80, 100, 120):
        touch("touchMove", spread)
    touch("touchEnd", 0)
    pinched = box(page, "#ann-img")
    assert close(pinched[2], 3 * stage[2], 0.05 * stage[2]), (pinched, stage)  # the fingers moved 3x apart
    assert page.evaluate("window.scrollY") == 0
    page.context.close()
