"""The `objects` config of the Hub export: a ready-to-train object-detection dataset.

The layout the Hub's object-detection guides (and datasets like cppe-5) use,
so their training code runs on it unchanged: `image_id`, `image`, `width`,
`height` and `objects` = {`id`, `area`, `bbox` (COCO [x_min, y_min, width,
height] in original pixels), `category` (a ClassLabel of the question's
labels)}. One row per complete record that has its image, holding the
consensus boxes of the task's first boxes question only (records.<question>),
clamped to the image. Built from the `records` table's rows, so it costs no
second pass over the store.
"""

from __future__ import annotations

from typing import Any, Sequence

import pyarrow as pa

from annotator.boxes import clamp_bbox
from annotator.task import Question, TaskSpec

OBJECTS = "objects"
# ids of a record's boxes: record_id * this + the box's index (an answer holds at most 500 boxes)
_ID_STRIDE = 1000


def objects_question(task: TaskSpec) -> Question | None:
    """The question the objects config is made from: the task's first boxes question, if any."""
    return next((q for q in task.questions if q.kind == "boxes"), None)


def objects_features(q: Question) -> Any:
    """The `datasets` Features of the objects config for the boxes question `q`."""
    from datasets import ClassLabel, Features, Image, List, Value
    return Features({
        "image_id": Value("int64"),
        "image": Image(),
        "width": Value("int32"),
        "height": Value("int32"),
        "objects": {
            "id": List(Value("int64")),
            "area": List(Value("float64")),
            "bbox": List(List(Value("float32"), length=4)),
            "category": List(ClassLabel(names=list(q.label_names))),
        },
    })


def objects_row(q: Question, record_id: int, image: dict[str, Any], width: int, height: int,
                boxes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record as a row of the objects config: its consensus `boxes` ({"label", "bbox"}) clamped to
    the image, boxes of a label the task no longer has left out; `image` as {"bytes", "path"}."""
    index = {name: i for i, name in enumerate(q.label_names)}
    kept = [(box["label"], bbox) for box in boxes if box["label"] in index
            for bbox in [clamp_bbox(tuple(box["bbox"]), (width, height))] if bbox is not None]
    return {"image_id": record_id, "image": image, "width": width, "height": height,
            "objects": {"id": [record_id * _ID_STRIDE + i for i in range(len(kept))],
                        "area": [round(b[2] * b[3], 2) for _, b in kept],
                        "bbox": [b for _, b in kept],
                        "category": [index[label] for label, _ in kept]}}


def objects_table(q: Question, records: pa.Table, schema: pa.Schema) -> pa.Table:
    """The objects rows of one shard of the `records` table (annotator/export/format.py): its complete
    records with an image."""
    rows = [objects_row(q, r["record_id"], r["image"], r["width"], r["height"], r[q.name] or [])
            for r in records.select(["record_id", "image", "width", "height", "status", q.name]).to_pylist()
            if r["status"] == "complete" and r["image"] and r["image"].get("bytes")]
    return pa.Table.from_pylist(rows, schema=schema)
