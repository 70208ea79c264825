"""The export's two tables: their names, columns and types, and rows to and from the store's types.

* `records`: one row per record: the image (a `datasets` Image feature holding
  the original bytes), ids, metadata, the consensus of each question in a
  column named after it (label: the majority label, None on a tie; labels: the
  labels more than half of the answers chose; rating: the median; boxes: the
  boxes a majority drew, annotator.boxes.consensus; text: none),
  the ties stated (`tied`), the record's agreement per question, answer
  counts, status (complete / partial / untouched) and the list of answers;
  a task of several images per record (`[record] images`) adds `more_images`,
  the record's images after the first (`image`), in task order, each
  {`image`, `column`, `image_file`, `sha256`, `width`, `height`}, and, with
  `[record] texts`, `texts`: {text column: the record's text};
* `responses`: one row per answer, skips included with status "skipped", one
  column per question (label and text: string, labels: list of strings,
  rating: int32, boxes: list of {label, bbox [x, y, w, h] float64, suggested};
  a question left open, or a skip, is null).

`records` also holds each record's final answer (issue 17, adjudication):
`final`, the admin's answer by question (a struct like `answers`' answer; null
when no admin settled the record), `final_by` and `final_at`; restore reads
them back (`final_from_row`).

Times are UTC and say so (`timestamp[us, tz=UTC]`); exports written before
carried naive UTC times, which restore reads the same way.

Exports written before typed answers had one `answer` list column in
`responses`; `response_from_row` reads it through the task's first question
(model.LegacyQuestion), as the store migration does.

Both directions live here, so a column is named in this module only: the
export writes rows with `record_row` and `response_row`, restore reads them
back with `record_from_row` and `response_from_row` (and reads only
`RECORD_COLUMNS` of `records`, and `more_images` when it is there).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Sequence

from annotator.task import Question, TaskSpec
from annotator.model import Answer, Final, LegacyQuestion, Record, RecordImage, Response

if TYPE_CHECKING:
    from annotator.images import SavedImage

RECORDS = "records"
RESPONSES = "responses"
CONFIGS = (RECORDS, RESPONSES)
IMAGE = "image"  # the column of image bytes: in Parquet only, JSONL and CSV leave it out
MORE_IMAGES = "more_images"  # a several-image record's images after the first: bytes too, Parquet only
TEXTS = "texts"
BYTE_COLUMNS = (IMAGE, MORE_IMAGES)

# the columns of `records` that hold the record as the store has it: all that restore reads back
RECORD_COLUMNS = (IMAGE, "record_id", "source_key", "image_file", "sha256", "width", "height", "metadata",
                  "suggestion", "position", "extra_answers")
# the final answer an admin set (issue 17); exports before it have none of these columns
FINAL = "final"
FINAL_COLUMNS = (FINAL, "final_by", "final_at")
# the columns of `responses` beside the questions' own; an export before typed answers added `answer`
RESPONSE_COLUMNS = ("record_id", "source_key", "annotator", "status", "comment", "time_spent_ms", "created_at",
                    "updated_at")
LEGACY_ANSWER = "answer"
UTC_TIME = "timestamp[us, tz=UTC]"  # the store keeps naive UTC times; arrow reads those as UTC


def answer_feature(q: Question) -> Any:
    """The `datasets` type of one question's answer: label and text a string, labels a list, rating int32,
    boxes a list of {label, bbox, suggested} (suggested: true for a pre-label accepted unchanged, else null)."""
    from datasets import List, Value
    if q.kind == "boxes":
        return List({"label": Value("string"), "bbox": List(Value("float64"), length=4),
                     "suggested": Value("bool")})
    return {"label": Value("string"), "labels": List(Value("string")), "rating": Value("int32"),
            "text": Value("string"),
            "preference": Value("string")}[q.kind]


def consensus_feature(q: Question) -> Any:
    """The `datasets` type of a question's consensus in `records` (the median rating may fall between two
    values; the consensus boxes carry no `suggested`)."""
    from datasets import List, Value
    if q.kind == "boxes":
        return List({"label": Value("string"), "bbox": List(Value("float64"), length=4)})
    return Value("float64") if q.kind == "rating" else answer_feature(q)


def scored(task: TaskSpec) -> list[Question]:
    """The questions a record's agreement is computed for: all but text."""
    return [q for q in task.questions if q.kind != "text"]


def records_features(task: TaskSpec) -> Any:
    """The `datasets` Features of the records table: a consensus column per question, beside the record's own."""
    from datasets import Features, Image, List, Value
    consensus = {q.name: consensus_feature(q) for q in scored(task)}
    agreement = {q.name: Value("float64") for q in scored(task)}
    more = {MORE_IMAGES: List({IMAGE: Image(), "column": Value("string"), "image_file": Value("string"),
                               "sha256": Value("string"), "width": Value("int32"), "height": Value("int32")})}
    texts = {TEXTS: {name: Value("string") for name in task.text_columns}}
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
        **(more if task.image_columns else {}),
        **(texts if task.text_columns else {}),
        **consensus,
        FINAL: {q.name: answer_feature(q) for q in task.questions},
        "final_by": Value("string"),
        "final_at": Value(UTC_TIME),
        "tied": List({"question": Value("string"), "label": Value("string")}),
        **({"agreement": agreement} if agreement else {}),
        "n_answers": Value("int32"),
        "n_skipped": Value("int32"),
        "status": Value("string"),
        "answers": List({
            "annotator": Value("string"),
            "answer": {q.name: answer_feature(q) for q in task.questions},
            "comment": Value("string"),
            "time": Value(UTC_TIME),
            "time_spent_ms": Value("int32"),
        }),
        "position": Value("int32"),
        "extra_answers": Value("int32"),
    })


def responses_features(task: TaskSpec) -> Any:
    """The `datasets` Features of the responses table: a column per question after `status`."""
    from datasets import Features, Value
    return Features({
        "record_id": Value("int32"),
        "source_key": Value("string"),
        "annotator": Value("string"),
        "status": Value("string"),
        **{q.name: answer_feature(q) for q in task.questions},
        "comment": Value("string"),
        "time_spent_ms": Value("int32"),
        "created_at": Value(UTC_TIME),
        "updated_at": Value(UTC_TIME),
    })


def record_row(record: Record, image: dict[str, Any] | None, submitted: list[Response], *, skipped: int,
               consensus: dict[str, Any], tied: list[dict[str, str]], agreement: dict[str, float | None],
               status: str, more: list[dict[str, Any] | None] | None = None,
               texts: dict[str, str | None] | None = None, final: Final | None = None) -> dict[str, Any]:
    """The `records` row of `record`: `image` as {"bytes", "path"}; the consensus (by question), the ties
    ({"question", "label"}) and the agreement (by question) as computed by the caller; `final`: the answer an
    admin settled it with. `more` (a task of
    several images): the record's further images as {"bytes", "path"}, None for one that could not be
    read; `texts` (a task with texts): the record's texts by column."""
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
        **({MORE_IMAGES: [{IMAGE: data, "column": i.column, "image_file": i.path, "sha256": i.sha256,
                           "width": i.width, "height": i.height} for i, data in zip(record.more_images, more)]}
           if more is not None else {}),
        **({TEXTS: texts} if texts is not None else {}),
        **consensus,
        FINAL: final.answer if final else None,
        "final_by": final.admin if final else None,
        "final_at": final.at if final else None,
        "tied": tied,
        **({"agreement": agreement} if agreement else {}),
        "n_answers": len(submitted),
        "n_skipped": skipped,
        "status": status,
        "answers": [{"annotator": a.user_id, "answer": a.answer, "comment": a.comment,
                     "time": a.updated_at, "time_spent_ms": a.time_spent_ms} for a in submitted],
        "position": record.position,
        "extra_answers": record.extra_answers,
    }


def response_row(record: Record, r: Response) -> dict[str, Any]:
    """The `responses` row of the answer `r` to `record` (a question it leaves open is left out: null)."""
    return {"record_id": r.record_id, "source_key": record.source_key, "annotator": r.user_id,
            "status": r.status, **r.answer, "comment": r.comment,
            "time_spent_ms": r.time_spent_ms, "created_at": r.created_at, "updated_at": r.updated_at}


def image_bytes(row: dict[str, Any]) -> bytes | None:
    """The image bytes a `records` row carries, None when it was exported without its image."""
    return (row[IMAGE] or {}).get("bytes")


def more_image_bytes(row: dict[str, Any]) -> list[bytes | None]:
    """The bytes of each further image a `records` row carries (none in a one-image export), None for one
    exported without its image."""
    return [(item[IMAGE] or {}).get("bytes") for item in row.get(MORE_IMAGES) or []]


def record_from_row(row: dict[str, Any], saved: SavedImage | None,
                    more_saved: Sequence[SavedImage | None] = ()) -> Record:
    """The Record a `records` row holds; `saved`: its image as stored again, None when there is none;
    `more_saved`: likewise its further images, in `more_images` order.

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
        else row["record_id"], extra_answers=row["extra_answers"] or 0,
        more_images=tuple(_more_image(item, s) for item, s in zip(row.get(MORE_IMAGES) or [], more_saved)))


def _more_image(item: dict[str, Any], saved: SavedImage | None) -> RecordImage:
    if saved is None:
        return RecordImage(item["column"] or "", item["image_file"] or "", item["sha256"] or "",
                           item["width"] or 0, item["height"] or 0, 0)
    return RecordImage(item["column"] or "", *saved, len((item[IMAGE] or {}).get("bytes") or b""))


def response_from_row(row: dict[str, Any], legacy: LegacyQuestion | None = None) -> Response:
    """The Response a `responses` row holds: every column beside RESPONSE_COLUMNS is a question, null when
    left open. A row of an export before typed answers (`answer`, a list of labels) is read through
    `legacy`; ValueError when there is none."""
    if isinstance(row.get(LEGACY_ANSWER), list) and set(row) == {*RESPONSE_COLUMNS, LEGACY_ANSWER}:
        if legacy is None:
            raise ValueError("its answers are lists of labels, from before typed answers, and the task's first "
                             "question is not a label or labels question to give them to")
        answer: Answer = legacy.answer(row[LEGACY_ANSWER], row["status"])
    else:
        answer = _answer({name: value for name, value in row.items() if name not in RESPONSE_COLUMNS})
    return Response(record_id=row["record_id"], user_id=row["annotator"], status=row["status"],
                    answer=answer, comment=row["comment"],
                    time_spent_ms=row["time_spent_ms"], created_at=_naive_utc(row["created_at"]),
                    updated_at=_naive_utc(row["updated_at"]))


def final_from_row(row: dict[str, Any]) -> Final | None:
    """The final answer a `records` row holds (FINAL_COLUMNS), None when the record has none."""
    if not row.get(FINAL):
        return None
    return Final(row["record_id"], _answer(row[FINAL]), row["final_by"], _naive_utc(row["final_at"]))


def _answer(values: dict[str, Any]) -> Answer:
    """An answer from its columns by question: a question left open is null there."""
    return {name: _without_nulls(value) for name, value in values.items() if value is not None}


def _naive_utc(time: datetime) -> datetime:
    """A time as the store keeps it (naive UTC), from an export's UTC time or an older export's naive one."""
    return time.astimezone(timezone.utc).replace(tzinfo=None) if time.tzinfo else time


def _without_nulls(value: Any) -> Any:
    """A boxes answer as it was sent: Parquet gives every box every field, null where the box had none
    (`suggested` on a box drawn by hand)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [{k: v for k, v in box.items() if v is not None} for box in value]
    return value
