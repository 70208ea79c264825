"""The page's own script and style, served from files with the content's hash in the URL.

`annotator/ui/static/` holds them (in git; nothing is generated). Each file
is read once, at start, and served at `/ann-static/<stem>.<hash>.<ext>`,
where the hash is of its bytes: a URL names one content for ever, so it is
marked immutable and a browser asks for it once; a changed file gets a new
URL at the next start. Only those exact names are served (a lookup in a
table, never a path on disk): anything else under the prefix is a 404.
Gradio's own `/static/` is a different route.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_ROUTE = "/ann-static"
FILES = ("annotate.js", "questions.js", "annotate.css", "questions.css", "projector.js", "projector.css",
         "boxes.js", "boxes.css", "review.js")
IMMUTABLE = "public, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    name: str        # the file's name in STATIC_DIR
    url: str         # where the page asks for it: the route, the stem, the content's hash
    body: bytes
    media_type: str


def versioned_name(name: str, body: bytes) -> str:
    """`annotate.js` -> `annotate.<first 12 hex of sha256(body)>.js`: another content, another name."""
    stem, ext = name.rsplit(".", 1)
    return f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{ext}"


def load(folder: Path = STATIC_DIR, names: tuple[str, ...] = FILES) -> dict[str, Asset]:
    """Each file by its plain name, read now; a missing file stops start-up (a broken checkout)."""
    found = {}
    for name in names:
        body = (folder / name).read_bytes()
        found[name] = Asset(name, f"{STATIC_ROUTE}/{versioned_name(name, body)}", body,
                            _TYPES[Path(name).suffix])
    return found


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """The app's files, read once per process."""
    return load()


def url(name: str) -> str:
    return assets()[name].url


def add_static_routes(app: FastAPI) -> None:
    """GET (and HEAD) `/ann-static/<versioned name>`: the file with an immutable cache header; else 404."""
    by_url = {a.url: a for a in assets().values()}

    async def static_file(name: str) -> Response:
        found = by_url.get(f"{STATIC_ROUTE}/{name}")
        if found is None:
            return JSONResponse({"error": "No such file."}, status_code=404, headers={"Cache-Control": "no-store"})
        return Response(found.body, media_type=found.media_type,
                        headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"})

    app.add_api_route(STATIC_ROUTE + "/{name:path}", static_file, methods=["GET", "HEAD"], include_in_schema=False)
