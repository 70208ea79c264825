"""The crowd benchmark's pieces for every question kind: its answers are what the app accepts and stores as
sent, its gold file is the committed one, and its store check finds a person past the quota and leaves gold
records out of the overlap and "done" checks (bench/crowd_task.py, bench/crowd_kinds.py, bench/loadgen.py)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import crowd_kinds  # noqa: E402
import crowd_task  # noqa: E402
import loadgen  # noqa: E402
from annotator.answers import check_answer, question_specs  # noqa: E402
from annotator.task import load_task  # noqa: E402

TASKS = ["examples/questions/task.toml", "examples/preference/task.toml", "examples/boxes/task.toml",
         "bench/gold_quota/task.toml"]


@pytest.mark.parametrize("path", TASKS)
def test_every_answer_is_accepted_and_stored_as_sent(path: str) -> None:
    task = load_task(ROOT / path)
    questions = question_specs(task)
    rng = random.Random(3)
    kinds = set()
    for n in range(300):
        size = (rng.randint(1, 640), rng.randint(1, 480))
        item = {"width": size[0], "height": size[1], "images": [{"url": "a"}, {"url": "b"}][:1 + n % 2]}
        answer = crowd_task.random_answer(questions, rng, item)
        assert check_answer(task, answer, size) == answer
        for value in answer.values():
            kinds.add(value if isinstance(value, str) and not value.isdigit() else type(value).__name__)
    if "preference" in path:
        assert {"tie", "both_bad", "str"} <= kinds  # images by number, and now and then a tie or both bad


def test_a_preference_names_only_the_records_images() -> None:
    questions = question_specs(load_task(ROOT / "examples/preference/task.toml"))
    rng = random.Random(1)
    picks = {crowd_task.random_answer(questions, rng, {"images": [{"url": "a"}]})["preferred"] for _ in range(200)}
    assert "2" not in picks and "1" in picks


def test_the_committed_gold_file_is_every_tenth_sample_image() -> None:
    files = crowd_kinds.sample_files(ROOT / "data" / "images")
    lines = crowd_kinds.gold_lines(files)
    assert "\n".join(lines) + "\n" == (ROOT / "bench" / "gold_quota" / "gold.jsonl").read_text()
    assert len(lines) == len(files) // 10


def test_the_store_check_leaves_gold_out_and_finds_a_person_past_the_quota(tmp_path: Path) -> None:
    """A gold record answered by three people is not over its overlap of 2, an unanswered gold record is no
    work left (so "done" was true), and a person with more answers than the quota is counted."""
    task_dir = tmp_path / "task"
    task_dir.mkdir()
    (task_dir / "gold.jsonl").write_text(json.dumps({"key": "folder:g.png", "answer": "circle"}) + "\n" +
                                         json.dumps({"key": "folder:h.png", "answer": "circle"}) + "\n")
    text = (ROOT / "bench" / "gold_quota" / "task.toml").read_text().replace(
        "max_answers_per_person = 5", "max_answers_per_person = 1")
    (task_dir / "task.toml").write_text(text)
    task = load_task(task_dir / "task.toml")
    con = duckdb.connect(str(tmp_path / "annotator.duckdb"))
    con.execute("CREATE TABLE records (id INTEGER, source_key VARCHAR, metadata VARCHAR, extra_answers INTEGER)")
    con.execute("CREATE TABLE responses (record_id INTEGER, user_id VARCHAR, status VARCHAR, answer VARCHAR)")
    con.execute("INSERT INTO records VALUES (1, 'folder:a.png', '{}', 0), (2, 'folder:b.png', '{}', 0), "
                "(3, 'folder:g.png', '{}', 0), (4, 'folder:h.png', '{}', 0)")
    rows = [(1, "ann"), (2, "ann"), (1, "bob"), (2, "bob"), (3, "ann"), (3, "bob"), (3, "cy")]
    con.executemany("INSERT INTO responses VALUES (?, ?, 'submitted', ?)",
                    [(r, u, json.dumps({"label": "circle"})) for r, u in rows])
    con.close()
    people = {u: loadgen.Person(u) for u in ("ann", "bob", "cy")}
    people["ann"].told_done_at = 1.0
    people["cy"].quota_at = 1.0
    store = loadgen.check_store("ours", tmp_path, list(people.values()), 2, task=task)
    assert (store["gold_records"], store["gold_answers"]) == (2, 3)
    assert store["over_overlap"] == 0 and store["false_done"] == 0
    assert store["over_quota"] == 2 and store["at_quota"] == 1  # ann and bob gave 2 answers each, quota 1

    # the same store checked without the task: the gold records count as work (over overlap, open)
    plain = loadgen.check_store("ours", tmp_path, list(people.values()), 2)
    assert plain["over_overlap"] == 1 and plain["false_done"] == 1
