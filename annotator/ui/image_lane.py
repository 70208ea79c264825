"""The image route's fast lane: a rendition already in memory is sent right inside the edge.

Every annotation fetches each image of its record once, so the image route is
the busiest route of all. Through FastAPI it pays for routing, parameter
parsing, the cookie layers and a Response object, more CPU than sending the
bytes. `ImageLane` is a pure-ASGI layer just inside `Edge` (so the edge's
rules still apply first) that answers `GET /img/<id>` and `/img/<id>/<n>`
(and HEAD: the same headers, no body) itself when the link verifies and the rendition is in memory or on disk
(`AnnotationService.cached_image`). Everything else goes on to the routes in
`server.py`, which answer it in full: a render, the zoomed view, and every
refusal with its message. So the lane only ever answers 200, with the
headers the route sends.
"""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qsl

from annotator.runtime import Runtime
from annotator.tickets import IMAGE_ROUTE, TicketError
from annotator.ui.edge import ASGIApp, Receive, Scope, Send

# a record's first image, or its image 2 to 9 (task.MAX_IMAGES), as server.py's routes take them
# HEAD (a link checker, a proxy asking the size) gets GET's headers; server.py refuses the rest with 405
IMAGE_METHODS = ("GET", "HEAD")
_PATH = re.compile(re.escape(IMAGE_ROUTE) + r"/([1-9][0-9]{0,8})(?:/([2-9]))?")


def cache_control(expires: str) -> str:
    """An image's Cache-Control, on the lane and on the routes alike: kept by this browser only, until the
    link (verified, so `expires` is a whole number) expires."""
    return f"private, max-age={max(0, int(expires) - int(time.time()))}, immutable"


class ImageLane:
    """Pure ASGI; `runtime` gives the signer and the service."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in IMAGE_METHODS:
            reply = self._in_memory(scope)
            if reply is not None:
                body, headers = reply
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
                return
        await self.app(scope, receive, send)

    def _in_memory(self, scope: Scope) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """The body and headers when this request is a verified link to a rendered image; None: the routes."""
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            return None
        record_id, number = int(match[1]), int(match[2] or 1)
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        expires = query.get("e", "")
        try:
            self.runtime.signer.verify_image(record_id, query.get("u", ""), expires, query.get("s", ""),
                                             number=number)
        except TicketError:
            return None
        found = self.runtime.service.cached_image(record_id, number=number)
        if found is None:
            return None
        return found.data, [(b"content-type", found.media_type.encode()),
                            (b"content-length", str(len(found.data)).encode()),
                            (b"cache-control", cache_control(expires).encode())]
