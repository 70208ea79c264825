"""An admin clears a rude nickname off the projector's leaderboard, through the real server (issue 17).

Refused to anyone else with nothing changed; for the admin, audited, off the room's screen at its next
refresh, and the cleared nickname cannot be chosen again, by its owner or anyone else.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from clients import ApiError, ApiUser
from dashhelpers import annotate, sign_in, start_password_app

from annotator.store import Store


def shown_names(viewer: ApiUser) -> list[str]:
    return [row["name"] for row in viewer.get("/projector/data").json()["leaderboard"]["rows"]]


def test_an_admin_clears_a_nickname_and_nobody_else_can(tmp_path: Path) -> None:
    server = start_password_app(tmp_path, env={"LEADERBOARD": "on"})
    try:
        with sign_in(server, "ann") as ann, sign_in(server, "bob") as bob, sign_in(server, "admin") as admin:
            annotate(ann, 6, seed=1)
            annotate(bob, 6, seed=2)
            assert "Rude" in ann.call("nickname", "Rude")[0]
            assert "Rude" in shown_names(bob)

            with pytest.raises(ApiError, match="bob is not an admin"):
                bob.call("admin_clear_nickname", "ann")
            with pytest.raises(ApiError, match="has no nickname"):
                admin.call("admin_clear_nickname", "bob")
            with pytest.raises(ApiError, match="Name the annotator whose nickname to clear"):
                admin.call("admin_clear_nickname", "  ")

            done = admin.call("admin_clear_nickname", "ann")[0]
            assert done["action"] == "nickname" and done["audited"]
            assert done["detail"] == {"user": "ann", "nickname": "", "cleared": "Rude"}
            deadline = time.monotonic() + 25  # the projector refreshes every 10 s
            while "Rude" in (names := shown_names(bob)) and time.monotonic() < deadline:
                time.sleep(1)
            assert "Rude" not in names and all(n.startswith("Annotator ") for n in names), names

            for who in (ann, bob):
                with pytest.raises(ApiError, match="organizer took 'rude' off"):
                    who.call("nickname", "rude")
            assert "Owl" in ann.call("nickname", "Owl")[0], "a decent one may follow"
    finally:
        server.stop()
    store = Store(tmp_path / "data" / "annotator.duckdb")
    try:
        entries = store.audit_entries("nickname")
    finally:
        store.close()
    assert [(actor, detail) for _, actor, detail in entries] == [
        ("ann", {"nickname": "Rude"}), ("admin", {"user": "ann", "nickname": "", "cleared": "Rude"}),
        ("ann", {"nickname": "Owl"})]
