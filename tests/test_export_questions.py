"""The export of typed answers: a task of four questions (label, labels, rating, text) pushed to the stand-in
Hub loads in `datasets` with a proper type per question and restores unchanged; an export written before
typed answers (an `answer` list column) still restores.
"""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from test_export import REPO, T0, TOKEN, add_images, fill, hub, make_settings, make_task  # noqa: E402,F401

from annotator.export.format import RESPONSE_COLUMNS  # noqa: E402
from annotator.export.hub import Exporter  # noqa: E402
from annotator.export.restore import restore_from_hub  # noqa: E402
from annotator.model import Response, ResponseWrite  # noqa: E402
from annotator.store import Store  # noqa: E402
from annotator.task import Label, Question, TaskSpec  # noqa: E402

FOUR = TaskSpec(title="Four questions", guidelines="", comment=True, overlap=2, order="sequential", seed=0,
                questions=(Question("animal", "Which animal?", "label", labels=(Label("cat", "1"), Label("dog", "2"))),
                           Question("tags", "What is in it?", "labels",
                                    labels=(Label("grass", "g"), Label("sky", "k"), Label("toy", "t"))),
                           Question("quality", "How sharp?", "rating", low=1, high=5, low_word="blurry",
                                    high_word="sharp"),
                           Question("caption", "Describe it", "text", required=False, max_chars=200)))
# (record index, user, status, answer, minutes after T0)
TYPED = [
    (0, "alice", "submitted", {"animal": "cat", "tags": ["grass", "sky"], "quality": 4, "caption": "un chat été"}, 1),
    (0, "bob", "submitted", {"animal": "cat", "tags": ["sky"], "quality": 5}, 2),
    (1, "alice", "submitted", {"animal": "dog", "tags": [], "quality": 2, "caption": "a dog"}, 3),
    (1, "bob", "submitted", {"animal": "cat", "tags": ["toy"], "quality": 3}, 4),
    (2, "carol", "skipped", {}, 5),
]

_LOAD = r"""
import json, sys
from datasets import load_dataset
repo = sys.argv[1]
recs = load_dataset(repo, "records", split="train").remove_columns("image")
resp = load_dataset(repo, "responses", split="train")
print(json.dumps({"records": recs.to_list(), "responses": resp.to_list(),
                  "record_features": {k: str(v) for k, v in recs.features.items()},
                  "response_features": {k: str(v) for k, v in resp.features.items()}}, default=str))
"""


def _responses(store: Store) -> list[Response]:
    return sorted((r for batch in store.iter_responses() for r in batch), key=lambda r: (r.record_id, r.user_id))


def test_four_questions_export_with_a_type_per_question_and_restore_unchanged(hub, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    source = Store(settings.db_path)
    try:
        ids = add_images(source, settings, 3)
        for rec, user, status, answer, minute in TYPED:
            source.apply([ResponseWrite(ids[rec], user, status, answer, None, 100, T0 + timedelta(minutes=minute))])
        exporter = Exporter(source, FOUR, settings, endpoint=hub.endpoint)
        exporter.push_now()
        exporter.stop(final_push=False)

        card = hub.files(REPO)["README.md"].decode()
        for q in FOUR.questions:
            assert f"### `{q.name}`: {q.title}" in card
        assert "Krippendorff's alpha (ordinal)" in card and "image-to-text" in card

        proc = hub.run_python(_LOAD, tmp_path / "client", args=[REPO], timeout=150)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        resp_types, rec_types = data["response_features"], data["record_features"]
        assert resp_types["animal"].startswith("Value('string'") and resp_types["caption"].startswith("Value('string'")
        assert resp_types["tags"].startswith("List(Value('string'") and resp_types["quality"].startswith("Value('int32'")
        assert "answer" not in resp_types
        assert rec_types["quality"].startswith("Value('float64'") and "caption" not in rec_types
        rows = {(r["record_id"], r["annotator"]): r for r in data["responses"]}
        assert rows[ids[0], "bob"]["caption"] is None and rows[ids[1], "alice"]["tags"] == []
        assert rows[ids[0], "alice"]["caption"] == "un chat été" and rows[ids[0], "alice"]["quality"] == 4
        assert all(rows[ids[2], "carol"][q.name] is None for q in FOUR.questions)  # a skip: every question null
        records = {r["record_id"]: r for r in data["records"]}
        first, second = records[ids[0]], records[ids[1]]
        assert (first["animal"], first["tags"], first["quality"]) == ("cat", ["sky"], 4.5)
        assert first["tied"] == [{"question": "tags", "label": "grass"}]  # grass 1 of 2: a tie, stated
        assert (second["animal"], second["tags"], second["quality"]) == (None, [], 2.5)
        assert {(t["question"], t["label"]) for t in second["tied"]} == {("animal", "cat"), ("animal", "dog"),
                                                                         ("tags", "toy")}
        assert first["answers"][0]["answer"]["caption"] == "un chat été"

        target_settings = make_settings(tmp_path / "b")
        target = Store(target_settings.db_path)
        try:
            report = restore_from_hub(target, target_settings, FOUR, endpoint=hub.endpoint)
            assert report is not None and (report.records, report.responses) == (3, 5) and report.unknown_labels == 0
            assert _responses(target) == _responses(source)
            assert target.export_fingerprint() == source.export_fingerprint()
        finally:
            target.close()
    finally:
        source.close()


def test_restore_reads_an_export_written_before_typed_answers(hub, tmp_path: Path) -> None:
    """The old `responses` table held one `answer` list column; restore maps it as the store migration does."""
    settings = make_settings(tmp_path / "a")
    source = Store(settings.db_path)
    try:
        fill(source, settings)
        exporter = Exporter(source, make_task(), settings, endpoint=hub.endpoint)
        exporter.push_now()
        exporter.stop(final_push=False)
        old = [{"record_id": r.record_id, "source_key": source.record(r.record_id).source_key,
                "annotator": r.user_id, "status": r.status, "answer": [r.answer["label"]] if r.answer else [],
                "comment": r.comment, "time_spent_ms": r.time_spent_ms, "created_at": r.created_at,
                "updated_at": r.updated_at} for r in _responses(source)]
        schema = pa.schema([("record_id", pa.int32()), ("source_key", pa.string()), ("annotator", pa.string()),
                            ("status", pa.string()), ("answer", pa.list_(pa.string())), ("comment", pa.string()),
                            ("time_spent_ms", pa.int32()), ("created_at", pa.timestamp("us")),
                            ("updated_at", pa.timestamp("us"))])
        assert set(schema.names) == {*RESPONSE_COLUMNS, "answer"}
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(old, schema=schema), buf)
        HfApi(endpoint=hub.endpoint, token=TOKEN).upload_file(
            path_or_fileobj=buf.getvalue(), path_in_repo="responses/train-00000-of-00001.parquet", repo_id=REPO,
            repo_type="dataset")

        target_settings = make_settings(tmp_path / "b")
        target = Store(target_settings.db_path)
        try:
            report = restore_from_hub(target, target_settings, make_task(), endpoint=hub.endpoint)
            assert report is not None and report.responses == len(old)
            assert _responses(target) == _responses(source)
            assert {r.status: r.answer for r in _responses(target) if r.status == "skipped"} == {"skipped": {}}
        finally:
            target.close()
    finally:
        source.close()
