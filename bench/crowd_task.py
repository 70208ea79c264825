"""The crowd against another task file (`crowd.py --task PATH`): its questions, and a valid answer to them.

The simulated annotators learn the questions as a script does, from the
`questions` the app's `next` API returns (read once per run, before the
measured window), and answer every one of them: a label, some labels, a
rating on the scale, a caption within the length limits, one of the
record's images (sometimes a tie or both bad) for a preference, 1-10
labelled boxes inside the record's image for a boxes question; an optional
question is left open now and then. The answers are normalized as the
service stores them (labels once each, text trimmed, boxes in whole pixels
inside the image, so the service's rounding to 0.1 px keeps them as sent),
so the run's store check compares them as they are.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

OPTIONAL_LEFT_OPEN = 0.3  # the share of optional questions a person leaves open
NOT_AN_IMAGE = 0.2  # the share of preference answers that are "tie" or "both_bad" (when the question allows)


async def read_questions(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The task's questions from the `next` API (a signed-in client): what to answer each with."""
    r = await client.post("/gradio_api/call/next", json={"data": []})
    r.raise_for_status()
    r = await client.get(f"/gradio_api/call/next/{r.json()['event_id']}")
    r.raise_for_status()
    event = None
    for line in r.text.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event == "complete":
            return json.loads(line[5:])[0]["questions"]
    raise RuntimeError(f"the app's next API gave no questions: {r.text[:300]}")


def random_answer(questions: list[dict[str, Any]], rng: random.Random, item: dict[str, Any]) -> dict[str, Any]:
    """A valid answer to every question for the record `item` (the view's `item`: its size for boxes), in
    question order; an optional one sometimes left open."""
    answer: dict[str, Any] = {}
    for q in questions:
        if not q["required"] and rng.random() < OPTIONAL_LEFT_OPEN:
            continue
        kind = q["kind"]
        if kind == "label":
            answer[q["name"]] = rng.choice(q["labels"])["name"]
        elif kind == "labels":
            names = [label["name"] for label in q["labels"]]
            chosen = set(rng.sample(names, rng.randint(1 if q["required"] else 0, len(names))))
            answer[q["name"]] = [n for n in names if n in chosen]
        elif kind == "rating":
            answer[q["name"]] = rng.randint(q["min"], q["max"])
        elif kind == "text":
            text = f"a picture, seen by person {rng.randrange(10**6)}"
            answer[q["name"]] = text.ljust(max(q["min_chars"], 1), ".")[:q["max_chars"]]
        elif kind == "preference":
            answer[q["name"]] = _preference(q, rng, len(item.get("images") or ()) or 1)
        elif kind == "boxes":
            answer[q["name"]] = _boxes(q, rng, item["width"], item["height"])
        else:
            raise ValueError(f"the crowd cannot answer a question of kind {kind!r} yet ({q['name']})")
    return answer


def _preference(q: dict[str, Any], rng: random.Random, images: int) -> str:
    """One of the record's images by number; now and then a tie or both bad, when the question has them."""
    names = [label["name"] for label in q["labels"]]
    others = [n for n in names if not n.isdigit()]
    if others and rng.random() < NOT_AN_IMAGE:
        return rng.choice(others)
    return rng.choice([n for n in names if n.isdigit() and int(n) <= images])


def _boxes(q: dict[str, Any], rng: random.Random, width: int, height: int) -> list[dict[str, Any]]:
    """1-10 boxes (within the question's bounds) in whole pixels inside a width x height image."""
    names = [label["name"] for label in q["labels"]]
    n = rng.randint(max(1, q["min_boxes"]), max(1, min(10, q["max_boxes"])))
    boxes = []
    for _ in range(n):
        w, h = rng.randint(1, max(1, width // 2)), rng.randint(1, max(1, height // 2))
        boxes.append({"label": rng.choice(names), "bbox": [rng.randint(0, width - w), rng.randint(0, height - h), w, h]})
    return boxes
