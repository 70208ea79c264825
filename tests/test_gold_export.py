"""The export's gold pieces (annotator/export/gold.py): gold answers out of the records, into their own rows."""

from __future__ import annotations

import json
from datetime import datetime

from annotator.export.gold import gold_rows, split_gold
from annotator.gold import GoldAnswer
from annotator.model import Record, Response

AT = datetime(2026, 1, 1)


def record(rid: int) -> Record:
    return Record(rid, f"k{rid}", f"{rid}.png", "0" * 64, 8, 8, 100, {}, None, rid, 0)


def test_gold_answers_leave_the_records_and_get_their_own_rows():
    gold = {2: GoldAnswer({"label": "cat"}, "whiskers")}
    records = [record(1), record(2)]
    responses = [Response(1, "ann", "submitted", {"label": "dog"}, None, None, AT, AT),
                 Response(2, "ann", "submitted", {"label": "cat"}, None, None, AT, AT),
                 Response(2, "bob", "skipped", {}, None, None, AT, AT)]
    kept, answers, gold_answers = split_gold(records, responses, gold)
    assert [r.id for r in kept] == [1] and [r.record_id for r in answers] == [1]
    rows = gold_rows({r.id: r for r in records}, gold_answers, gold)
    assert [(r["annotator"], r["correct"], json.loads(r["expected"])) for r in rows] == [
        ("ann", True, {"label": "cat"}), ("bob", None, {"label": "cat"})]
    assert rows[0]["source_key"] == "k2" and rows[0]["explanation"] == "whiskers"
    assert split_gold(records, responses, {}) == (records, responses, [])
