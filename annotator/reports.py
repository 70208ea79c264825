"""What the organizer's dashboard shows, computed from the store and the running parts; no Gradio.

Everyone signed in sees the team view (progress, answers over time, label
distribution, who is active); admins also see per-annotator numbers,
agreement and health. Which of the two a person gets is decided here
(`Dashboard.snapshot`), not in the view.

Cost: the team view is a few small aggregate queries, shared by every
viewer for `team_max_age` seconds. The admin view adds one query per
annotator table and, only when an answer changed since the last time, the
read of the overlapping answers that agreement is computed from. Writer,
click-latency and lease figures are read from memory.

Progress categories are disjoint, as model.record_status gives them: a record
is *complete* when its submitted answers reach the overlap plus the extra
answers asked for by a reopen, *partly done* with at least one submitted
answer but fewer, *only skipped* with no submitted answer but at least one
skip, *untouched* with neither. The dashboard alone shows the fourth class
(organizers see what people pass over); the scheduler, `annotator.stats` and
the export count only-skipped records as untouched.

Gold records (issue 17) are no work on the dataset: what their answers add
to the store's aggregates (records, answers, labels, agreement, each
person's answers) is taken back out here (`GoldTally`), and each person's
share of right gold answers is shown with the count it rests on.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from annotator import boxes, metrics
from annotator.auth import Identity, SignInLimits, SignInStatus
from annotator.backend import WorkBackend
from annotator.task import Question, TaskSpec
from annotator.export.hub import Exporter, ExportStatus
from annotator.gold import GoldAnswer
from annotator.metrics import AgreementResult, LatencyWindow
from annotator.model import Answer, AnswerValue, Record, Response, record_status, utcnow
from annotator.storage_probe import StorageReport
from annotator.store_protocol import StoreProtocol

__all__ = [
    "AdminView", "AgreementSummary", "AnnotatorStats", "Dashboard", "DashboardDeps", "ExportInfo", "Health",
    "AdminView", "AgreementSummary", "AnnotatorStats", "Dashboard", "DashboardDeps", "ExportInfo", "Health",
    "DisputedRecord", "GoldTally", "LabelAgreement", "LeaseHolder", "Snapshot", "TeamProgress", "TeamView",
    "TimelinePoint", "agreement", "gold_tally", "label_counts", "team_progress", "timeline", "EXPORT_NOT_CONFIGURED",
]

EXPORT_NOT_CONFIGURED = "export not configured: set EXPORT_REPO and HF_TOKEN"
LOW_DISK_BYTES = 512 * 1024 * 1024


# --- what the dashboard shows ----------------------------------------------------------------

@dataclass(frozen=True)
class TeamProgress:
    records: int
    complete: int
    partial: int
    skipped: int          # records with skips and no submitted answer
    untouched: int
    answers: int          # submitted answers
    skips: int
    answers_done: int     # submitted answers counted up to each record's need
    answers_needed: int   # sum over records of overlap + extra answers

    @property
    def percent_done(self) -> float:
        return round(100.0 * self.answers_done / self.answers_needed, 1) if self.answers_needed else 100.0


@dataclass(frozen=True)
class TimelinePoint:
    start: datetime       # naive UTC, start of the bucket
    submitted: int
    skipped: int


@dataclass(frozen=True)
class TeamView:
    at: datetime
    progress: TeamProgress
    timeline: tuple[TimelinePoint, ...]
    bucket_minutes: float
    # (question, label, answers) for each question of a LABELLED_KINDS kind (boxes: boxes drawn), in task
    # order: its labels in task order, then any other seen
    labels: tuple[tuple[str, str, int], ...]
    active: tuple[str, ...]               # annotators active within the active window, sorted


@dataclass(frozen=True)
class AnnotatorStats:
    user: str
    answers: int
    skips: int
    median_seconds: float | None          # median time per submitted answer
    # question -> share of compared records matching the others' consensus (not for text questions)
    agreement: dict[str, float | None]
    compared: dict[str, int]              # question -> records where others answered it too
    last_active: datetime | None          # naive UTC
    active: bool
    leases: int
    gold_accuracy: float | None = None    # share of their submitted gold answers that were right (issue 17)
    gold_answers: int = 0                 # how many that share rests on


@dataclass(frozen=True)
class LabelAgreement:
    label: str
    alpha: AgreementResult
    fleiss: AgreementResult


@dataclass(frozen=True)
class DisputedRecord:
    """A record of a boxes question that people disagree on: what each drew, and the consensus.

    `f1` is the mean F1 of its pairs of answers; `width`/`height` the image's pixels the boxes are in.
    """
    record_id: int
    f1: float
    width: int
    height: int
    drawn: tuple[tuple[str, tuple[dict[str, Any], ...]], ...]  # (user, boxes), by user
    consensus: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class AgreementSummary:
    """Agreement on one question over records with at least two submitted answers to it.

    label: nominal Krippendorff alpha and Fleiss kappa (kappa only when every
    such record has the same number of answers, else its value is None and
    `equal_answers` is False). labels: both per label, each label read as
    present/absent. rating: ordinal alpha (4 against 5 disagrees less than 1
    against 5). text: no agreement; `n_records`/`n_answers` count every
    record and answer that has one, and `mean_chars` their mean length.
    boxes: `mean_f1`, the mean over records of their pairs' F1 (annotator.boxes);
    `consensus_boxes`, the boxes a majority drew, per label; `disputed`, the
    records with the lowest F1, lowest first.
    """
    question: str
    kind: str
    n_records: int
    n_answers: int
    equal_answers: bool
    alpha: AgreementResult | None
    fleiss: AgreementResult | None
    per_label: tuple[LabelAgreement, ...]
    mean_chars: float | None = None
    mean_f1: float | None = None
    consensus_boxes: tuple[tuple[str, int], ...] = ()
    disputed: tuple[DisputedRecord, ...] = ()


@dataclass(frozen=True)
class LeaseHolder:
    user: str
    on_screen: int | None          # the record on their screen (hard lease)
    buffered: tuple[int, ...]      # records in their prefetch buffer (soft leases)


@dataclass(frozen=True)
class ExportInfo:
    repo: str
    state: str
    last_result: str | None
    last_error: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    next_run_at: datetime | None
    commit_url: str | None
    progress: float | None             # share of rows done while building or uploading


@dataclass(frozen=True)
class Health:
    queue_depth: int
    commits: int
    commit_p50_ms: float | None
    commit_p99_ms: float | None
    failed_commits: int
    writer_retrying: bool
    writer_error: str | None
    click_p50_ms: float | None
    click_p99_ms: float | None
    clicks: int                              # click samples behind the percentiles
    leases: tuple[LeaseHolder, ...]
    data_dir: str
    persistent: bool | None                  # None: not measured
    storage: tuple[str, ...]                 # what the storage probe measured at start, as lines
    storage_recommendation: str | None
    free_bytes: int | None
    total_bytes: int | None
    export: ExportInfo | None                # None: export not configured
    warnings: tuple[str, ...]
    sign_ins: SignInStatus | None = None     # password mode only: failed and refused sign-ins


@dataclass(frozen=True)
class AdminView:
    annotators: tuple[AnnotatorStats, ...]
    agreement: tuple[AgreementSummary, ...]  # one per question, in task order
    health: Health


@dataclass(frozen=True)
class Snapshot:
    """What one person may see right now; `admin` is None for everyone but admins."""
    at: datetime
    team: TeamView
    admin: AdminView | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types only (datetimes as ISO strings, naive UTC)."""
        out = {"at": self.at, "team": self.team}
        if self.admin is not None:
            out.update(annotators=self.admin.annotators, agreement=self.admin.agreement, health=self.admin.health)
        out = _jsonable(out)
        out["team"]["progress"]["percent_done"] = self.team.progress.percent_done
        return out


# --- pure aggregation ------------------------------------------------------------------------

def team_progress(groups: Iterable[tuple[int, int, int, int]], overlap: int) -> TeamProgress:
    """Progress from (extra_answers, submitted, skipped, records) groups (`Store.dashboard_record_groups`)."""
    records = answers = skips = done = needed = 0
    by_status: Counter[str] = Counter()
    for extra, n_submitted, n_skipped, n in groups:
        need = overlap + extra
        records += n
        answers += n_submitted * n
        skips += n_skipped * n
        needed += need * n
        done += min(n_submitted, need) * n
        by_status[record_status(n_submitted, need, n_skipped)] += n
    return TeamProgress(records, by_status["complete"], by_status["partial"], by_status["skipped"],
                        by_status["untouched"], answers, skips, done, needed)


def timeline(rows: Iterable[tuple[datetime, str, int]], bucket: timedelta, until: datetime,
             since: datetime | None = None) -> tuple[TimelinePoint, ...]:
    """Answers per bucket from (bucket start, status, n) rows (`Store.dashboard_timeline`).

    Every bucket from the one before the first answer (when that is not
    before `since`, where the rows stop) to `until`'s is included, so a quiet
    stretch shows as zero rather than as a line between two busy ones, and a
    single busy bucket still draws a line.
    """
    counts: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for start, status, n in rows:
        counts[start][0 if status == "submitted" else 1] += n
    if not counts:
        return ()
    step = bucket.total_seconds()
    first = min(counts)
    last = max(max(counts), first + timedelta(seconds=((until - first).total_seconds() // step) * step))
    t = first - bucket if since is None or first - bucket >= since else first
    points = []
    while t <= last:
        submitted, skipped = counts.get(t, (0, 0))
        points.append(TimelinePoint(t, submitted, skipped))
        t += bucket
    return tuple(points)


def agreement(rows: Iterable[tuple[int, str, Answer]], questions: Sequence[Question],
              texts: Iterable[tuple[str, int, int, float | None]] = (), *, box_iou: float = boxes.DEFAULT_IOU
              ) -> tuple[tuple[AgreementSummary, ...], dict[str, dict[str, AgreementResult]]]:
    """Per question, in task order: its agreement summary, and each annotator's agreement with the others'
    consensus (question -> user -> result; text questions have none).

    `rows` are (record_id, user, answer) of submitted answers; per question,
    records with fewer than two answers to it are left out (a question left
    open is no answer). An annotator agrees with the others when their label
    is the others' majority label (label), their whole label set the others'
    most frequent set (labels), their rating at the others' median (rating);
    for boxes, an annotator's value is their F1 against the others (boxes
    matched at IoU >= `box_iou`). `texts` are (question, records, answers, mean length) of the text
    questions (`StoreProtocol.dashboard_text_lengths`).
    """
    by_question: dict[str, dict[int, dict[str, AnswerValue]]] = {q.name: defaultdict(dict) for q in questions}
    for rid, user, answer in rows:
        for name, value in answer.items():
            if name in by_question:
                by_question[name][rid][user] = value
    text_stats = {name: (records, answers, mean) for name, records, answers, mean in texts}
    summaries, per_user = [], {}
    for q in questions:
        if q.kind == "text":
            records, answers, mean = text_stats.get(q.name, (0, 0, None))
            summaries.append(AgreementSummary(q.name, q.kind, records, answers, True, None, None, (), mean))
            continue
        by_record = {rid: a for rid, a in by_question[q.name].items() if len(a) >= 2}
        if q.kind == "boxes":
            summary, per_user[q.name] = _box_agreement(q, by_record, box_iou)
        else:
            summary, per_user[q.name] = _question_agreement(q, by_record)
        summaries.append(summary)
    return tuple(summaries), per_user


def _question_agreement(q: Question, by_record: dict[int, dict[str, Any]]
                        ) -> tuple[AgreementSummary, dict[str, AgreementResult]]:
    """One label, labels or rating question's agreement over records with two answers or more (user -> the
    question's value: a label, a list of labels or a rating, as the question's kind says)."""
    sizes = {len(answers) for answers in by_record.values()}
    n_answers = sum(len(answers) for answers in by_record.values())
    alpha = fleiss = None
    per_label: tuple[LabelAgreement, ...] = ()
    if q.kind == "labels":
        sets = {rid: [frozenset(a) for a in answers.values()] for rid, answers in by_record.items()}
        alphas = metrics.krippendorff_alpha_multilabel(sets, q.label_names)
        per_label = tuple(
            LabelAgreement(label, alphas[label],
                           metrics.fleiss_kappa({rid: [label in s for s in ss] for rid, ss in sets.items()}))
            for label in alphas)
        votes = {rid: {user: "+".join(sorted(a)) for user, a in answers.items()}
                 for rid, answers in by_record.items()}
        per_user = metrics.annotator_agreement(votes)
    elif q.kind == "rating":
        alpha = metrics.krippendorff_alpha_ordinal({rid: list(a.values()) for rid, a in by_record.items()})
        per_user = metrics.annotator_agreement_ordinal(by_record)
    else:
        units = {rid: list(answers.values()) for rid, answers in by_record.items()}
        alpha = metrics.krippendorff_alpha_nominal(units)
        fleiss = metrics.fleiss_kappa(units)
        per_user = metrics.annotator_agreement(by_record)
    summary = AgreementSummary(question=q.name, kind=q.kind, n_records=len(by_record), n_answers=n_answers,
                               equal_answers=len(sizes) <= 1, alpha=alpha, fleiss=fleiss, per_label=per_label)
    return summary, per_user


# records the dashboard's gallery of disagreements shows per boxes question
DISPUTED_SHOWN = 6


def _box_agreement(q: Question, by_record: dict[int, dict[str, Any]], threshold: float
                   ) -> tuple[AgreementSummary, dict[str, AgreementResult]]:
    """A boxes question's agreement over records with two answers or more: mean F1, each annotator's F1
    against the others, the consensus boxes per label, and the records people disagree on most (sizes
    0 until the caller fills them in)."""
    scored = []
    consensus_labels: Counter[str] = Counter()
    for rid, answers in by_record.items():
        ordered = sorted(answers.items())
        f1 = boxes.record_f1([a for _, a in ordered], threshold)
        agreed = boxes.consensus([a for _, a in ordered], threshold)
        consensus_labels.update(box["label"] for box in agreed)
        scored.append((f1, rid, ordered, agreed))
    per_f1 = boxes.annotator_f1(by_record, threshold)
    compared = Counter(user for answers in by_record.values() for user in answers)
    per_user = {user: AgreementResult(value, compared[user], compared[user]) for user, value in per_f1.items()}
    scored.sort(key=lambda item: (item[0], item[1]))
    disputed = tuple(DisputedRecord(rid, f1, 0, 0, tuple((u, tuple(a)) for u, a in ordered), tuple(agreed))
                     for f1, rid, ordered, agreed in scored[:DISPUTED_SHOWN] if f1 is not None and f1 < 1.0)
    names = list(dict.fromkeys((*q.label_names, *sorted(consensus_labels))))
    summary = AgreementSummary(
        question=q.name, kind=q.kind, n_records=len(by_record),
        n_answers=sum(len(a) for a in by_record.values()), equal_answers=True, alpha=None, fleiss=None,
        per_label=(), mean_f1=sum(f for f, *_ in scored) / len(scored) if scored else None,
        consensus_boxes=tuple((n, consensus_labels[n]) for n in names), disputed=disputed)
    return summary, per_user


LABELLED_KINDS = ("label", "labels", "preference", "boxes")  # the questions the label chart counts


def labels_in(value: Any) -> Iterator[str]:
    """The labels an answer's value carries, as the label chart counts them: a label, each of a list of
    labels, each box's label (the store's `dashboard_label_counts` reads them alike)."""
    for item in value if isinstance(value, list) else [value]:
        label = item.get("label") if isinstance(item, dict) else item
        if isinstance(label, str):
            yield label


def label_counts(questions: Sequence[Question], rows: Iterable[tuple[str, str, int]]
                 ) -> tuple[tuple[str, str, int], ...]:
    """(question, label, answers) from `StoreProtocol.dashboard_label_counts`: each question of a
    LABELLED_KINDS kind in task order, its labels in task order (unused ones at 0), then any other label
    seen, sorted. A boxes question counts boxes: an answer of three cats counts three."""
    seen: dict[str, dict[str, int]] = defaultdict(dict)
    for question, label, n in rows:
        seen[question][label] = n
    out: list[tuple[str, str, int]] = []
    for q in questions:
        if q.kind in LABELLED_KINDS:
            counts = seen.get(q.name, {})
            out += [(q.name, name, counts.pop(name, 0)) for name in q.label_names]
            out += [(q.name, name, n) for name, n in sorted(counts.items())]
    return tuple(out)


@dataclass(frozen=True)
class GoldTally:
    """What answers to gold records add to the store's aggregates (to take back out), and gold accuracy."""
    accuracy: dict[str, AgreementResult]          # user -> right / submitted gold answers (n_records: how many)
    answers: Counter[str]                         # user -> submitted gold answers
    skips: Counter[str]                           # user -> skipped gold records
    groups: Counter[tuple[int, int, int]]         # (extra_answers, submitted, skipped) -> gold records
    labels: Counter[tuple[str, str]]              # (question, label) -> answers on gold records
    right: Counter[str]                           # user -> right gold answers


def gold_tally(gold: Mapping[int, GoldAnswer], records: Mapping[int, Record],
               responses: Mapping[int, Sequence[Response]]) -> GoldTally:
    """Tally the answers to each gold record (`responses` by record id; `records` for their extra answers)."""
    right: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    skips: Counter[str] = Counter()
    groups: Counter[tuple[int, int, int]] = Counter()
    labels: Counter[tuple[str, str]] = Counter()
    for rid, expected in gold.items():
        rows = responses.get(rid, ())
        submitted = [r for r in rows if r.status == "submitted"]
        for r in submitted:
            answers[r.user_id] += 1
            right[r.user_id] += expected.matches(r.answer)
            for question, value in r.answer.items():
                for label in labels_in(value):
                    labels[(question, label)] += 1
        for r in rows:
            if r.status == "skipped":
                skips[r.user_id] += 1
        record = records.get(rid)
        if record is not None:
            groups[(record.extra_answers, len(submitted), len(rows) - len(submitted))] += 1
    accuracy = {u: AgreementResult(right[u] / n, n, n) for u, n in answers.items()}
    return GoldTally(accuracy, answers, skips, groups, labels, right)


_NO_GOLD = GoldTally({}, Counter(), Counter(), Counter(), Counter(), Counter())


# --- the reader ------------------------------------------------------------------------------

@dataclass(frozen=True)
class DashboardDeps:
    """What the dashboard reads, handed over by the composition root (`Runtime.dashboard_deps`)."""
    store: StoreProtocol                      # the aggregate queries
    task: TaskSpec
    backend: WorkBackend                 # leases and the writer's health, from memory
    click_latency: LatencyWindow         # the service's click handling times
    data_dir: Path
    storage: StorageReport | None        # the storage probe's report at start; None: not measured
    exporter: Exporter | None            # None when EXPORT_REPO is unset
    sign_in_limits: SignInLimits | None  # password mode only
    box_iou: float = boxes.DEFAULT_IOU    # BOX_IOU: when two people's boxes are the same object
    gold: Mapping[int, GoldAnswer] = dataclasses.field(default_factory=dict)  # the gold records (issue 17)


class Dashboard:
    """Reads the dashboard from `deps` (see DashboardDeps).

    Args:
        deps: the store, backend and running parts it reads.
        team_max_age: seconds a team view is shared between viewers (default 5).
        active_window: activity this recent counts as "active now" (default 5 minutes).
        bucket: width of a timeline bucket (default 5 minutes).
        span: how far back the timeline goes (default 12 hours).

    Thread-safe; every method reads, none writes.

        board = Dashboard(runtime.dashboard_deps())
        snap = board.snapshot(runtime.access.identify(None, "ann"))
        snap.team.progress.complete, snap.admin   # None unless ann is an admin
    """

    def __init__(self, deps: DashboardDeps, *, team_max_age: float = 5.0,
                 active_window: timedelta = timedelta(minutes=5), bucket: timedelta = timedelta(minutes=5),
                 span: timedelta = timedelta(hours=12)) -> None:
        self.deps = deps
        self.team_max_age = team_max_age
        self.active_window = active_window
        self.bucket = bucket
        self.span = span
        self._lock = threading.Lock()
        self._team: tuple[float, TeamView, list[tuple]] | None = None
        self._agreement: tuple[tuple, tuple[AgreementSummary, ...], dict[str, dict[str, AgreementResult]]] | None = None
        self._gold: tuple[tuple, GoldTally] | None = None

    def snapshot(self, who: Identity) -> Snapshot:
        """The team view for everyone; per-annotator, agreement and health only for admins."""
        team, users = self._team_view()
        admin = self._admin_view(team, users) if who.is_admin else None
        return Snapshot(at=team.at, team=team, admin=admin)

    # --- for the projector (annotator/projector.py) ---
    def team(self) -> TeamView:
        """The team view everyone signed in may see, shared for `team_max_age` seconds."""
        return self._team_view()[0]

    def annotator_agreement(self) -> dict[str, AgreementResult]:
        """Each annotator's agreement with the others (the admin view's columns) pooled over the task's
        questions, for the leaderboard's weights: a compared record counts once per question, and the
        value is the share of those comparisons that agreed. Recomputed only when an answer changed."""
        pooled: dict[str, list[float]] = {}
        for results in self._agreement_now()[1].values():
            for user, r in results.items():
                if r.value is None or not r.n_records:
                    continue
                agreed, records, answers = pooled.setdefault(user, [0.0, 0, 0])
                pooled[user] = [agreed + r.value * r.n_records, records + r.n_records, answers + r.n_answers]
        return {user: AgreementResult(agreed / records, int(records), int(answers))
                for user, (agreed, records, answers) in pooled.items()}

    def gold(self) -> GoldTally:
        """Gold accuracy per person, and what gold answers add to the store's counts; re-read only when an
        answer changed (one read of each gold record's answers)."""
        gold = self.deps.gold
        if not gold:
            return _NO_GOLD
        store = self.deps.store
        version = store.dashboard_answers_version()
        with self._lock:
            if self._gold is not None and self._gold[0] == version:
                return self._gold[1]
        ids = list(gold)
        tally = gold_tally(gold, store.records(ids), {rid: store.record_responses(rid) for rid in ids})
        with self._lock:
            self._gold = (version, tally)
        return tally
    # --- end projector ---

    # --- internals -------------------------------------------------------------------------

    def _team_view(self) -> tuple[TeamView, list[tuple]]:
        gold = self.gold()  # before the lock: it takes the lock itself
        with self._lock:
            cached = self._team
            if cached is not None and time.monotonic() - cached[0] < self.team_max_age:
                return cached[1], cached[2]
            store, task = self.deps.store, self.deps.task
            now = utcnow()
            progress = team_progress(_less(store.dashboard_record_groups(), gold.groups), task.overlap)
            since = now - self.span
            points = timeline(store.dashboard_timeline(since, int(self.bucket.total_seconds()), list(self.deps.gold)),
                              self.bucket, now, since)
            labels = label_counts(task.questions, [
                (q, label, n - gold.labels[(q, label)]) for q, label, n in store.dashboard_label_counts(
                    [q.name for q in task.questions if q.kind in LABELLED_KINDS])])
            users = [(u, n - gold.answers[u], k - gold.skips[u], *rest) for u, n, k, *rest in store.dashboard_users()]
            holders = set(self.deps.backend.leases())
            cutoff = now - self.active_window
            active = tuple(sorted({u for u, *_rest, last in users if last is not None and last >= cutoff} | holders))
            view = TeamView(at=now, progress=progress, timeline=points, bucket_minutes=self.bucket.total_seconds() / 60,
                            labels=labels, active=active)
            self._team = (time.monotonic(), view, users)
            return view, users

    def _agreement_now(self) -> tuple[tuple[AgreementSummary, ...], dict[str, dict[str, AgreementResult]]]:
        store, task = self.deps.store, self.deps.task
        version = store.dashboard_answers_version()
        with self._lock:
            if self._agreement is not None and self._agreement[0] == version:
                return self._agreement[1], self._agreement[2]
        texts = [q.name for q in task.questions if q.kind == "text"]
        gold = self.deps.gold
        summary, per_user = agreement([row for row in store.dashboard_overlapping_answers() if row[0] not in gold],
                                      task.questions, store.dashboard_text_lengths(texts) if texts else (),
                                      box_iou=self.deps.box_iou)
        summary = self._with_sizes(summary)
        with self._lock:
            self._agreement = (version, summary, per_user)
        return summary, per_user

    def _with_sizes(self, summaries: tuple[AgreementSummary, ...]) -> tuple[AgreementSummary, ...]:
        """The disputed records' image sizes, which the gallery draws their boxes in (one read of a few)."""
        ids = [d.record_id for s in summaries for d in s.disputed]
        if not ids:
            return summaries
        found = self.deps.store.records(ids)
        return tuple(dataclasses.replace(s, disputed=tuple(
            dataclasses.replace(d, width=found[d.record_id].width, height=found[d.record_id].height)
            for d in s.disputed if d.record_id in found)) for s in summaries)

    def _admin_view(self, team: TeamView, users: list[tuple]) -> AdminView:
        summary, per_user = self._agreement_now()
        gold = self.gold().accuracy
        leases = self.deps.backend.leases()
        rows = []
        for user, answers, skips, median_ms, last in users:
            mine = {q: results[user] for q, results in per_user.items() if user in results}
            rows.append(AnnotatorStats(
                user=user, answers=answers, skips=skips,
                median_seconds=None if median_ms is None else round(median_ms / 1000.0, 2),
                agreement={q: mine[q].value if q in mine else None for q in per_user},
                compared={q: mine[q].n_records if q in mine else 0 for q in per_user},
                last_active=last, active=user in team.active or user in leases, leases=len(leases.get(user, ())),
                gold_accuracy=gold[user].value if user in gold else None,
                gold_answers=gold[user].n_records if user in gold else 0))
        known = {r.user for r in rows}
        rows += [AnnotatorStats(user, 0, 0, None, dict.fromkeys(per_user), dict.fromkeys(per_user, 0), None, True,
                                len(held))
                 for user, held in leases.items() if user not in known]
        rows.sort(key=lambda r: (-r.answers, r.user))
        return AdminView(annotators=tuple(rows), agreement=summary, health=self._health(leases))

    def _health(self, leases: dict[str, list[tuple[int, str]]]) -> Health:
        deps = self.deps
        writer = deps.backend.writer_health()
        clicks = deps.click_latency
        click = clicks.percentiles((50, 99))
        holders = tuple(LeaseHolder(user, next((r for r, kind in held if kind == "hard"), None),
                                    tuple(r for r, kind in held if kind != "hard"))
                        for user, held in sorted(leases.items()))
        data_dir = deps.data_dir
        try:
            usage = shutil.disk_usage(data_dir)
            free, total = usage.free, usage.total
        except OSError:
            free = total = None
        report = deps.storage
        persistent, facts, recommendation = _storage_facts(report)
        exporter = deps.exporter
        export = _export_info(exporter.status()) if exporter is not None else None

        warnings = []
        if writer.retrying:
            warnings.append(f"Storage is failing: {writer.queue_depth} write(s) wait in memory and are retried "
                            f"({writer.last_error or 'no error text'}). Nothing is lost while the app runs.")
        if exporter is None and persistent is False:
            warnings.append(f"DATA_DIR={data_dir} is NOT persistent and export is not configured: every answer "
                            f"is lost when the Space restarts. Set EXPORT_REPO and HF_TOKEN, or attach "
                            f"persistent storage.")
        elif exporter is None and persistent is None:
            how = "was not measured" if report is None else "may not survive a restart"
            warnings.append(f"Nothing shows that answers survive a restart: DATA_DIR={data_dir} {how} and export "
                            f"is not configured (set EXPORT_REPO and HF_TOKEN).")
        if free is not None and free < LOW_DISK_BYTES:
            warnings.append(f"Only {free / 2**20:.0f} MB free on DATA_DIR={data_dir}.")
        sign_ins = deps.sign_in_limits.status() if deps.sign_in_limits is not None else None
        if sign_ins is not None and (sign_ins.limited_addresses or sign_ins.limited_names):
            warnings.append(f"Sign-in is limited after repeated failed attempts: "
                            f"{len(sign_ins.limited_addresses)} address(es), {len(sign_ins.limited_names)} user "
                            f"name(s). Someone may be guessing passwords; details under Health, sign-ins.")
        if export is not None and export.last_result == "failed":
            warnings.append(f"The last export to {export.repo} failed: {export.last_error or 'no error text'}.")
        return Health(
            queue_depth=writer.queue_depth, commits=writer.commits,
            commit_p50_ms=_ms(writer.commit_latency.get("p50")), commit_p99_ms=_ms(writer.commit_latency.get("p99")),
            failed_commits=writer.failed_commits, writer_retrying=writer.retrying, writer_error=writer.last_error,
            click_p50_ms=_ms(click["p50"]), click_p99_ms=_ms(click["p99"]), clicks=clicks.count,
            leases=holders, data_dir=str(data_dir), persistent=persistent, storage=facts,
            storage_recommendation=recommendation, free_bytes=free, total_bytes=total, export=export,
            warnings=tuple(warnings), sign_ins=sign_ins)


def _less(groups: Iterable[tuple[int, int, int, int]], gold: Counter[tuple[int, int, int]]
          ) -> list[tuple[int, int, int, int]]:
    """The store's (extra, submitted, skipped, records) groups without the gold records' share."""
    return [(e, s, k, n - gold[(e, s, k)]) for e, s, k, n in groups if n > gold[(e, s, k)]]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _storage_facts(report: StorageReport | None) -> tuple[bool | None, tuple[str, ...], str | None]:
    """(persistent, what was measured as lines, recommendation) from the storage probe's report."""
    if report is None:
        return None, (), None
    lines = tuple(line for line in report.lines() if line != report.recommendation)
    return report.persistent, lines, report.recommendation


def _export_info(status: ExportStatus) -> ExportInfo:
    return ExportInfo(repo=status.repo or "", state=status.state or "unknown", last_result=status.last_result,
                      last_error=status.last_error, last_attempt_at=status.last_attempt_at,
                      last_success_at=status.last_success_at, next_run_at=status.next_run_at,
                      commit_url=status.commit_url, progress=status.progress)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
