"""The task file's gold and quota keys (task._quality) and the gold answers read from a column or a file
(gold.gold_answers): one clear message per wrong value, before anyone is shown a wrong expected answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from annotator.config import ConfigError
from annotator.gold import GoldAnswer, GoldError, GoldPlan, gold_answers, plan_of, visible_metadata
from annotator.model import Record
from annotator.task import load_task

LABELS = '\n[[labels]]\nname = "cat"\n[[labels]]\nname = "dog"\n'


def task_file(tmp_path: Path, top: str) -> Path:
    path = tmp_path / "task.toml"
    path.write_text(f'title = "Pets"\n{top}\n{LABELS}')
    return path


def record(rid: int, **metadata) -> Record:
    return Record(rid, f"k{rid}", f"{rid}.png", "0" * 64, 8, 8, 100, metadata, None, rid, 0)


def test_todays_task_files_have_no_gold_and_no_quota(tmp_path):
    task = load_task(task_file(tmp_path, ""))
    assert not task.quality.has_gold and plan_of(task) == GoldPlan()


def test_the_keys_are_read(tmp_path):
    (tmp_path / "gold.jsonl").write_text("")
    task = load_task(task_file(tmp_path, 'gold_file = "gold.jsonl"\ngold_feedback = true\nwarmup = 2\n'
                                         'max_answers_per_person = 30'))
    q = task.quality
    assert (q.gold_file, q.gold_rate, q.gold_feedback, q.warmup) == (str(tmp_path / "gold.jsonl"), 0.1, True, 2)
    assert plan_of(task) == GoldPlan(rate=0.1, warmup=2, quota=30)


@pytest.mark.parametrize("top, key", [
    ('gold_column = ""', "gold_column"),
    ("gold_column = 3", "gold_column"),
    ('gold_file = "missing.jsonl"', "gold_file"),
    ('gold_column = "g"\ngold_rate = 0.6', "gold_rate"),
    ('gold_column = "g"\ngold_rate = true', "gold_rate"),
    ('gold_column = "g"\ngold_feedback = "yes"', "gold_feedback"),
    ('gold_column = "g"\nwarmup = -1', "warmup"),
    ('gold_column = "g"\nwarmup = 1.5', "warmup"),
    ("warmup = 2", "warmup"),
    ("gold_rate = 0.2", "gold_rate"),
    ("max_answers_per_person = 0", "max_answers_per_person"),
    ('max_answers_per_person = "ten"', "max_answers_per_person"),
])
def test_each_wrong_value_is_named(tmp_path, top, key):
    with pytest.raises(ConfigError, match=f"{key} = .* is not allowed"):
        load_task(task_file(tmp_path, top))


def test_gold_answers_from_a_column_and_a_file(tmp_path):
    task = load_task(task_file(tmp_path, 'gold_column = "gold"'))
    records = [record(1, gold="cat", gold_explanation="whiskers"), record(2, gold=""), record(3)]
    gold = gold_answers(task, records, "gold", [{"key": "k3", "answer": ["dog"], "explanation": "barks"}])
    assert gold == {1: GoldAnswer({"label": "cat"}, "whiskers"), 3: GoldAnswer({"label": "dog"}, "barks")}
    with pytest.raises(GoldError, match="record 'k1'.*does not fit the task"):
        gold_answers(task, [record(1, gold="cow")], "gold")
    with pytest.raises(GoldError, match="gold_file line 1: \"k9\" is not the key of a record"):
        gold_answers(task, records, None, [{"key": "k9", "answer": "cat"}])
    with pytest.raises(GoldError, match="gold_file line 1: the explanation must be text"):
        gold_answers(task, records, None, [{"key": "k1", "answer": "cat", "explanation": 3}])


def test_the_page_never_sees_the_gold_column():
    assert visible_metadata({"gold": "cat", "gold_explanation": "x", "label": "cat"}, "gold") == {"label": "cat"}
    plain = {"label": "cat"}
    assert visible_metadata(plain, "gold") is plain and visible_metadata(plain, None) is plain


def test_a_rating_takes_a_number_and_several_questions_an_object(tmp_path):
    path = tmp_path / "task.toml"
    path.write_text('title = "Photos"\n[[questions]]\nname = "quality"\nkind = "rating"\nmin = 1\nmax = 5\n')
    rating = load_task(path)
    assert gold_answers(rating, [record(1, g=4)], "g") == {1: GoldAnswer({"quality": 4})}
    path.write_text(path.read_text() + '[[questions]]\nname = "pet"\nkind = "label"\n'
                    '[[questions.labels]]\nname = "cat"\n[[questions.labels]]\nname = "dog"\n')
    two = load_task(path)
    assert gold_answers(two, [record(1, g='{"quality": 2, "pet": "dog"}')], "g") == {
        1: GoldAnswer({"quality": 2, "pet": "dog"})}
    with pytest.raises(GoldError, match="record 'k1'"):
        gold_answers(two, [record(1, g="dog")], "g")
