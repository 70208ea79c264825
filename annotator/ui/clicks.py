"""The page's click routes: plain JSON beside Gradio, identity exactly as Gradio's events get it.

A click through a Gradio event costs the server 5-6 ms before our handler
runs and the browser another ~80 ms applying the update; a plain FastAPI
route costs about 2 ms. The routes live inside Gradio's own FastAPI app so
that its session middleware (the OAuth cookie in hf mode) and its login
tokens (password mode) name the person; nothing in the body does. The
service holds every rule; a route turns JSON into a service call and back.
"""

from __future__ import annotations

import inspect
import json
from typing import Any, Awaitable, Callable, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from annotator.auth import AuthError, Identity
from annotator.runtime import Runtime
from annotator.service import InputError, SaveStatus
from annotator.ui.annotate import CLICK_ROUTE, page_view
from annotator.ui.errors import report
from annotator.ui.gradio_glue import routes_first
from annotator.ui.identity import identify_http

# how long /saved waits for a commit before it answers with the status as it is (storage failing)
SAVED_WAIT_S = 3.0
# An answer or skip posted with `?saved=wait` (the page sends it so when nothing else is queued behind
# it) is answered once its commit is done, or after this long: at a 3 s think time almost every answer
# is followed by a pause, and a separate /saved per pause was one more request per click. The page
# has already swapped to the next record, so nobody waits for this; /saved stays for what lags longer.
ANSWER_SAVED_WAIT_S = 0.5

Reply = dict[str, Any]
# a route's work: plain (run in a worker thread) or async (awaited on the event loop, holding no thread)
Act = Callable[[Identity, dict[str, Any]], Union[Reply, Awaitable[Reply]]]


def add_click_routes(gradio_app: FastAPI, runtime: Runtime) -> None:
    """POST {CLICK_ROUTE}/answer, /skip, /back, /next, /saved on the mounted Gradio app."""
    service, access = runtime.service, runtime.access

    def who(request: Request) -> Identity:
        return identify_http(access, gradio_app, request)

    def route(name: str, act: Act) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            # the edge (annotator.ui.edge) has refused other sites, anonymous callers, an exhausted
            # budget and a body over its limit before this runs; the body read here is bounded
            try:
                person = who(request)
            except AuthError as exc:
                return JSONResponse({"error": str(exc)}, 401)
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                return JSONResponse({"error": "Send the click as JSON (Content-Type: application/json)."}, 415)
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else {}
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past Python's limit
                return JSONResponse({"error": "That request is not valid JSON; reload the page."}, 400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "Send the click as a JSON object; reload the page."}, 400)
            try:
                if inspect.iscoroutinefunction(act):
                    return JSONResponse(await act(person, body))
                reply = await run_in_threadpool(act, person, body)
                if reply.get("pending") and request.query_params.get("saved") == "wait":
                    status, _ = await service.await_saved(person, ANSWER_SAVED_WAIT_S)
                    reply.update(saved_fields(status))
                return JSONResponse(reply)
            except AuthError as exc:
                return JSONResponse({"error": str(exc)}, 401)
            except InputError as exc:
                return JSONResponse({"error": str(exc)}, 400)
            except Exception as exc:  # noqa: BLE001 - a bug: the log gets the traceback, the page a reference
                return JSONResponse({"error": report(exc, f"{CLICK_ROUTE}/{name}")}, 500)

        gradio_app.add_api_route(f"{CLICK_ROUTE}/{name}", endpoint, methods=["POST"], include_in_schema=False)

    route("answer", lambda p, b: page_view(service.submit(p, b.get("ticket"), b.get("answer"), b.get("comment") or None,
                                                     b.get("time_spent_ms"))))
    route("skip", lambda p, b: page_view(service.skip(p, b.get("ticket"))))
    route("back", lambda p, b: page_view(service.back(p, b.get("ticket") or None)))
    route("next", lambda p, b: page_view(service.next(p)))

    async def saved(person: Identity, _: dict[str, Any]) -> Reply:
        # awaited on the event loop: a crowd pausing at once, or one person asking in a loop, holds no thread
        status, waited = await service.await_saved(person, SAVED_WAIT_S)
        reply: Reply = {**saved_fields(status), "message": None}
        if waited or not status.pending:
            # the team's progress too: after a pause the page shows what the others did meanwhile
            reply["progress"] = vars(await run_in_threadpool(lambda: service.progress(person, wait=0)))
        return reply

    route("saved", saved)
    routes_first(gradio_app, CLICK_ROUTE + "/")  # matched before Gradio's ~80 routes


def saved_fields(status: SaveStatus) -> Reply:
    """The saved status as every reply carries it (see View.as_dict)."""
    return {"saved": status.text, "pending": status.pending, "retrying": status.retrying,
            "rejected": list(status.rejected)}
