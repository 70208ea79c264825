"""The stored answers and TASK_FILE must fit: another task's file is refused, a dropped question is named.

An organizer who started the app (or ran the export) with the wrong TASK_FILE
used to get no word: the app showed the wrong questions over the old answers,
and the export wrote an empty column for every answer, exit code 0.
"""

from __future__ import annotations

import logging
from contextlib import closing
from pathlib import Path

import pytest

from clients import make_images, write_task
from storehelpers import any_store, engine, make_store  # noqa: F401 - the fixtures

from annotator import cli
from annotator.config import ConfigError, load_settings
from annotator.model import NewRecord, ResponseWrite, utcnow
from annotator.runtime import Runtime
from annotator.store import Store
from annotator.store_protocol import StoreProtocol
from annotator.task import check_answers_fit, load_task

BOXES_TASK = """title = "Boxes"
[[questions]]
name = "objects"
title = "Box every shape"
kind = "boxes"
labels = [{ name = "circle", key = "1" }]
"""


def test_answered_questions_on_both_engines(any_store: StoreProtocol) -> None:  # noqa: F811
    ids = any_store.add_records([NewRecord(f"k{i}", f"ab/{i}.png", "ab" * 32, 4, 4, 10) for i in range(3)])
    assert any_store.answered_questions() == set()
    any_store.apply([ResponseWrite(ids[0], "ann", "submitted", {"label": "cat"}, None, None, utcnow()),
                     ResponseWrite(ids[1], "bob", "submitted", {"label": "dog", "clarity": 3}, None, None, utcnow()),
                     ResponseWrite(ids[2], "cat", "skipped", {}, None, None, utcnow())])
    assert any_store.answered_questions() == {"label", "clarity"}


def test_the_rule(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "task.toml"))  # one question, "label"
    assert check_answers_fit(task, set(), tmp_path / "task.toml") == set()  # nothing answered yet
    assert check_answers_fit(task, {"label", "old"}, tmp_path / "task.toml") == {"old"}
    with pytest.raises(ConfigError, match="is not the task the stored answers were given for: they answer "
                                          "objects; it asks label"):
        check_answers_fit(task, {"objects"}, tmp_path / "task.toml")


@pytest.fixture
def answered(tmp_path: Path) -> dict[str, str]:
    """A DATA_DIR whose store holds answers to the question `label` and to a question `old`."""
    make_images(tmp_path / "source", 3, size=(32, 24))
    env = {"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"), "AUTH_MODE": "local",
           "SOURCE_DIR": str(tmp_path / "source"), "TASK_FILE": str(write_task(tmp_path / "task.toml"))}
    Runtime.open(load_settings(env)).close()
    with closing(Store(tmp_path / "data" / "annotator.duckdb")) as store:
        first, second = store.record_ids()[:2]
        store.apply([ResponseWrite(first, "ann", "submitted", {"label": "circle"}, None, None, utcnow()),
                     ResponseWrite(second, "ann", "submitted", {"label": "square", "old": "x"}, None, None,
                                   utcnow())])
    return env


def test_the_app_refuses_another_tasks_file_and_names_a_dropped_question(
        answered: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    boxes = tmp_path / "boxes.toml"
    boxes.write_text(BOXES_TASK)
    with pytest.raises(ConfigError, match=f"TASK_FILE='{boxes}' is not the task"):
        Runtime.open(load_settings({**answered, "TASK_FILE": str(boxes)}))
    caplog.set_level(logging.WARNING, logger="annotator.runtime")
    Runtime.open(load_settings(answered)).close()  # the right task: it starts, and says what is not shown
    said = [r.getMessage() for r in caplog.records if "no longer asks" in r.getMessage()]
    assert len(said) == 1 and "'old'" in said[0], said


def test_the_export_command_refuses_another_tasks_file(answered: dict[str, str], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    boxes = tmp_path / "boxes.toml"
    boxes.write_text(BOXES_TASK)
    for name, value in {**answered, "TASK_FILE": str(boxes)}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["export", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "is not the task the stored answers were given for" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv("TASK_FILE", answered["TASK_FILE"])
    assert cli.main(["export", "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "the answers to the question 'old' are not exported" in capsys.readouterr().err
