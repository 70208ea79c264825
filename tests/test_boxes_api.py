"""A boxes question through the scripting API and the page's click route, against the real app on the boxes
sample (examples/boxes, its images made by its script), on DuckDB and on PostgreSQL: `next` describes the
question and suggests the pre-labels, a good answer is stored as sent, and every bad box is a 400 naming the
question and the box, with nothing stored."""

from __future__ import annotations

import json
import sys

import pytest

from apphelpers import ROOT, start_app
from clients import ApiError, ApiUser, read_store
from oauth_cookies import oauth_space_env

sys.path.insert(0, str(ROOT / "examples" / "boxes"))
from make_images import make  # noqa: E402

TASK = ROOT / "examples" / "boxes" / "task.toml"
LABELS = [{"name": "circle", "key": "1"}, {"name": "square", "key": "2"}, {"name": "triangle", "key": "3"}]


@pytest.fixture(params=["duckdb", "postgres"])
def app(request, tmp_path):
    rows = make(tmp_path / "source", 4)
    env = {"SOURCE_DIR": str(tmp_path / "source"), "TASK_FILE": str(TASK), **oauth_space_env()}
    if request.param == "postgres":
        env["STORE_URL"] = request.getfixturevalue("pg_url")
    server = start_app(tmp_path / "data", env=env)
    yield server, {row["file_name"]: row for row in rows}, env.get("STORE_URL")
    server.stop()


def box(label, *bbox, **extra):
    return {"label": label, "bbox": list(bbox), **extra}


BAD = [
    ([box("circle", 300, 10, 30, 10)], "box 1 reaches outside the image (320 x 240 pixels)"),
    ([box("circle", 1, 1, 5, 5), box("circle", 10, 230, 5, 11)], "box 2 reaches outside"),
    ([box("circle", -2, 10, 5, 5)], "box 1 reaches outside"),
    ([box("circle", 10, 10, -5, 5)], "box 1: the width and height must be above 0"),
    ([box("circle", 10, 10, 5, 0)], "box 1: the width and height must be above 0"),
    ([box("hexagon", 10, 10, 5, 5)], "box 1: 'hexagon' is not a label of this question; choose one of: circle, "
                                     "square, triangle"),
    ([box("circle", "10", 10, 5, 5)], "box 1: bbox is a list of four numbers"),
    ([box("circle", None, 10, 5, 5)], "box 1: bbox is a list of four numbers"),
    ([box("circle", [1], 10, 5, 5)], "box 1: bbox is a list of four numbers"),
    ([{"label": "circle", "bbox": [1, 1, 2, 2], "colour": "red"}], "box 1 has the unknown key 'colour'"),
    ([box("circle", 1, 1, 2, 2)] * 201, "has 201 boxes; an image takes at most 200"),
    ([box("circle", 1, 1, 2, 2)] * 501, "has 501 boxes; an image takes at most 200"),
    ({"circle": [1, 1, 2, 2]}, "takes a list of boxes"),
    ("circle", "takes a list of boxes"),
]


def test_boxes_through_the_api_and_the_page(app):
    server, truth, store_url = app
    with ApiUser.with_oauth(server.url, "alice") as alice:
        view = alice.next()
        assert view["questions"] == [{"name": "objects", "title": "Draw a box around every shape", "kind": "boxes",
                                      "required": True, "labels": LABELS, "min_boxes": 0, "max_boxes": 200}]
        item = view["item"]
        assert (item["width"], item["height"]) == (320, 240)
        pre = item["metadata"]["boxes"]
        assert any(pre == row["boxes"] for row in truth.values())
        assert item["suggestion"] == {"objects": [box(b["category"], *map(float, b["bbox"]), suggested=True)
                                                  for b in pre]}

        for bad, words in BAD:
            with pytest.raises(ApiError) as by_api:
                alice.submit(item["record"], {"objects": bad})
            message = by_api.value.message
            assert "'Draw a box around every shape' (objects)" in message and words in message, (bad, message)
            with pytest.raises(ApiError) as by_page:
                alice.click("answer", ticket=item["record"], answer={"objects": bad})
            assert by_page.value.status == 400 and words in by_page.value.message, (bad, by_page.value.message)
        # numbers JSON cannot hold as such (1e400 reads as infinity), and thousands of boxes (refused at the
        # door, before any work)
        raw = '{"ticket": %s, "answer": {"objects": [{"label": "circle", "bbox": [1e400, 1, 2, 2]}]}}'
        r = alice.http.post("/ann/answer", content=raw % json.dumps(item["record"]),
                            headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not finite" in r.text, r.text
        r = alice.http.post("/ann/answer", json={"ticket": item["record"],
                                                  "answer": {"objects": [box("circle", 1, 1, 2, 2)] * 5000}})
        assert r.status_code in (400, 413), r.status_code

        # the pre-labels accepted (suggested kept), one moved by hand (suggested dropped), one added
        drawn = item["suggestion"]["objects"]
        moved = {"label": drawn[0]["label"], "bbox": [drawn[0]["bbox"][0] + 2.04, *drawn[0]["bbox"][1:]]}
        answer = {"objects": [moved, *drawn[1:], box("square", 0, 0, 320.3, 240)]}
        after = alice.submit(item["record"], answer)
        assert after["state"] == "ready"
        back = alice.click("back", ticket=after["item"]["record"])
        stored = [dict(moved, bbox=[round(moved["bbox"][0], 1), *moved["bbox"][1:]]), *drawn[1:],
                  box("square", 0.0, 0.0, 320.0, 240.0)]
        assert back["item"]["record_id"] == item["record_id"] and back["item"]["answer"] == {"objects": stored}
    server.stop()
    responses = read_store(server.data_dir, store_url).responses
    assert [(r.record_id, r.user_id, r.answer) for r in responses] == \
        [(item["record_id"], "alice", {"objects": stored})]
