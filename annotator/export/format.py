"""The export's two tables: their names, columns and types, and rows to and from the store's types.

* `records`: one row per record: the image (a `datasets` Image feature holding
  the original bytes), ids, metadata, the majority answer (None on a tie, the
  tied labels listed), the record's agreement, answer counts, status
  (complete / partial / untouched) and the list of answers;
* `responses`: one row per answer, skips included with status "skipped".

Both directions live here, so a column is named in this module only: the
export writes rows with `record_row` and `response_row`, restore reads them
back with `record_from_row` and `response_from_row` (and reads only
`RECORD_COLUMNS` of `records`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from annotator.task import TaskSpec
from annotator.model import Record, Response

if TYPE_CHECKING:
    from annotator.images import SavedImage

RECORDS = "records"
RESPONSES = "responses"
CONFIGS = (RECORDS, RESPONSES)
IMAGE = "image"  # the column of image bytes: in Parquet only, JSONL and CSV leave it out

# the columns of `records` that hold the record as the store has it: all that restore reads back
RECORD_COLUMNS = (IMAGE, "record_id", "source_key", "image_file", "sha256", "width", "height", "metadata",
                  "suggestion", "position", "extra_answers")


def records_features(task: TaskSpec) -> Any:
    """The `datasets` Features of the records table (majority is a list of labels for multi_label)."""
    from datasets import Features, Image, List, Value
    majority = Value("string") if task.kind == "single_label" else List(Value("string"))
    return Features({
        IMAGE: Image(),
        "record_id": Value("int32"),
        "source_key": Value("string"),
        "image_file": Value("string"),
        "sha256": Value("string"),
        "width": Value("int32"),
        "height": Value("int32"),
        "metadata": Value("string"),
        "suggestion": Value("string"),
        "majority": majority,
        "tied": List(Value("string")),
        "agreement": Value("float64"),
        "n_answers": Value("int32"),
        "n_skipped": Value("int32"),
        "status": Value("string"),
        "answers": List({
            "annotator": Value("string"),
            "answer": List(Value("string")),
            "comment": Value("string"),
            "time": Value("timestamp[us]"),
            "time_spent_ms": Value("int32"),
        }),
        "position": Value("int32"),
        "extra_answers": Value("int32"),
    })


def responses_features() -> Any:
    """The `datasets` Features of the responses table."""
    from datasets import Features, List, Value
    return Features({
        "record_id": Value("int32"),
        "source_key": Value("string"),
        "annotator": Value("string"),
        "status": Value("string"),
        "answer": List(Value("string")),
        "comment": Value("string"),
        "time_spent_ms": Value("int32"),
        "created_at": Value("timestamp[us]"),
        "updated_at": Value("timestamp[us]"),
    })


def record_row(record: Record, image: dict[str, Any] | None, submitted: list[Response], *, skipped: int,
               majority: Any, tied: list[str], agreement: float | None, status: str) -> dict[str, Any]:
    """The `records` row of `record`: `image` as {"bytes", "path"}, the consensus as computed by the caller."""
    return {
        IMAGE: image,
        "record_id": record.id,
        "source_key": record.source_key,
        "image_file": record.image_path,
        "sha256": record.sha256,
        "width": record.width,
        "height": record.height,
        "metadata": json.dumps(record.metadata, sort_keys=True, ensure_ascii=False, default=str),
        "suggestion": record.suggestion,
        "majority": majority,
        "tied": tied,
        "agreement": agreement,
        "n_answers": len(submitted),
        "n_skipped": skipped,
        "status": status,
        "answers": [{"annotator": a.user_id, "answer": list(a.answer), "comment": a.comment,
                     "time": a.updated_at, "time_spent_ms": a.time_spent_ms} for a in submitted],
        "position": record.position,
        "extra_answers": record.extra_answers,
    }


def response_row(record: Record, r: Response) -> dict[str, Any]:
    """The `responses` row of the answer `r` to `record`."""
    return {"record_id": r.record_id, "source_key": record.source_key, "annotator": r.user_id,
            "status": r.status, "answer": list(r.answer), "comment": r.comment,
            "time_spent_ms": r.time_spent_ms, "created_at": r.created_at, "updated_at": r.updated_at}


def image_bytes(row: dict[str, Any]) -> bytes | None:
    """The image bytes a `records` row carries, None when it was exported without its image."""
    return (row[IMAGE] or {}).get("bytes")


def record_from_row(row: dict[str, Any], saved: SavedImage | None) -> Record:
    """The Record a `records` row holds; `saved`: its image as stored again, None when there is none.

    Without an image the row's file name, hash and size are kept (size 0: no file).
    """
    if saved is None:
        path, sha, width, height = row["image_file"] or "", row["sha256"] or "", row["width"] or 0, row["height"] or 0
        size = 0
    else:
        path, sha, width, height = saved
        size = len(image_bytes(row) or b"")
    return Record(
        id=row["record_id"], source_key=row["source_key"], image_path=path, sha256=sha,
        width=width, height=height, size_bytes=size, metadata=json.loads(row["metadata"] or "{}"),
        suggestion=row["suggestion"], position=row["position"] if row["position"] is not None
        else row["record_id"], extra_answers=row["extra_answers"] or 0)


def response_from_row(row: dict[str, Any]) -> Response:
    """The Response a `responses` row holds."""
    return Response(record_id=row["record_id"], user_id=row["annotator"], status=row["status"],
                    answer=tuple(row["answer"] or ()), comment=row["comment"],
                    time_spent_ms=row["time_spent_ms"], created_at=row["created_at"],
                    updated_at=row["updated_at"])
