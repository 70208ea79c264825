"""annotator.answers: every answer a task can be sent is checked against its questions (issue 15), and a
record's suggestion is read per question."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotator.answers import AnswerError, check_answer, suggested_answer
from annotator.model import Record
from annotator.task import Label, classification_task, load_task

FOUR = """
title = "Pictures"

[[questions]]
name = "shape"
title = "Which shape?"
kind = "label"
labels = ["circle", "square", "triangle"]
suggestion_column = "label"

[[questions]]
name = "tags"
title = "What else?"
kind = "labels"
required = false
labels = [{ name = "noisy", key = "n" }, { name = "small", key = "m" }]
suggestion_column = "tags"

[[questions]]
name = "quality"
title = "How clear?"
kind = "rating"
min = 1
max = 5
suggestion_column = "score"

[[questions]]
name = "caption"
title = "Describe it"
kind = "text"
required = false
min_chars = 3
max_chars = 20
key = "t"
suggestion_column = "blip"
"""


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    path: Path = tmp_path_factory.mktemp("task") / "task.toml"
    path.write_text(FOUR)
    return load_task(path)


SINGLE = classification_task("Shapes", (Label("circle", "1"), Label("square", "2")))
MULTI = classification_task("Shapes", (Label("circle", "1"), Label("square", "2")), kind="multi_label")


def refused(task, raw, *words: str) -> str:
    with pytest.raises(AnswerError) as caught:
        check_answer(task, raw)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


def test_a_full_answer_is_kept_as_sent_with_lists_deduplicated_and_text_trimmed(four):
    got = check_answer(four, {"shape": "square", "tags": ["small", "noisy", "small"], "quality": 4,
                              "caption": "  a red square "})
    assert got == {"shape": "square", "tags": ["small", "noisy"], "quality": 4, "caption": "a red square"}


def test_optional_questions_left_open_are_absent(four):
    assert check_answer(four, {"shape": "circle", "quality": 1}) == {"shape": "circle", "quality": 1}
    assert check_answer(four, {"shape": "circle", "quality": 1, "tags": None, "caption": " "}) == \
        {"shape": "circle", "quality": 1}
    # an optional labels question may be answered "none of these"
    assert check_answer(four, {"shape": "circle", "quality": 1, "tags": []})["tags"] == []


def test_a_required_question_missing_is_named(four):
    refused(four, {"shape": "circle"}, "'How clear?' (quality)", "from 1 to 5", "skip")
    refused(four, {"quality": 3}, "'Which shape?' (shape)", "circle, square, triangle")


def test_unknown_question_names_are_refused(four):
    refused(four, {"shape": "circle", "quality": 3, "colour": "red"}, "'colour' is not a question", "shape, tags")


def test_a_label_not_in_its_question_is_refused(four):
    refused(four, {"shape": "noisy", "quality": 3}, "'noisy' is not a label of 'Which shape?'")
    refused(four, {"shape": "circle", "quality": 3, "tags": ["noisy", "circle"]}, "'circle'", "(tags)")
    refused(four, {"shape": "x" * 500, "quality": 3}, "'" + "x" * 80 + "'")


@pytest.mark.parametrize("value", [0, 6, -1, 10**30])
def test_a_rating_off_the_scale_is_refused(four, value):
    refused(four, {"shape": "circle", "quality": value}, "from 1 to 5", f"{value} is off the scale")


@pytest.mark.parametrize("value", [True, False, 3.0, 2.5, "3", [3], {"v": 3}])
def test_a_rating_that_is_no_whole_number_is_refused(four, value):
    refused(four, {"shape": "circle", "quality": value}, "takes a whole number from 1 to 5")


def test_text_too_short_or_too_long_is_refused(four):
    refused(four, {"shape": "circle", "quality": 3, "caption": " ab "}, "too short (2 characters)", "at least 3")
    refused(four, {"shape": "circle", "quality": 3, "caption": "x" * 21}, "too long (21 characters)", "at most 20")
    assert check_answer(four, {"shape": "circle", "quality": 3, "caption": "x" * 20})["caption"] == "x" * 20


@pytest.mark.parametrize("text,what", [("a\x00bc", "NUL"), ("ab\ud800c", "lone surrogate")])
def test_text_a_store_cannot_keep_is_refused(four, text, what):
    refused(four, {"shape": "circle", "quality": 3, "caption": text}, what, "(caption)")
    refused(four, {"shape": text, "quality": 3}, what)


@pytest.mark.parametrize("raw,words", [
    ("circle", ["object with a value per question"]),
    (["circle"], ["object with a value per question"]),
    (3, ["object"]),
    (None, ["object"]),
    ({"shape": 1, "quality": 3}, ["one label's name as text, not a number"]),
    ({"shape": ["circle"], "quality": 3}, ["not a list"]),
    ({"shape": "circle", "quality": 3, "tags": "noisy"}, ["list of label names, not text"]),
    ({"shape": "circle", "quality": 3, "tags": [1]}, ["list of label names"]),
    ({"shape": "circle", "quality": 3, "caption": 7}, ["takes text, not a number"]),
    ({"shape": "circle", "quality": 3, "caption": {"a": 1}}, ["takes text, not an object"]),
])
def test_wrong_json_types_are_refused(four, raw, words):
    refused(four, raw, *words)


# --- the forms of a one-question task, as the page and scripts sent them before questions --------------

def test_one_label_question_takes_a_name_or_a_list_of_one():
    assert check_answer(SINGLE, "square") == {"label": "square"}
    assert check_answer(SINGLE, ["square"]) == {"label": "square"}
    assert check_answer(SINGLE, ["square", "square"]) == {"label": "square"}
    assert check_answer(SINGLE, {"label": "circle"}) == {"label": "circle"}
    refused(SINGLE, ["square", "circle"], "exactly one label")
    refused(SINGLE, [], "Choose a label first")
    refused(SINGLE, "hexagon", "'hexagon' is not a label of this task", "circle, square")
    for wrong in ([3], 3, None, True):
        refused(SINGLE, wrong, "a label name or a list of label names", "{'label': ...}")
    refused(SINGLE, {"label": 3}, "'Choose a label' (label) takes one label's name as text, not a number")


def test_one_labels_question_takes_a_name_or_a_list():
    assert check_answer(MULTI, "square") == {"labels": ["square"]}
    assert check_answer(MULTI, ["square", "circle", "square"]) == {"labels": ["square", "circle"]}
    assert check_answer(MULTI, {"labels": ["circle"]}) == {"labels": ["circle"]}
    refused(MULTI, [], "Choose a label first")
    refused(MULTI, {"labels": []}, "at least one label")
    refused(MULTI, ["circle", "hexagon"], "'hexagon' is not a label")


def test_a_skip_is_the_empty_answer_and_never_passes_a_required_question():
    refused(SINGLE, {}, "needs an answer")


# --- suggestions ----------------------------------------------------------------------------------------

def record(metadata: dict, suggestion: str | None = None) -> Record:
    return Record(id=1, source_key="k", image_path="p", sha256="s", width=1, height=1, size_bytes=1,
                  metadata=metadata, suggestion=suggestion, position=0, extra_answers=0)


def test_suggestions_per_question_from_their_metadata_columns(four):
    rec = record({"label": "square", "tags": ["small", "weird", "small"], "score": "4", "blip": " a square "},
                 suggestion="square")
    assert suggested_answer(four, rec) == {"shape": "square", "tags": ["small"], "quality": 4, "caption": "a square"}


def test_suggestions_that_would_not_pass_are_none(four):
    rec = record({"label": "hexagon", "tags": ["weird"], "score": 9, "blip": "", "other": "x"})
    assert suggested_answer(four, rec) == {}
    assert suggested_answer(four, record({"score": True, "tags": {"a": 1}, "blip": 3})) == {}
    assert suggested_answer(four, record({"score": 3.0, "tags": "noisy", "label": ["circle"]})) == \
        {"quality": 3, "tags": ["noisy"], "shape": "circle"}


def test_the_first_question_keeps_the_records_own_suggestion():
    """Today's behaviour: ingest kept one value (the task's column, or --suggestion-column) on the record."""
    assert suggested_answer(SINGLE, record({}, suggestion="circle")) == {"label": "circle"}
    assert suggested_answer(MULTI, record({}, suggestion="circle")) == {"labels": ["circle"]}
    assert suggested_answer(SINGLE, record({}, suggestion="hexagon")) == {}
    assert suggested_answer(SINGLE, record({"label": "square"})) == {}  # no column named: none, as today
