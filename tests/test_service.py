"""AnnotationService with everything real but the network: a DuckDB store in tmp_path (or
PostgreSQL: every test runs on both), the scheduler, the writer thread, the prefetch buffers, composed by `Runtime.open` exactly as the app
does. What the service promises: the rules of an answer, tickets, repeats, back and change,
skip, progress, the three queue states, releasing and taking over leases, and that every
acknowledged answer is in the store after `close()`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from clients import make_images, read_store, write_task

from annotator.auth import Identity
from annotator.config import load_settings
from annotator.runtime import Runtime
from annotator.service import InputError

ALICE, BOB, CAROL = Identity("alice", False), Identity("bob", False), Identity("carol", False)


@pytest.fixture(params=["duckdb", "postgres"])
def opener(request, tmp_path: Path):
    """open(records=..., overlap=..., **env) -> Runtime on one data dir; every runtime is closed at the end.

    Every test runs on both backends: the DuckDB file, and PostgreSQL (STORE_URL, a fresh database).
    """
    opened: list[Runtime] = []
    made: dict[str, Path] = {}
    store_env = {"STORE_URL": request.getfixturevalue("pg_url")} if request.param == "postgres" else {}

    def open_runtime(records: int = 6, overlap: int = 1, kind: str = "single_label", comment: bool = True,
                     **env: str) -> Runtime:
        if "source" not in made:
            made["source"] = tmp_path / "source"
            make_images(made["source"], records, size=(48, 36))
            made["task"] = write_task(tmp_path / "task.toml", overlap=overlap, kind=kind, comment=comment)
        settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                                  "SOURCE_DIR": str(made["source"]), "TASK_FILE": str(made["task"]),
                                  "AUTH_MODE": "password", "PREFETCH_DEPTH": "0", **store_env, **env})
        rt = Runtime.open(settings)
        opened.append(rt)
        return rt

    open_runtime.data_dir = tmp_path / "data"  # type: ignore[attr-defined]
    open_runtime.store_url = store_env.get("STORE_URL")  # type: ignore[attr-defined]
    yield open_runtime
    for rt in opened:
        rt.close()


def wait_until(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def stored(opener) -> dict[tuple[int, str], tuple[str, tuple[str, ...], str | None]]:
    snap = read_store(opener.data_dir, opener.store_url)
    return {(r.record_id, r.user_id): (r.status, r.answer, r.comment) for r in snap.responses}


# --- the basic loop ----------------------------------------------------------------------

def test_next_then_submit_returns_the_following_record_and_commits(opener):
    rt = opener()
    svc = rt.service
    first = svc.next(ALICE)
    assert first.state == "ready" and first.record is not None
    assert first.record.suggestion["label"] in ("circle", "square", "triangle")
    assert first.record.image_url.startswith(f"/img/{first.record.record_id}?u=alice&")
    after = svc.submit(ALICE, first.record.ticket, ["square"], "  looks odd  ")
    assert after.state == "ready" and after.record.record_id != first.record.record_id
    assert svc.wait_saved(ALICE, timeout=5).text == "All answers saved"
    p = svc.progress(ALICE)
    assert (p.mine_today, p.mine_total, p.team_complete, p.team_total, p.team_answers) == (1, 1, 1, 6, 1)
    assert p.remaining_for_me == 5
    rt.close()
    snap = read_store(opener.data_dir, opener.store_url)
    [r] = snap.responses
    assert (r.record_id, r.user_id, r.status, r.answer, r.comment) == \
        (first.record.record_id, "alice", "submitted", {"label": "square"}, "looks odd")
    assert r.time_spent_ms is not None and r.time_spent_ms >= 0


def test_asking_again_shows_the_same_record_with_the_same_ticket(opener):
    svc = opener().service
    a, b = svc.next(ALICE), svc.next(ALICE)
    assert a.record.record_id == b.record.record_id
    assert a.record.ticket == b.record.ticket  # two tabs or a repeated call: one ticket per showing


def test_a_repeated_ticket_counts_once_and_changes_nothing(opener):
    rt = opener()
    svc = rt.service
    first = svc.next(ALICE)
    svc.submit(ALICE, first.record.ticket, ["circle"])
    again = svc.submit(ALICE, first.record.ticket, ["other"], "a replay")
    assert again.message == "That answer was already recorded."
    assert svc.progress(ALICE).mine_total == 1
    rt.close()
    assert stored(opener) == {(first.record.record_id, "alice"): ("submitted", {"label": "circle"}, None)}
    assert read_store(opener.data_dir, opener.store_url).history == {}


def test_a_burst_of_presses_racing_their_responses_answers_each_shown_record_once(opener):
    """Like the browser: presses carry whatever ticket the page last received, from several threads."""
    rt = opener(records=30)
    svc = rt.service
    latest = {"view": svc.next(ALICE)}
    lock = threading.Lock()
    shown: set[int] = {latest["view"].record.record_id}
    errors: list[BaseException] = []

    def press() -> None:
        try:
            for _ in range(15):
                with lock:
                    view = latest["view"]
                if view.state != "ready":
                    return
                out = svc.submit(ALICE, view.record.ticket, ["triangle"])
                with lock:
                    if out.state == "ready":
                        shown.add(out.record.record_id)
                    latest["view"] = out  # responses land in whatever order the threads finish
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=press) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    on_screen = svc.next(ALICE).record
    answered = svc.progress(ALICE).mine_total
    rt.close()
    snap = read_store(opener.data_dir, opener.store_url)
    assert snap.history == {}, "a record was answered twice"
    rids = {r.record_id for r in snap.responses}
    assert len(snap.responses) == answered
    assert rids <= shown and (on_screen is None or on_screen.record_id not in rids)


# --- what an answer must be ------------------------------------------------------------

@pytest.mark.parametrize("answer, comment, message", [
    (["dog"], None, "'dog' is not a label of this task"),
    ([], None, "Choose a label first"),
    (["circle", "square"], None, "exactly one label"),
    (3, None, "label name or a list"),
    ([1], None, "label name or a list"),
    (None, None, "label name or a list"),
    (["circle"], 5, "The comment must be text"),
    (["circle"], "x" * 31, "too long (31 characters)"),
])
def test_bad_answers_are_refused_with_a_message_and_change_nothing(opener, answer, comment, message):
    rt = opener(MAX_COMMENT_CHARS="30")
    svc = rt.service
    view = svc.next(ALICE)
    before = rt.backend.counts()
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        svc.submit(ALICE, view.record.ticket, answer, comment)
    assert rt.backend.counts() == before
    assert svc.next(ALICE).record.record_id == view.record.record_id  # still theirs to answer
    svc.submit(ALICE, view.record.ticket, ["circle"], "x" * 30)  # the ticket was not used up
    rt.close()
    assert stored(opener) == {(view.record.record_id, "alice"): ("submitted", {"label": "circle"}, "x" * 30)}


def test_comments_are_refused_when_the_task_takes_none(opener):
    svc = opener(comment=False).service
    view = svc.next(ALICE)
    with pytest.raises(InputError, match="takes no comments"):
        svc.submit(ALICE, view.record.ticket, ["circle"], "hello")
    svc.submit(ALICE, view.record.ticket, ["circle"], "")


def test_multi_label_takes_several_labels_once_each(opener):
    rt = opener(kind="multi_label")
    svc = rt.service
    view = svc.next(ALICE)
    svc.submit(ALICE, view.record.ticket, ["square", "circle", "square"])
    rt.close()
    assert stored(opener)[(view.record.record_id, "alice")][1] == {"labels": ["square", "circle"]}


@pytest.mark.parametrize("ticket", [None, "", 12, "1.2", "abc.def.ghi", "1.x.y", "9" * 200])
def test_malformed_tickets_are_refused(opener, ticket):
    svc = opener().service
    svc.next(ALICE)
    with pytest.raises(InputError, match="Reload the page"):
        svc.submit(ALICE, ticket, ["circle"])
    with pytest.raises(InputError):
        svc.skip(ALICE, ticket)


def test_a_ticket_answers_only_for_the_person_it_was_issued_to(opener):
    rt = opener(overlap=2)
    svc = rt.service
    a = svc.next(ALICE)
    svc.next(BOB)
    with pytest.raises(InputError, match="not issued to you"):
        svc.submit(BOB, a.record.ticket, ["circle"])
    with pytest.raises(InputError, match="not issued to you"):
        svc.back(BOB, a.record.ticket)
    rid, nonce, mac = a.record.ticket.split(".")
    with pytest.raises(InputError, match="not issued to you"):
        svc.submit(ALICE, f"{int(rid) + 1}.{nonce}.{mac}", ["circle"])
    assert rt.backend.counts()["submissions"] == 0


# --- skip, back, change ---------------------------------------------------------------

def test_skip_back_and_change_an_answer(opener):
    rt = opener()
    svc = rt.service
    first = svc.next(ALICE)
    second = svc.submit(ALICE, first.record.ticket, ["circle"])
    third = svc.skip(ALICE, second.record.ticket)
    assert third.record.record_id not in (first.record.record_id, second.record.record_id)
    p = svc.progress(ALICE)
    assert (p.mine_today, p.mine_total) == (1, 1)  # a skip is not counted as work done

    back1 = svc.back(ALICE, third.record.ticket)
    assert back1.record.record_id == second.record.record_id and back1.record.editing
    assert back1.record.previous_status == "skipped" and back1.record.answer == {}
    back2 = svc.back(ALICE, back1.record.ticket)
    assert back2.record.record_id == first.record.record_id and back2.record.answer == {"label": "circle"}
    first_again = svc.back(ALICE, back2.record.ticket)
    assert first_again.message == "This is your first answer; there is none before it."
    # change the skip into an answer: the record on screen before going back comes back
    after = svc.submit(ALICE, back1.record.ticket, ["triangle"], "on second thought")
    assert after.record.record_id == third.record.record_id and not after.record.editing
    p = svc.progress(ALICE)
    assert (p.mine_today, p.mine_total, p.team_answers) == (2, 2, 2)
    rt.close()
    assert stored(opener) == {
        (first.record.record_id, "alice"): ("submitted", {"label": "circle"}, None),
        (second.record.record_id, "alice"): ("submitted", {"label": "triangle"}, "on second thought"),
    }
    history = read_store(opener.data_dir, opener.store_url).history
    assert [h.status for h in history[(second.record.record_id, "alice")]] == ["skipped"]


def test_back_with_nothing_answered_says_so_and_shows_the_next_record(opener):
    svc = opener().service
    view = svc.back(ALICE, None)
    assert view.message == "You have not answered anything yet."
    assert view.state == "ready" and not view.record.editing


# --- queue states, leases ---------------------------------------------------------------

def test_waiting_while_others_hold_the_rest_then_done(opener):
    rt = opener(records=2, LEASE_TTL="120")
    svc = rt.service
    a = svc.next(ALICE)
    b = svc.next(BOB)
    assert a.record.record_id != b.record.record_id
    waiting = svc.submit(ALICE, a.record.ticket, ["circle"])
    assert waiting.state == "waiting" and waiting.held_by_others == 1
    assert time.time() + 100 < waiting.frees_at <= time.time() + 121
    # `progress` is exact; the counts inside a view may lag by a second on a shared backend (PostgreSQL)
    assert svc.progress(ALICE).remaining_for_me == 1
    done_bob = svc.submit(BOB, b.record.ticket, ["square"])
    assert done_bob.state == "done" and svc.progress(BOB).remaining_for_me == 0
    done = svc.next(ALICE)
    assert done.state == "done" and svc.progress(ALICE).team_complete == 2


def test_release_gives_the_records_back_at_once(opener):
    svc = opener(records=2).service
    a = svc.next(ALICE)
    svc.next(BOB)
    assert svc.next(CAROL).state == "waiting"
    assert svc.release("alice") == 1
    c = svc.next(CAROL)
    assert c.state == "ready" and c.record.record_id == a.record.record_id
    # alice's old ticket is still hers: a late answer is kept, never lost (counted beyond the overlap)
    svc.submit(ALICE, a.record.ticket, ["circle"])
    assert svc.progress(ALICE).mine_total == 1


def test_the_last_tab_of_a_person_closing_releases_their_records(opener):
    svc = opener(records=2).service
    a = svc.next(ALICE)
    svc.next(BOB)
    svc.tab_opened("tab-1", "alice")
    svc.tab_opened("tab-2", "alice")
    svc.tab_opened("tab-1", "alice")  # the same tab again (a reload of its view) counts once
    svc.tab_opened(None, "alice")  # a caller with no tab (the API) is not counted
    svc.tab_closed("tab-1")
    assert svc.next(CAROL).state == "waiting"  # alice still has a tab open
    svc.tab_closed("tab-unknown")
    svc.tab_closed(None)
    svc.tab_closed("tab-2")
    c = svc.next(CAROL)
    assert c.state == "ready" and c.record.record_id == a.record.record_id
    svc.tab_closed("tab-2")  # closed twice: nothing more happens


def test_the_image_route_gets_the_rendered_file_from_the_service(opener):
    svc = opener(records=2).service
    shown = svc.next(ALICE).record
    found = svc.image(shown.record_id)
    assert found is not None and found.path.is_file() and found.media_type.startswith("image/")
    assert svc.cached_image(shown.record_id) == found  # rendered and its row in memory: no store read
    assert svc.image(999_999) is None and svc.cached_image(999_999) is None


def test_a_row_read_brings_the_rows_that_follow_in_the_hand_out_order(opener):
    """One store read per refill would cost a query per click or two; the rows after a missing one in the
    hand-out order come with it (prefetch.READ_AHEAD), so forty answers take a few reads."""
    rt = opener(records=120, PREFETCH_DEPTH="4")
    reads: list[list[int]] = []
    store_read = rt.backend.records
    rt.backend.records = lambda ids: (reads.append(list(ids)), store_read(ids))[1]  # type: ignore[method-assign]
    view, answered = rt.service.next(ALICE), 0
    while view.state == "ready" and answered < 40:
        view = rt.service.submit(ALICE, view.record.ticket, ["circle"])
        answered += 1
    assert answered == 40 and view.state == "ready"
    assert 1 <= len(reads) <= 3, [len(r) for r in reads]


def test_prefetched_records_are_taken_over_by_someone_with_nothing_else(opener):
    rt = opener(records=3, PREFETCH_DEPTH="2")
    svc = rt.service
    a = svc.next(ALICE)
    wait_until(lambda: len(rt.backend.leases().get("alice", [])) == 3)
    b = svc.next(BOB)  # everything is leased by alice, two of them unseen in her buffer: I5
    assert b.state == "ready" and b.record.record_id != a.record.record_id
    seen = {a.record.record_id}
    view = svc.submit(ALICE, a.record.ticket, ["circle"])
    while view.state == "ready":
        assert view.record.record_id not in seen and view.record.record_id != b.record.record_id
        seen.add(view.record.record_id)
        view = svc.submit(ALICE, view.record.ticket, ["circle"])
    assert len(seen) == 2 and view.state == "waiting"  # bob still holds the third
    svc.submit(BOB, b.record.ticket, ["square"])
    # on PostgreSQL bob's lease ends with his answer's commit: until then alice is rightly told to wait
    assert rt.backend.flush(10)
    assert svc.next(ALICE).state == "done"


# --- persistence ------------------------------------------------------------------------

def test_a_restart_keeps_answers_progress_and_outstanding_tickets(opener):
    rt = opener(overlap=2)
    svc = rt.service
    first = svc.next(ALICE)
    second = svc.submit(ALICE, first.record.ticket, ["circle"])
    third = svc.skip(ALICE, second.record.ticket)
    rt.close()

    rt2 = opener(overlap=2)
    svc2 = rt2.service
    p = svc2.progress(ALICE)
    assert (p.mine_today, p.mine_total, p.team_answers) == (1, 1, 1)
    view = svc2.next(ALICE)
    assert view.record.record_id not in (first.record.record_id, second.record.record_id)
    # the ticket shown before the restart still answers (the signing key is kept in DATA_DIR)
    svc2.submit(ALICE, third.record.ticket, ["square"])
    assert svc2.progress(ALICE).mine_total == 2
    # and going back reaches answers given before the restart
    back = svc2.back(ALICE, None)
    assert back.record.editing
    rt2.close()
    got = stored(opener)
    assert got[(third.record.record_id, "alice")] == ("submitted", {"label": "square"}, None)
    assert got[(second.record.record_id, "alice")][0] == "skipped"


@pytest.mark.parametrize("bad", ["hexagon", ["circle", "square"], [], {"label": "hexagon"}, {"colour": "red"},
                                 {"label": 1}, 3, None, {"label": "circle\x00"}])
def test_a_wrong_answer_is_refused_before_anything_is_queued(opener, bad):
    rt = opener()
    svc = rt.service
    view = svc.next(ALICE)
    with pytest.raises(InputError):
        svc.submit(ALICE, view.record.ticket, bad)
    assert svc.next(ALICE).record.record_id == view.record.record_id  # still the one to answer
    assert svc.progress(ALICE, wait=0).mine_total == 0 and svc.wait_saved(ALICE, 1).pending == 0
    rt.close()
    assert stored(opener) == {}


def test_several_questions_the_answer_object_its_suggestion_and_back(opener):
    rt = opener(TASK_FILE=str(Path(__file__).resolve().parent.parent / "examples" / "questions" / "task.toml"))
    svc = rt.service
    first = svc.next(ALICE)
    assert first.record.suggestion == {"shape": first.record.metadata["label"]}
    assert first.record.as_dict()["suggestion"] == first.record.suggestion and first.record.answer == {}
    for bad, words in (({"shape": "circle"}, r"\(clarity\) needs an answer"),
                       ({"shape": "circle", "clarity": 6}, "6 is off the scale"),
                       ({"shape": "circle", "clarity": True}, "whole number"),
                       ({"shape": "circle", "clarity": 2, "caption": "x" * 201}, "too long"),
                       ("circle", "an object with a value per question")):
        with pytest.raises(InputError, match=words):
            svc.submit(ALICE, first.record.ticket, bad)
    answer = {"shape": "square", "issues": ["small"], "clarity": 2, "caption": " odd one "}
    second = svc.submit(ALICE, first.record.ticket, answer)
    back = svc.back(ALICE, second.record.ticket)
    assert back.record.record_id == first.record.record_id
    assert back.record.answer == {**answer, "caption": "odd one"}
    assert back.record.as_dict()["answer"] == back.record.answer
    assert svc.wait_saved(ALICE, timeout=5).text == "All answers saved"
    rt.close()
    assert stored(opener)[(first.record.record_id, "alice")] == ("submitted", {**answer, "caption": "odd one"}, None)
