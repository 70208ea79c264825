"""Adjudication through the real server's API (issue 17): `admin_review` lists records by disagreement and
`admin_set_final` settles one for the admin, checked and audited; annotators are refused and a wrong
answer gets a clear message; nothing but the admin's final answer is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clients import ApiError
from dashhelpers import sign_in, start_password_app

from annotator.store import Store


def test_admin_reviews_and_settles_a_record_through_the_api_and_others_are_refused(tmp_path: Path) -> None:
    server = start_password_app(tmp_path, images=4)
    users = []
    try:
        admin, ann, bob = (sign_in(server, u) for u in ("admin", "ann", "bob"))
        users += [admin, ann, bob]
        first = ann.next()["item"]
        ann.submit(first["record"], ["circle"])
        view = bob.next()
        assert view["item"]["record_id"] == first["record_id"]
        bob.submit(view["item"]["record"], ["square"])
        rid = first["record_id"]

        for name, args in {"admin_set_final": (rid, '{"label": "circle"}'), "admin_clear_final": (rid,),
                           "admin_review": ("", "")}.items():
            with pytest.raises(ApiError, match="ann is not an admin"):
                ann.call(name, *args)
        with pytest.raises(ApiError, match="'hexagon' is not a label"):
            admin.call("admin_set_final", rid, '{"label": "hexagon"}')
        with pytest.raises(ApiError, match="There is no record 9999"):
            admin.call("admin_set_final", 9999, '{"label": "circle"}')

        listed = admin.call("admin_review", "", "")[0]["records"]
        assert [(r["record_id"], r["agreement"]) for r in listed][:1] == [(rid, 0.0)]
        assert listed[0]["answers"] == [{"user": "ann", "answer": {"label": "circle"}},
                                        {"user": "bob", "answer": {"label": "square"}}]
        assert [r["record_id"] for r in admin.call("admin_review", "square", "ann")[0]["records"]] == [rid]
        assert admin.call("admin_review", "triangle", "")[0]["records"] == []

        done = admin.call("admin_set_final", rid, json.dumps({"label": "square"}))[0]
        assert done["audited"] and done["detail"] == {"record_id": rid, "answer": {"label": "square"}}
        again = admin.call("admin_review", "", "bob")[0]["records"]
        assert again[0]["final"]["answer"] == {"label": "square"} and again[0]["final"]["admin"] == "admin"
    finally:
        for user in users:
            user.close()
        server.stop()
    store = Store(server.data_dir / "annotator.duckdb")
    try:
        assert {r: (f.answer, f.admin) for r, f in store.finals().items()} == {rid: ({"label": "square"}, "admin")}
        assert [(actor, detail) for _, actor, detail in store.audit_entries("set_final")] == [
            ("admin", {"record_id": rid, "answer": {"label": "square"}})]
        assert store.audit_entries("clear_final") == []
    finally:
        store.close()
