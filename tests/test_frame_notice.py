"""`FrameCookieNotice` puts the frame script into the page's HTML, and leaves everything else alone."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from annotator.ui.frame import FRAME_SCRIPT, NOTICE_ID, FrameCookieNotice

PAGE = "<html><head><title>t</title></head><body>x</body></html>"


def client() -> TestClient:
    app = Starlette(routes=[
        Route("/", lambda r: HTMLResponse(PAGE)),
        Route("/zipped", lambda r: Response(PAGE, media_type="text/html", headers={"content-encoding": "x-test"})),
        Route("/info", lambda r: JSONResponse({"head": "</head>"})),
    ])
    return TestClient(FrameCookieNotice(app, pages=("/", "/zipped")))


def test_the_page_gets_the_script_before_its_head_ends() -> None:
    r = client().get("/")
    assert r.status_code == 200
    assert r.text == PAGE.replace("</head>", FRAME_SCRIPT + "</head>")
    assert int(r.headers["content-length"]) == len(r.content)
    assert NOTICE_ID in r.text and 'target = "_blank"' in r.text


def test_other_routes_and_encoded_pages_pass_untouched() -> None:
    c = client()
    assert c.get("/info").json() == {"head": "</head>"}
    assert c.get("/zipped").text == PAGE  # an encoded body cannot be edited as text
    assert c.post("/").status_code == 405
