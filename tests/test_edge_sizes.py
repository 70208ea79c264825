"""Every request is bounded before it is read (issue 12.3, 12.8), against the real server as a simulated Space.

The click routes read the whole body before their 64 KB check and before
knowing who asks (four anonymous 300 MB posts took the process to 2.4 GB);
Gradio's routes had no limit at all; anyone could upload files of any size.
Here a request over its route's limit is answered at once, while its body
is still on its way: the raw-socket tests below send the headers and a part
of the body, never the rest, and expect the answer anyway.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from edgehelpers import ADMIN, SPACE_HOST, space_client
from edgehelpers import servers  # noqa: F401,F811 - the module's fixture: both servers
from oauth_cookies import forge_session_cookie

ANSWER_WITHIN_S = 30  # generous on a busy machine; a server that waits for the body never answers


def _status_while_sending(server, head: str, parts: list[bytes]) -> int | None:
    """Send the request line and headers, then `parts`, and never finish the body: the answer's status."""
    url = urlsplit(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=ANSWER_WITHIN_S) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed while we were still sending
                break
        try:
            reply = sock.recv(4096)
        except (socket.timeout, ConnectionResetError):
            return None
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None


def _head(path: str, *lines: str) -> str:
    return "\n".join((f"POST {path} HTTP/1.1", f"Host: {SPACE_HOST}", "Content-Type: application/json", *lines, ""))


def test_a_300_mb_click_is_refused_before_its_body_arrives(servers):
    for who in (None, "alice"):
        cookie = (f"Cookie: session={forge_session_cookie(who)}",) if who else ()
        status = _status_while_sending(servers["oauth"], _head("/ann/answer", "Content-Length: 314572800",
                                                               *cookie), [b'{"ticket": "'])
        assert status == 413, (who, status)


def test_an_anonymous_click_is_refused_before_its_body_is_read(servers):
    """Chunked (no Content-Length), never finished: an anonymous caller is told to sign in at once."""
    status = _status_while_sending(servers["oauth"], _head("/ann/answer", "Transfer-Encoding: chunked"),
                                   [b"10\r\n" + b'{"ticket": "xxxx' + b"\r\n"])
    assert status == 401


def test_a_signed_in_persons_endless_chunked_click_is_cut_off(servers):
    cookie = f"Cookie: session={forge_session_cookie('alice')}"
    chunk = b"%x\r\n%s\r\n" % (32 * 1024, b"x" * 32 * 1024)
    status = _status_while_sending(servers["oauth"], _head("/ann/answer", "Transfer-Encoding: chunked", cookie),
                                   [chunk] * 4)  # 128 KB of an endless body
    assert status == 413


@pytest.mark.parametrize("path", ["/gradio_api/queue/join", "/gradio_api/call/progress", "/gradio_api/run/predict",
                                  "/gradio_api/reset"])
def test_gradio_routes_refuse_a_body_over_their_limit(servers, path):
    """A 100 MB JSON to queue/join was accepted; here 1 MB is refused, with Content-Length or chunked."""
    big = b'{"data": ["' + b"x" * (1024 * 1024) + b'"], "fn_index": 0, "session_hash": "big"}'
    with space_client(servers["oauth"], "alice") as alice:
        r = alice.post(path, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        r = alice.post(path, content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert "KB" in r.json()["error"]


def test_the_click_routes_and_events_still_take_what_the_page_sends(servers):
    with space_client(servers["oauth"], "bob") as bob:
        view = bob.post("/ann/next", json={}).json()
        r = bob.post("/ann/answer", json={"ticket": view["item"]["record"], "answer": ["circle"],
                                          "comment": "ok " * 30})
        assert r.status_code == 200, r.text
        assert bob.post("/gradio_api/call/progress", json={"data": []}).status_code == 200


def test_uploads_are_for_admins_only_and_bounded(servers):
    """The app asks nobody to upload; Gradio kept anyone's files of any size forever."""
    files = {"files": ("note.txt", b"hello", "text/plain")}
    with space_client(servers["oauth"]) as anonymous:
        r = anonymous.post("/gradio_api/upload", files=files)
        assert r.status_code == 401, r.text
    with space_client(servers["oauth"], "alice") as alice:
        r = alice.post("/gradio_api/upload", files=files)
        assert r.status_code == 403 and "ADMINS" in r.json()["error"], r.text
    with space_client(servers["oauth"], ADMIN) as carol:
        r = carol.post("/gradio_api/upload", files=files)
        assert r.status_code == 200 and r.json()[0].endswith("note.txt"), r.text
        r = carol.post("/gradio_api/upload", files={"files": ("big.bin", b"x" * (11 * 1024 * 1024))})
        assert r.status_code == 413, r.text[:200]


def test_healthz_says_only_ok_to_anyone_and_the_details_to_admins(servers):
    with space_client(servers["oauth"]) as anonymous:
        r = anonymous.get("/healthz")
        assert r.status_code == 200 and r.json() == {"ok": True}
    with space_client(servers["oauth"], "alice") as alice:
        assert alice.get("/healthz").json() == {"ok": True}
    with space_client(servers["oauth"], ADMIN) as carol:
        body = carol.get("/healthz").json()
        assert body["ok"] is True and body["queue_depth"] == 0 and body["failed_commits"] == 0


def test_cut_off_bodies_leave_no_traceback_in_the_log(servers):
    """Refusing a body half-way tells the app its client left; that is not an error of the app's."""
    for server in servers.values():
        log = server.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[log.find("Traceback") - 300:][:4000]
