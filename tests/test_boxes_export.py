"""The export of a boxes question (issue 16) through the stand-in Hub: `responses` carries each person's boxes,
`records` the consensus and the agreement, the `objects` config loads in `datasets` ready to train (boxes
inside the image, categories the task's labels), and restore brings every answer back unchanged."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402
from test_export import REPO, T0, add_images, hub, make_settings  # noqa: E402,F401

from annotator.export.hub import Exporter  # noqa: E402
from annotator.export.restore import restore_from_hub  # noqa: E402
from annotator.model import Response, ResponseWrite  # noqa: E402
from annotator.store import Store  # noqa: E402
from annotator.task import Label, Question, TaskSpec  # noqa: E402

TASK = TaskSpec(title="Shapes", guidelines="", comment=False, overlap=2, order="sequential", seed=0,
                questions=(Question("objects", "Draw every shape", "boxes",
                                    labels=(Label("circle", "1"), Label("square", "2"))),
                           Question("quality", "How sharp?", "rating", required=False)))


def box(label: str, *bbox: float, suggested: bool = False) -> dict:
    return {"label": label, "bbox": [float(v) for v in bbox], **({"suggested": True} if suggested else {})}


# images are 10x8, 11x9 and 12x10 pixels (test_export.add_images)
ANSWERS = [
    (0, "alice", {"objects": [box("circle", 1, 1, 4, 4), box("square", 5, 2, 4, 5, suggested=True)], "quality": 4}),
    (0, "bob", {"objects": [box("circle", 1.2, 1, 4, 4), box("square", 6, 6, 3, 1.5)]}),
    (1, "alice", {"objects": [box("square", 0, 0, 11, 9)]}),
    (1, "bob", {"objects": [box("square", 0, 0, 11, 9, suggested=True)]}),
    (2, "alice", {"objects": [box("circle", 2, 2, 3, 3)]}),   # one answer of two: partial, not in objects
    (3, "alice", {"objects": []}),                            # both saw nothing: complete, no objects
    (3, "bob", {"objects": []}),
]

_LOAD = r"""
import json, sys
from datasets import load_dataset
repo = sys.argv[1]
objs = load_dataset(repo, "objects", split="train")
rows = [{**r, "image": list(r["image"].size)} for r in objs]
recs = load_dataset(repo, "records", split="train").remove_columns("image")
resp = load_dataset(repo, "responses", split="train")
print(json.dumps({"objects": rows, "names": objs.features["objects"]["category"].feature.names,
                  "objects_features": str(objs.features), "records": recs.to_list(),
                  "responses": resp.to_list(), "response_features": str(resp.features["objects"])}, default=str))
"""


def _responses(store: Store) -> list[Response]:
    return sorted((r for batch in store.iter_responses() for r in batch), key=lambda r: (r.record_id, r.user_id))


def test_boxes_export_loads_ready_to_train_and_restores(hub, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "a")
    source = Store(settings.db_path)
    try:
        ids = add_images(source, settings, 4)
        for minute, (rec, user, answer) in enumerate(ANSWERS):
            source.apply([ResponseWrite(ids[rec], user, "submitted", answer, None, 100,
                                        T0 + timedelta(minutes=minute))])
        exporter = Exporter(source, TASK, settings, endpoint=hub.endpoint)
        exporter.push_now()
        exporter.stop(final_push=False)

        files = hub.files(REPO)
        card = files["README.md"].decode()
        assert "config_name: objects" in card and "object-detection" in card
        assert 'load_dataset("tester/results", "objects", split="train")' in card
        assert "mean F1 of each pair of answers' boxes 0.833 (over 3 records" in card  # (0.5 + 1 + 1) / 3

        proc = hub.run_python(_LOAD, tmp_path / "client", args=[REPO], timeout=150)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        assert data["names"] == ["circle", "square"]
        assert "ClassLabel(names=['circle', 'square'])" in data["objects_features"]
        objects = {r["image_id"]: r for r in data["objects"]}
        assert set(objects) == {ids[0], ids[1], ids[3]}
        first = objects[ids[0]]
        # the circle both drew, at the median of their corners; the two squares do not match: no consensus
        assert {k: v for k, v in first["objects"].items() if k != "bbox"} == \
            {"id": [ids[0] * 1000], "area": [16.0], "category": [0]}
        assert first["objects"]["bbox"] == [pytest.approx([1.1, 1.0, 4.0, 4.0])]  # float32, as the guides have it
        assert (first["width"], first["height"], first["image"]) == (10, 8, [10, 8])
        assert objects[ids[1]]["objects"]["bbox"] == [[0.0, 0.0, 11.0, 9.0]]
        assert objects[ids[1]]["objects"]["category"] == [1]
        assert objects[ids[3]]["objects"] == {"id": [], "area": [], "bbox": [], "category": []}
        for row in data["objects"]:
            for x, y, w, h in row["objects"]["bbox"]:
                assert 0 <= x and 0 <= y and w > 0 and h > 0
                assert x + w <= row["width"] + 1e-4 and y + h <= row["height"] + 1e-4

        records = {r["record_id"]: r for r in data["records"]}
        assert records[ids[0]]["objects"] == [{"label": "circle", "bbox": [1.1, 1.0, 4.0, 4.0]}]
        assert records[ids[0]]["agreement"]["objects"] == 0.5 and records[ids[2]]["agreement"]["objects"] is None
        assert records[ids[2]]["objects"] == [{"label": "circle", "bbox": [2.0, 2.0, 3.0, 3.0]}]
        rows = {(r["record_id"], r["annotator"]): r for r in data["responses"]}
        assert rows[ids[0], "alice"]["objects"][1] == {"label": "square", "bbox": [5.0, 2.0, 4.0, 5.0],
                                                       "suggested": True}
        assert rows[ids[0], "alice"]["objects"][0]["suggested"] is None
        assert "'suggested': Value('bool')" in data["response_features"]

        target_settings = make_settings(tmp_path / "b")
        target = Store(target_settings.db_path)
        try:
            report = restore_from_hub(target, target_settings, TASK, endpoint=hub.endpoint)
            assert report is not None and (report.records, report.responses) == (4, len(ANSWERS))
            assert _responses(target) == _responses(source)
            assert target.export_fingerprint() == source.export_fingerprint()
        finally:
            target.close()
        # restored into a task whose "square" became "box": the answers naming it are counted
        renamed = replace(TASK, questions=(replace(TASK.questions[0], labels=(Label("circle", "1"), Label("box", "2"))),
                                           TASK.questions[1]))
        other_settings = make_settings(tmp_path / "c")
        other = Store(other_settings.db_path)
        try:
            report = restore_from_hub(other, other_settings, renamed, endpoint=hub.endpoint)
            assert report is not None and report.unknown_labels == 4  # r0 alice and bob, r1 alice and bob
        finally:
            other.close()
    finally:
        source.close()


def test_local_export_takes_the_iou_setting(tmp_path: Path) -> None:
    """The download and `export --out` use BOX_IOU too: at 0.95 the two circles of record 0 (IoU 0.905) are
    two objects, neither drawn by a majority."""
    from annotator.export.local import export_local
    settings = make_settings(tmp_path)
    store = Store(settings.db_path)
    try:
        ids = add_images(store, settings, 4)
        store.apply([ResponseWrite(ids[rec], user, "submitted", answer, None, 100, T0) for rec, user, answer in ANSWERS])
        consensus = {}
        for iou in (0.5, 0.95):
            out = export_local(store, TASK, tmp_path / f"out-{iou}", settings.images_dir, formats=("jsonl", "csv"),
                               box_iou=iou)
            rows = [json.loads(line) for line in out.files[("records", "jsonl")].read_text().splitlines()]
            consensus[iou] = {r["record_id"]: r["objects"] for r in rows}
            assert "objects" in out.files[("responses", "csv")].read_text().splitlines()[0]
        assert consensus[0.5][ids[0]] == [{"label": "circle", "bbox": [1.1, 1.0, 4.0, 4.0]}]
        assert consensus[0.95][ids[0]] == [] and consensus[0.95][ids[1]] == consensus[0.5][ids[1]]
    finally:
        store.close()
