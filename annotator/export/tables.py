"""The records and responses tables of a store, built shard by shard (`build_tables`).

One pass over the store gives both tables, so memory stays flat in the number
of records; the consensus of each record, question by question (majority
label, the labels more than half chose, the median rating, the boxes a majority
drew; ties stated),
its agreement and status are computed here, and the export's totals are
filled on the way. Given ready-to-train configs (`train_configs`), each shard
also holds their rows for the same records, made from the same image bytes
and consensus. Gold records (issue 17) and their answers are kept out of
both tables and the totals: given the gold answers (`gold`), each shard holds
them apart (the `gold` config's rows, and for the Hub push the records and
answers as the store has them). A record an admin settled carries its final
answer (`final`) beside the consensus, and the ready-to-train configs prefer it.
"""

from __future__ import annotations

import logging
import os
import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pyarrow as pa

from annotator import boxes
from annotator.task import Question, TaskSpec
from annotator.export.format import record_row, records_features, response_row, responses_features
from annotator.export.gold import GoldSummary, gold_rows, gold_schema
from annotator.export.summary import AlphaAccumulator, ExportSummary, OrdinalAccumulator, QuestionSummary
from annotator.export.train_configs import RecordAnswers, TrainConfig
from annotator.gold import GoldAnswer
from annotator.model import Final, Record, Response, record_status
from annotator.review import question_consensus
from annotator.store_protocol import StoreProtocol

log = logging.getLogger(__name__)

SHARD_ROWS = 256                    # records read from the store per shard
SHARD_BYTES = 64 * 2**20            # ... or fewer, once their images reach this size

ExportProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Shard:
    """One shard of both tables: at most `shard_rows` records, and every answer to them; by config name,
    the ready-to-train rows of the same records; when the task has gold records, those of this shard apart:
    the `gold` config's rows, and the records and their answers as `records` and `responses` rows."""
    records: pa.Table
    responses: pa.Table
    configs: dict[str, pa.Table] = field(default_factory=dict)
    gold: pa.Table | None = None
    gold_records: pa.Table | None = None
    gold_responses: pa.Table | None = None


class ExportTables:
    """The records and responses tables, produced shard by shard by iterating.

    One pass over a consistent snapshot of the store (`Store.iter_export`);
    each shard holds at most `shard_rows` records and about `shard_bytes` of
    image bytes (counted in every table that holds them), so memory does not
    grow with the store. `summary` is complete once iteration ends, with a
    ConfigSummary per config in `configs`. Iterate once.
    """

    def __init__(self, store: StoreProtocol, task: TaskSpec, images_dir: Path, *, shard_rows: int = SHARD_ROWS,
                 shard_bytes: int = SHARD_BYTES, progress: ExportProgress | None = None,
                 configs: Sequence[TrainConfig] = (), box_iou: float = boxes.DEFAULT_IOU,
                 gold: Mapping[int, GoldAnswer] | None = None) -> None:
        self.store, self.task, self.images_dir = store, task, Path(images_dir)
        self.gold: Mapping[int, GoldAnswer] = gold or {}
        self.gold_schema = gold_schema()
        self._gold_summary = GoldSummary()
        self.box_iou = box_iou
        self._images_root = str(self.images_dir)
        self.shard_rows, self.shard_bytes = max(1, shard_rows), max(1, shard_bytes)
        self.progress = progress
        self.records_schema: pa.Schema = records_features(task).arrow_schema
        self.responses_schema: pa.Schema = responses_features(task).arrow_schema
        self.total_records = store.record_count()
        self.configs = list(configs)
        self.summary = ExportSummary(questions={q.name: QuestionSummary(q.name, q.kind) for q in task.questions},
                                     configs={c.name: c.summary for c in self.configs},
                                     gold=self._gold_summary if self.gold else None)
        self._alpha: dict[str, AlphaAccumulator | OrdinalAccumulator] = {
            q.name: OrdinalAccumulator() if q.kind == "rating" else AlphaAccumulator()
            for q in task.questions if q.kind in ("label", "rating", "preference")}
        self._alpha_labels: dict[str, dict[str, AlphaAccumulator]] = {
            q.name: {} for q in task.questions if q.kind == "labels"}
        self._finals: dict[int, Final] = {}

    def __iter__(self) -> Iterator[Shard]:
        done = 0
        rec_rows: list[dict[str, Any]] = []
        resp_rows: list[dict[str, Any]] = []
        train_rows: dict[str, list[dict[str, Any]]] = {c.name: [] for c in self.configs}
        gold: list[list[dict[str, Any]]] = [[], [], []]  # the gold config's, records' and responses' rows
        size = 0
        if self.progress:
            self.progress(0, self.total_records)
        self._finals = self.store.finals()  # few (the records an admin settled); read after the fingerprint
        for records, responses in self.store.iter_export(self.shard_rows):
            by_record: dict[int, list[Response]] = {}
            for r in responses:
                by_record.setdefault(r.record_id, []).append(r)
            for record in records:
                answers = by_record.get(record.id, [])
                if record.id in self.gold:
                    size += self._gold_record(record, answers, gold)
                else:
                    row, view = self._record_row(record, answers)
                    image_size = sum(len(image["bytes"]) for image in (view.image, *view.more_images) if image)
                    size += image_size
                    rec_rows.append(row)
                    resp_rows.extend(response_row(record, r) for r in answers)
                    for config in self.configs:
                        rows = config.rows(view)
                        train_rows[config.name] += rows
                        size += image_size * len(rows)
                if len(rec_rows) + len(gold[1]) >= self.shard_rows or size >= self.shard_bytes:
                    yield self._shard(rec_rows, resp_rows, train_rows, gold)
                    done += len(rec_rows) + len(gold[1])
                    rec_rows, resp_rows, size, gold = [], [], 0, [[], [], []]
                    train_rows = {c.name: [] for c in self.configs}
                    if self.progress:
                        self.progress(done, self.total_records)
        if rec_rows or resp_rows or any(gold):
            yield self._shard(rec_rows, resp_rows, train_rows, gold)
            done += len(rec_rows) + len(gold[1])
        self._finish()
        if self.progress:
            self.progress(done, max(done, self.total_records))

    def _shard(self, rec_rows: list[dict[str, Any]], resp_rows: list[dict[str, Any]],
               train_rows: dict[str, list[dict[str, Any]]], gold: list[list[dict[str, Any]]]) -> Shard:
        shard = Shard(pa.Table.from_pylist(rec_rows, schema=self.records_schema),
                      pa.Table.from_pylist(resp_rows, schema=self.responses_schema),
                      {c.name: pa.Table.from_pylist(train_rows[c.name], schema=c.schema) for c in self.configs})
        if not self.gold:
            return shard
        return replace(shard, gold=pa.Table.from_pylist(gold[0], schema=self.gold_schema),
                       gold_records=pa.Table.from_pylist(gold[1], schema=self.records_schema),
                       gold_responses=pa.Table.from_pylist(gold[2], schema=self.responses_schema))

    def _gold_record(self, record: Record, answers: list[Response], out: list[list[dict[str, Any]]]) -> int:
        """Add a gold record and its answers to `out` (no consensus, no totals: they are practice and checks,
        not data); the bytes of its image."""
        rows = gold_rows({record.id: record}, answers, self.gold)
        self._gold_summary.records += 1
        self._gold_summary.add(rows)
        out[0] += rows
        out[2] += (response_row(record, a) for a in answers)
        submitted = [a for a in answers if a.status == "submitted"]
        image, more, texts = self._shown(record)
        out[1].append(record_row(record, image, submitted, skipped=len(answers) - len(submitted), consensus={},
                                 tied=[], agreement={},
                                 status=record_status(len(submitted), self.task.overlap + record.extra_answers),
                                 more=more if self.task.image_columns else None,
                                 texts=texts if self.task.text_columns else None))
        return sum(len(i["bytes"]) for i in (image, *more) if i)

    def _image(self, record: Record, image_path: str) -> dict[str, Any] | None:
        """One image of `record` as {"bytes", "path"}, None (counted, logged) when it cannot be read."""
        try:  # os.path, not pathlib: pathlib interns every path part, a leak of ~100 B per record
            with open(os.path.join(self._images_root, image_path), "rb") as f:
                data = f.read()
        except OSError as exc:
            self.summary.missing_images += 1
            if self.summary.missing_images <= 5:
                log.warning("export: an image of record %d (%s) cannot be read (%s); exported without it",
                            record.id, image_path, exc.strerror or exc)
            return None
        return {"bytes": data, "path": posixpath.basename(image_path)}

    def _record_row(self, record: Record, answers: list[Response]) -> tuple[dict[str, Any], RecordAnswers]:
        """The record's `records` row, and what the ready-to-train configs read of it."""
        s = self.summary
        submitted = [a for a in answers if a.status == "submitted"]
        s.records += 1
        s.submitted += len(submitted)
        s.skipped += len(answers) - len(submitted)
        s.annotators.update(a.user_id for a in answers)
        consensus: dict[str, Any] = {}
        agreement: dict[str, float | None] = {}
        tied: list[dict[str, str]] = []
        ties_by_question: dict[str, list[str]] = {}
        values_by_question: dict[str, list[Any]] = {}
        for q in self.task.questions:
            values = values_by_question[q.name] = [a.answer[q.name] for a in submitted if q.name in a.answer]
            qs = s.questions[q.name]
            qs.answers += len(values)
            if q.kind == "text":
                qs.chars += sum(len(v) for v in values)  # type: ignore[arg-type]
                continue
            if q.kind == "boxes":
                self._box_consensus(q, submitted, qs, consensus, agreement)
                ties_by_question[q.name] = []
                continue
            ties = ties_by_question[q.name] = self._consensus(q, values, qs, consensus, agreement)
            qs.ties += bool(ties)
            tied += [{"question": q.name, "label": label} for label in ties]
        needed = self.task.overlap + record.extra_answers
        status = record_status(len(submitted), needed)
        s.status[status] += 1
        final = self._finals.get(record.id)
        s.adjudicated += final is not None
        image, more, texts = self._shown(record)
        row = record_row(record, image, submitted, skipped=len(answers) - len(submitted),
                         consensus=consensus, tied=tied, agreement=agreement, status=status,
                         more=more if self.task.image_columns else None,
                         texts=texts if self.task.text_columns else None, final=final)
        return row, RecordAnswers(record, image, values_by_question, consensus, ties_by_question, status,
                                  tuple(more), texts, final.answer if final else {})

    def _shown(self, record: Record) -> tuple[dict[str, Any] | None, list[dict[str, Any] | None], dict[str, str | None]]:
        """What the record shows: its image, its further images (a task of several) and its texts, read once."""
        image = self._image(record, record.image_path)
        more = [self._image(record, i.path) for i in record.more_images] if self.task.image_columns else []
        return image, more, {name: _text(record.metadata.get(name)) for name in self.task.text_columns}

    def _consensus(self, q: Question, values: list[Any], qs: QuestionSummary, consensus: dict[str, Any],
                   agreement: dict[str, float | None]) -> list[str]:
        """Fill one label, labels or rating question's consensus and agreement for a record; its ties."""
        name = q.name
        # labels: a label is in the consensus when more than half of the answers chose it; chosen by exactly
        # half it is tied (stated, not decided)
        consensus[name], ties, agreement[name] = question_consensus(q, values)
        if q.kind == "labels":
            for value in values:
                qs.answer_counts.update(value)
            for label in dict.fromkeys((*q.label_names, *sorted({v for value in values for v in value}))):
                self._alpha_labels[name].setdefault(label, AlphaAccumulator()).add([label in v for v in values])
            qs.majority_counts.update(consensus[name])
            return ties
        self._alpha[name].add(values)
        qs.answer_counts.update(str(v) for v in values)
        if q.kind != "rating" and consensus[name] is not None:
            qs.majority_counts[consensus[name]] += 1
        return ties

    def _box_consensus(self, q: Question, submitted: list[Response], qs: QuestionSummary,
                       consensus: dict[str, Any], agreement: dict[str, float | None]) -> None:
        """A boxes question's consensus (the boxes a majority drew) and agreement (mean pairwise F1)."""
        values = [a.answer[q.name] for a in sorted(submitted, key=lambda a: a.user_id) if q.name in a.answer]
        consensus[q.name], _, agreement[q.name] = question_consensus(q, values, self.box_iou)
        f1 = agreement[q.name]
        for value in values:
            qs.answer_counts.update(box["label"] for box in value)  # type: ignore[index, union-attr]
        qs.majority_counts.update(box["label"] for box in consensus[q.name])
        if f1 is not None:
            qs.f1_total += f1
            qs.f1_records += 1

    def _finish(self) -> None:
        for name, acc in self._alpha.items():
            self.summary.questions[name].alpha = acc.result()
        for name, per_label in self._alpha_labels.items():
            self.summary.questions[name].alpha_per_label = {label: acc.result() for label, acc in per_label.items()}


def _text(value: Any) -> str | None:
    """A record's text as the page shows it (a number in the metadata is text too)."""
    return None if value is None else str(value)


def build_tables(store: StoreProtocol, task: TaskSpec, images_dir: Path, *, shard_rows: int = SHARD_ROWS,
                 shard_bytes: int = SHARD_BYTES, progress: ExportProgress | None = None,
                 configs: Sequence[TrainConfig] = (), box_iou: float = boxes.DEFAULT_IOU,
                 gold: Mapping[int, GoldAnswer] | None = None) -> ExportTables:
    """The records and responses tables of `store` (and the rows of `configs`; `gold`: the gold records,
    kept apart), to iterate shard by shard (see ExportTables)."""
    return ExportTables(store, task, images_dir, shard_rows=shard_rows, shard_bytes=shard_bytes,
                        progress=progress, configs=configs, box_iou=box_iou, gold=gold)
