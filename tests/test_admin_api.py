"""The admin endpoints through the real server's API: refused for non-admins with the store (and the Hub)
unchanged, carried out and audited for the admin. The app exports to a local stand-in for the Hub."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from clients import ApiError, ApiUser
from dashhelpers import annotate, sign_in, start_password_app
from fakehub import FakeHub

from annotator.store import Store

REPO = "org/workshop-labels"
TOKEN = "hf_dashboard_test_secret"


def leaseholders(admin: ApiUser) -> set[str]:
    return {h["user"] for h in admin.call("dashboard")[0]["health"]["leases"]}


def test_admin_endpoints_refuse_non_admins_and_serve_admins(tmp_path: Path) -> None:
    with FakeHub(token=TOKEN) as hub:
        env = {**hub.client_env(tmp_path / "home"), "EXPORT_REPO": REPO, "EXPORT_EVERY": "60"}
        server = start_password_app(tmp_path, env=env)
        users: list[ApiUser] = []
        try:
            admin, ann = sign_in(server, "admin"), sign_in(server, "ann")
            users += [admin, ann]
            answered = annotate(ann, 3, seed=1)
            assert answered
            rid = answered[0]
            assert admin.next()["state"] == "ready"   # admin and ann now hold leases
            assert ann.next()["state"] == "ready"
            before = admin.call("dashboard")[0]
            assert {"admin", "ann"} <= leaseholders(admin)

            refused = {"admin_export": (), "admin_release_user": ("admin",), "admin_reopen": (rid, 2),
                       "admin_settings": ()}
            for name, args in refused.items():
                with pytest.raises(ApiError, match="ann is not an admin"):
                    ann.call(name, *args)
            mine = ann.call("dashboard")[0]
            assert set(mine) == {"at", "team"}  # no annotators, agreement or health for a non-admin
            assert mine["team"]["progress"]["answers"] == len(answered)

            after = admin.call("dashboard")[0]
            assert leaseholders(admin) >= {"admin", "ann"}  # nobody was released
            assert after["team"]["progress"] == before["team"]["progress"]
            assert {a["user"] for a in after["annotators"]} >= {"ann", "admin"}
            assert after["health"]["export"]["repo"] == REPO
            assert after["health"]["export"]["last_result"] is None and not hub.repo_exists(REPO)  # nothing pushed

            # the admin may
            reopened = admin.call("admin_reopen", rid, 2)[0]
            assert reopened["detail"] == {"record_id": rid, "extra": 2} and reopened["audited"]
            released = admin.call("admin_release_user", "ann")[0]
            assert released["detail"]["user"] == "ann" and released["detail"]["released"] >= 1
            assert "ann" not in leaseholders(admin)
            settings = admin.call("admin_settings")[0]
            assert settings["settings"]["ADMINS"] == "admin" and settings["settings"]["EXPORT_REPO"] == REPO
            assert TOKEN not in str(settings)
            with pytest.raises(ApiError, match="no record 99999"):
                admin.call("admin_reopen", 99999, 1)
            started = admin.call("admin_export")[0]
            assert started["detail"] == {"repo": REPO} and started["audited"]
            deadline = time.monotonic() + 60
            while (export := admin.call("dashboard")[0]["health"]["export"])["last_result"] in (None,) and \
                    time.monotonic() < deadline:
                time.sleep(0.5)
            assert export["last_result"] == "pushed", export
            assert "README.md" in hub.files(REPO)
        finally:
            for user in users:
                user.close()
            server.stop()
    assert "every acknowledged answer is committed" in server.log()
    assert TOKEN not in server.log()

    store = Store(server.data_dir / "annotator.duckdb")
    try:
        log = [(actor, action, detail) for _at, actor, action, detail in reversed(store.audit_log())]
        assert log == [("admin", "reopen", {"record_id": rid, "extra": 2}),
                       ("admin", "release_user", {"user": "ann", "released": released["detail"]["released"]}),
                       ("admin", "view_settings", {}),
                       ("admin", "export_now", {"repo": REPO})]
        assert store.extra_answers() == {rid: 2}
    finally:
        store.close()
