"""The HTTP app as `create_app` builds it (what it changes in Gradio to cost less CPU), and the
process `app.py` runs: what it says at start, how it stops, a busy port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

import pgserver
from apphelpers import start_app
from clients import ApiUser, make_images, read_store, write_task

from annotator.config import load_settings
from annotator.runtime import Runtime
from annotator.ui.annotate import CLICK_ROUTE
from annotator.ui.gradio_glue import mounted_app
from annotator.ui.server import QUEUE_IDLE_POLL_S, QUEUE_PROGRESS_POLL_S, create_app


def test_click_routes_first_and_gradio_queue_polling_slowed(tmp_path: Path) -> None:
    """Gradio's queue defaults (1 ms, 10 ms) cost an idle server ~55 ms of CPU a second (that Gradio
    still reads what is set: tests/test_gradio_glue.py)."""
    make_images(tmp_path / "source", 3, size=(48, 36))
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "SOURCE_DIR": str(tmp_path / "source"),
                              "TASK_FILE": str(write_task(tmp_path / "task.toml")), "AUTH_MODE": "local"})
    runtime = Runtime.open(settings)
    try:
        app = create_app(runtime)
        gradio_app = mounted_app(app)
        queue = gradio_app.get_blocks()._queue
        # the click routes come first, so a click is not matched against every Gradio route before them
        assert [r.path for r in gradio_app.router.routes[:5]] == [f"{CLICK_ROUTE}/{name}" for name in
                                                                  ("answer", "skip", "back", "next", "saved")]
        assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (QUEUE_IDLE_POLL_S,
                                                                                  QUEUE_PROGRESS_POLL_S)
    finally:
        runtime.close()


ROOT = Path(__file__).resolve().parent.parent
CLEAN_EXIT = (0, -15)  # uvicorn re-raises the SIGTERM it handled once the app has closed


def _app_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    make_images(tmp_path / "source", 6, size=(48, 36))
    return {"SOURCE_DIR": str(tmp_path / "source"), "TASK_FILE": str(write_task(tmp_path / "task.toml", overlap=1)),
            "AUTH_MODE": "local", **extra}


def _hold_heartbeat(url: str, session: str, opened: threading.Event) -> None:
    """What an open tab does: keep Gradio's heartbeat stream open until the server ends it."""
    try:
        with httpx.stream("GET", f"{url}/gradio_api/heartbeat/{session}", timeout=httpx.Timeout(60, connect=10)) as r:
            for _ in r.iter_raw():
                opened.set()
    except httpx.HTTPError:
        pass


def test_stop_with_open_tabs_is_quick_clean_and_keeps_every_answer(tmp_path: Path) -> None:
    """uvicorn waited 10 s for the tabs' heartbeat streams, then cancelled them with a CancelledError
    traceback; now the streams are closed at once and the stop takes well under the old 10 s."""
    server = start_app(tmp_path / "data", env=_app_env(tmp_path))
    try:
        with ApiUser.anonymous(server.url) as api:
            view, answered = api.next(), []
            while len(answered) < 4:
                answered.append(view["item"]["record_id"])
                view = api.submit(view["item"]["record"], ["circle"])
        tabs = []
        for i in range(3):
            opened = threading.Event()
            tab = threading.Thread(target=_hold_heartbeat, args=(server.url, f"tab{i}session", opened), daemon=True)
            tab.start()
            assert opened.wait(30)
            tabs.append(tab)
        started = time.monotonic()
        code = server.stop(timeout=60)
        took = time.monotonic() - started
    finally:
        server.kill()
    log = server.log()
    assert code in CLEAN_EXIT, log[-3000:]
    assert took < 5, f"the stop took {took:.1f} s\n{log[-3000:]}"  # 2 s on a quiet machine; it was 10 s
    assert "Traceback" not in log and "CancelledError" not in log and "graceful shutdown" not in log, log[-3000:]
    assert "closed: every acknowledged answer is committed" in log
    assert sorted(r.record_id for r in read_store(tmp_path / "data").responses) == sorted(answered)
    for tab in tabs:
        tab.join(10)
        assert not tab.is_alive()  # the server ended the streams


def test_a_busy_port_names_its_setting_and_no_url_is_printed(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **_app_env(tmp_path), "DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1",
               "CACHE_DIR": str(tmp_path / "cache"), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(port)}
        done = subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert f"GRADIO_SERVER_PORT={port}" in done.stderr and "already in use" in done.stderr, output[-3000:]
    assert "http://" not in output and "Traceback" not in output, output[-3000:]
    assert not (tmp_path / "data").exists()  # refused before anything was started or created


def test_the_start_log_is_true_for_postgresql(tmp_path: Path) -> None:
    """With STORE_URL the answers are committed to PostgreSQL: nothing says they go to DATA_DIR."""
    url = pgserver.create_database()
    try:
        server = start_app(tmp_path / "data", env=_app_env(tmp_path, STORE_URL=url, SECRET_KEY="k" * 32))
        try:
            log = server.log()
        finally:
            assert server.stop() in CLEAN_EXIT
    finally:
        pgserver.drop_database(url)
    started = log[:log.index("annotator: ")]
    assert "Answers are committed to PostgreSQL (STORE_URL)" in started, started
    assert "DB_MODE=direct" not in started and "committed there" not in started, started
    assert "DB_MODE=snapshot" not in started, started


def test_closing_a_persons_last_tab_frees_their_records_for_others(tmp_path: Path) -> None:
    """Each tab's page load tells the service it opened, Gradio's unload (the heartbeat closing) that
    it closed: the records come free when the last of a person's tabs closes, not before."""
    sys.path.insert(0, str(ROOT / "bench"))
    import loadgen

    env = loadgen.app_env(tmp_path, ["ann", "bob", "cy"], records=2, overlap=1)
    env["PREFETCH_DEPTH"] = "0"
    loadgen.ingest(env)
    server = loadgen.start_server("ours", env, tmp_path / "server.log")

    async def run() -> None:
        rec = loadgen.Recorder()
        tabs = [loadgen.Browser(server.url, loadgen.Person(u), rec) for u in ("ann", "ann", "bob", "cy")]
        ann1, ann2, bob, cy = tabs
        try:
            for tab in tabs:
                await tab.login()
            assert (await ann1.open_page()).state == "ready"
            assert (await ann2.open_page()).state == "ready"  # the same record, in a second tab
            assert (await bob.open_page()).state == "ready"
            assert (await cy.open_page(heartbeat=False)).state == "waiting"
            await ann1.close()
            await asyncio.sleep(1.0)
            assert (await cy.recheck()).state == "waiting"  # ann still has a tab open
            await ann2.close()
            deadline = time.monotonic() + 10
            while (view := await cy.recheck()).state != "ready":
                assert time.monotonic() < deadline, "ann's record was not freed when her last tab closed"
                await asyncio.sleep(0.2)
            assert view.record_id == ann1.view.record_id
        finally:
            for tab in (ann1, ann2, bob, cy):
                await tab.close()

    try:
        asyncio.run(run())
    finally:
        server.stop()
