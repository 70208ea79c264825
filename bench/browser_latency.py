"""Keypress to next image, measured in a real browser (Debian chromium via Playwright).

Starts the app on a generated dataset (local mode, one annotator), opens the
page, and presses a label key N times. In the page, a keydown listener notes
the time; a MutationObserver notes when the next record's <img> is in the
DOM and its pixels have loaded (`img.decode()`). Prints p50/p95/p99 and the
command. Usage:

    python bench/browser_latency.py --presses 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from apphelpers import start_app  # noqa: E402

from annotator.metrics import percentiles  # noqa: E402

PROBE = """
window.__lat = []; window.__dom = [];
let t0 = null, last = null;
document.addEventListener('keydown', () => {
  t0 = performance.now();
  const img = document.getElementById('ann-img');
  last = img ? img.dataset.record : null;
}, true);
new MutationObserver(() => {
  const img = document.getElementById('ann-img');
  if (t0 === null || !img || img.dataset.record === last) return;
  const started = t0; t0 = null;
  window.__dom.push(performance.now() - started);
  img.decode().then(() => window.__lat.push(performance.now() - started),
                    () => window.__lat.push(-1));
}).observe(document.getElementById('ann-image'), {childList: true, subtree: true});
"""


def make_dataset(folder: Path, n: int) -> None:
    from PIL import Image, ImageDraw
    for i in range(n):
        label = ("circle", "square")[i % 2]
        (folder / label).mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (1600, 1200), (i * 37 % 255, 120, 200))
        ImageDraw.Draw(img).ellipse((200 + i % 300, 200, 900, 900), fill=(240, 240, 20))
        img.save(folder / label / f"photo{i:04d}.jpg", quality=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between key presses (a fast annotator)")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="annotator-browser-bench-"))
    make_dataset(work / "images", args.presses + 20)
    task = work / "task.toml"
    task.write_text('title = "Latency"\nkind = "single_label"\noverlap = 1\n'
                    '[[labels]]\nname = "circle"\n[[labels]]\nname = "square"\n')
    (work / "data").mkdir()
    server = start_app(work / "data", env={"SOURCE_DIR": str(work / "images"), "TASK_FILE": str(task),
                                           "AUTH_MODE": "local", "LOG_LEVEL": "WARNING"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server.url)
            page.wait_for_selector("#ann-img", timeout=60_000)
            time.sleep(2)  # let the prefetch buffer fill, as it has when a person looks at the first image
            page.evaluate(PROBE)
            for _ in range(args.presses):
                page.keyboard.press("1")
                time.sleep(args.pause)
            time.sleep(1)
            samples = page.evaluate("window.__lat")
            dom = page.evaluate("window.__dom")
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    failed = sum(1 for s in samples if s < 0)
    ok = [s for s in samples if s >= 0]
    figures = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "presses": args.presses,
               "measured": len(ok), "image_errors": failed,
               **{k: round(v, 1) if v is not None else None for k, v in percentiles(ok).items()},
               "max": round(max(ok), 1) if ok else None, "load_avg": os.getloadavg(),
               "dom_update": {k: round(v, 1) if v is not None else None for k, v in percentiles(dom).items()}}
    print(f"command: {figures['command']}")
    print(f"keypress -> next image decoded, {len(ok)} of {args.presses} presses ({failed} image errors), "
          f"1600x1200 JPEG sources shown at IMAGE_MAX_SIDE=1280: p50 {figures['p50']} ms, "
          f"p95 {figures['p95']} ms, p99 {figures['p99']} ms, max {figures['max']} ms "
          f"(load average {figures['load_avg'][0]:.2f})")
    d = figures["dom_update"]
    print(f"of which keypress -> new <img> in the page (the swap to a preloaded image, or the server round trip): "
          f"p50 {d['p50']} ms, p95 {d['p95']} ms, p99 {d['p99']} ms")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
