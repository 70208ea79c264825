"""The team goal (`GOAL`): a number of answers or of complete records, and where the team stands on it.

Plain data and arithmetic, importing nothing from the app: the settings parse
it, the projector shows the team's progress and the estimated finish, and the
annotate page shows each person's share. Unset, the goal is the whole task
(every record complete).

A person's share is their submitted answers over the answers the goal takes:
the goal itself in answers; in records, each record takes `overlap` answers.
So "your share" means the same on everyone's screen and adds up to the goal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["Goal", "GoalProgress", "goal_progress", "parse_goal"]

GoalUnit = Literal["answers", "records"]
_PATTERN = re.compile(r"\s*([0-9]{1,9})\s*(answers?|records?)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Goal:
    """`count` answers or records; `count` None: every record of the task complete."""
    count: int | None = None
    unit: GoalUnit = "records"

    def describe(self, records: int) -> str:
        """`500 answers`, `200 records complete`, `all 1000 records complete`."""
        if self.count is None:
            return f"all {records} records complete"
        return f"{self.count} answers" if self.unit == "answers" else f"{self.count} records complete"

    def target(self, records: int) -> int:
        """The goal as a number in its unit (the whole task: every record)."""
        return records if self.count is None else self.count

    def answers_for(self, records: int, overlap: int) -> int:
        """How many answers the goal takes: itself in answers, `overlap` per record in records."""
        target = self.target(records)
        return target if self.unit == "answers" else target * overlap

    def share(self, mine: int, records: int, overlap: int) -> float:
        """A person's `mine` submitted answers as a share (0..1, can pass 1) of the answers the goal takes."""
        need = self.answers_for(records, overlap)
        return mine / need if need else 0.0


def parse_goal(raw: str) -> Goal:
    """`"500 answers"`, `"200 records"` (or singular, any case); empty: the whole task. ValueError otherwise,
    with no setting name: the caller (config) names it."""
    if not raw.strip():
        return Goal()
    found = _PATTERN.fullmatch(raw)
    if found is None or int(found.group(1)) < 1:
        raise ValueError("use a whole number of at least 1 and a unit, as in '500 answers' or '200 records'")
    unit: GoalUnit = "answers" if found.group(2).lower().startswith("answer") else "records"
    return Goal(int(found.group(1)), unit)


@dataclass(frozen=True)
class GoalProgress:
    """Where the team stands on the goal, and when it gets there at the current pace."""
    text: str                   # the goal in words (Goal.describe)
    unit: GoalUnit
    target: int
    done: int                   # in the goal's unit; a team may pass its goal
    per_minute: float           # submitted answers a minute over the recent window; 0: no pace yet
    remaining_answers: int      # answers still to give to reach the goal (an estimate for records)
    finish_at: datetime | None  # naive UTC; None when reached or while there is no pace
    reached: bool
    possible: int               # the most the task can reach in this unit (its records, or answers needed)

    @property
    def percent(self) -> float:
        return round(min(100.0, 100.0 * self.done / self.target), 1) if self.target else 100.0

    @property
    def reachable(self) -> bool:
        """False when the goal is larger than the task (GOAL asks for more than the records can give)."""
        return self.target <= self.possible or self.reached


def goal_progress(goal: Goal, *, records: int, complete: int, answers: int, answers_done: int,
                  answers_needed: int, overlap: int, per_minute: float, now: datetime) -> GoalProgress:
    """Progress on `goal` from the team's counts (reports.TeamProgress) and the recent pace.

    In answers, the remaining answers are exact. In records they are estimated:
    each record still to complete takes `overlap` answers, less the answers
    already given on partly done records (which the scheduler finishes first),
    and at least one. The finish is now plus remaining / pace; with no pace yet
    there is no estimate (never a division by zero or a finish "in 10^9 minutes").
    """
    target = goal.target(records)
    if goal.unit == "answers":
        done, possible = answers, answers_needed
        remaining = max(0, target - answers)
    else:
        done, possible = complete, records
        left = max(0, target - complete)
        in_partials = max(0, answers_done - complete * overlap)
        remaining = max(left, left * overlap - in_partials)
    reached = done >= target
    finish = None
    if not reached and per_minute > 0:
        finish = now + timedelta(minutes=remaining / per_minute)
    return GoalProgress(text=goal.describe(records), unit=goal.unit, target=target, done=done,
                        per_minute=round(per_minute, 1), remaining_answers=0 if reached else remaining,
                        finish_at=finish, reached=reached, possible=possible)
