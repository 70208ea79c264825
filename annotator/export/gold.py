"""Gold answers as their own export config (issue 17), and the export's records without them.

Gold records are practice and quality checks, not data: their answers must
not enter a record's consensus, the records config or the ready-to-train
configs. This module gives the export the two pieces it needs, pure (no
store, no Hub): `split_gold` takes the gold records and their answers out of
a shard of the export, and `gold_rows` makes the rows of the `gold` config,
one per answer to a gold record, with the expected answer and whether it
matched. The exporter gets the gold records (`{record id: GoldAnswer}`) from
the composition root, which reads them at start (runtime.load_gold).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from annotator.gold import GoldAnswer
from annotator.model import Record, Response, encode_answer

__all__ = ["GOLD_CONFIG", "gold_rows", "split_gold"]

GOLD_CONFIG = "gold"


def split_gold(records: Sequence[Record], responses: Sequence[Response], gold: Mapping[int, GoldAnswer]
               ) -> tuple[list[Record], list[Response], list[Response]]:
    """(records that are not gold, the answers to them, the answers to gold records)."""
    if not gold:
        return list(records), list(responses), []
    return ([r for r in records if r.id not in gold], [r for r in responses if r.record_id not in gold],
            [r for r in responses if r.record_id in gold])


def gold_rows(records: Mapping[int, Record], answers: Sequence[Response], gold: Mapping[int, GoldAnswer]
              ) -> list[dict[str, Any]]:
    """One row per answer to a gold record: who, what they answered, what was expected, whether it matched
    (None for a skip). Answers are the store's JSON text (model.encode_answer), like the responses config."""
    rows = []
    for r in answers:
        expected = gold.get(r.record_id)
        record = records.get(r.record_id)
        if expected is None or record is None:
            continue
        rows.append({"record_id": r.record_id, "source_key": record.source_key, "user_id": r.user_id,
                     "status": r.status, "answer": encode_answer(r.answer),
                     "expected": encode_answer(expected.expected), "explanation": expected.explanation,
                     "correct": expected.matches(r.answer) if r.status == "submitted" else None,
                     "updated_at": r.updated_at.isoformat()})
    return rows
