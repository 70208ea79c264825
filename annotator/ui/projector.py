"""The projector view: `/projector`, a page for the room's big screen, and `/projector/data`, its numbers.

Plain routes, no Gradio event: a Gradio timer tick in every open screen would
be a queued event (20+ ms of CPU each). The page is a small static HTML shell
(no data in it, so anyone may open it, as `/`); its script
(static/projector.js) asks `/projector/data` every REFRESH_SECONDS. That route
answers only a signed-in person, as the dashboard's team view does (the
edge checks it first, `annotator.ui.edge.SURFACE`; the handler again), and
hands every caller the same bytes from `annotator.projector.Projector`, one
computation per interval whoever polls. Times go out as UTC; the browser
writes them in the viewer's own time zone and names it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from annotator.auth import AuthError
from annotator.nicknames import Nicknames
from annotator.projector import Projector
from annotator.runtime import Runtime
from annotator.ui import assets
from annotator.ui.errors import report
from annotator.ui.gradio_glue import routes_first
from annotator.ui.identity import identify_http

PROJECTOR_ROUTE = "/projector"
DATA_ROUTE = PROJECTOR_ROUTE + "/data"
# How often a screen asks and the view is computed. The cost is per second, not per answer: one
# computation (~35 ms at 4,000 records with the leaderboard, under load) and one cheap poll per screen
# each interval; at 10 s five screens cost ~0.1 ms per annotation at the crowd benchmark's pace
# (bench/README.md), and a room's screen moving every 10 s still reads as live.
REFRESH_SECONDS = 10.0
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def page_html() -> str:
    """The shell the script fills in; the strings the task supplies arrive as JSON and go in as text."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Projector</title><link rel="stylesheet" href="{assets.url("projector.css")}">
<script src="{assets.url("projector.js")}" defer></script></head>
<body><main id="proj" data-src="{DATA_ROUTE}">
<h1 id="proj-title">Loading…</h1>
<section id="proj-goal" aria-label="Team goal">
  <div id="proj-goal-text"></div>
  <div id="proj-bar" role="progressbar" aria-label="Progress toward the team goal" aria-valuemin="0"
       aria-valuemax="100"><div id="proj-bar-fill"></div></div>
  <div id="proj-estimate"></div>
</section>
<div id="proj-row">
  <section id="proj-pace" aria-label="Answers per minute"><h2>Answers per minute</h2>
    <div id="proj-rate"></div><div id="proj-minutes" class="proj-columns"></div></section>
  <section id="proj-labels" aria-label="Labels"><h2>Labels</h2><div id="proj-label-bars"></div></section>
  <section id="proj-board" aria-label="Leaderboard" hidden><h2>Leaderboard</h2>
    <ol id="proj-board-rows"></ol><p id="proj-board-how"></p></section>
</div>
<p id="proj-status" role="status"></p>
</main></body></html>"""


def add_projector_routes(gradio_app: FastAPI, runtime: Runtime) -> Projector:
    """GET /projector (the page) and /projector/data (its JSON) on the mounted Gradio app, where its
    session names the person as on the click routes; returns the shared Projector."""
    settings = runtime.settings
    nicknames = Nicknames(runtime.store, runtime.backend, settings.leaderboard)
    projector = Projector(runtime.dashboard_deps(), settings.goal, settings.leaderboard, nicknames,
                          max_age=REFRESH_SECONDS)
    page = page_html()

    async def projector_page() -> HTMLResponse:
        return HTMLResponse(page, headers=NO_STORE)

    async def projector_data(request: Request) -> Response:
        try:
            identify_http(runtime.access, gradio_app, request)
        except AuthError as exc:
            return JSONResponse({"error": f"{exc} Sign in on the app's page, then reload this screen."}, 401,
                                headers=NO_STORE)
        try:
            body = await run_in_threadpool(projector.payload)
        except Exception as exc:  # noqa: BLE001 - a bug: the log gets the traceback, the screen a reference
            return JSONResponse({"error": report(exc, DATA_ROUTE)}, 500, headers=NO_STORE)
        return Response(body, media_type="application/json", headers=NO_STORE)

    gradio_app.add_api_route(PROJECTOR_ROUTE, projector_page, methods=["GET"], include_in_schema=False)
    gradio_app.add_api_route(DATA_ROUTE, projector_data, methods=["GET"], include_in_schema=False)
    routes_first(gradio_app, PROJECTOR_ROUTE)
    return projector
