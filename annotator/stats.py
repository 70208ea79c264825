"""Progress counts: `python -m annotator stats [--json]`, and `summarize()` for the dashboard.

A record's status is model.record_status: complete when its submitted answers
reach the task's overlap plus the extra answers an admin asked for on it;
partly done when it has at least one submitted answer but fewer; untouched
when it has none (skips do not count as answers, so this command, like the
scheduler's counts, has no "only skipped" class).

Gold records (issue 17) are checks, not work: like the dashboard's progress,
every figure here leaves them and their answers out, and the gold answers are
counted apart (`gold`, and each person's `gold` with how many were right).
"""

from __future__ import annotations

from typing import Any, Mapping

from annotator.gold import GoldAnswer
from annotator.model import record_status
from annotator.reports import gold_tally
from annotator.store_protocol import StoreProtocol


def summarize(store: StoreProtocol, overlap: int, gold: Mapping[int, GoldAnswer] | None = None) -> dict[str, Any]:
    """Counts over the whole store, as plain JSON-ready values; `gold` (runtime.load_gold) is left out.

    Keys: records, responses, submitted, skipped, overlap, complete, partial,
    untouched, answers_needed (sum over records of overlap + extra answers),
    answers_done (submitted answers counted up to each record's need),
    percent_done, users ({user: {"submitted": n, "skipped": n}}), all without
    gold records; gold ({"records", "submitted", "skipped", "right"}) and each
    user's "gold" ({"submitted", "right"}) count the answers to gold records.
    """
    gold = gold or {}
    raw = store.stats()
    found = store.records(list(gold)) if gold else {}
    tally = gold_tally(gold, found, {rid: store.record_responses(rid) for rid in found})
    records = raw["records"] - len(found)
    complete = partial = done = 0
    for record_id, extra, submitted in raw["answers_per_record"]:
        if record_id in gold:
            continue
        need = overlap + extra
        done += min(submitted, need)
        status = record_status(submitted, need)
        if status == "complete":
            complete += 1
        elif status == "partial":
            partial += 1
    needed = records * overlap + sum(n for rid, n in store.extra_answers().items() if rid not in gold)
    gold_submitted, gold_skipped = sum(tally.answers.values()), sum(tally.skips.values())
    users = {user: {"submitted": counts["submitted"] - tally.answers[user],
                    "skipped": counts["skipped"] - tally.skips[user],
                    "gold": {"submitted": tally.answers[user], "right": tally.right[user]}}
             for user, counts in raw["users"].items()}
    return {
        "records": records,
        "responses": raw["responses"] - gold_submitted - gold_skipped,
        "submitted": raw["submitted"] - gold_submitted,
        "skipped": raw["skipped"] - gold_skipped,
        "overlap": overlap,
        "complete": complete,
        "partial": partial,
        "untouched": records - complete - partial,
        "answers_needed": needed,
        "answers_done": done,
        "percent_done": round(100.0 * done / needed, 1) if needed else 100.0,
        "users": users,
        "gold": {"records": len(found), "submitted": gold_submitted, "skipped": gold_skipped,
                 "right": sum(tally.right.values())},
    }


def format_text(summary: dict[str, Any]) -> str:
    """The summary as a few aligned lines for a terminal."""
    lines = [
        f"records      {summary['records']}",
        f"responses    {summary['responses']} ({summary['submitted']} submitted, {summary['skipped']} skipped)",
        f"complete     {summary['complete']} (overlap {summary['overlap']})",
        f"partly done  {summary['partial']}",
        f"untouched    {summary['untouched']}",
        f"progress     {summary['answers_done']} of {summary['answers_needed']} answers "
        f"({summary['percent_done']:g}%)",
    ]
    gold = summary["gold"]
    if gold["records"]:
        lines.append(f"gold         {gold['records']} records, not counted above: {gold['submitted']} answers "
                     f"({gold['right']} right), {gold['skipped']} skipped")
    users = summary["users"]
    if users:
        width = max(len(u) for u in users)
        lines.append(f"users        {len(users)}")
        for user, counts in sorted(users.items(), key=lambda item: (-item[1]["submitted"], item[0])):
            mine = counts["gold"]
            on_gold = f"  {mine['right']}/{mine['submitted']} gold right" if gold["records"] else ""
            lines.append(f"  {user:<{width}}  {counts['submitted']:>6} submitted  {counts['skipped']:>5} skipped"
                         f"{on_gold}")
    else:
        lines.append("users        0")
    return "\n".join(lines)


__all__ = ["format_text", "summarize"]
