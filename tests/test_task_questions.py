"""A task of several questions (issue 15): each kind is read, each wrong value is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotator.config import ConfigError
from annotator.task import load_task

QUESTIONS = """
title = "Pictures"
overlap = 2

[[questions]]
name = "animal"
title = "Which animal?"
kind = "label"
labels = ["cat", "dog"]
suggestion_column = "guess"

[[questions]]
name = "tags"
title = "What else is in it?"
kind = "labels"
required = false
labels = [{ name = "grass", key = "g" }, "sky"]

[[questions]]
name = "quality"
title = "How sharp is it?"
kind = "rating"
min = 1
max = 5
min_word = "blurry"
max_word = "crisp"

[[questions]]
name = "caption"
title = "Describe it"
kind = "text"
min_chars = 5
max_chars = 300
key = "t"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(text)
    return path


def test_every_kind_is_read(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, QUESTIONS))
    animal, tags, quality, caption = task.questions
    assert (animal.name, animal.kind, animal.required, animal.label_names) == ("animal", "label", True, ("cat", "dog"))
    assert [label.key for label in animal.labels] == ["1", "2"] and animal.suggestion_column == "guess"
    assert (tags.kind, tags.required, [label.key for label in tags.labels]) == ("labels", False, ["g", "2"])
    assert (quality.kind, list(quality.scale), quality.low_word, quality.high_word) == (
        "rating", [1, 2, 3, 4, 5], "blurry", "crisp")
    assert (caption.kind, caption.min_chars, caption.max_chars, caption.key) == ("text", 5, 300, "t")
    assert task.overlap == 2


def test_a_legacy_task_is_one_question(tmp_path: Path) -> None:
    task = load_task(write(tmp_path, 'title = "x"\nkind = "multi_label"\nquestion = "Which?"\n'
                                     'suggestion_column = "s"\nlabels = ["a", "b"]\n'))
    (only,) = task.questions
    assert (only.name, only.kind, only.title, only.label_names, only.suggestion_column) == (
        "labels", "labels", "Which?", ("a", "b"), "s")


@pytest.mark.parametrize("change, expected", [
    (('kind = "rating"', 'kind = "slider"'), "questions[2].kind = 'slider'"),
    (('name = "animal"', 'name = "Animal!"'), "questions[0].name = 'Animal!'"),
    (('name = "animal"', 'name = "record_id"'), "questions[0].name = 'record_id'"),
    (('name = "tags"', 'name = "animal"'), "questions.name = 'animal'"),
    (('labels = ["cat", "dog"]', 'labels = []'), "questions[0].labels = []"),
    (('labels = ["cat", "dog"]', 'labels = ["cat", "cat"]'), "questions[0].labels = 'cat'"),
    (('required = false', 'required = "no"'), "questions[1].required = 'no'"),
    (('min = 1', 'min = 2'), "questions[2].min = 2"),
    (('max = 5', 'max = 11'), "questions[2].max = 11"),
    (('max = 5', 'max = 1'), "questions[2].max = 1"),
    (('max_word = "crisp"', 'max_word = 3'), "questions[2].max_word = 3"),
    (('min_chars = 5', 'min_chars = -1'), "questions[3].min_chars = -1"),
    (('max_chars = 300', 'max_chars = 2'), "questions[3].max_chars = 2"),
    (('max_chars = 300', 'max_chars = 100000'), "questions[3].max_chars = 100000"),
    (('key = "t"', 'key = "s"'), "questions[3].key = 's'"),
    (('key = "t"', 'key = "7"'), "questions[3].key = '7'"),
    (('min_chars = 5', 'labels = ["x"]'), "questions[3].labels = ['x']"),
    (('title = "Pictures"', 'title = "Pictures"\nkind = "single_label"'), "kind = 'single_label'"),
])
def test_each_bad_question_value_is_named(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    path = write(tmp_path, QUESTIONS.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_task(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_no_questions(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"questions = \[\]"):
        load_task(write(tmp_path, 'title = "x"\nquestions = []\n'))


def test_no_question_name_shadows_an_export_column() -> None:
    from annotator.export.format import RECORD_COLUMNS, RESPONSE_COLUMNS, records_features, responses_features
    from annotator.task import RESERVED_NAMES, Label, classification_task

    task = classification_task("t", (Label("a", "1"),))
    own = {c for c in records_features(task) if c not in {q.name for q in task.questions}}
    own |= {c for c in responses_features(task) if c not in {q.name for q in task.questions}}
    assert own | set(RECORD_COLUMNS) | set(RESPONSE_COLUMNS) <= RESERVED_NAMES
