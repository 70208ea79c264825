"""Text is checked once at the edge: what a store cannot keep is refused before anything is queued.

A lone surrogate (JSON "\\ud800") cannot be encoded for DuckDB or Arrow, and
PostgreSQL refuses NUL; either used to fail a whole group commit. The service,
the admin actions and ingest refuse such text with a message, on both engines,
and nothing reaches the writer. Numbers that JSON parses to NaN or infinity
are refused the same way.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image
from test_service import ALICE, BOB, opener  # noqa: F401 - the fixture runs each test on both engines

from annotator import admin_actions
from annotator.auth import Identity
from annotator.ingest import ingest_folder
from annotator.service import InputError
from annotator.store import Store
from annotator.text import TextError, check_text, check_tree, text_problem

BAD_TEXT = ["\ud800", "ok \udfff then", "a\x00b", "\x00"]


def test_text_problem_names_the_character_and_where() -> None:
    assert text_problem("plain, accentué, 日本語, emoji \U0001f600, \u2028") is None
    assert text_problem("") is None
    assert "NUL" in text_problem("ab\x00") and "position 2" in text_problem("ab\x00")
    assert "U+D800" in text_problem("x\ud800") and "position 1" in text_problem("x\ud800")
    with pytest.raises(TextError, match="The comment contains an invalid character"):
        check_text("\udc80", "The comment")
    assert check_text("fine", "x") == "fine"


def test_check_tree_walks_keys_values_and_lists() -> None:
    good = {"a": [1, "b", {"c": None}], "d": 2.5}
    assert check_tree(good, "metadata") is good
    for bad in ({"a\x00": 1}, {"a": ["x", "\ud800"]}, [{"k": {"deep": "\x00"}}], ("\udfff",)):
        with pytest.raises(TextError):
            check_tree(bad, "metadata")


@pytest.mark.parametrize("bad", BAD_TEXT)
def test_service_refuses_unstorable_comment_before_queueing(opener, bad: str) -> None:  # noqa: F811
    rt = opener()
    svc = rt.service
    shown = svc.next(ALICE).record
    assert rt.backend.flush(5)  # the sign-in's UserSeen
    rows_before = rt.backend.writer_health().rows_written
    with pytest.raises(InputError, match="The comment contains"):
        svc.submit(ALICE, shown.ticket, ["circle"], bad)
    with pytest.raises(InputError, match="The answer contains"):
        svc.submit(ALICE, shown.ticket, [bad])
    assert rt.backend.flush(5)
    assert rt.backend.writer_health().rows_written == rows_before  # nothing was queued
    # the record is still on screen, and the same ticket still answers it
    assert svc.next(ALICE).record.record_id == shown.record_id
    svc.submit(ALICE, shown.ticket, ["circle"], "fine after all")
    assert svc.wait_saved(ALICE, 5).text == "All answers saved"
    assert rt.store.response(shown.record_id, "alice").comment == "fine after all"


@pytest.mark.parametrize("spent", [float("nan"), float("inf"), float("-inf"), json.loads("1e400")])
def test_service_refuses_non_finite_time_spent(opener, spent: float) -> None:  # noqa: F811
    rt = opener()
    shown = rt.service.next(BOB).record
    with pytest.raises(InputError, match="finite"):
        rt.service.submit(BOB, shown.ticket, ["circle"], None, spent)
    rt.service.submit(BOB, shown.ticket, ["circle"], None, 10**30)  # huge but finite: capped
    assert rt.service.wait_saved(BOB, 5).pending == 0
    assert rt.store.response(shown.record_id, "bob").time_spent_ms == 86_400_000


def test_service_refuses_an_unstorable_user_name(opener) -> None:  # noqa: F811
    rt = opener()
    with pytest.raises(InputError, match="Your user name contains"):
        rt.service.next(Identity("eve\x00", False))
    assert rt.backend.flush(5)
    assert "eve\x00" not in {u for u, *_ in rt.store.dashboard_users()}


def test_admin_release_refuses_unstorable_name(opener) -> None:  # noqa: F811
    rt = opener()
    boss = Identity("boss", True)
    with pytest.raises(InputError, match="The user name contains"):
        admin_actions.release_user(rt.admin_deps(), boss, "bob\ud800")
    assert rt.backend.flush(5)
    assert all(action != "release_user" for _, _, action, _ in rt.store.audit_log())


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_ingest_skips_unstorable_file_names_and_metadata(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("good.png", "nul-meta.png", "surrogate-meta.png"):
        (source / name).write_bytes(_png())
    # a file name that is not UTF-8 (Latin-1 bytes): Python lists it with a lone surrogate
    (source / os.fsdecode(b"caf\xe9.png")).write_bytes(_png())
    (source / "metadata.jsonl").write_text(
        json.dumps({"file_name": "nul-meta.png", "note": "a\u0000b"}) + "\n"
        + json.dumps({"file_name": "surrogate-meta.png", "note": "\ud800"}) + "\n", encoding="utf-8")
    store = Store(tmp_path / "a.duckdb")
    try:
        report = ingest_folder(store, source, tmp_path / "images")
        assert report.added == 2  # a name that is not UTF-8 is kept with its odd byte written out
        assert sorted(r.source_key for r in (store.record(i) for i in store.record_ids())) == [
            "folder:caf\\xe9.png", "folder:good.png"]
        skipped = dict(report.skipped)
        assert set(skipped) == {"folder:nul-meta.png", "folder:surrogate-meta.png"}
        assert all(why.startswith("Its file name or metadata") and " contains " in why for why in skipped.values())
    finally:
        store.close()
