"""A boxes question (issue 16): read from the task file, its answers checked against the image's size,
its pre-labels read from the metadata, its spec for the page and scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from annotator.answers import AnswerError, check_answer, question_specs, suggested_answer
from annotator.config import ConfigError
from annotator.model import Record
from annotator.task import load_task

BOXES = """
title = "Shapes"

[[questions]]
name = "objects"
title = "Draw a box around every shape"
kind = "boxes"
min_boxes = 1
max_boxes = 3
suggestion_column = "boxes"
labels = [{ name = "circle", key = "1" }, { name = "square", key = "2" }]

[[questions]]
name = "quality"
kind = "rating"
required = false
"""
SIZE = (200, 100)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(text)
    return path


@pytest.fixture()
def task(tmp_path: Path):
    return load_task(write(tmp_path, BOXES))


def box(label: str, *bbox: float, **extra) -> dict:
    return {"label": label, "bbox": list(bbox), **extra}


def refused(task, value, *words: str) -> str:
    with pytest.raises(AnswerError) as caught:
        check_answer(task, {"objects": value}, SIZE)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


def test_the_question_is_read(task) -> None:
    q = task.questions[0]
    assert (q.name, q.kind, q.label_names, q.min_boxes, q.max_boxes, q.suggestion_column) == \
        ("objects", "boxes", ("circle", "square"), 1, 3, "boxes")
    assert [label.key for label in q.labels] == ["1", "2"]


def test_defaults_and_table_labels(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, """
title = "t"
[[questions]]
name = "objects"
kind = "boxes"
[[questions.labels]]
name = "car"
[[questions.labels]]
name = "bike"
key = "b"
"""))
    q = task.questions[0]
    assert (q.min_boxes, q.max_boxes, q.required, [(l.name, l.key) for l in q.labels]) == \
        (0, 200, True, [("car", "1"), ("bike", "b")])


@pytest.mark.parametrize("line, words", [
    ("min_boxes = -1", ("questions[0].min_boxes", "from 0 to 500")),
    ("min_boxes = 1.5", ("questions[0].min_boxes",)),
    ("max_boxes = 501", ("questions[0].max_boxes", "to 500")),
    ("max_boxes = 0", ("questions[0].max_boxes",)),
    ("min_boxes = 4\nmax_boxes = 3", ("questions[0].max_boxes", "from 4 (min_boxes)")),
    ("max_boxes = \"ten\"", ("questions[0].max_boxes",)),
    ("min = 3", ("questions[0].min", "a boxes question takes")),
])
def test_wrong_values_are_named(tmp_path: Path, line: str, words: tuple[str, ...]) -> None:
    text = f'title = "t"\n[[questions]]\nname = "objects"\nkind = "boxes"\nlabels = ["a"]\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        load_task(write(tmp_path, text))
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_labels_are_checked_as_for_a_label_question(tmp_path: Path) -> None:
    for labels, where in (("[]", "questions[0].labels"), ('["a", "a"]', "label names must be unique"),
                          ('[{ name = "a", key = "s" }]', "questions[0].labels[0].key")):
        text = f'title = "t"\n[[questions]]\nname = "objects"\nkind = "boxes"\nlabels = {labels}\n'
        with pytest.raises(ConfigError, match=None) as caught:
            load_task(write(tmp_path, text))
        assert where in str(caught.value)


def test_a_good_answer_is_rounded_and_clamped(task) -> None:
    got = check_answer(task, {"objects": [box("circle", 10.04, 20, 30.26, 40),
                                          box("square", -0.3, 0, 200.6, 100.2, suggested=True),
                                          box("circle", 1, 1, 2, 2, suggested=False)]}, SIZE)
    assert got == {"objects": [{"label": "circle", "bbox": [10.0, 20.0, 30.3, 40.0]},
                               {"label": "square", "bbox": [0.0, 0.0, 200.0, 100.0], "suggested": True},
                               {"label": "circle", "bbox": [1.0, 1.0, 2.0, 2.0]}]}


def test_min_boxes_counts_only_when_required(task, tmp_path: Path) -> None:
    refused(task, [], "'Draw a box around every shape' (objects)", "draw at least 1")
    optional = load_task(write(tmp_path, BOXES.replace('min_boxes = 1', 'min_boxes = 1\nrequired = false')))
    assert check_answer(optional, {"objects": []}, SIZE) == {"objects": []}
    assert check_answer(optional, {}, SIZE) == {}


@pytest.mark.parametrize("value, words", [
    ([box("circle", 150, 10, 60, 10)], ("box 1", "outside the image (200 x 100")),
    ([box("circle", 1, 1, 2, 2), box("circle", -1, 10, 5, 5)], ("box 2", "outside")),
    ([box("circle", 10, 95, 5, 6)], ("box 1", "outside")),
    ([box("circle", 10, 10, -5, 5)], ("box 1", "above 0")),
    ([box("circle", 10, 10, 5, 0)], ("box 1", "above 0")),
    ([box("hexagon", 10, 10, 5, 5)], ("box 1", "'hexagon' is not a label", "circle, square")),
    ([{"bbox": [1, 1, 2, 2]}], ("box 1", "needs a label")),
    ([box("circle", "10", 10, 5, 5)], ("box 1", "four numbers")),
    ([box("circle", 10, 10, 5)], ("box 1", "four numbers")),
    ([box("circle", True, 10, 5, 5)], ("box 1", "four numbers")),
    ([box("circle", float("nan"), 10, 5, 5)], ("box 1", "not finite")),
    ([box("circle", 10, 10, float("inf"), 5)], ("box 1", "not finite")),
    ([box("circle", 10, 10, 10 ** 400, 5)], ("box 1", "outside")),
    ([box("circle", 1, 1, 2, 2, colour="red")], ("box 1", "unknown key 'colour'")),
    ([box("circle", 1, 1, 2, 2, suggested="yes")], ("box 1", "suggested is true or false")),
    (["circle"], ("box 1", "is text")),
    ([box("circle", 1, 1, 2, 2)] * 4, ("4 boxes", "at most 3")),
    ("circle", ("takes a list of boxes",)),
    ({"label": "circle"}, ("takes a list of boxes",)),
])
def test_bad_boxes_are_refused(task, value, words) -> None:
    message = refused(task, value, "(objects)", *words)
    assert len(message) < 400


def test_size_is_needed_for_boxes(task) -> None:
    with pytest.raises(TypeError):
        check_answer(task, {"objects": [box("circle", 1, 1, 2, 2)]})


def record(metadata: dict, suggestion: str | None = None) -> Record:
    return Record(id=1, source_key="a.png", image_path="a.png", sha256="0" * 64, width=200, height=100,
                  size_bytes=1, metadata=metadata, suggestion=suggestion, position=0, extra_answers=0)


def test_pre_labels_become_suggested_boxes(task) -> None:
    pre = [{"bbox": [10, 10, 20, 20], "category": "circle"},
           {"bbox": [190, 90, 30, 30], "label": "square"},       # clamped to the image
           {"bbox": [10, 10, 20, 20], "category": "hexagon"},     # unknown: dropped
           {"bbox": [300, 10, 20, 20], "category": "circle"},     # wholly outside: dropped
           {"bbox": [1, 2, 3], "category": "circle"}, "junk", {"bbox": [1, 1, -2, 2], "category": "circle"}]
    want = {"objects": [{"label": "circle", "bbox": [10.0, 10.0, 20.0, 20.0], "suggested": True},
                        {"label": "square", "bbox": [190.0, 90.0, 10.0, 10.0], "suggested": True}]}
    assert suggested_answer(task, record({"boxes": pre})) == want
    assert suggested_answer(task, record({"boxes": json.dumps(pre)})) == want
    # what ingest keeps as the first question's one suggestion is that JSON text too
    assert suggested_answer(task, record({}, suggestion=json.dumps(pre))) == want
    # accepted unchanged, the suggestion passes the check as it is
    assert check_answer(task, want, SIZE) == want
    for nothing in ({}, {"boxes": "not json"}, {"boxes": 3}, {"boxes": [{"category": "hexagon", "bbox": [1, 1, 1, 1]}]}):
        assert suggested_answer(task, record(nothing)) == {}


def test_question_specs(task) -> None:
    assert question_specs(task)[0] == {
        "name": "objects", "title": "Draw a box around every shape", "kind": "boxes", "required": True,
        "labels": [{"name": "circle", "key": "1"}, {"name": "square", "key": "2"}], "min_boxes": 1, "max_boxes": 3}


def test_the_sample_is_what_its_script_makes(tmp_path: Path) -> None:
    """examples/boxes: the task loads, and the committed images and metadata are the script's (same seed)."""
    import sys
    from PIL import Image
    root = Path(__file__).resolve().parent.parent / "examples" / "boxes"
    task = load_task(root / "task.toml")
    assert [(q.kind, q.suggestion_column, q.label_names) for q in task.questions] == \
        [("boxes", "boxes", ("circle", "square", "triangle"))]
    sys.path.insert(0, str(root))
    from make_images import make
    rows = make(tmp_path, 12)
    assert (tmp_path / "metadata.jsonl").read_text() == (root / "images" / "metadata.jsonl").read_text()
    for row in rows:
        made, committed = Image.open(tmp_path / row["file_name"]), Image.open(root / "images" / row["file_name"])
        assert made.size == committed.size == (320, 240) and made.tobytes() == committed.tobytes()
        # every shape's pixels lie in its box
        for t in row["truth"]:
            x, y, w, h = t["bbox"]
            assert made.getpixel((x + w // 2, y + h - 2)) != (245, 245, 240)
    off = [i for i, row in enumerate(rows) if row["boxes"] != row["truth"]]
    assert off == [2, 5, 8, 11]  # every third is deliberately off
