"""Nothing queued is dropped at shutdown: what failing storage did not take is kept and committed at the next start.

Today (issue 11): "writer did not finish within 30 s; 9 ops still queued",
then a restart where those answers are gone. Now the writer gives failing
storage `give_up_after` seconds at close, then writes what it holds to a
recovery file in DATA_DIR; the next start commits it once (never over a
newer answer, never twice) before assignment is rebuilt, and removes it.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import wait
from datetime import timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest
from storehelpers import any_store, engine, make_store, rows  # noqa: F401 - fixtures

from annotator import recovery
from annotator.model import AuditWrite, LegacyQuestion, ReopenWrite, ResponseWrite, UserSeen, decode_answer, utcnow
from annotator.pg_store import PgStore
from annotator.recovery import RecoveryError
from annotator.store_protocol import StoreProtocol
from annotator.writer import Writer, WriterClosedError


def answer(rid: int, user: str, label: str, at=None, comment: str | None = None) -> ResponseWrite:
    return ResponseWrite(rid, user, "submitted", {"label": label}, comment, 1200, at or utcnow(), first=True)


def add_records(store: StoreProtocol, n: int) -> None:
    from annotator.model import NewRecord
    store.add_records([NewRecord(f"k{i}", f"img/{i}.png", "0" * 64, 10, 10, 100) for i in range(n)])


class Failing:
    """store.apply while `failing` is set: raises the engine's I/O error (a transient failure)."""

    def __init__(self, store: StoreProtocol) -> None:
        self.real = store.apply
        self.failing = threading.Event()
        self.error = psycopg.OperationalError if isinstance(store, PgStore) else duckdb.IOException

    def __call__(self, ops) -> None:
        if self.failing.is_set():
            raise self.error("injected: storage unavailable")
        self.real(ops)


def test_file_round_trip_keeps_every_op_type_and_any_text(tmp_path: Path) -> None:
    at = utcnow()
    ops = [answer(3, "ann", "cat", at, comment="héllo \u2028 \U0001f600"),
           ResponseWrite(4, "bob", "skipped", {}, None, None, at),
           UserSeen("ann", at), AuditWrite("boss", "reopen", {"record_id": 3, "extra": 1}, at), ReopenWrite(3, 1)]
    path = recovery.save(tmp_path, ops)
    assert path.parent == tmp_path / "recovery" and path.name.endswith(".jsonl")
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    header = json.loads(path.read_text().splitlines()[0])
    assert header["version"] == 2 and header["ops"] == 5 and header["kind"] == "annotator-unsaved-writes"
    loaded = recovery.load(path)
    assert loaded[0] == ResponseWrite(3, "ann", "submitted", {"label": "cat"}, "héllo \u2028 \U0001f600", 1200, at)
    assert loaded[1:] == ops[1:]
    assert recovery.pending(tmp_path) == [path]
    second = recovery.save(tmp_path, ops[:1])  # a later spill never overwrites an earlier one
    assert recovery.pending(tmp_path) == [path, second]


@pytest.mark.parametrize("kind, want", [
    ("label", [{"label": "cat"}, {}]),
    ("labels", [{"labels": ["cat", "dog"]}, {}, {"labels": []}]),
])
def test_a_file_written_before_typed_answers_reads_its_label_lists(tmp_path: Path, kind: str, want: list) -> None:
    """Version 1 files (answers as lists of labels) map through the task's first question, like the migration."""
    lists = [["cat"], []] if kind == "label" else [["cat", "dog"], [], []]
    statuses = ["submitted", "skipped", "submitted"]
    at = "2025-03-01T09:00:00"
    lines = [json.dumps({"kind": "annotator-unsaved-writes", "version": 1, "ops": len(lists), "written_at": at})]
    lines += [json.dumps({"type": "response", "record_id": i + 1, "user_id": "ann", "status": statuses[i],
                          "answer": answer, "comment": None, "time_spent_ms": 5, "at": at})
              for i, answer in enumerate(lists)]
    path = tmp_path / "recovery" / "unsaved-old.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    loaded = recovery.load(path, LegacyQuestion(kind, kind))  # type: ignore[arg-type]
    assert [op.answer for op in loaded] == want and [op.status for op in loaded] == statuses[:len(lists)]
    with pytest.raises(RecoveryError, match="lists of labels"):
        recovery.load(path)  # no label question to give them to: the file is named and kept


def test_unreadable_file_names_itself(tmp_path: Path) -> None:
    folder = tmp_path / "recovery"
    folder.mkdir()
    (folder / "unsaved-1.jsonl").write_text('{"kind": "annotator-unsaved-writes", "version": 99, "ops": 0}\n')
    with pytest.raises(RecoveryError, match="unsaved-1.jsonl"):
        recovery.load(folder / "unsaved-1.jsonl")


def test_replay_commits_once_and_never_over_a_newer_answer(any_store: StoreProtocol, tmp_path: Path) -> None:
    add_records(any_store, 4)
    t0 = utcnow()
    committed_before_stop = answer(1, "ann", "cat", t0)
    any_store.apply([committed_before_stop])  # its batch reached storage, though the writer saw an error
    newer = answer(2, "bob", "dog", t0 + timedelta(seconds=5))
    any_store.apply([newer])  # bob answered again after the failed run (on another replica, say)
    audit = AuditWrite("boss", "reopen", {"record_id": 3}, t0)
    any_store.apply([audit])
    spilled = [committed_before_stop, answer(2, "bob", "cat", t0), answer(3, "ann", "bird", t0),
               answer(3, "ann", "fish", t0 + timedelta(seconds=1)), UserSeen("carl", t0), audit,
               AuditWrite("boss", "release_user", {"user": "ann"}, t0)]
    path = recovery.save(tmp_path, spilled)
    [done] = recovery.replay(any_store, tmp_path)
    assert (done.ops, done.committed, done.already_stored, done.refused) == (7, 4, 3, 0)
    assert not path.exists() and recovery.pending(tmp_path) == []
    current = {(r, u): decode_answer(a) for r, u, a in rows(any_store, "SELECT record_id, user_id, answer FROM responses")}
    assert current == {(1, "ann"): {"label": "cat"}, (2, "bob"): {"label": "dog"}, (3, "ann"): {"label": "fish"}}
    # exactly once: the replayed first answer is not in the history twice, and only the in-file edit is
    assert [(r, u, decode_answer(a)) for r, u, a in
            rows(any_store, "SELECT record_id, user_id, answer FROM response_history ORDER BY 1")] == [
        (3, "ann", {"label": "bird"})]
    assert sorted(rows(any_store, "SELECT action FROM audit")) == [("release_user",), ("reopen",)]
    assert rows(any_store, "SELECT user_id FROM users WHERE user_id = 'carl'") == [("carl",)]
    assert recovery.replay(any_store, tmp_path) == []  # nothing left: a second start changes nothing


def test_replay_keeps_the_file_while_storage_fails(any_store: StoreProtocol, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    add_records(any_store, 2)
    path = recovery.save(tmp_path, [answer(1, "ann", "cat")])
    failing = Failing(any_store)
    failing.failing.set()
    monkeypatch.setattr(any_store, "apply", failing)
    with pytest.raises(RecoveryError, match="is kept") as refused:
        recovery.replay(any_store, tmp_path, timeout=0.5)
    assert str(path) in str(refused.value)
    assert path.exists() and recovery.pending(tmp_path) == [path]
    monkeypatch.undo()
    assert len(recovery.replay(any_store, tmp_path)) == 1 and not path.exists()
    assert [decode_answer(a) for (a,) in rows(any_store, "SELECT answer FROM responses")] == [{"label": "cat"}]


def test_close_while_storage_fails_spills_instead_of_dropping(any_store: StoreProtocol, tmp_path: Path) -> None:
    add_records(any_store, 20)
    failing = Failing(any_store)
    writer = Writer(failing, refuses=any_store.refuses, spill=lambda ops: str(recovery.save(tmp_path, ops)),
                    retry_initial=0.01, retry_max=0.05, give_up_after=0.5)
    writer.start()
    first = [writer.put(answer(i, "ann", "cat")) for i in range(1, 6)]
    assert not wait(first, timeout=10).not_done
    failing.failing.set()
    queued = [writer.put(answer(i, "ann", "dog")) for i in range(1, 11)] + [writer.put(UserSeen("ann", utcnow()))]
    time.sleep(0.2)
    started = time.monotonic()
    writer.close(timeout=30)
    assert time.monotonic() - started < 10  # not the full 30 s: failing storage gets give_up_after
    for ack in queued:
        with pytest.raises(WriterClosedError, match="kept in"):
            ack.result(0)
    [path] = recovery.pending(tmp_path)
    assert len(recovery.load(path)) == 11
    [done] = recovery.replay(any_store, tmp_path)  # the next start, storage back
    assert done.committed == 11
    got = {r: decode_answer(a) for r, a in rows(any_store, "SELECT record_id, answer FROM responses WHERE user_id = 'ann'")}
    assert got == {i: {"label": "dog"} for i in range(1, 11)}
    assert rows(any_store, "SELECT count(*) FROM response_history") == [(5,)]  # the five cats, once each
