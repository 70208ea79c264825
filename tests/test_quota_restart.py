"""An admin's quota override on DuckDB outlives a restart: the backend replays it from the audit log."""

from __future__ import annotations

from pathlib import Path

from annotator.backend import LocalBackend
from annotator.gold import GoldPlan
from annotator.model import NewRecord, ResponseWrite, utcnow
from annotator.store import Store


def answer_all(backend: LocalBackend, user: str) -> int:
    n = 0
    while (state := backend.next(user)).kind == "ready":
        _, ack = backend.answer(ResponseWrite(state.record_id, user, "submitted", {"label": "a"}, None, None,
                                              utcnow(), first=True))
        ack.result(10)
        n += 1
    assert state.kind == "quota"
    return n


def test_a_quota_override_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "annotator.duckdb"
    store = Store(path)
    ids = store.add_records([NewRecord(f"r{i}", f"r{i}.png", "0" * 64, 8, 8, 100) for i in range(10)])
    backend = LocalBackend(store, ids, 1, 60, plan=GoldPlan(quota=2))
    backend.set_quota("ann", 3)  # what admin_actions.set_quota does: set, then audit
    backend.audit("boss", "set_quota", {"user": "ann", "quota": 3}).result(10)
    assert answer_all(backend, "ann") == 3
    backend.close()

    store = Store(path)
    backend = LocalBackend(store, ids, 1, 60, plan=GoldPlan(quota=2))
    try:
        assert backend.next("ann").kind == "quota"  # 3 answers given, the override still in force
        assert answer_all(backend, "bob") == 2      # everyone else: the task's quota
        backend.set_quota("ann", 5)
        backend.audit("boss", "set_quota", {"user": "ann", "quota": 5}).result(10)
        assert answer_all(backend, "ann") == 2
    finally:
        backend.close()
