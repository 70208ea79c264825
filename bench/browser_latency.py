"""Keypress to next image, measured in a real browser (Debian chromium via Playwright), this layout and another.

Starts the app on a generated dataset (1600x1200 JPEGs, local mode, one
annotator), opens the page at 1280x720, and presses a label key N times. In
the page, a keydown listener notes the time; a MutationObserver notes when the
next record's <img> is in the DOM and its pixels have loaded (`img.decode()`).

With `--baseline-rev REV` the same runs against the app as it was at REV
(exported with `git archive` into a temporary folder and started as a second
app on its own DATA_DIR, same images): both pages are open in one browser and
take turns, a round of presses each, the order alternating per round, so the
machine's noise falls on both alike. Prints p50/p95/p99 for each, the page's
own weight (its script and style files, and the first view: the view's
markup in Gradio's config plus the first record's reply, as served and
gzipped), and the command. Usage:

    python bench/browser_latency.py --presses 200 --baseline-rev 6181d89 --json out.json

With `--boxes N` the task is one boxes question (issue 16): before each Enter the page gets N boxes drawn
by mouse drags (real pointer events), so the figure is Enter to the next image with N boxes on screen;
`--drag-seconds S` adds one drag of S seconds over the image, drawing a box, during which the page notes
every `requestAnimationFrame` timestamp: the frame intervals and the frames dropped (an interval over 1.5
times the median counts as the frames it spans, less one). Usage:

    python bench/browser_latency.py --presses 100 --boxes 10 --drag-seconds 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from loadgen import Server, start_server  # noqa: E402

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
# every animation frame's timestamp, until __stopFrames: how smoothly the page drew while a box was dragged
FRAMES = """
window.__frames = []; window.__stopFrames = false;
const tick = (t) => { window.__frames.push(t); if (!window.__stopFrames) requestAnimationFrame(tick); };
requestAnimationFrame(tick);
"""
# where an original pixel (x, y) of the record on screen is on the screen: the boxes layer's own matrix
TO_SCREEN = "() => { const m = document.getElementById('ann-boxes').getScreenCTM(); return [m.a, m.e, m.f]; }"
BOX_TASK = ('title = "Latency, boxes"\noverlap = 1\n\n[[questions]]\nname = "objects"\ntitle = "Box every shape"\n'
            'kind = "boxes"\nlabels = [{ name = "circle", key = "1" }, { name = "square", key = "2" }]\n')
# the annotate view's markup as Gradio's config carries it (the same for every visitor)
SKELETON = ("() => { const c = (window.gradio_config || {components: []}).components"
            ".find((c) => c.props && c.props.elem_id === 'ann-view'); return c ? c.props.value : ''; }")


@dataclass
class Layout:
    """One app under test: its server, its page, and what was measured on it."""
    name: str
    server: Server
    page: Any = None
    weight: dict[str, Any] = field(default_factory=dict)


def make_dataset(folder: Path, n: int) -> None:
    from PIL import Image, ImageDraw
    for i in range(n):
        label = ("circle", "square")[i % 2]
        (folder / label).mkdir(parents=True, exist_ok=True)
        img = Image.new("RGB", (1600, 1200), (i * 37 % 255, 120, 200))
        ImageDraw.Draw(img).ellipse((200 + i % 300, 200, 900, 900), fill=(240, 240, 20))
        img.save(folder / label / f"photo{i:04d}.jpg", quality=90)


def export_revision(rev: str, into: Path) -> str:
    """The tree of `rev` as plain files in `into` (no git worktree left behind); returns its short hash."""
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", short], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {rev} failed")
    return short


def start_layout(name: str, root: Path, work: Path, images: Path, task: Path) -> Layout:
    env = {**os.environ, "SOURCE_DIR": str(images), "TASK_FILE": str(task), "AUTH_MODE": "local",
           "LOG_LEVEL": "WARNING", "DATA_DIR": str(work / name / "data"), "CACHE_DIR": str(work / name / "cache")}
    (work / name).mkdir(parents=True)
    return Layout(name, start_server("ours", env, work / name / "app.log", root=root))


def page_weight(page: Any, reply: bytes) -> dict[str, Any]:
    """The page's own script and style files (`/ann-static/`) and its first view, in bytes as served and
    gzipped. An app whose script and style are inline in the page has no files: they count as none here."""
    urls = page.evaluate("performance.getEntriesByType('resource').map((e) => e.name)"
                         ".filter((u) => u.includes('/ann-static/'))")
    files = {u.rsplit("/", 1)[1]: page.request.get(u).body() for u in urls}
    skeleton = page.evaluate(SKELETON).encode()
    parts = {**files, "first view: the view's markup": skeleton, "first view: the first record's reply": reply}
    return {name: (len(body), len(gzip.compress(body))) for name, body in parts.items()}


def open_layout(browser: Any, layout: Layout, width: int, height: int) -> None:
    """Open the page, close the first-visit card where there is one, let the buffer fill, install the probe."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    replies: list[Any] = []  # Gradio's event replies: the page load's carries the first view
    page.on("response", lambda r: replies.append(r) if r.request.method == "POST" and "/gradio_api/run/" in r.url
            else None)
    page.goto(layout.server.url)
    page.wait_for_selector("#ann-img", timeout=60_000)
    if page.locator("#ann-welcome").is_visible():
        page.keyboard.press("Enter")
    time.sleep(2)  # let the prefetch buffer fill, as it has when a person looks at the first image
    page.evaluate(PROBE)
    layout.page = page
    bodies = [r.body() for r in replies if r.ok]
    layout.weight = page_weight(page, next((b for b in bodies if b"ann-boot-data" in b), b""))


def draw_boxes(page: Any, n: int) -> None:
    """`n` boxes on the 1600x1200 record on screen, each a mouse drag (pointer events, as a person draws),
    in a grid over the image's middle."""
    scale, left, top = page.evaluate(TO_SCREEN)
    for i in range(n):
        x, y = 200 + (i % 5) * 250, 250 + (i // 5 % 3) * 300
        page.mouse.move(left + x * scale, top + y * scale)
        page.mouse.down()
        page.mouse.move(left + (x + 180) * scale, top + (y + 220) * scale, steps=3)
        page.mouse.up()


def drag_frames(page: Any, seconds: float) -> dict[str, Any]:
    """One drag of `seconds` drawing a box (a move every 4 ms, in a loop over the image), with every
    animation frame's timestamp noted meanwhile: the intervals and the frames dropped."""
    scale, left, top = page.evaluate(TO_SCREEN)
    page.mouse.move(left + 300 * scale, top + 300 * scale)
    page.mouse.down()
    page.evaluate(FRAMES)
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        i += 1
        page.mouse.move(left + (700 + 400 * ((i % 200) / 200)) * scale, top + (700 + 300 * ((i % 150) / 150)) * scale)
        time.sleep(0.004)
    page.evaluate("window.__stopFrames = true")
    page.mouse.up()
    stamps = page.evaluate("window.__frames")
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
    if not gaps:
        return {"frames": len(stamps)}
    median = gaps[len(gaps) // 2]
    dropped = sum(round(g / median) - 1 for g in gaps if g > 1.5 * median)
    return {"frames": len(stamps), "moves": i, "median_ms": round(median, 2), "max_ms": round(gaps[-1], 2),
            "dropped": dropped}


def summary(layout: Layout, presses: int) -> dict[str, Any]:
    samples, dom = layout.page.evaluate("window.__lat"), layout.page.evaluate("window.__dom")
    ok = [s for s in samples if s >= 0]
    return {"presses": presses, "measured": len(ok), "image_errors": len(samples) - len(ok),
            **_rounded(percentiles(ok)), "max": round(max(ok), 1) if ok else None,
            "dom_update": _rounded(percentiles(dom)), "weight_bytes": layout.weight}


def _rounded(found: dict[str, float | None]) -> dict[str, float | None]:
    return {k: round(v, 1) if v is not None else None for k, v in found.items()}


def report(name: str, figures: dict[str, Any]) -> None:
    d = figures["dom_update"]
    print(f"{name}: keypress -> next image decoded, {figures['measured']} of {figures['presses']} presses "
          f"({figures['image_errors']} image errors): p50 {figures['p50']} ms, p95 {figures['p95']} ms, "
          f"p99 {figures['p99']} ms, max {figures['max']} ms; "
          f"keypress -> new <img> in the page: p50 {d['p50']} ms, p99 {d['p99']} ms")
    weight = figures["weight_bytes"]
    for part, (raw, packed) in weight.items():
        print(f"    {part}: {raw / 1000:.1f} kB ({packed / 1000:.1f} kB gzipped)")
    print(f"    the page's own weight, script + style + first view: {sum(r for r, _ in weight.values()) / 1000:.1f} kB "
          f"({sum(p for _, p in weight.values()) / 1000:.1f} kB gzipped)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=100, help="key presses on each layout")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between key presses (a fast annotator)")
    parser.add_argument("--rounds", type=int, default=10, help="turns each layout takes (with --baseline-rev)")
    parser.add_argument("--baseline-rev", help="also measure the app at this git revision, interleaved")
    parser.add_argument("--viewport", default="1280x720")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--boxes", type=int, default=0, help="a boxes task: boxes drawn on each image before Enter")
    parser.add_argument("--drag-seconds", type=float, default=0, help="with --boxes: one drag this long, "
                        "its animation frames counted")
    args = parser.parse_args()
    if args.boxes and args.baseline_rev:
        parser.error("--boxes measures this checkout alone (a baseline before issue 16 has no boxes)")
    width, height = (int(v) for v in args.viewport.split("x"))

    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="annotator-browser-bench-"))
    make_dataset(work / "images", args.presses + 20)
    task = work / "task.toml"
    task.write_text(BOX_TASK if args.boxes else 'title = "Latency"\nkind = "single_label"\noverlap = 1\n'
                    '[[labels]]\nname = "circle"\n[[labels]]\nname = "square"\n')
    frames = None
    layouts: list[Layout] = []
    try:
        layouts.append(start_layout("this checkout", ROOT, work, work / "images", task))
        if args.baseline_rev:
            rev = export_revision(args.baseline_rev, work / "baseline-src")
            layouts.append(start_layout(f"baseline {rev}", work / "baseline-src", work, work / "images", task))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            for layout in layouts:
                open_layout(browser, layout, width, height)
            rounds = args.rounds if len(layouts) > 1 else 1
            for r in range(rounds):
                for layout in layouts if r % 2 == 0 else layouts[::-1]:  # alternate who goes first
                    layout.page.bring_to_front()
                    for _ in range(args.presses // rounds + (r < args.presses % rounds)):
                        if args.boxes:
                            draw_boxes(layout.page, args.boxes)
                        layout.page.keyboard.press("Enter" if args.boxes else "1")
                        time.sleep(args.pause)
                    time.sleep(0.5)
            time.sleep(1)
            figures = {layout.name: summary(layout, args.presses) for layout in layouts}
            if args.boxes and args.drag_seconds:
                frames = drag_frames(layouts[0].page, args.drag_seconds)
            browser.close()
    finally:
        for layout in layouts:
            layout.server.stop()
        shutil.rmtree(work, ignore_errors=True)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    print(f"command: {command}")
    print(f"1600x1200 JPEG sources shown at IMAGE_MAX_SIDE=1280, a {args.viewport} window, "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.boxes:
        print(f"a boxes task: {args.boxes} boxes drawn by mouse before each Enter")
    for name, found in figures.items():
        report(name, found)
    if frames:
        print(f"a {args.drag_seconds} s drag drawing a box: {frames}")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "load_avg": os.getloadavg(), **figures,
                                         "drag_frames": frames}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
