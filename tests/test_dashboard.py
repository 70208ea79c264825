"""The dashboard's numbers and the admin actions, on a Runtime over a store filled with known answers.

Agreement values are worked by hand below (Krippendorff 2011's coincidence
formula, Fleiss 1971), and checked against the dashboard, which reads them
from the store.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest

from annotator import admin_actions
from annotator.auth import AuthError, Identity
from annotator.config import load_settings
from annotator.engine import open_store
from annotator.model import NewRecord, ReopenWrite, ResponseWrite, utcnow
from annotator.reports import EXPORT_NOT_CONFIGURED, Dashboard, agreement, team_progress, timeline
from annotator.task import Label, Question, classification_task
from annotator.runtime import Runtime
from annotator.service import InputError
from annotator.store import Store

BOSS = Identity("boss", is_admin=True)
ANN = Identity("ann", is_admin=False)

SINGLE = """title = "t"
question = "q"
kind = "%s"
overlap = 2
[[labels]]
name = "cat"
[[labels]]
name = "dog"
[[labels]]
name = "bird"
"""


def settings_for(tmp_path: Path, kind: str = "single_label", **extra: str):
    task = tmp_path / "task.toml"
    task.write_text(SINGLE % kind)
    env = {"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"), "TASK_FILE": str(task),
           "AUTH_MODE": "password", "ADMINS": "boss", **extra}
    return load_settings(env)


def records(n: int) -> list[NewRecord]:
    return [NewRecord(f"k{i}", f"aa/{i}.png", f"{i:064x}", 10, 10, 100, {}, None) for i in range(n)]


NOW = utcnow()


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's answers are timed from when it starts: "active" means within 5 minutes of the dashboard's
    real clock, and a long suite reaches this file more than 5 minutes after the module was imported."""
    global NOW
    NOW = utcnow()


def ans(rid: int, user: str, label: str | None, ms: int, ago: timedelta) -> ResponseWrite:
    return ResponseWrite(rid, user, "submitted" if label else "skipped", {"label": label} if label else {}, None, ms,
                         NOW - ago)


M = timedelta(minutes=1)
CAT_DOG = (Label("cat", "1"), Label("dog", "2"))


def fill_single(store: Store) -> list[int]:
    r1, r2, r3, r4, r5, r6, r7, r8 = store.add_records(records(8))
    store.apply([
        ans(r1, "ann", "cat", 1000, 120 * M), ans(r1, "bob", "cat", 2000, 30 * M),     # complete
        ans(r2, "ann", "cat", 2000, 119 * M), ans(r2, "bob", "dog", 4000, 31 * M),     # complete, disagree
        ans(r3, "ann", "dog", 3000, 118 * M), ans(r3, "bob", "dog", 8000, 32 * M),
        ans(r3, "cy", "dog", 1000, 2 * M),                                             # complete + 1 extra
        ans(r4, "ann", "bird", 4000, 117 * M),                                         # partly done
        ans(r5, "bob", None, 500, 33 * M),                                              # only skipped
        #   r6: untouched
        ans(r7, "ann", "cat", 5000, 116 * M), ans(r7, "cy", "cat", 2000, 1 * M),        # reopened: partly done
        ReopenWrite(r7, 1),
        ans(r8, "cy", None, 100, 3 * M), ans(r8, "ann", None, 100, 115 * M),           # only skipped
    ])
    return [r1, r2, r3, r4, r5, r6, r7, r8]


@pytest.fixture(params=["duckdb", "postgres"])
def single(request, tmp_path: Path) -> Iterator[tuple[Runtime, list[int]]]:
    """The same answers on either backend: the dashboard reads the same through both."""
    store_env = {"STORE_URL": request.getfixturevalue("pg_url")} if request.param == "postgres" else {}
    settings = settings_for(tmp_path, **store_env)
    store = open_store(settings)
    ids = fill_single(store)
    store.close()
    rt = Runtime.open(settings, ingest=False)
    yield rt, ids
    rt.close()


# --- pure pieces -----------------------------------------------------------------------------

def test_team_progress_categories_are_disjoint() -> None:
    # (extra, submitted, skipped, records)
    p = team_progress([(0, 0, 0, 5), (0, 0, 2, 1), (0, 1, 1, 2), (0, 2, 0, 3), (1, 2, 0, 1), (0, 3, 0, 1)], 2)
    assert (p.records, p.complete, p.partial, p.skipped, p.untouched) == (13, 4, 3, 1, 5)
    assert p.answers == 2 + 6 + 2 + 3 and p.skips == 2 + 2
    assert p.answers_needed == 13 * 2 + 1 and p.answers_done == 2 + 6 + 2 + 2
    assert p.percent_done == round(100 * 12 / 27, 1)


def test_timeline_fills_quiet_buckets_up_to_now() -> None:
    b = timedelta(minutes=5)
    t0 = NOW.replace(second=0, microsecond=0) - timedelta(minutes=NOW.minute % 5) - 4 * b
    rows = [(t0, "submitted", 3), (t0, "skipped", 1), (t0 + 2 * b, "submitted", 2)]
    points = timeline(rows, b, NOW, since=t0 - b)
    assert [(p.start, p.submitted, p.skipped) for p in points] == [
        (t0 - b, 0, 0), (t0, 3, 1), (t0 + b, 0, 0), (t0 + 2 * b, 2, 0), (t0 + 3 * b, 0, 0), (t0 + 4 * b, 0, 0)]
    assert timeline(rows, b, NOW, since=t0)[0].start == t0  # nothing was read before `since`
    assert timeline([], b, NOW) == ()


def test_fleiss_and_alpha_with_equal_answers_by_hand() -> None:
    # units: [cat,cat] [cat,dog] [dog,dog] [cat,cat]; n=8, n_cat=5, n_dog=3
    # alpha = 1 - (n-1) * (n - sum o_cc) / (n^2 - sum n_c^2) = 1 - 7 * 2 / 30 = 8/15
    # Fleiss: P_bar = 3/4, P_e = (5/8)^2 + (3/8)^2 = 34/64, kappa = (3/4 - 34/64) / (1 - 34/64) = 7/15
    rows = [(rid, user, {"label": label}) for rid, user, label in [
        (1, "a", "cat"), (1, "b", "cat"), (2, "a", "cat"), (2, "b", "dog"), (3, "a", "dog"), (3, "b", "dog"),
        (4, "a", "cat"), (4, "c", "cat"), (5, "a", "dog")]]
    [summary], by_question = agreement(rows, classification_task("t", CAT_DOG).questions)
    per_user = by_question["label"]
    assert (summary.question, summary.kind) == ("label", "label")
    assert summary.n_records == 4 and summary.n_answers == 8 and summary.equal_answers
    assert summary.alpha.value == pytest.approx(8 / 15)
    assert summary.fleiss.value == pytest.approx(7 / 15) and summary.fleiss.n_records == 4
    assert per_user["a"].value == pytest.approx(3 / 4) and per_user["a"].n_records == 4
    assert per_user["b"].value == pytest.approx(2 / 3) and per_user["c"].value == 1.0


def test_multilabel_agreement_per_label_by_hand() -> None:
    # r1: {a} {a,b}; r2: {b} {b}; r3: {a} {}.
    # label a: [T,T] [F,F] [T,F]: n=6, n_T=n_F=3, o_TT + o_FF = 4 -> alpha = 1 - 5 * 2 / 18 = 4/9;
    #   Fleiss: P_bar = 2/3, P_e = 1/2 -> kappa = 1/3.  Label b: [F,T] [T,T] [F,F], the same numbers.
    rows = [(rid, user, {"labels": list(labels)}) for rid, user, labels in [
        (1, "x", "a"), (1, "y", "ab"), (2, "x", "b"), (2, "y", "b"), (3, "x", "a"), (3, "y", "")]]
    [summary], by_question = agreement(rows, classification_task("t", (Label("a", "1"), Label("b", "2")),
                                                                 kind="multi_label").questions)
    per_user = by_question["labels"]
    assert summary.alpha is None and summary.fleiss is None and summary.n_records == 3
    by_label = {l.label: l for l in summary.per_label}
    for label in "ab":
        assert by_label[label].alpha.value == pytest.approx(4 / 9)
        assert by_label[label].fleiss.value == pytest.approx(1 / 3)
    assert per_user["x"].value == pytest.approx(1 / 3)  # whole label sets: only r2 matches


# --- the dashboard over a real store -----------------------------------------------------------

def test_team_view_counts(single: tuple[Runtime, list[int]]) -> None:
    rt, _ = single
    snap = Dashboard(rt.dashboard_deps()).snapshot(ANN)
    p = snap.team.progress
    assert (p.records, p.complete, p.partial, p.skipped, p.untouched) == (8, 3, 2, 2, 1)
    assert (p.answers, p.skips) == (10, 3)
    assert p.answers_needed == 8 * 2 + 1 and p.answers_done == 2 + 2 + 2 + 1 + 2
    assert snap.team.labels == (("label", "cat", 5), ("label", "dog", 4), ("label", "bird", 1))  # task order
    assert snap.team.active == ("cy",)  # answered 1-3 minutes ago; the others 30+ minutes ago
    assert sum(t.submitted for t in snap.team.timeline) == 10
    assert sum(t.skipped for t in snap.team.timeline) == 3
    gaps = {b.start - a.start for a, b in zip(snap.team.timeline, snap.team.timeline[1:])}
    assert gaps == {timedelta(minutes=5)}
    assert snap.team.timeline[-1].start <= snap.at < snap.team.timeline[-1].start + timedelta(minutes=5)
    assert snap.admin is None
    as_dict = snap.as_dict()
    assert set(as_dict) == {"at", "team"} and as_dict["team"]["progress"]["complete"] == 3


def test_admin_view_per_annotator_and_agreement(single: tuple[Runtime, list[int]]) -> None:
    rt, _ = single
    snap = Dashboard(rt.dashboard_deps()).snapshot(BOSS)
    rows = {a.user: a for a in snap.admin.annotators}
    assert set(rows) == {"ann", "bob", "cy"}
    ann, bob, cy = rows["ann"], rows["bob"], rows["cy"]
    assert (ann.answers, ann.skips, ann.median_seconds) == (5, 1, 3.0)
    assert (bob.answers, bob.skips, bob.median_seconds) == (3, 1, 4.0)
    assert (cy.answers, cy.skips, cy.median_seconds) == (2, 1, 1.5)
    # with the majority of the others: ann agrees on r1, r3, r7, not r2 (r4 has no other answer)
    assert (ann.agreement["label"], ann.compared["label"]) == (pytest.approx(3 / 4), 4)
    assert (bob.agreement["label"], bob.compared["label"]) == (pytest.approx(2 / 3), 3)
    assert (cy.agreement["label"], cy.compared["label"]) == (1.0, 2)
    assert cy.active and not ann.active and not bob.active
    assert ann.last_active == NOW - 115 * M and cy.last_active == NOW - 1 * M
    assert [a.user for a in snap.admin.annotators] == ["ann", "bob", "cy"]  # most answers first

    # records with >= 2 answers: r1 [cat,cat] r2 [cat,dog] r3 [dog,dog,dog] r7 [cat,cat]; n = 9,
    # n_cat = 5, n_dog = 4, sum o_cc = 2 + 3 + 2 = 7: alpha = 1 - 8 * (9 - 7) / (81 - 41) = 0.6
    [g] = snap.admin.agreement
    assert (g.n_records, g.n_answers, g.equal_answers) == (4, 9, False)
    assert g.alpha.value == pytest.approx(0.6) and g.alpha.n_records == 4
    assert g.fleiss.value is None  # r3 has three answers, the others two
    json_ready = snap.as_dict()
    assert json_ready["agreement"][0]["alpha"]["value"] == pytest.approx(0.6)


def test_health(single: tuple[Runtime, list[int]]) -> None:
    rt, ids = single
    assert rt.backend.next("dee").kind == "ready"
    rt.service.click_latency.add(0.004)
    rt.service.click_latency.add(0.010)
    h = Dashboard(rt.dashboard_deps()).snapshot(BOSS).admin.health
    assert h.queue_depth == 0 and h.failed_commits == 0 and not h.writer_retrying
    assert (h.click_p50_ms, h.click_p99_ms, h.clicks) == (4.0, 10.0, 2)
    assert [(l.user, l.on_screen is not None) for l in h.leases] == [("dee", True)]
    assert h.free_bytes and h.total_bytes and h.free_bytes <= h.total_bytes
    assert h.export is None and h.storage  # the probe's report from Runtime.open
    if h.persistent is None:  # tmp_path is under /tmp: "unknown"
        assert any("may not survive a restart and export is not configured" in w for w in h.warnings)
    rt.storage = None  # type: ignore[assignment]
    h = Dashboard(rt.dashboard_deps()).snapshot(BOSS).admin.health
    assert h.persistent is None and h.storage == ()
    assert any("was not measured and export is not configured" in w for w in h.warnings)


class FakeStatus:
    repo, state, last_result, last_error = "org/out", "idle", "failed", "HTTP 503 from the Hub"
    last_attempt_at = last_success_at = next_run_at = commit_url = progress = None


class FakeExporter:
    def __init__(self) -> None:
        self.triggered = 0

    def trigger(self) -> Future:
        self.triggered += 1
        return Future()

    def status(self) -> FakeStatus:
        return FakeStatus()

    def stop(self) -> None:  # Runtime.close stops the exporter
        pass


@dataclass(frozen=True)
class FakeStorage:
    persistent: bool = False
    fuse: bool = True
    fsync_ms: float = 41.5
    recommendation: str = "use DB_MODE=snapshot"

    def lines(self) -> list[str]:
        return ["fsync 41.5 ms", self.recommendation]


def test_health_storage_and_export_from_the_runtime(single: tuple[Runtime, list[int]]) -> None:
    rt, _ = single
    rt.storage = FakeStorage()  # type: ignore[assignment]
    h = Dashboard(rt.dashboard_deps()).snapshot(BOSS).admin.health
    assert h.persistent is False and h.storage_recommendation == "use DB_MODE=snapshot"
    assert h.storage == ("fsync 41.5 ms",)
    assert any("NOT persistent and export is not configured" in w for w in h.warnings)
    rt.exporter = FakeExporter()  # type: ignore[assignment]
    h = Dashboard(rt.dashboard_deps()).snapshot(BOSS).admin.health
    assert h.export.repo == "org/out" and h.export.last_result == "failed"
    assert not any("NOT persistent" in w for w in h.warnings)
    assert any("HTTP 503" in w for w in h.warnings)


def test_team_view_is_shared_for_a_few_seconds(single: tuple[Runtime, list[int]]) -> None:
    rt, ids = single
    board = Dashboard(rt.dashboard_deps(), team_max_age=60)
    first = board.snapshot(ANN)
    rt.backend.answer(ResponseWrite(ids[5], "ann", "submitted", {"label": "cat"}, None, 10, utcnow()))[1].result(5)
    assert board.snapshot(ANN).team is first.team
    assert Dashboard(rt.dashboard_deps()).snapshot(ANN).team.progress.partial == 3


# --- admin actions ---------------------------------------------------------------------------

def store_state(rt: Runtime) -> tuple:
    rt.backend.flush(5)
    return rt.store.audit_log(), rt.store.extra_answers(), rt.backend.leases()


def test_admin_actions_refused_for_non_admins(single: tuple[Runtime, list[int]]) -> None:
    rt, ids = single
    rt.exporter = FakeExporter()  # type: ignore[attr-defined]
    rt.backend.next("bob")
    before = store_state(rt)
    assert before[2] and not before[0]
    deps = rt.admin_deps()
    for action in (lambda: admin_actions.export_now(deps, ANN), lambda: admin_actions.release_user(deps, ANN, "bob"),
                   lambda: admin_actions.reopen_record(deps, ANN, ids[0], 2),
                   lambda: admin_actions.active_settings(deps, ANN), lambda: admin_actions.audit_log(deps, ANN)):
        with pytest.raises(AuthError, match="not an admin"):
            action()
    assert store_state(rt) == before
    assert rt.exporter.triggered == 0  # type: ignore[attr-defined]


def test_admin_actions_audited(single: tuple[Runtime, list[int]]) -> None:
    rt, ids = single
    with pytest.raises(InputError, match=EXPORT_NOT_CONFIGURED):
        admin_actions.export_now(rt.admin_deps(), BOSS)
    rt.exporter = FakeExporter()  # type: ignore[attr-defined]
    result = admin_actions.export_now(rt.admin_deps(), BOSS)
    assert result.audited and rt.exporter.triggered == 1  # type: ignore[attr-defined]

    rt.backend.next("bob")
    rt.backend.lease_soft("bob", 2)
    held = len(rt.backend.leases()["bob"])
    result = admin_actions.release_user(rt.admin_deps(), BOSS, " bob ")
    assert result.detail == {"user": "bob", "released": held} and "bob" not in rt.backend.leases()
    assert admin_actions.release_user(rt.admin_deps(), BOSS, "nobody").detail["released"] == 0

    r6 = ids[5]
    result = admin_actions.reopen_record(rt.admin_deps(), BOSS, float(r6), "2")
    assert result.detail == {"record_id": r6, "extra": 2} and "needs 4 answers" in result.message

    items, result = admin_actions.active_settings(rt.admin_deps(), BOSS)
    assert items["ADMINS"] == "boss" and result.audited

    rt.backend.flush(5)
    assert rt.store.extra_answers()[r6] == 2
    log = [(actor, action, detail) for _at, actor, action, detail in reversed(rt.store.audit_log())]
    assert log == [("boss", "export_now", {"repo": ""}),
                   ("boss", "release_user", {"user": "bob", "released": held}),
                   ("boss", "release_user", {"user": "nobody", "released": 0}),
                   ("boss", "reopen", {"record_id": r6, "extra": 2}),
                   ("boss", "view_settings", {})]
    assert admin_actions.audit_log(rt.admin_deps(), BOSS)[0][2] == "view_settings"


@pytest.mark.parametrize("record, extra, message", [
    (999, 1, "no record 999"), (0, 1, "no record 0"), ("x", 1, "whole number"), (1, 0, "1 to 10"),
    (1, 11, "1 to 10"), (1, 1.5, "whole number"), (True, 1, "whole number"), (None, 1, "whole number")])
def test_reopen_rejects_bad_input_and_changes_nothing(single: tuple[Runtime, list[int]], record: object,
                                                      extra: object, message: str) -> None:
    rt, _ = single
    before = store_state(rt)
    with pytest.raises(InputError, match=message):
        admin_actions.reopen_record(rt.admin_deps(), BOSS, record, extra)
    assert store_state(rt) == before


def test_release_needs_a_name(single: tuple[Runtime, list[int]]) -> None:
    rt, _ = single
    for bad in ("", "   ", None, 3):
        with pytest.raises(InputError):
            admin_actions.release_user(rt.admin_deps(), BOSS, bad)
    assert not store_state(rt)[0]


def test_settings_secrets_masked(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, HF_TOKEN="hf_supersecret", SECRET_KEY="signing-key-123")
    Store(settings.db_path).close()
    rt = Runtime.open(settings, ingest=False)
    try:
        items, _ = admin_actions.active_settings(rt.admin_deps(), BOSS)
    finally:
        rt.close()
    assert "hf_supersecret" not in str(items) and "signing-key-123" not in str(items)
    assert items["HF_TOKEN"] and items["SECRET_KEY"]


def test_dashboard_reads_leave_no_transaction_open(tmp_path: Path) -> None:
    """A reader thread that goes idle after the dashboard must not block the CHECKPOINT at close."""
    import threading
    settings = settings_for(tmp_path)
    store = Store(settings.db_path)
    ids = fill_single(store)
    store.close()
    rt = Runtime.open(settings, ingest=False)
    try:
        board = Dashboard(rt.dashboard_deps())
        # the second snapshot finds agreement up to date: its last query is the answers' version
        reader = threading.Thread(target=lambda: [board.snapshot(BOSS) for _ in range(2)])
        reader.start()
        reader.join()
        admin_actions.reopen_record(rt.admin_deps(), BOSS, ids[5], 1)  # the writer commits an UPDATE after
    finally:
        rt.close()  # raised "Cannot CHECKPOINT: there are other write transactions active" with fetchone()


def test_downloads_only_for_admins_and_audited(single: tuple[Runtime, list[int]], tmp_path: Path) -> None:
    rt, _ = single
    folders = admin_actions.DownloadFolders(tmp_path / "downloads")
    before = store_state(rt)
    with pytest.raises(AuthError, match="not an admin"):
        admin_actions.prepare_downloads(rt.admin_deps(), ANN, folders)
    assert store_state(rt) == before
    files, result = admin_actions.prepare_downloads(rt.admin_deps(), BOSS, folders)
    assert sorted(f.name for f in files) == ["records.csv", "records.jsonl", "records.parquet",
                                             "responses.csv", "responses.jsonl", "responses.parquet"]
    assert all(f.stat().st_size > 0 for f in files)
    assert result.audited and "8 records and 13 answers" in result.message
    assert rt.store.audit_log()[0][1:3] == ("boss", "download_export")


def test_agreement_per_question_and_kind_by_hand() -> None:
    """A four-question task: each question gets its own kind of agreement, over its own answers."""
    questions = (Question("animal", "Animal", "label", labels=CAT_DOG),
                 Question("tags", "Tags", "labels", labels=(Label("a", "a"), Label("b", "b"))),
                 Question("quality", "Quality", "rating", low=1, high=5),
                 Question("caption", "Caption", "text", required=False))
    rows = [(1, "x", {"animal": "cat", "tags": ["a"], "quality": 1, "caption": "one"}),
            (1, "y", {"animal": "cat", "tags": ["a", "b"], "quality": 2}),
            (2, "x", {"animal": "dog", "tags": ["b"], "quality": 2, "caption": "two"}),
            (2, "y", {"animal": "cat", "tags": ["b"], "quality": 3}),
            (3, "x", {"animal": "dog", "tags": ["a"], "quality": 5})]  # one answer: not pairable
    summaries, per_user = agreement(rows, questions, [("caption", 2, 2, 3.0)])
    by_name = {s.question: s for s in summaries}
    assert [s.question for s in summaries] == ["animal", "tags", "quality", "caption"]
    assert [s.kind for s in summaries] == ["label", "labels", "rating", "text"]
    # ratings (1, 2) and (2, 3): the ordinal alpha worked by hand in test_metrics, 0.25
    assert by_name["quality"].alpha.value == pytest.approx(0.25) and by_name["quality"].fleiss is None
    # labels (cat, cat) (dog, cat): n = 4, n_cat = 3, sum o_cc = 2 -> alpha = 1 - 3 * 2 / (16 - 10) = 0
    assert by_name["animal"].alpha.value == pytest.approx(0.0)
    assert {l.label for l in by_name["tags"].per_label} == {"a", "b"}
    assert (by_name["caption"].n_answers, by_name["caption"].mean_chars, by_name["caption"].alpha) == (2, 3.0, None)
    assert "caption" not in per_user  # text answers are not compared
    assert per_user["quality"]["x"].value == 0.0 and per_user["animal"]["y"].value == pytest.approx(1 / 2)


def test_the_timeline_axis_reads_24_hour() -> None:
    """Vega's default time labels are 12-hour without AM/PM (20:25 drawn as 08:25); the chart says HH:MM."""
    from datetime import datetime
    from types import SimpleNamespace

    import gradio as gr

    from annotator.reports import TimelinePoint
    from annotator.ui.dashboard import timeline_frame, timeline_plot

    with gr.Blocks():
        plot = timeline_plot()
    assert plot.get_config()["x_axis_format"] == "%H:%M"
    evening = datetime(2024, 5, 6, 20, 25)
    data = plot.postprocess(timeline_frame(SimpleNamespace(timeline=(TimelinePoint(evening, 3, 1),))))
    assert data.datatypes["time"] == "temporal"  # so Vega reads the format as a time format (d3-time-format)
    assert evening.strftime(plot.x_axis_format) == "20:25"  # d3's %H:%M is strftime's
