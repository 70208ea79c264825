"""Generate the preference sample: 24 pairs of small pictures, each with the prompt they were "made" for.

    python examples/preference/make_pairs.py

Writes `pairs/a/<nn>.png`, `pairs/b/<nn>.png` and `pairs/metadata.jsonl` (one line per record:
`{"image_a": "a/00.png", "image_b": "b/00.png", "prompt": "..."}`). In each pair one picture follows the
prompt and the other gets one thing wrong (the shape, the colour or the count), on a random side.
Seeded: running it again gives the same files (byte for byte with the same Pillow version).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
PAIRS = HERE / "pairs"
COUNT = 24
SIDE = 160
SEED = 15
COLOURS = {"red": (220, 38, 38), "blue": (37, 99, 235), "green": (22, 163, 74), "orange": (234, 88, 12)}
SHAPES = ("circle", "square", "triangle")


def draw(shape: str, colour: str, count: int, rng: random.Random) -> Image.Image:
    """`count` shapes of one colour on a light background, at random places that do not overlap much."""
    img = Image.new("RGB", (SIDE, SIDE), (245, 245, 240))
    pen = ImageDraw.Draw(img)
    size = SIDE // (2 + count)
    for i in range(count):
        x = (i + 0.5) * SIDE / count + rng.uniform(-4, 4)
        y = SIDE / 2 + rng.uniform(-SIDE / 5, SIDE / 5)
        box = (x - size / 2, y - size / 2, x + size / 2, y + size / 2)
        if shape == "circle":
            pen.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            pen.rectangle(box, fill=COLOURS[colour])
        else:
            pen.polygon([(x, box[1]), (box[2], box[3]), (box[0], box[3])], fill=COLOURS[colour])
    return img


def main() -> None:
    rng = random.Random(SEED)
    shutil.rmtree(PAIRS, ignore_errors=True)
    for side in ("a", "b"):
        (PAIRS / side).mkdir(parents=True)
    lines = []
    for n in range(COUNT):
        shape, colour, count = rng.choice(SHAPES), rng.choice(sorted(COLOURS)), rng.randint(1, 3)
        prompt = f"{count} {colour} {shape}{'s' if count > 1 else ''}"
        wrong = rng.choice(("shape", "colour", "count"))
        other = {"shape": (rng.choice([s for s in SHAPES if s != shape]), colour, count),
                 "colour": (shape, rng.choice([c for c in sorted(COLOURS) if c != colour]), count),
                 "count": (shape, colour, 1 + count % 3)}[wrong]
        right, bad = draw(shape, colour, count, rng), draw(*other, rng)
        first, second = (right, bad) if rng.random() < 0.5 else (bad, right)
        name = f"{n:02d}.png"
        first.save(PAIRS / "a" / name, optimize=True)
        second.save(PAIRS / "b" / name, optimize=True)
        lines.append(json.dumps({"image_a": f"a/{name}", "image_b": f"b/{name}", "prompt": prompt}))
    (PAIRS / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {COUNT} pairs to {PAIRS}")


if __name__ == "__main__":
    main()
