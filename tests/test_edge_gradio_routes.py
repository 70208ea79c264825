"""Gradio's own routes on a public Space (issue 20.1, 20.2, 20.6): no download proxy, no open monitoring,
no exception text on the page.

- `GET /gradio_api/file=<URL>` made the server fetch any public URL and stream it back. Every URL
  form is refused at the edge for every caller, and the server is observed opening no connection:
  the app runs in a network namespace with only loopback, where 8.8.8.8 is a local listener that
  records connections (tests/edge_netns_probe.py); nothing can leave the machine.
- `/monitoring/summary` answered anyone.
- Mounted with show_error=True, an unexpected exception's text (paths, SQL, settings) reached the
  page. Now the person sees a sentence and a reference; the log holds the traceback under it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clients import make_images, write_task
from edgehelpers import space_client, start_space_servers

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "edge_netns_probe.py"
SECRET = "db password=hunter2 at /data/secret.duckdb"


def test_no_url_form_of_file_makes_the_server_connect_anywhere(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.fail("this test needs root with `unshare` and `ip` (util-linux, iproute2): it runs the app in a "
                    "network namespace with only loopback to observe outbound connections")
    script = 'ip link set lo up && ip addr add 8.8.8.8/32 dev lo && exec "$0" "$@"'
    run = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, str(PROBE), str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["control"] == 1, "the recorder did not see the probe's own connection: nothing is observed"
    wrong = {k: v for k, v in result["statuses"].items() if not 400 <= v < 500}
    assert not wrong, wrong
    assert result["connections"] == 0, f"the server connected to 8.8.8.8 {result['connections']} time(s)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    found = start_space_servers(tmp_path_factory, modes=("oauth",))
    yield found["oauth"]
    found["oauth"].stop()


@pytest.mark.parametrize("path", ["/monitoring", "/monitoring/summary", "/gradio_api/monitoring/summary",
                                  "/monitoring/anything"])
def test_monitoring_is_closed(server, path):
    for user in (None, "carol"):
        with space_client(server, user) as c:
            r = c.get(path)
            assert 400 <= r.status_code < 500, (path, user, r.status_code, r.text[:200])
            assert "functions" not in r.text


def test_files_gradio_serves_still_download(server):
    """The edge refuses URLs, not Gradio's own files (an admin's export downloads go through /file=)."""
    with space_client(server, "carol") as carol:
        path = carol.post("/gradio_api/upload", files={"files": ("a.txt", b"abc", "text/plain")}).json()[0]
        r = carol.get(f"/gradio_api/file={path}")
        assert r.status_code == 200 and r.content == b"abc"


def test_the_pages_own_files_are_served_by_versioned_name_and_nothing_else(server):
    """/ann-static/ (annotator/ui/assets.py): the script and style the page names, cached for good; any other
    name under it, any `..`, a body, another site's read: refused."""
    with space_client(server) as anonymous:
        page = anonymous.get("/").text
        urls = set(re.findall(r'/ann-static/[^"\\]+', page))
        assert {u.rsplit(".", 1)[1] for u in urls} == {"js", "css"}, urls
        for u in urls:
            r = anonymous.get(u)
            assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
        js = next(u for u in urls if u.endswith(".js"))
        for path in ("/ann-static/annotate.js", "/ann-static/x/" + js.rsplit("/", 1)[1], "/ann-static/%2e%2e/app.py",
                     "/ann-static/..%2f..%2fapp.py", js[:-3] + ".css"):
            assert anonymous.get(path).status_code == 404, path
        assert anonymous.post(js, content=b"x").status_code == 413
        assert anonymous.get(js, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}).status_code == 403


def test_an_unexpected_error_shows_a_reference_and_the_log_holds_the_traceback(tmp_path, caplog):
    from starlette.testclient import TestClient

    from annotator.config import load_settings
    from annotator.runtime import Runtime
    from annotator.service import InputError
    from annotator.ui.server import create_app

    make_images(tmp_path / "source", 3, size=(48, 36))
    settings = load_settings({"DATA_DIR": str(tmp_path / "data"), "CACHE_DIR": str(tmp_path / "cache"),
                              "SOURCE_DIR": str(tmp_path / "source"),
                              "TASK_FILE": str(write_task(tmp_path / "task.toml")), "AUTH_MODE": "local"})
    runtime = Runtime.open(settings)

    def broken(*_args, **_kwargs):
        raise RuntimeError(SECRET)

    runtime.service.progress = broken
    runtime.service.next = broken
    caplog.set_level(logging.ERROR)
    with TestClient(create_app(runtime)) as client:
        event = client.post("/gradio_api/call/progress", json={"data": []}).json()["event_id"]
        stream = client.get(f"/gradio_api/call/progress/{event}").text
        assert "event: error" in stream and "hunter2" not in stream and "/data" not in stream, stream
        message = json.loads(stream.split("event: error", 1)[1].split("data:", 1)[1].splitlines()[0])
        assert "Something went wrong" in message["error"] and "reference" in message["error"], message
        ref = message["error"].split("reference ", 1)[1].split(")", 1)[0]
        r = client.post("/ann/next", json={})
        assert r.status_code == 500 and "hunter2" not in r.text and "reference" in r.json()["error"]
        # a message written for a person (the service's refusals become gr.Error) still shows as it is
        def refused(*_args, **_kwargs):
            raise InputError("Pick a label first.")

        runtime.service.submit = refused
        event = client.post("/gradio_api/call/submit", json={"data": ["1.x.y", ["circle"], ""]}).json()["event_id"]
        stream = client.get(f"/gradio_api/call/submit/{event}").text
        assert "event: error" in stream and "Pick a label first." in stream, stream
    logged = [rec for rec in caplog.records if ref in rec.getMessage()]
    assert logged and logged[0].exc_info and SECRET in str(logged[0].exc_info[1])
