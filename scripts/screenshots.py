"""The README's screenshots, taken from the real app on the shipped sample (`data/`) in Debian's chromium.

Starts `python app.py` on a temporary DATA_DIR (local mode: the one
local person is the admin), opens the annotate page at 1280x800, answers two
images so the progress and the dashboard have something to show, and writes:

- docs/annotate.png: the annotate screen (single-label, with a suggestion);
- docs/annotate-phone.png: the same at 390x844;
- docs/dashboard.png: the dashboard tab, as the admin sees it.

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from apphelpers import start_app  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def main() -> int:
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="annotator-screenshots-"))
    server = start_app(work / "data", env={"SOURCE_DIR": str(ROOT / "data" / "images"),
                                           "TASK_FILE": str(ROOT / "data" / "task.toml"),
                                           "AUTH_MODE": "local", "LOG_LEVEL": "WARNING"})
    docs = ROOT / "docs"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.url)
            page.wait_for_selector("#ann-img", timeout=60_000)
            for key in ("1", "2"):
                page.locator("#ann-image").focus()
                page.keyboard.press(key)
                time.sleep(0.8)
            page.wait_for_function("document.querySelector('#ann-saved')?.textContent === 'All answers saved'",
                                   timeout=30_000)
            page.screenshot(path=str(docs / "annotate.png"))
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(server.url)
            phone.wait_for_selector("#ann-img", timeout=60_000)
            time.sleep(1)
            phone.screenshot(path=str(docs / "annotate-phone.png"))
            page.get_by_role("tab", name="Dashboard").click()
            page.wait_for_selector("text=Updated", timeout=60_000)
            time.sleep(2)  # the plots draw after the numbers
            page.screenshot(path=str(docs / "dashboard.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for name in ("annotate.png", "annotate-phone.png", "dashboard.png"):
        print(docs / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
