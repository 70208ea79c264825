"""Progress counts: `python -m annotator stats [--json]`, and `summarize()` for the dashboard.

A record's status is model.record_status: complete when its submitted answers
reach the task's overlap plus the extra answers an admin asked for on it;
partly done when it has at least one submitted answer but fewer; untouched
when it has none (skips do not count as answers, so this command, like the
scheduler's counts, has no "only skipped" class).
"""

from __future__ import annotations

from typing import Any

from annotator.model import record_status
from annotator.store_protocol import StoreProtocol


def summarize(store: StoreProtocol, overlap: int) -> dict[str, Any]:
    """Counts over the whole store, as plain JSON-ready values.

    Keys: records, responses, submitted, skipped, overlap, complete, partial,
    untouched, answers_needed (sum over records of overlap + extra answers),
    answers_done (submitted answers counted up to each record's need),
    percent_done, users ({user: {"submitted": n, "skipped": n}}).
    """
    raw = store.stats()
    records = raw["records"]
    complete = partial = done = 0
    for _record_id, extra, submitted in raw["answers_per_record"]:
        need = overlap + extra
        done += min(submitted, need)
        status = record_status(submitted, need)
        if status == "complete":
            complete += 1
        elif status == "partial":
            partial += 1
    needed = records * overlap + sum(store.extra_answers().values())
    return {
        "records": records,
        "responses": raw["responses"],
        "submitted": raw["submitted"],
        "skipped": raw["skipped"],
        "overlap": overlap,
        "complete": complete,
        "partial": partial,
        "untouched": records - complete - partial,
        "answers_needed": needed,
        "answers_done": done,
        "percent_done": round(100.0 * done / needed, 1) if needed else 100.0,
        "users": {user: dict(counts) for user, counts in raw["users"].items()},
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
    users = summary["users"]
    if users:
        width = max(len(u) for u in users)
        lines.append(f"users        {len(users)}")
        for user, counts in sorted(users.items(), key=lambda item: (-item[1]["submitted"], item[0])):
            lines.append(f"  {user:<{width}}  {counts['submitted']:>6} submitted  {counts['skipped']:>5} skipped")
    else:
        lines.append("users        0")
    return "\n".join(lines)


__all__ = ["format_text", "summarize"]
