"""Each Gradio internal the app relies on (annotator/ui/gradio_glue.py), against the installed Gradio.

A Gradio upgrade that renames or changes one of them fails here, by name,
instead of quietly signing nobody in on the click routes, polling the queue
at full speed, or showing an exception's text on the page.
"""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path
from typing import Any

import gradio as gr
import gradio.oauth
import gradio.queueing
import pytest
from fastapi import FastAPI, Request
from gradio import processing_utils
from gradio.queueing import Queue
from starlette.testclient import TestClient

from annotator.ui import gradio_glue as glue


def mount(blocks: gr.Blocks, **kwargs: Any) -> tuple[FastAPI, FastAPI]:
    """The parent app and Gradio's app in it, mounted the way annotator.ui.server mounts them."""
    app = FastAPI()
    gr.mount_gradio_app(app, blocks, path="/", **kwargs)
    return app, glue.mounted_app(app)


def echo_blocks(**kwargs: Any) -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False, **kwargs) as blocks:
        out = gr.Textbox()
        gr.Button("go").click(lambda: "plain", None, out, api_name="go", queue=False)
    return blocks


def test_mounted_app_is_gradios_app_for_these_blocks() -> None:
    blocks = echo_blocks()
    _, gradio_app = mount(blocks)
    assert gradio_app.get_blocks() is blocks


def test_login_user_names_whoever_signed_in_with_gradios_password_form() -> None:
    _, gradio_app = mount(echo_blocks(), auth=[("ann", "secret-pw")])

    def whoami(request: Request) -> dict[str, Any]:
        return {"name": glue.login_user(gradio_app, request)}

    gradio_app.add_api_route("/whoami", whoami)
    with TestClient(gradio_app) as client:
        assert client.get("/whoami").json() == {"name": None}
        assert client.post("/login", data={"username": "ann", "password": "secret-pw"}).status_code == 200
        assert client.get("/whoami").json() == {"name": "ann"}
        client.cookies.clear()
        client.cookies.set(f"access-token-unsecure-{gradio_app.cookie_id}", "forged")
        assert client.get("/whoami").json() == {"name": None}


def _request(session: dict[str, Any] | None) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    if session is not None:
        scope["session"] = session
    return Request(scope)


def test_oauth_userinfo_reads_gradios_session_and_drops_an_expired_one() -> None:
    userinfo = {"preferred_username": "ann"}
    assert glue.oauth_userinfo(_request(None)) is None  # no SessionMiddleware: not hf mode
    assert glue.oauth_userinfo(_request({})) is None
    live = {"oauth_info": {"userinfo": userinfo, "expires_at": time.time() + 60}}
    assert glue.oauth_userinfo(_request(live)) == userinfo
    expired = {"oauth_info": {"userinfo": userinfo, "expires_at": time.time() - 1}}
    assert glue.oauth_userinfo(_request(expired)) is None
    assert expired == {}  # as Gradio does: the expired sign-in is gone from the session


class SeesSession:
    """Records whether Gradio's session was already read when a request reached it."""
    seen: list[bool] = []

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            SeesSession.seen.append("oauth_info" in scope.get("session", {}))
        await self.app(scope, receive, send)


@pytest.mark.filterwarnings("ignore:Gradio does not support OAuth features outside of a Space")
def test_inner_middleware_runs_inside_gradios_session_middleware(monkeypatch: pytest.MonkeyPatch) -> None:
    """hf mode off a Space: Gradio's mocked OAuth routes put a profile in the session as a real sign-in does."""
    monkeypatch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: {
        "access_token": "t", "userinfo": {"preferred_username": "ann"}, "expires_at": time.time() + 60})
    with gr.Blocks(analytics_enabled=False) as blocks:
        gr.LoginButton()
    _, gradio_app = mount(blocks)

    def whoami(request: Request) -> dict[str, Any]:
        return {"userinfo": glue.oauth_userinfo(request)}

    gradio_app.add_api_route("/whoami", whoami)
    glue.add_inner_middleware(gradio_app, SeesSession)
    SeesSession.seen = []
    with TestClient(gradio_app, base_url="https://testserver") as client:
        assert client.get("/login/callback", follow_redirects=False).status_code in (302, 307)
        assert client.get("/whoami").json() == {"userinfo": {"preferred_username": "ann"}}
    assert SeesSession.seen[-1] is True  # the session cookie was read before our middleware ran
    with pytest.raises(RuntimeError, match="first request"):
        glue.add_inner_middleware(gradio_app, SeesSession)
    assert re.search(r"add_middleware\(\s*SessionMiddleware", inspect.getsource(gradio.oauth.attach_oauth))


def test_routes_first_puts_the_routes_before_gradios() -> None:
    _, gradio_app = mount(echo_blocks())
    gradio_app.add_api_route("/ann/next", lambda: {"ok": True}, methods=["POST"])
    gradio_app.add_api_route("/ann/skip", lambda: {"ok": True}, methods=["POST"])
    before = len(gradio_app.router.routes)
    glue.routes_first(gradio_app, "/ann/")
    assert [r.path for r in gradio_app.router.routes[:2]] == ["/ann/next", "/ann/skip"]
    assert len(gradio_app.router.routes) == before
    with TestClient(gradio_app) as client:
        assert client.post("/ann/next").json() == {"ok": True}
        assert client.get("/config").status_code == 200  # Gradio's own routes still answer


def test_slow_queue_polling_sets_what_gradios_queue_reads() -> None:
    blocks = echo_blocks()
    mount(blocks)
    glue.slow_queue_polling(blocks, 0.02, 0.1)
    queue = blocks._queue
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (0.02, 0.1)
    # Gradio must still read these attributes while idle, or setting them does nothing
    assert "self.sleep_when_free" in inspect.getsource(Queue.start_processing)
    assert "self.progress_update_sleep_when_free" in inspect.getsource(Queue.start_progress_updates)


def test_replace_event_functions_changes_what_an_event_runs() -> None:
    blocks = echo_blocks()
    replaced: list[str] = []

    def replace(fn: Any) -> Any:
        replaced.append(fn())
        return lambda: "wrapped"

    glue.replace_event_functions(blocks, replace)
    assert replaced == ["plain"]
    _, gradio_app = mount(blocks)
    index = next(i for i, f in blocks.fns.items() if f.api_name == "go")
    with TestClient(gradio_app) as client:
        r = client.post("/gradio_api/run/predict", json={"data": [], "fn_index": index, "session_hash": "s1"})
    assert r.status_code == 200 and r.json()["data"] == ["wrapped"]


def test_file_cache_dir_is_where_gradio_serves_files_without_a_copy(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    files = gr.File(file_count="multiple")
    folder = glue.file_cache_dir(files)
    assert folder == tmp_path / "gradio"
    inside = folder / "downloads" / "results.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text("a,b\n")
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("a,b\n")
    served = processing_utils.move_files_to_cache(files.postprocess([str(inside), str(outside)]), files,
                                                  postprocess=True)
    assert served[0]["path"] == str(inside)  # served as it is
    assert served[1]["path"] != str(outside) and Path(served[1]["path"]).is_relative_to(folder)  # copied in


def test_choice_refusals_keep_their_message_without_a_traceback() -> None:
    """What quiet_choice_refusals relies on: the three classes refuse an unknown value with gradio's Error,
    and the queue prints a traceback only when `print_exception` is true."""
    from gradio.exceptions import Error

    assert "e.print_exception" in inspect.getsource(gradio.queueing)
    glue.quiet_choice_refusals()
    glue.quiet_choice_refusals()  # idempotent: wrapped once
    for component in (gr.Radio(choices=["a", "b"]), gr.Dropdown(choices=["a", "b"]),
                      gr.CheckboxGroup(choices=["a", "b"])):
        with pytest.raises(Error, match="not in the list of choices") as refused:
            component.preprocess(["zzz"] if isinstance(component, gr.CheckboxGroup) else "zzz")
        assert refused.value.print_exception is False
        assert component.preprocess(["a"] if isinstance(component, gr.CheckboxGroup) else "a") in ("a", ["a"])
        assert not hasattr(type(component).preprocess.__wrapped__, "__wrapped__")
