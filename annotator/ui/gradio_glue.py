"""Every Gradio internal the app touches, in one place; tests/test_gradio_glue.py checks each one.

Gradio 6.31 has no public API for what these functions do. Each one names
the internal it relies on and why the app needs it, and the tests run it
against the installed Gradio, so an upgrade that changes one of them fails
there, loudly, instead of quietly signing nobody in or polling at full speed.
The other UI modules call these functions and touch no Gradio internal
themselves.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from fastapi import FastAPI, Request
from gradio.exceptions import Error as GradioError
from gradio.oauth import _get_valid_oauth_info_from_session
from starlette.middleware import Middleware
from starlette.routing import Mount

log = logging.getLogger(__name__)

EventFn = Callable[..., Any]


def mounted_app(app: FastAPI) -> FastAPI:
    """Gradio's own app inside `app`, once `gr.mount_gradio_app(app, blocks, ...)` has run.

    Relies on: `mount_gradio_app` mounting its `gradio.routes.App` as a Starlette `Mount` of `app`
    (gradio/routes.py, `app.mount(path, gradio_app)`). The click routes, /healthz and the person
    check go inside it, where Gradio's session middleware and login tokens name the person.
    """
    return next(r.app for r in app.routes if isinstance(r, Mount))


def oauth_userinfo(request: Request) -> dict[str, Any] | None:
    """The HF OAuth userinfo of the person signed in to this session; None when absent or expired.

    Relies on: `gradio.oauth._get_valid_oauth_info_from_session` (private): the `oauth_info` that
    Gradio's OAuth callback keeps in the session, dropped once expired, as Gradio checks it before it
    fills `gr.OAuthProfile` for an event. A plain route gets no OAuthProfile; this names the same person.
    """
    session = request.scope.get("session")  # present when Gradio installed its SessionMiddleware (hf mode)
    info = _get_valid_oauth_info_from_session(session) if session is not None else None
    return info["userinfo"] if info else None


def login_user(gradio_app: FastAPI, request: Request) -> str | None:
    """The name Gradio's password sign-in (`auth=`) gave this browser; None when not signed in.

    Relies on: `App.cookie_id` (the sign-in cookie is `access-token-<cookie_id>`, or
    `access-token-unsecure-<cookie_id>` over plain HTTP) and `App.tokens` (token -> name), which
    gradio/routes.py's `/login` fills and reads for `gr.Request.username`; plain routes read the same.
    """
    cookie_id = getattr(gradio_app, "cookie_id", None)
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}")
    return getattr(gradio_app, "tokens", {}).get(token) if token else None


def routes_first(gradio_app: FastAPI, prefix: str) -> None:
    """Move the routes under `prefix` to the front of Gradio's route list.

    Relies on: Starlette matching `router.routes` in list order, and Gradio's ~80 routes being in
    that list before ours; the list is reordered in place. Matching a click against all of them
    first cost 0.15 ms.
    """
    routes = gradio_app.router.routes
    mine = [r for r in routes if getattr(r, "path", "").startswith(prefix)]
    routes[:] = mine + [r for r in routes if r not in mine]


def slow_queue_polling(blocks: gr.Blocks, idle_s: float, progress_s: float) -> None:
    """Make Gradio's queue look for work every `idle_s` and for progress every `progress_s` when idle.

    Relies on: `Blocks._queue` (private, set by `mount_gradio_app`) and its `sleep_when_free` and
    `progress_update_sleep_when_free` (1 ms and 10 ms in gradio/queueing.py: about 55 ms of CPU a
    second on an idle server). Logs a warning and leaves one alone when Gradio no longer has it.
    """
    queue = blocks._queue
    for name, seconds in (("sleep_when_free", idle_s), ("progress_update_sleep_when_free", progress_s)):
        if not isinstance(getattr(queue, name, None), float):
            log.warning("Gradio's queue has no %s any more: its idle polling is left as it is", name)
            continue
        setattr(queue, name, seconds)


def replace_event_functions(blocks: gr.Blocks, replace: Callable[[EventFn], EventFn]) -> None:
    """Give every event of `blocks` that runs Python `replace(fn)` instead of its function `fn`.

    Relies on: `Blocks.fns` (event id -> `gradio.blocks.BlockFunction`) and Gradio calling
    `BlockFunction.fn` when the event runs. Gradio has no hook around every event; the app needs
    one to keep an unexpected exception's text off the page (annotator.ui.errors).
    """
    for block_fn in blocks.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = replace(block_fn.fn)


def quiet_choice_refusals() -> None:
    """Keep Gradio's refusal of a value outside a Radio's, Dropdown's or CheckboxGroup's choices, without its
    traceback in the log: the caller sees the message, and a script sending made-up values cannot fill the
    log with tracebacks any more.

    Relies on: those classes' `preprocess` raising `gradio.exceptions.Error`, and the queue printing a
    traceback only when the Error's `print_exception` is true (gradio/queueing.py). Patched on the classes,
    so the copies of a component that Gradio keeps per session are covered too; calling it again is a no-op.
    """
    for cls in (gr.Radio, gr.Dropdown, gr.CheckboxGroup):
        original = cls.preprocess
        if getattr(original, "_quiet_refusals", False):
            continue

        @functools.wraps(original)
        def preprocess(self: Any, payload: Any, _original: Callable[..., Any] = original) -> Any:
            try:
                return _original(self, payload)
            except GradioError as exc:
                exc.print_exception = False
                raise

        preprocess._quiet_refusals = True  # type: ignore[attr-defined]
        cls.preprocess = preprocess  # type: ignore[method-assign]


def file_cache_dir(component: gr.components.Component) -> Path:
    """The folder from which Gradio serves `component`'s output files as they are, without a copy.

    Relies on: `Block.GRADIO_CACHE` (gradio/blocks.py, under GRADIO_TEMP_DIR) and Gradio copying an
    event's output file into it only when it is not there already. Downloads written there cost no
    second copy per click.
    """
    return Path(component.GRADIO_CACHE)


def add_inner_middleware(gradio_app: FastAPI, middleware: type, **options: Any) -> None:
    """Run the ASGI `middleware` innermost in Gradio's own app, inside Gradio's own middleware.

    Relies on: Gradio adding its middleware (CORS, Brotli, and in hf mode OAuth's SessionMiddleware)
    with `add_middleware` while it mounts, which puts each first in Starlette's `user_middleware`;
    appended last, `middleware` runs after the session cookie is read. Starlette builds the stack on
    the first request, so this raises RuntimeError once the app has served one.
    """
    if gradio_app.middleware_stack is not None:
        raise RuntimeError("middleware must be added before Gradio's app serves its first request")
    gradio_app.user_middleware.append(Middleware(middleware, **options))
