"""Review and adjudication (issue 17): the review queue's order and filters, the admin's final answer (checked,
audited, refused to anyone else, never on a gold record), on DuckDB and PostgreSQL through `Runtime.open`,
the final answer in a recovery file, and the migration of a database made before final answers."""

from __future__ import annotations

import dataclasses
import types
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from storehelpers import rows
from test_boxes_dashboard import EVIL, box, runtime  # noqa: F401 - fixture
from test_service import ALICE, BOB, opener  # noqa: F401 - fixture

from annotator import admin_actions, recovery
from annotator.auth import AuthError, Identity
from annotator.model import Final, FinalWrite, NewRecord, Response, ResponseWrite
from annotator.pg_store import PgStore
from annotator.review import review_queue
from annotator.runtime import Runtime
from annotator.service import InputError
from annotator.store import Store
from annotator.task import Label, Question, TaskSpec

BOSS = Identity("boss", is_admin=True)
T0 = datetime(2025, 6, 1, 9, 0, 0)
ANIMAL = Question("animal", "Which animal?", "label", labels=(Label("cat", "1"), Label("dog", "2"), Label("bird", "3")))
NOTE = Question("note", "Note", "text", required=False)
TASK = TaskSpec(title="Pets", guidelines="", comment=False, overlap=3, order="sequential", seed=0,
                questions=(ANIMAL, NOTE))


def _answer(rid: int, user: str, animal: str | None, status: str = "submitted", note: str | None = None) -> Response:
    answer = {k: v for k, v in (("animal", animal), ("note", note)) if v is not None}
    return Response(rid, user, status, answer, None, 100, T0, T0)


# record: answers -> agreement (share of agreeing pairs)
TABLE = [
    _answer(1, "ann", "cat"), _answer(1, "bob", "cat"), _answer(1, "cy", "cat"),         # 1.0
    _answer(2, "ann", "cat"), _answer(2, "bob", "dog"), _answer(2, "cy", "dog"),         # 1/3
    _answer(3, "ann", "cat"), _answer(3, "cy", "dog", note="dog? cat?"),                 # 0.0
    _answer(4, "bob", "bird"),                                                           # one answer: n/a
    _answer(5, "ann", "cat"), _answer(5, "bob", "bird"),                                 # gold: left out
    _answer(6, "ann", None, status="skipped"),                                           # only skipped: left out
    _answer(7, "bob", "dog", note="bird"),                                               # a text is no label
]


def test_review_queue_lowest_agreement_first_filters_and_leaves_gold_out() -> None:
    finals = {2: Final(2, {"animal": "dog"}, "boss", T0)}
    items = review_queue(TASK, TABLE, finals, gold={5})
    assert [(i.record_id, None if i.agreement is None else round(i.agreement, 3)) for i in items] == [
        (3, 0.0), (2, 0.333), (1, 1.0), (4, None), (7, None)]
    second = items[1]
    assert second.answers == (("ann", {"animal": "cat"}), ("bob", {"animal": "dog"}), ("cy", {"animal": "dog"}))
    assert second.consensus == {"animal": "dog"} and second.final == finals[2]
    assert items[0].consensus == {"animal": None} and items[0].final is None  # a tie names no label
    assert [i.record_id for i in review_queue(TASK, TABLE, finals, gold={5}, label="dog")] == [3, 2, 7]
    assert [i.record_id for i in review_queue(TASK, TABLE, finals, gold={5}, label="bird")] == [4]  # not 7's text
    assert [i.record_id for i in review_queue(TASK, TABLE, finals, gold={5}, annotator="cy")] == [3, 2, 1]
    assert [i.record_id for i in review_queue(TASK, TABLE, finals, gold={5}, label="cat", annotator="bob")] == [2, 1]
    assert items[1].as_dict()["final"] == {"answer": {"animal": "dog"}, "admin": "boss", "at": T0.isoformat()}


def test_review_queue_of_boxes_orders_by_the_mean_pairwise_f1() -> None:
    shapes = Question("shapes", "Shapes", "boxes", labels=(Label("car", "c"),))
    task = dataclasses.replace(TASK, questions=(shapes,))
    box = {"label": "car", "bbox": [0, 0, 10, 10]}
    far = {"label": "car", "bbox": [50, 50, 10, 10]}
    answers = [Response(1, "ann", "submitted", {"shapes": [box]}, None, 1, T0, T0),
               Response(1, "bob", "submitted", {"shapes": [box]}, None, 1, T0, T0),
               Response(2, "ann", "submitted", {"shapes": [box]}, None, 1, T0, T0),
               Response(2, "bob", "submitted", {"shapes": [far]}, None, 1, T0, T0)]
    items = review_queue(task, answers, {})
    assert [(i.record_id, i.agreement) for i in items] == [(2, 0.0), (1, 1.0)]
    assert items[1].consensus == {"shapes": [{"label": "car", "bbox": [0.0, 0.0, 10.0, 10.0]}]}
    assert [i.record_id for i in review_queue(task, answers, {}, label="car")] == [2, 1]


# --- the rules, on both engines ----------------------------------------------------------------

def _answered_by_two(rt: Runtime) -> int:
    """alice and bob answer the first record differently; its id."""
    first = rt.service.next(ALICE).record
    rt.service.submit(ALICE, first.ticket, ["circle"])
    assert rt.backend.flush(5)  # committed: on PostgreSQL a started record comes first once it is
    view = rt.service.next(BOB)
    assert view.record.record_id == first.record_id
    rt.service.submit(BOB, view.record.ticket, ["square"])
    assert rt.backend.flush(5)
    return first.record_id


def _audit(rt: Runtime, action: str) -> list[dict]:
    return [detail for _, _, detail in rt.store.audit_entries(action)]


def test_an_admin_sets_and_takes_back_a_final_answer_audited_and_nobody_else_can(opener) -> None:  # noqa: F811
    rt = opener(records=4, overlap=2)
    deps = rt.admin_deps()
    rid = _answered_by_two(rt)
    before = rt.store.export_fingerprint()

    # anyone but an admin is refused before anything is read or written
    for call in (lambda: admin_actions.set_final(deps, ALICE, rid, {"label": "circle"}),
                 lambda: admin_actions.clear_final(deps, ALICE, rid),
                 lambda: admin_actions.review_queue(deps, ALICE),
                 lambda: admin_actions.review_record(deps, ALICE, rid)):
        with pytest.raises(AuthError, match="alice is not an admin"):
            call()
    assert rt.store.finals() == {} and _audit(rt, "set_final") == []

    queue = admin_actions.review_queue(deps, BOSS)
    assert [(i.record_id, i.agreement) for i in queue] == [(rid, 0.0)]
    assert [u for u, _ in queue[0].answers] == ["alice", "bob"]

    result = admin_actions.set_final(deps, BOSS, str(rid), '{"label": "square"}')  # JSON text, as the API sends
    assert result.audited and result.detail == {"record_id": rid, "answer": {"label": "square"}}
    final = rt.store.final(rid)
    assert final is not None and (final.answer, final.admin) == ({"label": "square"}, "boss")
    assert _audit(rt, "set_final") == [{"record_id": rid, "answer": {"label": "square"}}]
    assert rt.store.export_fingerprint() != before  # the exporter pushes again
    assert admin_actions.review_queue(deps, BOSS)[0].final == final
    assert admin_actions.review_record(deps, BOSS, rid)[1].final == final
    # a second one replaces it; the one-question task also takes a label's name, as the API's submit does
    admin_actions.set_final(deps, BOSS, rid, "triangle")
    assert rt.store.final(rid).answer == {"label": "triangle"}

    cleared = admin_actions.clear_final(deps, BOSS, rid)
    assert cleared.audited and rt.store.final(rid) is None
    assert _audit(rt, "clear_final") == [{"record_id": rid}]
    with pytest.raises(InputError, match=f"Record {rid} has no final answer"):
        admin_actions.clear_final(deps, BOSS, rid)


def test_a_wrong_final_answer_is_refused_with_a_message_and_changes_nothing(opener) -> None:  # noqa: F811
    rt = opener(records=4, overlap=2)
    deps = rt.admin_deps()
    rid = _answered_by_two(rt)
    refused = [
        (99999, {"label": "circle"}, "There is no record 99999"),
        (0, {"label": "circle"}, "There is no record 0"),
        ("12abc", {"label": "circle"}, "record id must be a whole number"),
        (rid, {"label": "hexagon"}, f"Record {rid}: 'hexagon' is not a label"),
        (rid, {"shape": "circle"}, "'shape' is not a question of this task"),
        (rid, "{not json", "'{not json' is not a label"),  # text that is no JSON: a label's name, or not
        (rid, {"label": "circle\x00"}, "contains"),
        (rid, {}, "needs an answer"),
    ]
    for record_id, answer, message in refused:
        with pytest.raises(InputError, match=message):
            admin_actions.set_final(deps, BOSS, record_id, answer)
    # a gold record takes no final answer: its answer is known
    gold = dataclasses.replace(deps, service=types.SimpleNamespace(gold={rid: None}))
    with pytest.raises(InputError, match=f"Record {rid} is a gold record"):
        admin_actions.set_final(gold, BOSS, rid, {"label": "circle"})
    assert admin_actions.review_queue(gold, BOSS) == []
    assert rt.backend.flush(5)
    assert rt.store.finals() == {} and _audit(rt, "set_final") == []


def test_review_of_a_labels_task_with_gold_left_out(opener) -> None:  # noqa: F811
    rt = opener(records=3, overlap=2, kind="multi_label")
    deps = rt.admin_deps()
    first = rt.service.next(ALICE).record
    rt.service.submit(ALICE, first.ticket, ["circle", "square"])
    assert rt.backend.flush(5)
    rt.service.submit(BOB, rt.service.next(BOB).record.ticket, ["circle"])
    assert rt.backend.flush(5)
    with pytest.raises(InputError, match="not a label"):
        admin_actions.set_final(deps, BOSS, first.record_id, {"labels": ["circle", "oval"]})
    admin_actions.set_final(deps, BOSS, first.record_id, {"labels": ["square", "circle", "square"]})
    assert rt.store.final(first.record_id).answer == {"labels": ["square", "circle"]}  # repeats dropped


# --- storage ----------------------------------------------------------------------------------

def test_a_final_answer_in_a_recovery_file_is_committed_at_the_next_start(tmp_path: Path) -> None:
    store = Store(tmp_path / "a.duckdb")
    try:
        [rid] = store.add_records([NewRecord("k", "k.png", "ab" * 32, 4, 3, 10)])
        ops = [FinalWrite(rid, {"label": "cat"}, "boss", T0), FinalWrite(rid, None, "boss", T0),
               FinalWrite(rid, {"label": "dog"}, "boss", T0 + timedelta(seconds=1))]
        assert [recovery.decode(recovery.encode(op)) for op in ops] == ops
        recovery.save(tmp_path, ops)
        [done] = recovery.replay(store, tmp_path)
        assert done.committed == 3 and store.final(rid).answer == {"label": "dog"}  # the last one wins
    finally:
        store.close()


@pytest.mark.parametrize("engine", ["duckdb", "postgresql"])
def test_a_database_from_before_final_answers_migrates_and_keeps_everything(engine: str, tmp_path: Path,
                                                                            request, monkeypatch) -> None:
    kind = Store if engine == "duckdb" else PgStore
    where = str(tmp_path / "old.duckdb") if engine == "duckdb" else request.getfixturevalue("pg_url")
    with monkeypatch.context() as old:
        # the app before this change: PostgreSQL's migration 8 and DuckDB's 4 added the final answers
        old.setattr(kind, "SCHEMA_VERSION", 7 if engine == "postgresql" else 3)
        store = kind(where)
        ids = store.add_records([NewRecord(f"k{i}", f"k{i}.png", "ab" * 32, 4, 3, 10) for i in range(3)])
        store.apply([ResponseWrite(ids[0], "ann", "submitted", {"label": "cat"}, "hm", 5, T0),
                     ResponseWrite(ids[1], "bob", "skipped", {}, None, 1, T0)])
        records, answers = store.records(ids), [r for b in store.iter_responses() for r in b]
        store.close()
    store = kind(where)
    try:
        assert store.schema_version() == kind.SCHEMA_VERSION
        assert store.records(ids) == records and [r for b in store.iter_responses() for r in b] == answers
        assert store.export_fingerprint().endswith(":0:0")  # no final answer yet
        assert rows(store, "SELECT count(*) FROM finals") == [(0,)]
        store.apply([FinalWrite(ids[0], {"label": "dog"}, "boss", T0)])
        assert store.finals()[ids[0]].answer == {"label": "dog"}
    finally:
        store.close()


# --- the Review section's pieces, for a boxes task (both engines: test_boxes_dashboard's runtime) ---------

def test_the_review_view_draws_everyones_boxes_and_takes_one_persons_as_final(runtime) -> None:  # noqa: F811
    from annotator.ui.admin import AdminGate
    from annotator.ui.review import CONSENSUS, USER, ReviewView

    rt, ids = runtime
    deps = rt.admin_deps()
    assert [i.record_id for i in admin_actions.review_queue(deps, BOSS)] == [ids[2], ids[1], ids[0], ids[3]]
    view = ReviewView(rt, AdminGate())
    record, item = admin_actions.review_record(deps, BOSS, ids[1])
    page = view._detail(BOSS, record, item)
    assert page.count("<rect") == 4 and "stroke-dasharray" in page  # ann's two, the other's one, the consensus
    assert EVIL not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    [question] = rt.task.questions
    choices = view._preset(question, None, item, final=False)
    assert choices.value == CONSENSUS and [v for _, v in choices.choices] == [CONSENSUS, USER + EVIL, USER + "ann"]

    ann = dict(item.answers)["ann"]["objects"]
    assert view._answer(BOSS, str(ids[1]), [USER + "ann"]) == {"objects": ann}
    assert view._answer(BOSS, str(ids[1]), [CONSENSUS]) == {"objects": item.consensus["objects"]}
    admin_actions.set_final(deps, BOSS, ids[1], view._answer(BOSS, str(ids[1]), [USER + "ann"]))
    assert rt.store.final(ids[1]).answer == {"objects": ann}
    with pytest.raises(InputError, match="reaches outside the image"):
        admin_actions.set_final(deps, BOSS, ids[1], {"objects": [box("circle", 30, 0, 50, 10)]})
