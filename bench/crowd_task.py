"""The crowd against another task file (`crowd.py --task PATH`): its questions, and a valid answer to them.

The simulated annotators learn the questions as a script does, from the
`questions` the app's `next` API returns (read once per run, before the
measured window), and answer every one of them: a label, some labels, a
rating on the scale, a caption within the length limits; an optional
question is left open now and then. The answers are normalized as the
service stores them (labels once each, text trimmed), so the run's store
check compares them as they are.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx

OPTIONAL_LEFT_OPEN = 0.3  # the share of optional questions a person leaves open


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


def random_answer(questions: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    """A valid answer to every question, in question order; an optional one sometimes left open."""
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
        else:
            raise ValueError(f"the crowd cannot answer a question of kind {kind!r} yet ({q['name']})")
    return answer
