"""The README's screenshots, taken from the real app in Debian's chromium.

Starts `python app.py` on a temporary DATA_DIR (local mode: the one local
person is the admin) on the shipped sample (`data/`), opens the annotate page
at 1280x800, answers two images so the progress and the dashboard have
something to show, and writes:

- docs/annotate.png: the annotate screen (single-label, with a suggestion);
- docs/annotate-phone.png: the same at 390x844;
- docs/dashboard.png: the dashboard tab, as the admin sees it.

Then a second app, a multi-label task on generated 2400x1600 "survey sheets"
(a few large shapes and a grid of small printed numbers, detail only a zoom
shows), for:

- docs/annotate-multilabel.png: two labels chosen, the suggestion marked;
- docs/annotate-zoomed.png: zoomed in 3x with `+` and moved by a drag, once
  the large rendition has loaded.

Usage (after `pip install -r requirements-test.txt` and `apt-get install chromium`):

    python scripts/screenshots.py
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from apphelpers import start_app  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
MULTI_TASK = '''title = "Survey sheets"
question = "Which shapes are on the sheet?"
kind = "multi_label"
comment = true
overlap = 1
suggestion_column = "label"
guidelines = "Choose **every** shape drawn on the sheet; zoom in (+) to read the small print."

[[labels]]
name = "circle"

[[labels]]
name = "square"

[[labels]]
name = "triangle"

[[labels]]
name = "cut off"
'''


def make_sheets(folder: Path, n: int) -> None:
    """`n` 2400x1600 JPEGs in class sub-folders: large shapes over a grid of small printed numbers."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    for i in range(n):
        shape = ("circle", "square", "triangle")[i % 3]
        (folder / shape).mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (2400, 1600), (248, 246, 238))
        draw = ImageDraw.Draw(img)
        for row in range(0, 1600, 40):
            for col in range(0, 2400, 120):
                draw.text((col + 8, row + 12), f"{row // 40:02d}-{col // 120:02d}.{(row + col + i) % 97:02d}",
                          fill=(90, 90, 110), font=font)
        draw.ellipse((300, 300, 900, 900), outline=(37, 99, 235), width=14)
        draw.rectangle((1100, 500, 1500, 900), outline=(22, 163, 74), width=14)
        if shape == "triangle" or i % 2:
            draw.polygon([(1900, 350), (1650, 1100), (2200, 1100)], outline=(220, 38, 38), width=14)
        img.save(folder / shape / f"sheet_{i:02d}.jpg", quality=90)


def wait_image(page: Any) -> None:
    """Until the image on screen has loaded (a first view's image is rendered when first asked for)."""
    page.wait_for_function("() => { const i = document.querySelector('#ann-img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)


def shoot_single(browser: Any, url: str, docs: Path) -> None:
    """annotate.png, annotate-phone.png and dashboard.png from the sample."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(url)
    page.wait_for_selector("#ann-img", timeout=60_000)
    for key in ("1", "2"):
        page.locator("#ann-image").focus()
        page.keyboard.press(key)  # the first key also closes the first-visit card
        time.sleep(0.8)
    page.wait_for_function("document.querySelector('#ann-saved')?.textContent === 'All answers saved'",
                           timeout=30_000)
    wait_image(page)
    page.screenshot(path=str(docs / "annotate.png"))
    phone = page.context.new_page()  # the same profile: the first-visit card was seen
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(url)
    wait_image(phone)
    phone.screenshot(path=str(docs / "annotate-phone.png"))
    page.get_by_role("tab", name="Dashboard").click()
    page.wait_for_selector("text=Updated", timeout=60_000)
    time.sleep(2)  # the plots draw after the numbers
    page.screenshot(path=str(docs / "dashboard.png"), full_page=True)


def shoot_multi(browser: Any, url: str, docs: Path) -> None:
    """annotate-multilabel.png and annotate-zoomed.png from the survey sheets."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    page.wait_for_selector("#ann-img", timeout=60_000)
    page.keyboard.press("Enter")  # closes the first-visit card
    time.sleep(1)
    for key in ("1", "2"):
        page.keyboard.press(key)
    page.wait_for_function("document.querySelectorAll('.ann-selected').length === 2", timeout=10_000)
    wait_image(page)
    page.screenshot(path=str(docs / "annotate-multilabel.png"))
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('.ann-selected').length === 0", timeout=10_000)
    wait_image(page)
    for _ in range(3):
        page.keyboard.press("+")
    page.wait_for_selector("#ann-img-large", state="attached", timeout=30_000)
    stage = page.locator("#ann-image").bounding_box()
    x, y = stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 500, y + 260, steps=8)  # toward the circle's corner of the sheet
    page.mouse.up()
    time.sleep(0.5)
    page.screenshot(path=str(docs / "annotate-zoomed.png"))


def main() -> int:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="annotator-screenshots-"))
    make_sheets(work / "sheets", 6)
    (work / "multi").mkdir()
    (work / "multi.toml").write_text(MULTI_TASK)
    servers = [start_app(work / "data", env={"SOURCE_DIR": str(ROOT / "data" / "images"),
                                             "TASK_FILE": str(ROOT / "data" / "task.toml"),
                                             "AUTH_MODE": "local", "LOG_LEVEL": "WARNING"})]
    docs = ROOT / "docs"
    try:
        servers.append(start_app(work / "multi" / "data", env={"SOURCE_DIR": str(work / "sheets"),
                                                               "TASK_FILE": str(work / "multi.toml"),
                                                               "AUTH_MODE": "local", "LOG_LEVEL": "WARNING"}))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            shoot_single(browser, servers[0].url, docs)
            shoot_multi(browser, servers[1].url, docs)
            browser.close()
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name in ("annotate.png", "annotate-phone.png", "dashboard.png", "annotate-multilabel.png",
                 "annotate-zoomed.png"):
        print(docs / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
