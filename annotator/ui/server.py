"""The HTTP server: Gradio mounted in FastAPI, beside the signed image route.

Images are served by a plain FastAPI route rather than Gradio's file route so
they can carry cache headers and a per-user signature, and so DATA_DIR never
has to be in `allowed_paths` (which would make every file in it public). An
image URL names one rendering of one record until it expires, so it is
marked immutable: a preloaded image is never asked for again. A zoomed view
asks for `<the image's URL path>/large` under the same signature: a larger
rendition, rendered on demand (`ImageCache.large`). The page's
click routes (`annotator.ui.clicks`) are added to Gradio's own app. Every
request passes the edge first (`annotator.ui.edge`: who may call what, from
where, with how large a body).
"""

from __future__ import annotations

import logging
import re
from contextlib import asynccontextmanager
from typing import AsyncIterator

import gradio as gr
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from annotator.answers import largest_answer_bytes
from annotator.auth import AuthError, PasswordFile
from annotator.images import ImageError, Rendition
from annotator.runtime import Runtime
from annotator.tickets import IMAGE_ROUTE, TicketError
from annotator.ui.assets import add_static_routes
from annotator.ui.blocks import build_blocks
from annotator.ui.clicks import add_click_routes
from annotator.ui.cookies import PartitionedSessionCookies
from annotator.ui.edge import UPLOAD_MAX_BYTES, Budget, Edge, PersonSlots, SlotsFull, check_people, surface_for
from annotator.ui.errors import hide_unexpected_errors
from annotator.ui.frame import FrameCookieNotice
from annotator.ui.gradio_glue import mounted_app, quiet_choice_refusals, slow_queue_polling
from annotator.ui.identity import identify_http
from annotator.ui.image_lane import IMAGE_METHODS, ImageLane, cache_control
from annotator.ui.login import password_sign_in
from annotator.ui.projector import add_projector_routes

log = logging.getLogger(__name__)

# Gradio's queue looks for work every 1 ms while it has none, and for progress every 10 ms: about 55 ms
# of CPU a second on an idle server (3 ms per annotation at 50 annotators). The page's clicks do not use
# the queue; a queued event (the API endpoints, the dashboard) now waits at most 20 ms more to start.
QUEUE_IDLE_POLL_S = 0.02
_IMAGE_NUMBER = re.compile(r"[2-9]")  # a record's further images: 2 to task.MAX_IMAGES
QUEUE_PROGRESS_POLL_S = 0.1


def create_app(runtime: Runtime) -> FastAPI:
    """The whole app; closing it (uvicorn shutdown, SIGTERM) flushes and closes the runtime."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    renders = PersonSlots()  # keyed by the link's person, verified before a slot is taken

    def render(record_id: int, large: bool, number: int) -> Rendition:
        try:
            found = runtime.service.image(record_id, large=large, number=number)
        except ImageError as exc:
            raise HTTPException(status_code=422, detail=f"this image cannot be shown: {exc}") from None
        if found is None:
            raise HTTPException(status_code=404, detail="no such record")
        return found

    async def serve(record_id: int, u: str, e: str, s: str, *, large: bool, number: int = 1) -> Response:
        # async, and the small rendered file read at once: a FileResponse's thread hops cost more than the read
        try:
            runtime.signer.verify_image(record_id, u, e, s, number=number)
        except TicketError as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None
        found = runtime.service.cached_image(record_id, large=large, number=number)
        if found is None:  # a store read, a file read or a render, in a work thread: a few at a time per person
            try:
                async with renders.slot(u):
                    found = await run_in_threadpool(render, record_id, large, number)
            except SlotsFull:
                raise HTTPException(status_code=429, headers={"Retry-After": "1"},
                                    detail="too many image requests at once from this person; wait a second, "
                                           "then load the page again") from None
        return Response(found.data, media_type=found.media_type, headers={"Cache-Control": cache_control(e)})

    @app.api_route(IMAGE_ROUTE + "/{record_id}", methods=list(IMAGE_METHODS))
    async def image(record_id: int, u: str = "", e: str = "", s: str = "") -> Response:
        return await serve(record_id, u, e, s, large=False)

    @app.api_route(IMAGE_ROUTE + "/{record_id}/large", methods=list(IMAGE_METHODS))
    async def large_image(record_id: int, u: str = "", e: str = "", s: str = "") -> Response:
        """The zoomed view's rendition, under the display link's own signature: the link proves the
        record's image was handed to this person until its expiry, whichever size they look at. Rendered
        when first asked for (the display rendition stays the click path's only work)."""
        return await serve(record_id, u, e, s, large=True)

    # after /large, which it would match too
    @app.api_route(IMAGE_ROUTE + "/{record_id}/{number}", methods=list(IMAGE_METHODS))
    async def further_image(record_id: int, number: str, u: str = "", e: str = "", s: str = "") -> Response:
        """A record's second, third... image, under a signature over the record and the image's number
        (`Signer.image_url`). The first image has only its own link (`/img/<id>`); no zoomed rendition
        of the others (the page zooms a record of one image only). `number` is read here, not by a path
        convertor: a number of thousands of digits is a plain 404, not a failed conversion."""
        if not _IMAGE_NUMBER.fullmatch(number):
            raise HTTPException(status_code=404, detail="no such image")
        return await serve(record_id, u, e, s, large=False, number=int(number))

    async def image_method_not_allowed(path: str) -> JSONResponse:
        """Any other method on an image address: a 405 that says so (without it, the request fell through
        to Gradio's mount and got a bare 404, as if the image did not exist)."""
        return JSONResponse({"detail": "images are only read here (GET or HEAD)"}, 405,
                            headers={"Allow": ", ".join(IMAGE_METHODS)})

    app.add_api_route(IMAGE_ROUTE + "/{path:path}", image_method_not_allowed, include_in_schema=False,
                      methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    add_static_routes(app)  # the page's script and style (annotator/ui/static), by content-versioned URL
    blocks, head = build_blocks(runtime)
    hide_unexpected_errors(blocks)
    quiet_choice_refusals()
    auth = None
    if runtime.settings.auth_mode == "password":
        passwords = PasswordFile(runtime.settings.password_file)
        if not len(passwords):
            log.warning("AUTH_MODE=password but %s has no users; add one with "
                        "`python -m annotator adduser NAME`", runtime.settings.password_file)
        auth = password_sign_in(app, passwords, runtime.access.sign_in_limits)
    # show_error=False: an unexpected exception's text (paths, SQL, settings) never reaches the page
    gr.mount_gradio_app(app, blocks, path="/", auth=auth, head=head, show_error=False,
                        max_file_size=UPLOAD_MAX_BYTES, enable_monitoring=False,
                        footer_links=[],  # no Gradio footer for participants; admins find the API on the dashboard
                        auth_message="Sign in with the name and password the organizer gave you.")
    slow_queue_polling(blocks, QUEUE_IDLE_POLL_S, QUEUE_PROGRESS_POLL_S)
    gradio_app = mounted_app(app)
    # each moves its routes to the front: the click routes last, so a click is matched first of all
    add_projector_routes(gradio_app, runtime)  # the room's screen (annotator/ui/projector.py)
    add_click_routes(gradio_app, runtime)
    _add_healthz(gradio_app, runtime)
    check_people(gradio_app, lambda request: identify_http(runtime.access, gradio_app, request), Budget())
    app.add_middleware(PartitionedSessionCookies)  # sign-in inside the Hub's frame (annotator/ui/cookies.py)
    app.add_middleware(FrameCookieNotice)  # ...and a notice where the frame refuses them (annotator/ui/frame.py)
    app.add_middleware(ImageLane, runtime=runtime)  # rendered images sent right inside the edge (image_lane.py)
    # outermost: nothing reaches Gradio or a route before the edge's rules; the routes carrying an answer
    # take the largest answer and comment the task and MAX_COMMENT_CHARS admit
    answer_bytes = largest_answer_bytes(runtime.task, runtime.settings.max_comment_chars)
    app.add_middleware(Edge, surface=surface_for(answer_bytes))
    return app


def _add_healthz(gradio_app: FastAPI, runtime: Runtime) -> None:
    """GET /healthz: ok or not for anyone; the writer's queue and failures for admins.

    Inside Gradio's app, where its session names the person, as on the click routes.
    """

    def healthz(request: Request) -> JSONResponse:
        health = runtime.backend.writer_health()
        body: dict[str, object] = {"ok": not health.retrying}
        try:
            if identify_http(runtime.access, gradio_app, request).is_admin:
                body.update(queue_depth=health.queue_depth, failed_commits=health.failed_commits)
        except AuthError:
            pass  # anyone may ask whether the app is up
        return JSONResponse(body)

    gradio_app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
