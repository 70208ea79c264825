"""Make the boxes sample: images with shapes at known places, and pre-labels, some of them deliberately off.

    python examples/boxes/make_images.py            # writes examples/boxes/images (committed as made here)

Each image (320 x 240) holds 1-4 shapes (circle, square, triangle) that do not overlap. metadata.jsonl
gives, per image, `truth` (every shape's exact box, COCO [x, y, width, height] in pixels) and `boxes`
(the pre-labels the task's suggestion_column reads, as a detector would give them): for most images the
truth itself; for every third, one box shifted by 15 px, one given the wrong category, or one missing,
so an annotator has something to correct. Same seed, same images.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

SIZE = (320, 240)
SHAPES = ("circle", "square", "triangle")
COLOURS = {"circle": (37, 99, 235), "square": (22, 163, 74), "triangle": (220, 38, 38)}


def _place(rng: random.Random, taken: list[list[int]]) -> list[int] | None:
    """A free square spot [x, y, side, side] inside the image, clear of the others by 8 px."""
    for _ in range(100):
        side = rng.randint(36, 80)
        x, y = rng.randint(4, SIZE[0] - side - 4), rng.randint(4, SIZE[1] - side - 4)
        if all(x + side + 8 <= a or a + w + 8 <= x or y + side + 8 <= b or b + h + 8 <= y for a, b, w, h in taken):
            return [x, y, side, side]
    return None


def _draw(draw: ImageDraw.ImageDraw, shape: str, box: list[int]) -> None:
    x, y, w, h = box
    if shape == "circle":
        draw.ellipse((x, y, x + w - 1, y + h - 1), fill=COLOURS[shape])
    elif shape == "square":
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=COLOURS[shape])
    else:
        draw.polygon([(x + w / 2, y), (x, y + h - 1), (x + w - 1, y + h - 1)], fill=COLOURS[shape])


def _pre_labels(i: int, truth: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The truth, or on every third image one deliberate mistake (shifted, wrong category, missing)."""
    boxes = [dict(t, bbox=list(t["bbox"])) for t in truth]
    if i % 3 == 2:
        mistake = (i // 3) % 3
        if mistake == 0:
            boxes[0]["bbox"][0] += 15
        elif mistake == 1:
            boxes[0]["category"] = SHAPES[(SHAPES.index(boxes[0]["category"]) + 1) % len(SHAPES)]
        else:
            boxes.pop()
    return boxes


def make(folder: Path, n: int = 12, seed: int = 16) -> list[dict[str, Any]]:
    """Write `n` images and metadata.jsonl into `folder`; returns the metadata rows."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img = Image.new("RGB", SIZE, (245, 245, 240))
        draw = ImageDraw.Draw(img)
        truth: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 4)):
            box = _place(rng, [t["bbox"] for t in truth])
            if box is not None:
                shape = rng.choice(SHAPES)
                _draw(draw, shape, box)
                truth.append({"bbox": box, "category": shape})
        name = f"shapes_{i:03d}.png"
        img.save(folder / name, optimize=True)
        rows.append({"file_name": name, "truth": truth, "boxes": _pre_labels(i, truth)})
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    parser.add_argument("-n", type=int, default=12)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    rows = make(args.out, args.n, args.seed)
    print(f"wrote {len(rows)} images and metadata.jsonl to {args.out}")
