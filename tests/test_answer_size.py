"""The largest valid answer is never a request too large (issue 15: a task's long captions and many boxes).

The edge refuses a body over its route's limit before reading it. The routes that carry an answer allow
the largest answer and comment the task and MAX_COMMENT_CHARS admit (answers.largest_answer_bytes), so a
caption of the full `max_chars` in any script is stored; a body larger than that is still refused.
"""

from __future__ import annotations

import json

import pytest

from apphelpers import start_app
from clients import ApiUser, make_images, read_store
from oauth_cookies import oauth_space_env

from annotator.answers import check_answer, largest_answer_bytes
from annotator.task import MAX_BOXES_CEILING, MAX_TEXT_CHARS, Label, Question, TaskSpec
from annotator.ui.edge import REQUEST_ROOM, UPLOAD_MAX_BYTES, surface_for

ASTRAL = "\U0001F600"  # 4 bytes as UTF-8, 12 as Python's escaped JSON


def _task(*questions: Question) -> TaskSpec:
    return TaskSpec(title="t", guidelines="", questions=questions, comment=True, overlap=1, order="sequential",
                    seed=0)


LABELS = tuple(Label(name=ASTRAL * 40 + str(i), key="") for i in range(30))
WORST = _task(
    Question(name="\u00e9" * 30, title="a", kind="label", labels=LABELS),
    Question(name="tags", title="b", kind="labels", labels=LABELS),
    Question(name="caption", title="c", kind="text", max_chars=MAX_TEXT_CHARS),
    Question(name="note", title="d", kind="text", max_chars=MAX_TEXT_CHARS),
    Question(name="objects", title="e", kind="boxes", labels=LABELS, max_boxes=MAX_BOXES_CEILING),
    Question(name="stars", title="f", kind="rating", low=-1000000, high=1000000))
WORST_ANSWER = {"\u00e9" * 30: LABELS[0].name, "tags": [label.name for label in LABELS],
                "caption": ASTRAL * MAX_TEXT_CHARS, "note": "\x01" * MAX_TEXT_CHARS,
                "objects": [{"label": LABELS[-1].name, "bbox": [0.1234567890123456, 1 / 3, 10.987654321098765,
                                                                  2 / 3], "suggested": False}] * MAX_BOXES_CEILING,
                "stars": -999999}


@pytest.mark.parametrize("ascii_only", [True, False])
def test_the_largest_answer_fits_the_bound_however_it_is_written(ascii_only: bool) -> None:
    comment = ASTRAL * 2000
    assert check_answer(WORST, WORST_ANSWER, (20, 20)) is not None  # valid, so it must fit
    body = json.dumps({"ticket": "x" * 200, "answer": WORST_ANSWER, "comment": comment}, ensure_ascii=ascii_only)
    bound = largest_answer_bytes(WORST, 2000)
    assert len(body.encode()) <= bound + REQUEST_ROOM
    assert bound < 4 * len(body.encode())  # a bound, not a blank cheque


def test_only_the_routes_that_carry_an_answer_grow() -> None:
    surface = surface_for(1_000_000)
    assert surface.rule("/ann/answer").max_body == surface.rule("/gradio_api/call/submit").max_body > 1_000_000
    assert surface.rule("/login").max_body == 16 * 1024 and surface.rule("/gradio_api/upload").max_body == UPLOAD_MAX_BYTES
    assert surface.rule("/assets/index.js").max_body == 64 * 1024
    small = surface_for(10)  # a small task keeps today's limits
    assert small.rule("/ann/answer").max_body == 64 * 1024 and small.rule("/gradio_api/queue/join").max_body == 256 * 1024


# three full-length captions of 4-byte characters: 120 KB as UTF-8 (the page), 360 KB escaped (a Python
# script): over the 64 KB and 256 KB the routes allowed before the limits followed the task
TASK_FILE = 'title = "Long captions"\n' + "".join(
    f'[[questions]]\nname = "{name}"\ntitle = "{name}"\nkind = "text"\nmax_chars = {MAX_TEXT_CHARS}\n'
    for name in ("caption", "details", "context"))


def test_full_length_captions_are_stored_by_the_page_and_the_api(tmp_path) -> None:
    make_images(tmp_path / "source", 3)
    (tmp_path / "task.toml").write_text(TASK_FILE)
    server = start_app(tmp_path / "data", env={"SOURCE_DIR": str(tmp_path / "source"),
                                               "TASK_FILE": str(tmp_path / "task.toml"), **oauth_space_env()})
    full = {"caption": ASTRAL * MAX_TEXT_CHARS, "details": ASTRAL * MAX_TEXT_CHARS, "context": ASTRAL * MAX_TEXT_CHARS}
    try:
        with ApiUser.with_oauth(server.url, "alice") as alice:
            first = alice.click("next")["item"]
            second = alice.click("answer", ticket=first["record"], answer=full)["item"]
            # the scripting API, the JSON as Python's json.dumps writes it (escaped, 360 KB)
            body = json.dumps({"data": [second["record"], full, ""]}).encode()
            assert len(body) > 300 * 1024
            sent = alice.http.post("/gradio_api/call/submit", content=body, headers={"Content-Type": "application/json"})
            assert sent.status_code == 200, sent.text[:200]
            result = alice.http.get(f"/gradio_api/call/submit/{sent.json()['event_id']}")
            assert "event: complete" in result.text, result.text[:300]
            too_big = alice.http.post("/ann/answer", content=b'{"ticket": "' + b"x" * 2_000_000 + b'"}',
                                      headers={"Content-Type": "application/json"})
            assert too_big.status_code == 413, too_big.text[:200]
    finally:
        server.stop()
    stored = {r.record_id: r.answer for r in read_store(server.data_dir).responses}
    assert stored == {first["record_id"]: full, second["record_id"]: full}
