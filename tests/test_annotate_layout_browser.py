"""The annotate screen's layout (issue 14, "the image owns the screen"), in Debian's chromium through Playwright.

At 1920x1080, 1280x720 and 390x844, over 20 records of mixed sizes and aspect ratios (32x32, 1600x400,
300x1200, 1600x1200):
- the image's box covers at least 55% of the window's height on the desktops, the window's full width on
  the phone;
- every label chip and action button is inside the window without scrolling;
- the chips' and buttons' boxes are the same, to the pixel, on every record (the stage's size is the
  window's, not the image's);
- a 32 px image is shown enlarged, with crisp pixels.
And an axe-core scan of the annotate page finds no serious or critical violation; the colours follow the
system's dark scheme and reduced motion; G shows the guidelines over the image without moving it.

Before this change the image was at most 70vh tall but as small as its file (32 px stayed 32 px), its
height changed per record so the buttons moved, and at 1280x720 the buttons were below the fold.
"""

from __future__ import annotations

import os

import pytest

from axehelpers import serious_violations
from browserhelpers import browser  # noqa: F401,F811 - the module's fixture: one Chromium
from clients import SHAPES, start_many, write_task
from oauth_cookies import oauth_space_env, playwright_cookie

WAIT = 20_000
SIZES = [(32, 32), (1600, 400), (300, 1200), (1600, 1200)]
RECORDS = 20
VIEWPORTS = {"desktop-1920x1080": (1920, 1080, "alice"), "laptop-1280x720": (1280, 720, "bob"),
             "phone-390x844": (390, 844, "carol")}
CONTROLS = [f"#label-{i}" for i in range(len(SHAPES))] + ["#btn-back", "#btn-skip", "#btn-accept", "#btn-comment"]


def make_mixed_images(folder, n: int) -> None:
    """`n` PNGs cycling through SIZES, in class sub-folders (their names become suggestions)."""
    from PIL import Image, ImageDraw

    for i in range(n):
        w, h = SIZES[i % len(SIZES)]
        shape = SHAPES[i % 3]
        sub = folder / shape
        sub.mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (w, h), (200, 220 - (i * 7) % 100, 255))
        ImageDraw.Draw(img).rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(37, 99, 235))
        img.save(sub / f"{shape}_{i:03d}.png")


@pytest.fixture(scope="module")
def server(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("layout")
    make_mixed_images(base / "source", RECORDS)
    env = {"SOURCE_DIR": str(base / "source"), **oauth_space_env(),
           "TASK_FILE": str(write_task(base / "task.toml", overlap=len(VIEWPORTS) + 1))}  # + the axe scan's person
    (found,) = start_many((base / "data", env))
    yield found
    found.stop()


def open_page(browser, url: str, user: str, width: int, height: int):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.add_cookies([playwright_cookie(user)])
    page = ctx.new_page()
    page.goto(url)
    expect(page.locator("#ann-img")).to_be_visible(timeout=WAIT)
    page.wait_for_timeout(1000)  # the buffer fills after the first view
    return page


MEASURE = """(sels) => {
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const img = document.querySelector('#ann-img');
  return {record: img.dataset.record, complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
          img: box(img), rendering: getComputedStyle(img).imageRendering, fit: getComputedStyle(img).objectFit,
          controls: Object.fromEntries(sels.map((s) => [s, box(document.querySelector(s))])),
          scroll: [window.scrollX, window.scrollY], window: [window.innerWidth, window.innerHeight],
          client: [document.documentElement.clientWidth, document.documentElement.scrollWidth]};
}"""


@pytest.mark.parametrize("name", list(VIEWPORTS))
def test_the_image_owns_the_screen_and_the_controls_never_move(browser, server, name):
    from playwright.sync_api import expect

    width, height, user = VIEWPORTS[name]
    page = open_page(browser, server.url, user, width, height)
    seen, first_controls, enlarged = [], None, []
    for n in range(RECORDS):
        page.wait_for_function("() => { const i = document.querySelector('#ann-img'); "
                               "return i && i.complete && i.naturalWidth > 0; }", timeout=WAIT)
        m = page.evaluate(MEASURE, CONTROLS)
        seen.append(m["record"])
        assert m["scroll"] == [0, 0], f"{name}: the page scrolled ({m['scroll']})"
        assert m["fit"] == "contain"
        x, y, w, h = m["img"]
        if n == 0 and os.environ.get("ANN_LAYOUT_SHOTS"):
            page.screenshot(path=f"{os.environ['ANN_LAYOUT_SHOTS']}/layout-{name}.png")
        if width > 600:
            assert h >= 0.55 * height, f"{name}: the image's box is {h:.0f} px tall of {height} (record {m['record']})"
        else:
            assert x <= 0 and w >= m["client"][0], f"{name}: the image's box {m['img']} is not the window's width"
            assert m["client"][1] <= m["client"][0], f"{name}: the page scrolls sideways ({m['client']})"
        for sel, (cx, cy, cw, ch) in m["controls"].items():
            if sel == "#btn-accept" and not page.locator(sel).is_visible():
                continue
            assert cw > 0 and ch > 0 and cx >= 0 and cy >= 0 and cx + cw <= width and cy + ch <= height, \
                f"{name}: {sel} at {(cx, cy, cw, ch)} is outside the {width}x{height} window"
        if first_controls is None:
            first_controls = m["controls"]
        assert m["controls"] == first_controls, f"{name}: the controls moved on record {m['record']}"
        nw, nh = m["natural"]
        if max(nw, nh) <= 32:  # shown enlarged, with crisp pixels
            scale = min(w / nw, h / nh)
            enlarged.append(scale)
            assert scale >= 4, f"{name}: the 32 px image is shown at {scale:.1f}x"
            assert m["rendering"] == "pixelated"
        else:
            assert m["rendering"] != "pixelated"
        if n < RECORDS - 1:
            before = m["record"]
            page.keyboard.press("1")
            expect(page.locator("#ann-img")).not_to_have_attribute("data-record", before, timeout=WAIT)
    assert len(set(seen)) == RECORDS and enlarged, (seen, enlarged)
    page.context.close()


def test_axe_finds_no_serious_violation_on_the_annotate_page(browser, server):
    page = open_page(browser, server.url, "dave", 1280, 720)
    found = serious_violations(page)
    assert not found, "\n".join(found)
    page.context.close()


def test_dark_scheme_and_reduced_motion_follow_the_system(browser, server):
    """The bar and chips turn dark with the system's dark scheme (as Gradio's theme does); no transitions
    when the system asks for reduced motion."""
    page = open_page(browser, server.url, "dave", 1280, 720)
    style = "(s) => { const c = getComputedStyle(document.querySelector(s)); return [c.backgroundColor, c.color]; }"
    light_bar = page.evaluate(style, "#ann-bar")
    assert page.evaluate("getComputedStyle(document.querySelector('#label-0')).transitionDuration") != "0s"
    page.emulate_media(color_scheme="dark", reduced_motion="reduce")
    dark_bar, dark_chip = page.evaluate(style, "#ann-bar"), page.evaluate(style, "#label-0")
    assert light_bar[0] == "rgb(255, 255, 255)" and dark_bar[0] == "rgb(11, 15, 25)", (light_bar, dark_bar)
    assert dark_chip == ["rgb(31, 41, 55)", "rgb(243, 244, 246)"], dark_chip
    assert set(page.evaluate("getComputedStyle(document.querySelector('#label-0')).transitionDuration")
               .split(", ")) == {"0s"}
    page.context.close()


def test_g_shows_the_guidelines_over_the_image_without_moving_it(browser, server):
    from playwright.sync_api import expect

    page = open_page(browser, server.url, "dave", 1280, 720)
    page.keyboard.press("Enter")  # the first-visit card (it shows the guidelines too) closes
    expect(page.locator("#ann-welcome")).to_be_hidden()
    guides = page.locator("#ann-guidelines").get_by_text("Pick the shape.")
    box = "(s) => { const r = document.querySelector(s).getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }"
    before = page.evaluate(box, "#ann-image"), page.evaluate(box, "#ann-bar")
    expect(guides).to_be_hidden()
    page.keyboard.press("g")
    expect(guides).to_be_visible(timeout=WAIT)
    text = guides.bounding_box()
    assert 0 <= text["y"] and text["y"] + text["height"] <= 720, text  # over the image, in the window
    if os.environ.get("ANN_LAYOUT_SHOTS"):
        page.screenshot(path=f"{os.environ['ANN_LAYOUT_SHOTS']}/layout-guidelines.png")
    assert (page.evaluate(box, "#ann-image"), page.evaluate(box, "#ann-bar")) == before
    assert page.evaluate("window.scrollY") == 0
    record = page.locator("#ann-img").get_attribute("data-record")
    page.keyboard.press("1")  # the overlay is modal: no answer behind it
    page.wait_for_timeout(300)
    assert page.locator("#ann-img").get_attribute("data-record") == record
    page.keyboard.press("Escape")
    expect(guides).to_be_hidden()
    assert page.evaluate("document.activeElement.id") == "ann-image"
    page.keyboard.press("g")
    expect(guides).to_be_visible(timeout=WAIT)
    page.keyboard.press("g")
    expect(guides).to_be_hidden()
    page.keyboard.press("1")  # closed: the keys answer again
    expect(page.locator("#ann-img")).not_to_have_attribute("data-record", record, timeout=WAIT)
    page.context.close()
