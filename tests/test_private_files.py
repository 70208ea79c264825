"""What the app leaves on disk (issue 12, item 8), checked after a real start of `app.py`.

- The DuckDB file and its WAL, the snapshot and its owner marker, the lock
  file: mode 0600, like the key and the passwords, whatever the umask the app
  was started with.
- "Prepare downloads" (a full copy of the results with their images) keeps
  one copy per admin: a second click replaces the first instead of leaving
  another copy in the temp folder (and a third in Gradio's cache).
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from apphelpers import start_app
from clients import ApiUser, make_images, write_task

from annotator.datadir_lock import LOCK_NAME
from annotator.snapshot import OWNER_MARKER
from annotator.store import Store

CLEAN_EXIT = (0, -15)  # uvicorn re-raises the SIGTERM it handled once the app has closed


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Start the app as a shell with umask 022 would: files 0644 unless the app says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    make_images(tmp_path / "src", 6, size=(48, 36))
    return {"SOURCE_DIR": str(tmp_path / "src"), "TASK_FILE": str(write_task(tmp_path / "task.toml", overlap=1)),
            "AUTH_MODE": "local", "CACHE_DIR": str(tmp_path / "cache"), **extra}


def _answer(url: str, n: int) -> None:
    with ApiUser.anonymous(url) as api:
        view = api.next()
        for _ in range(n):
            view = api.submit(view["item"]["record"], ["circle"])


def _mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


@pytest.mark.parametrize("db_mode", ["direct", "snapshot"])
def test_database_files_are_private(tmp_path: Path, permissive_umask: None, db_mode: str) -> None:
    data, cache = tmp_path / "data", tmp_path / "cache"
    server = start_app(data, env=_env(tmp_path, DB_MODE=db_mode))
    try:
        _answer(server.url, 3)
        live = (data if db_mode == "direct" else cache) / "annotator.duckdb"
        wal = live.with_name("annotator.duckdb.wal")
        assert wal.exists()  # committed answers, not yet checkpointed
        files = [live, wal, data / LOCK_NAME]
        assert {str(p): _mode(p) for p in files} == {str(p): "0o600" for p in files}
    finally:
        assert server.stop() in CLEAN_EXIT, server.log()[-3000:]
    if db_mode == "snapshot":  # the copies in DATA_DIR, written at the stop
        files = [data / "annotator.duckdb", data / OWNER_MARKER]
        assert {str(p): _mode(p) for p in files} == {str(p): "0o600" for p in files}
    probe = tmp_path / "probe"
    probe.touch()
    assert _mode(probe) == "0o644"  # the umask the app was started with was permissive


def test_a_database_made_by_another_process_is_made_private_when_opened(tmp_path: Path,
                                                                         permissive_umask: None) -> None:
    path = tmp_path / "annotator.duckdb"
    import duckdb
    duckdb.connect(str(path)).close()  # as a CLI command under umask 022 leaves it
    assert _mode(path) == "0o644"
    Store(path).close()
    assert _mode(path) == "0o600"


def _event_index(config: dict[str, Any], elem_id: str) -> int:
    ids = {c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id}
    return next(i for i, dep in enumerate(config["dependencies"])
                if any(target[0] in ids for target in dep["targets"]))


def _run_event(api: ApiUser, fn_index: int, data: list[Any]) -> list[Any]:
    """Trigger a queued event as the browser does (join, then read the session's event stream)."""
    session = uuid.uuid4().hex[:11]
    joined = api.http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                           "session_hash": session, "event_data": None})
    assert joined.status_code == 200, joined.text
    with api.http.stream("GET", f"/gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    assert message.get("success"), message
                    return message["output"]["data"]
    raise AssertionError("the event never completed")


def test_prepared_downloads_keep_one_copy_per_admin(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = start_app(tmp_path / "data", env=_env(tmp_path, TMPDIR=str(temp), GRADIO_TEMP_DIR=str(temp / "gradio")))
    try:
        _answer(server.url, 2)
        with ApiUser.anonymous(server.url) as api:  # the local user is the admin
            download = _event_index(api.config(), "admin-download")
            # its one input is the viewer's time zone (the page fills it in); its outputs end with the files
            first = _run_event(api, download, ["UTC"])
            _answer(server.url, 1)  # the results change between the two clicks
            second = _run_event(api, download, ["UTC"])
            links = {Path(f["path"]).name: f["url"] for f in second[-1]["value"]}
            assert {Path(f["path"]).name for f in first[-1]["value"]} == set(links)
            served = httpx.get(links["responses.csv"], timeout=30)
            assert served.status_code == 200 and served.text.strip()
        copies = sorted(str(p.relative_to(temp)) for p in temp.rglob("records.parquet"))
        assert len(copies) == 1, copies  # was one per click under annotator-export-*, plus Gradio's copy of each
    finally:
        assert server.stop() in CLEAN_EXIT, server.log()[-3000:]
