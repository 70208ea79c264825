"""Run inside a network namespace with only loopback (tests/test_edge_gradio_routes.py starts it).

8.8.8.8 is put on the namespace's loopback with a listener on ports 80 and
443 that records every connection, so a server that tries to fetch
`/gradio_api/file=http://8.8.8.8/...` is seen doing it, and nothing can
leave the machine. Starts the real app (a simulated Space) in the same
namespace, asks for every URL form, prints {"statuses": ..., "connections": N}.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import make_images, write_task  # noqa: E402
from apphelpers import start_app  # noqa: E402
from oauth_cookies import forge_session_cookie, oauth_space_env  # noqa: E402

OUTSIDE = "8.8.8.8"
TARGETS = [
    "http://8.8.8.8/x.png", "https://8.8.8.8/x.png", "HTTP://8.8.8.8/x.png", "hTtPs://8.8.8.8/x.png",
    "http:%2F%2F8.8.8.8/x.png", "http%3A%2F%2F8.8.8.8%2Fx.png", "http%253A%252F%252F8.8.8.8%252Fx.png",
    "%20http://8.8.8.8/x.png", "%09https://8.8.8.8/x.png", "//8.8.8.8/x.png", "%2F%2F8.8.8.8/x.png",
    "%5C%5C8.8.8.8/x.png", "http:/8.8.8.8/x.png", "http:%5C%5C8.8.8.8/x.png",
]
ROUTES = ["/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy="]


def record(port: int, seen: list[int]) -> None:
    listener = socket.create_server((OUTSIDE, port))
    def run() -> None:
        while True:
            conn, _ = listener.accept()
            seen.append(port)
            conn.close()
    threading.Thread(target=run, daemon=True).start()


def main(base: Path) -> None:
    seen: list[int] = []
    for port in (80, 443):
        record(port, seen)
    socket.create_connection((OUTSIDE, 80), timeout=5).close()  # the recorder sees a connection: a control
    for _ in range(50):
        if seen:
            break
        threading.Event().wait(0.1)
    control = len(seen)
    seen.clear()
    make_images(base / "source", 3)
    env = {"SOURCE_DIR": str(base / "source"), "TASK_FILE": str(write_task(base / "task.toml")),
           **oauth_space_env()}
    server = start_app(base / "data", env=env)
    statuses = {}
    try:
        host, port = server.url.removeprefix("http://").split(":")
        for cookie in (None, forge_session_cookie("alice")):
            for route in ROUTES:
                for target in TARGETS:
                    for method in ("GET", "HEAD"):
                        c = http.client.HTTPConnection(host, int(port), timeout=60)
                        headers = {"Host": "someone-annotator.hf.space"}
                        if cookie:
                            headers["Cookie"] = f"session={cookie}"
                        c.putrequest(method, route + target, skip_host=True, skip_accept_encoding=True)
                        for k, v in headers.items():
                            c.putheader(k, v)
                        c.endheaders()
                        statuses[f"{method} {route}{target} {'signed-in' if cookie else 'anonymous'}"] = \
                            c.getresponse().status
                        c.close()
    finally:
        server.stop()
    print(json.dumps({"statuses": statuses, "connections": len(seen), "control": control}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
