"""Gold records, warm-up and quotas (issue 17): the rules, pure.

A gold record has a known answer. Both assignment engines mix gold records
into each person's hand-outs with `gold_due` (deterministic per person, so a
replica asks the same question of shared counts and gets the same answer),
and stop a person at their quota. The service compares a gold answer with the
expected one (`GoldAnswer.matches`) to give feedback and gold accuracy.
Nothing here reads a file or a store: the caller hands over what it read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from annotator.answers import AnswerError, check_answer
from annotator.model import Answer, Record
from annotator.task import TaskSpec

__all__ = ["GoldAnswer", "GoldError", "GoldPlan", "QuotaFull", "gold_answers", "gold_due", "gold_rank", "plan_of",
           "quota_late_message", "quota_message", "visible_metadata"]


class GoldError(ValueError):
    """A gold answer does not fit the task; the message names the record and the setting to fix."""


@dataclass(frozen=True)
class GoldPlan:
    """How gold records and quotas shape one person's hand-outs (the task file's quality settings).

    rate: the share of a person's hand-outs after the warm-up that are gold (0 .. 0.5).
    warmup: each person's first hand-outs that are all gold (with feedback).
    quota: the most answers one person gives (gold answers not counted); None: no limit.
    """
    rate: float = 0.0
    warmup: int = 0
    quota: int | None = None


@dataclass(frozen=True)
class GoldAnswer:
    """The expected answer of a gold record, and the line that explains it."""
    expected: Answer
    explanation: str = ""

    def matches(self, given: Answer) -> bool:
        """Right when every question the gold answer names got its value (lists compared as sets)."""
        return all(_same(value, given.get(name)) for name, value in self.expected.items())

    def feedback(self, given: Answer) -> dict[str, Any]:
        """What the page shows after a gold answer (only then: nothing of it reaches the page before)."""
        return {"correct": self.matches(given), "expected": self.expected, "explanation": self.explanation}


def _same(expected: object, given: object) -> bool:
    if isinstance(expected, list) and isinstance(given, list):
        return set(expected) == set(given)
    return expected == given


def _phase(user: str) -> float:
    """A fixed number in [0, 1) per person: where in each stretch of 1/rate hand-outs their gold falls."""
    return int.from_bytes(hashlib.sha256(user.encode()).digest()[:4], "big") / 2 ** 32


def gold_due(plan: GoldPlan, user: str, gold: int, total: int) -> bool:
    """Whether this person's next hand-out is gold, given how many they were dealt so far.

    `gold`: gold records they answered or hold; `total`: every record they answered or hold, gold
    included. The first `warmup` are gold; after that the (b+1)-th gold comes once
    rate * (hand-outs since the warm-up + 1) + phase reaches b + 1, so the share is `rate` for
    everybody, every person's golds at other places.
    """
    if gold < plan.warmup:
        return True
    if plan.rate <= 0:
        return False
    after = max(0, total - plan.warmup)
    return gold - plan.warmup + 1 <= plan.rate * (after + 1) + _phase(user)


def gold_rank(user: str, record_id: int) -> bytes:
    """The order a person meets the gold records in: a fixed shuffle per person (the same on every engine)."""
    return hashlib.sha256(f"{user}\x00{record_id}".encode()).digest()


def visible_metadata(metadata: dict[str, Any], column: str | None) -> dict[str, Any]:
    """A record's metadata as the page may see it: without the gold answer and its explanation, for every
    record alike (a gold record looks like any other)."""
    if column is None or (column not in metadata and f"{column}_explanation" not in metadata):
        return metadata
    return {k: v for k, v in metadata.items() if k != column and k != f"{column}_explanation"}


class QuotaFull(Exception):
    """A new answer the person gives without holding the record (their lease expired, or a skip turned into
    an answer) would take them past their quota: refused, nothing stored. Every record handed out is
    counted in the quota while held, so an answer on a live lease is never refused."""


def quota_message(quota: int) -> str:
    return (f"You have given your {quota} answers — thank you! That is the most one person gives in this "
            f"task, so that many voices decide it. Others finish the rest.")


def quota_late_message(quota: int) -> str:
    """Why an answer past the quota (QuotaFull) was not kept, without blame: it came after the record's
    lease had lapsed, and the answers they gave meanwhile filled their quota."""
    return (f"You have given your {quota} answers — thank you! Your last answer came after that record was "
            f"no longer held for you, and your quota is full, so it was not needed and not saved.")


def _expected(task: TaskSpec, raw: object, where: str) -> Answer:
    """A gold value as the task's answer: a label, a list, a number, or an object by question name."""
    if isinstance(raw, str) and raw.lstrip().startswith(("{", "[")):
        try:
            raw = json.loads(raw)
        except ValueError:
            pass
    solo = task.questions[0] if len(task.questions) == 1 else None
    if not isinstance(raw, Mapping) and solo is not None and solo.kind not in ("label", "labels"):
        raw = {solo.name: raw}  # a rating's number, a text (a label question takes a name or a list as it is)
    try:
        return check_answer(task, raw)
    except AnswerError as exc:
        raise GoldError(f"{where}: the gold answer {json.dumps(raw, default=str)[:80]} does not fit the task "
                        f"({exc})") from None


def gold_answers(task: TaskSpec, records: Iterable[Record], column: str | None,
                 rows: Iterable[Mapping[str, Any]] = ()) -> dict[int, GoldAnswer]:
    """The gold records by id: from the records' `column` (metadata; empty values are no gold), and
    from `rows` of a gold file ({"key": source key, "answer": ..., "explanation": ...}).

    A value that is no answer to the task raises GoldError naming the record, so the organizer fixes
    the data before anyone is shown a wrong expected answer. A key no record has is an error too."""
    by_key: dict[str, Record] = {}
    out: dict[int, GoldAnswer] = {}
    for record in records:
        by_key[record.source_key] = record
        if column is None:
            continue
        value = record.metadata.get(column)
        if value is None or value == "" or value == []:
            continue
        where = f"gold_column {column!r} of record {record.source_key!r}"
        explanation = record.metadata.get(f"{column}_explanation", "")
        out[record.id] = GoldAnswer(_expected(task, value, where), str(explanation or ""))
    for n, row in enumerate(rows, 1):
        key = row.get("key") if isinstance(row, Mapping) else None
        if not isinstance(key, str) or key not in by_key:
            raise GoldError(f"gold_file line {n}: {json.dumps(key, default=str)[:80]} is not the key of a "
                            f"record in the source; each line is {{\"key\": ..., \"answer\": ..., "
                            f"\"explanation\": ...}} with a record's source key")
        explanation = row.get("explanation", "")
        if not isinstance(explanation, str):
            raise GoldError(f"gold_file line {n}: the explanation must be text")
        out[by_key[key].id] = GoldAnswer(_expected(task, row.get("answer"), f"gold_file line {n}"), explanation)
    return out


def plan_of(task: TaskSpec) -> GoldPlan:
    """The task file's quality settings as the assignment engines take them."""
    q = task.quality
    return GoldPlan(rate=q.gold_rate if q.has_gold else 0.0, warmup=q.warmup if q.has_gold else 0,
                    quota=q.max_answers_per_person)
