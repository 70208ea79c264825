"""The export's gold pieces (annotator/export/gold.py): the rows of the gold config and what the card says."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa

from annotator.export.gold import GoldSummary, gold_rows, gold_schema
from annotator.gold import GoldAnswer
from annotator.model import Record, Response

AT = datetime(2026, 1, 1)


def record(rid: int) -> Record:
    return Record(rid, f"k{rid}", f"{rid}.png", "0" * 64, 8, 8, 100, {}, None, rid, 0)


def test_gold_rows_say_who_what_was_expected_and_whether_it_was_right():
    gold = {2: GoldAnswer({"label": "cat"}, "whiskers")}
    records = {r.id: r for r in (record(1), record(2))}
    answers = [Response(1, "ann", "submitted", {"label": "dog"}, None, None, AT, AT),  # not gold: no row
               Response(2, "ann", "submitted", {"label": "cat"}, None, None, AT, AT),
               Response(2, "bob", "skipped", {}, None, None, AT, AT),
               Response(2, "cy", "submitted", {"label": "dog"}, None, None, AT, AT)]
    rows = gold_rows(records, answers, gold)
    assert [(r["annotator"], r["correct"], json.loads(r["expected"])) for r in rows] == [
        ("ann", True, {"label": "cat"}), ("bob", None, {"label": "cat"}), ("cy", False, {"label": "cat"})]
    assert rows[0]["source_key"] == "k2" and rows[0]["explanation"] == "whiskers"
    assert pa.Table.from_pylist(rows, schema=gold_schema()).num_rows == 3

    summary = GoldSummary(records=1)
    summary.add(rows)
    lines = summary.card_lines("o/n")
    assert 'gold = load_dataset("o/n", "gold", split="train")' in lines
    assert "| ann | 1 | 1 | 100.0% |" in lines and "| cy | 1 | 0 | 0.0% |" in lines
    assert not any(line.startswith("| bob") for line in lines)  # a skip is no right or wrong answer
    assert "not published" in "".join(GoldSummary(records=1).card_lines("o/n"))
