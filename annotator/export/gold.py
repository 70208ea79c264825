"""Gold answers as their own export config (issue 17).

Gold records are practice and quality checks, not data: their answers must
not enter a record's consensus, the records config or the ready-to-train
configs. The tables builder (export.tables) sets each gold record apart as
it reads the store; this module gives it, pure (no store, no Hub), the
config's columns (`gold_schema`), its rows (`gold_rows`: one per answer to a
gold record, with the expected answer and whether it matched) and what the
card says of it (`GoldSummary`). The exporter gets the gold records
(`{record id: GoldAnswer}`) from the composition root, which reads them at
start (runtime.load_gold), and the CLI from the same function.

The Hub push also keeps the gold records and their answers as the store has
them (`gold/records-*`, `gold/responses-*`, the `records` and `responses`
columns) beside the config's own files (`gold/train-*`): restore reads them
back, so a restored store still has its gold records and every answer people
gave to them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa

from annotator.gold import GoldAnswer
from annotator.model import Record, Response, encode_answer

__all__ = ["GOLD_CONFIG", "GOLD_FILES", "GOLD_RECORDS", "GOLD_RESPONSES", "GoldSummary", "gold_rows", "gold_schema"]

GOLD_CONFIG = "gold"
GOLD_FILES = "train"          # gold/train-*.parquet: the config people load
GOLD_RECORDS = "records"      # gold/records-*.parquet: the gold records as `records` rows, for restore
GOLD_RESPONSES = "responses"  # gold/responses-*.parquet: their answers as `responses` rows, for restore


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
        rows.append({"record_id": r.record_id, "source_key": record.source_key, "annotator": r.user_id,
                     "status": r.status, "answer": encode_answer(r.answer),
                     "expected": encode_answer(expected.expected), "explanation": expected.explanation,
                     "correct": expected.matches(r.answer) if r.status == "submitted" else None,
                     "updated_at": r.updated_at})
    return rows


def gold_schema() -> pa.Schema:
    """The columns of the `gold` config (times in UTC, as in `responses`)."""
    return pa.schema([("record_id", pa.int64()), ("source_key", pa.string()), ("annotator", pa.string()),
                      ("status", pa.string()), ("answer", pa.string()), ("expected", pa.string()),
                      ("explanation", pa.string()), ("correct", pa.bool_()),
                      ("updated_at", pa.timestamp("us", tz="UTC"))])


@dataclass
class GoldSummary:
    """What the card says of the gold config: its size and each annotator's share of right gold answers."""
    records: int = 0                                         # gold records in the store
    answers: int = 0                                         # rows of the config, skips included
    right: Counter[str] = field(default_factory=Counter)     # annotator -> right submitted gold answers
    judged: Counter[str] = field(default_factory=Counter)    # annotator -> submitted gold answers

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.answers += 1
            if row["correct"] is not None:
                self.judged[row["annotator"]] += 1
                self.right[row["annotator"]] += bool(row["correct"])

    def card_lines(self, repo_id: str) -> list[str]:
        """The card's `gold` section: what the config holds, how to load it, accuracy per annotator."""
        lines = ["## Gold answers", "",
                 f"{self.records} gold records (a known answer, mixed in as quality checks) are left out of "
                 "`records`, `responses`, the consensus, the totals and agreement above, and of the "
                 "ready-to-train configs."]
        if not self.answers:
            return lines + ["No one has answered a gold record yet, so the `gold` config is not published.", ""]
        lines += [f"`{GOLD_CONFIG}`: one row per answer to a gold record ({self.answers} rows, skips included): "
                  "`record_id`, `source_key`, `annotator`, `status`, `answer` and `expected` (JSON, by question), "
                  "`explanation`, `correct` (null for a skip), `updated_at` (UTC).", "",
                  "```python", f'gold = load_dataset("{repo_id}", "{GOLD_CONFIG}", split="train")', "```", "",
                  "| annotator | gold answers | right | accuracy |", "|---|---:|---:|---:|"]
        for user in sorted(self.judged, key=lambda u: (-self.judged[u], u)):
            n, right = self.judged[user], self.right[user]
            lines.append(f"| {user.replace('|', '/')} | {n} | {right} | {100 * right / n:.1f}% |")
        return lines + [""]
