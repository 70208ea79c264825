"""Gold records, warm-up, feedback and quotas through the real server (issue 17).

A real app on a DuckDB file, signed-in people clicking through the page's
JSON routes and the API: the warm-up comes first, a gold record looks like
any other until it is answered, the reply then carries the expected answer;
gold answers count nowhere; a person at the quota is told so, not "done";
an admin's override works, is audited, and is refused to anyone else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apphelpers import start_app
from clients import ApiError, ApiUser, add_users, make_images, write_task

from annotator.store import Store

GOLD = {0: ("circle", "Round, no corners."), 1: ("square", ""), 2: ("triangle", "Three corners.")}


def gold_source(folder: Path, n: int) -> list[Path]:
    """n images; the first three carry a gold answer (and an explanation) in metadata.jsonl."""
    paths = make_images(folder, n)
    for i, (label, why) in GOLD.items():
        path = paths[i]
        line = {"file_name": path.name, "gold": label, **({"gold_explanation": why} if why else {})}
        with open(path.parent / "metadata.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    return paths


def run(user: ApiUser, answer_for) -> tuple[list[dict], dict]:
    """Answer through the page's click route until the person is not ready; (each reply, the last view)."""
    view = user.click("next")
    replies = []
    while view["state"] == "ready" and len(replies) < 40:
        item = view["item"]
        assert "gold" not in item["metadata"] and "gold_explanation" not in item["metadata"]
        assert set(item) == {"record", "record_id", "image_url", "width", "height", "suggestion", "metadata",
                             "answer", "comment", "editing", "images", "texts"}
        view = user.click("answer", ticket=item["record"], answer=[answer_for(item)])
        replies.append({"item": item, "reply": view})
    return replies, view


def test_warmup_feedback_quota_and_the_admins_override(tmp_path: Path) -> None:
    gold_source(tmp_path / "source", 15)
    task = write_task(tmp_path / "task.toml", overlap=2)
    # top-level keys go before the [[labels]] tables
    task.write_text('gold_column = "gold"\nwarmup = 1\ngold_rate = 0.5\nmax_answers_per_person = 4\n'
                    + task.read_text())
    passwords = add_users(tmp_path / "passwords.json", ["ann", "bob", "boss"])
    data = tmp_path / "data"
    data.mkdir()
    server = start_app(data, env={"AUTH_MODE": "password", "PASSWORD_FILE": str(tmp_path / "passwords.json"),
                                  "ADMINS": "boss", "SOURCE_DIR": str(tmp_path / "source"),
                                  "TASK_FILE": str(task), "EXPORT_REPO": ""})
    users = {name: ApiUser.with_password(server.url, name, pw) for name, pw in passwords.items()}
    try:
        ann, bob, boss = users["ann"], users["bob"], users["boss"]
        replies, last = run(ann, lambda item: "triangle")
        assert "feedback" in replies[0]["reply"], "the warm-up answer gets feedback although gold_feedback is off"
        first = replies[0]["reply"]["feedback"]
        assert set(first) == {"correct", "expected", "explanation"}
        assert first["correct"] == (first["expected"] == {"label": "triangle"})
        assert all("feedback" not in r["reply"] for r in replies[1:]), "after the warm-up only with gold_feedback"
        assert last["state"] == "quota"
        assert last["message"].startswith("You have given your 4 answers — thank you!")
        assert last["progress"]["mine_total"] == 4
        assert ann.next()["state"] == "quota"
        assert bob.next()["state"] == "ready", "work remains for others"
        progress = ann.progress()
        assert progress["team_answers"] == 4 and progress["team_total"] == 12  # gold records count nowhere

        # the quota override: refused to an annotator, checked, carried out and audited for the admin
        with pytest.raises(ApiError, match="ann is not an admin"):
            ann.call("admin_set_quota", "ann", "100")
        assert ann.next()["state"] == "quota"
        with pytest.raises(ApiError, match="quota is 1 to"):
            boss.call("admin_set_quota", "ann", "0")
        with pytest.raises(ApiError, match="whole number"):
            boss.call("admin_set_quota", "ann", "lots")
        done = boss.call("admin_set_quota", "ann", "6")[0]
        assert done["audited"] and done["detail"] == {"user": "ann", "quota": 6}
        more, last = run(ann, lambda item: "circle")
        assert last["state"] == "quota" and last["progress"]["mine_total"] == 6

        # the dashboard: gold answers count nowhere, each person's gold accuracy with its count
        ann.progress()  # waits for ann's answers to commit
        snap = boss.call("dashboard")[0]
        row = next(a for a in snap["annotators"] if a["user"] == "ann")
        progress = snap["team"]["progress"]
        assert (progress["records"], progress["answers"], row["answers"]) == (12, 6, 6)
        assert sum(n for _, _, n in snap["team"]["labels"]) == 6
    finally:
        for user in users.values():
            user.close()
        server.stop()

    store = Store(data / "annotator.duckdb")
    try:
        records = store.records(store.record_ids())
        gold_ids = {rid for rid, r in records.items() if "gold" in r.metadata}
        mine = store.user_responses("ann")
        audit = store.audit_entries("set_quota")
    finally:
        store.close()
    assert len(gold_ids) == 3
    answered = [r["item"]["record_id"] for r in replies + more]
    assert [r.record_id for r in mine if r.record_id not in gold_ids] == [r for r in answered if r not in gold_ids]
    assert answered[0] in gold_ids, "the warm-up comes first"
    assert len([r for r in answered if r not in gold_ids]) == 6
    assert len(answered) == len(set(answered)), "nothing twice, gold included"
    label, why = GOLD[int(records[answered[0]].source_key.rsplit("_", 1)[1][:3])]
    assert first == {"correct": label == "triangle", "expected": {"label": label}, "explanation": why}
    assert [(actor, detail) for _, actor, detail in audit] == [("boss", {"user": "ann", "quota": 6})]
    gold_answers = {r.record_id: r.answer for r in mine if r.record_id in gold_ids}
    right = sum(answer == {"label": GOLD[int(records[rid].source_key.rsplit("_", 1)[1][:3])][0]}
                for rid, answer in gold_answers.items())
    assert row["gold_answers"] == len(gold_answers) >= 2
    assert row["gold_accuracy"] == pytest.approx(right / len(gold_answers))
