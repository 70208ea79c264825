"""What the room's screen shows: the team goal, the pace, the labels and the opt-in leaderboard; no Gradio.

One computation serves every screen: `Projector.payload()` builds the view
from the store at most once per `max_age` seconds (the page's refresh) under
a lock and hands every caller the same JSON bytes, so five projectors cost
what one does. Everything is read from the store (the team counts, the answers of the
last minutes, the per-annotator agreement, the names), never from this
process's memory, so every PostgreSQL replica shows the same screen.

The leaderboard (`LEADERBOARD=on|anonymous`, off by default; recomputed at
most every LEADERBOARD_MAX_AGE_S, as agreement reads every overlapping
answer) ranks by answers weighted by agreement with the others' majority,
never by speed or volume alone. The weight is the person's agreement rate shrunk towards the team's
(`PRIOR_RECORDS` records of the team's rate are added to their own), so a
lucky first match is not a perfect score; only people with at least one
answer compared with someone else's are ranked. With overlap 1 nobody is
ever compared, and the screen says why the board is empty. With overlap 2
the others' majority is one person, so a disagreeing pair both lose: gold
records are what can tell who was right, so when the task has gold records
(issue 17) the weight is the person's gold accuracy instead (shrunk the same
way towards the team's), and gold answers are not counted as answers.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Mapping

from annotator.config import LeaderboardMode
from annotator.goal import Goal, GoalProgress, goal_progress
from annotator.metrics import AgreementResult
from annotator.nicknames import Nicknames
from annotator.reports import Dashboard, DashboardDeps, TimelinePoint

__all__ = ["HOW_RANKED", "HOW_RANKED_GOLD", "Leaderboard", "Projector", "ProjectorView", "Standing", "pace", "rank"]

PACE_WINDOW = timedelta(minutes=10)   # answers a minute: over this much of the recent past
SHOWN_MINUTES = 15                    # minutes drawn in the pace chart
PRIOR_RECORDS = 5                     # how many records of the team's agreement rate a person starts with
# The ranking needs every overlapping answer (agreement), which grows with the workshop; standings move
# slowly, so it is recomputed at most this often while the goal and the pace follow every `max_age`.
LEADERBOARD_MAX_AGE_S = 30.0
LEADERBOARD_SIZE = 10
HOW_RANKED = ("Ranked by answers × agreement with the others' majority (each person's rate shrunk towards the "
              "team's until enough of their answers are compared), never by speed.")
HOW_RANKED_GOLD = ("Ranked by answers × accuracy on the practice images with a known answer (each person's rate "
                   "shrunk towards the team's until they answered enough of them), never by speed.")


@dataclass(frozen=True)
class Standing:
    rank: int
    name: str                  # a nickname or "Annotator N" (annotator.nicknames), never an unchosen user name
    answers: int
    agreement: float | None    # their own rate (0..1) over `compared` records
    compared: int
    score: float               # answers × weight


@dataclass(frozen=True)
class Leaderboard:
    standings: tuple[Standing, ...]
    unranked: int              # people with answers none of which was compared yet
    how: str = HOW_RANKED


@dataclass(frozen=True)
class ProjectorView:
    at: datetime                          # naive UTC
    title: str
    goal: GoalProgress
    minutes: tuple[tuple[datetime, int], ...]  # submitted answers per minute, the last SHOWN_MINUTES
    labels: tuple[tuple[str, str, int], ...]  # (question's title, label, answers) as the dashboard counts them
    active: int
    leaderboard: Leaderboard | None       # None: LEADERBOARD=off
    refresh_seconds: float

    def as_json(self) -> bytes:
        """The page's JSON: times as ISO UTC with a Z, so the browser shows them in the viewer's zone."""
        def when(at: datetime | None) -> str | None:
            return None if at is None else at.isoformat(timespec="seconds") + "Z"

        goal = asdict(self.goal)
        goal.update(finish_at=when(self.goal.finish_at), percent=self.goal.percent, reachable=self.goal.reachable)
        board = None
        if self.leaderboard is not None:
            board = {"how": self.leaderboard.how, "unranked": self.leaderboard.unranked,
                     "rows": [{"rank": s.rank, "name": s.name, "answers": s.answers, "compared": s.compared,
                               "agreement": None if s.agreement is None else round(100 * s.agreement),
                               "score": round(s.score, 1)} for s in self.leaderboard.standings]}
        body: dict[str, Any] = {
            "at": when(self.at), "title": self.title, "goal": goal,
            "minutes": [[when(t), n] for t, n in self.minutes], "labels": [list(p) for p in self.labels],
            "active": self.active, "leaderboard": board, "refresh_seconds": self.refresh_seconds}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def pace(points: tuple[TimelinePoint, ...], now: datetime, window: timedelta = PACE_WINDOW) -> float:
    """Submitted answers a minute over the last `window`, or since the first answer when that is later
    (a team that started two minutes ago is not averaged over ten). 0.0: no answer in the window."""
    start = now - window
    recent = [p for p in points if p.start + timedelta(minutes=1) > start and p.submitted]
    if not recent:
        return 0.0
    since = max(start, min(p.start for p in recent))
    minutes = max(1.0, (now - since).total_seconds() / 60)
    return sum(p.submitted for p in recent) / minutes


def rank(answers: Mapping[str, int], agreement: Mapping[str, AgreementResult], names: Mapping[str, str],
         size: int = LEADERBOARD_SIZE, prior_records: int = PRIOR_RECORDS) -> Leaderboard:
    """The top `size` by answers × weight, weight = (agreed + prior·team rate) / (compared + prior).

    `answers`: submitted answers per user; `agreement`: reports' per-annotator agreement; `names`: what
    to show (annotator.nicknames; a user missing there is shown as a number, never by user name).
    """
    agreed = {u: r.value * r.n_records for u, r in agreement.items() if r.value is not None and r.n_records}
    compared = {u: agreement[u].n_records for u in agreed}
    total = sum(compared.values())
    team_rate = sum(agreed.values()) / total if total else 0.0
    scored = []
    for user, n in answers.items():
        if n <= 0 or user not in compared:
            continue
        weight = (agreed[user] + prior_records * team_rate) / (compared[user] + prior_records)
        scored.append((n * weight, agreed[user] / compared[user], user, n))
    scored.sort(key=lambda s: (-s[0], -s[1], names.get(s[2], "")))
    unranked = sum(1 for u, n in answers.items() if n > 0 and u not in compared)
    standings = tuple(Standing(i, names.get(user) or "Annotator ?", n, rate, compared[user], score)
                      for i, (score, rate, user, n) in enumerate(scored[:size], start=1))
    return Leaderboard(standings, unranked)


class Projector:
    """The room's screen, computed at most once per `max_age` seconds and shared by every viewer.

    Args:
        deps: what the dashboard reads (its own `Dashboard`, with one-minute buckets over the last
            half hour, not the dashboard tab's five-minute ones).
        goal: the GOAL setting.
        mode: the LEADERBOARD setting.
        nicknames: the names the leaderboard shows.
        max_age: seconds one computation is served (and the page's refresh interval).

    Thread-safe: concurrent callers during a recomputation wait for it and get its result.

        projector = Projector(runtime.dashboard_deps(), settings.goal, settings.leaderboard, nicknames)
        projector.payload()   # JSON bytes, the same for every signed-in viewer
    """

    def __init__(self, deps: DashboardDeps, goal: Goal, mode: LeaderboardMode, nicknames: Nicknames, *,
                 max_age: float = 10.0) -> None:
        self.deps, self.goal, self.mode, self.nicknames, self.max_age = deps, goal, mode, nicknames, max_age
        self.board = Dashboard(deps, team_max_age=max_age, bucket=timedelta(minutes=1),
                               span=timedelta(minutes=max(SHOWN_MINUTES, PACE_WINDOW.total_seconds() / 60) + 1))
        self._lock = threading.Lock()
        self._cached: tuple[float, ProjectorView, bytes] | None = None
        # (when, answers by user, their weights, how ranked): what the ranking rests on
        self._ranked: tuple[float, dict[str, int], Mapping[str, AgreementResult], str] | None = None

    def view(self) -> ProjectorView:
        return self._current()[0]

    def payload(self) -> bytes:
        """The view as the page's JSON; one computation per `max_age` whoever asks."""
        return self._current()[1]

    def _current(self) -> tuple[ProjectorView, bytes]:
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.max_age:
                return self._cached[1], self._cached[2]
            view = self._compute()
            self._cached = (time.monotonic(), view, view.as_json())
            return view, self._cached[2]

    def _compute(self) -> ProjectorView:
        team = self.board.team()
        p, task = team.progress, self.deps.task
        per_minute = pace(team.timeline, team.at)
        goal = goal_progress(self.goal, records=p.records, complete=p.complete, answers=p.answers,
                             answers_done=p.answers_done, answers_needed=p.answers_needed, overlap=task.overlap,
                             per_minute=per_minute, now=team.at)
        shown_from = team.at - timedelta(minutes=SHOWN_MINUTES)
        minutes = tuple((pt.start, pt.submitted) for pt in team.timeline if pt.start > shown_from)
        titles = {q.name: q.title for q in task.questions}
        labels = tuple((titles.get(q, q), label, n) for q, label, n in team.labels)
        return ProjectorView(at=team.at, title=task.title, goal=goal, minutes=minutes, labels=labels,
                             active=len(team.active), leaderboard=self._leaderboard(),
                             refresh_seconds=self.max_age)

    def _leaderboard(self) -> Leaderboard | None:
        """The ranking (called under the lock); None: off. What it rests on (answers, agreement or gold
        accuracy) is recomputed at most every LEADERBOARD_MAX_AGE_S; the names at every computation, so a
        nickname an admin cleared leaves the screen at its next refresh."""
        if self.mode == "off":
            return None
        if self._ranked is None or time.monotonic() - self._ranked[0] >= LEADERBOARD_MAX_AGE_S:
            answers = {user: n for user, n, *_ in self.deps.store.dashboard_users()}
            if self.deps.gold:  # gold accuracy tells who was right; gold answers are no work on the dataset
                gold = self.board.gold()
                answers = {user: n - gold.answers[user] for user, n in answers.items()}
                self._ranked = (time.monotonic(), answers, gold.accuracy, HOW_RANKED_GOLD)
            else:
                self._ranked = (time.monotonic(), answers, self.board.annotator_agreement(), HOW_RANKED)
        _, answers, weights, how = self._ranked
        return replace(rank(answers, weights, self.nicknames.names()), how=how)
