"""The page's script and style are files served at content-versioned URLs (issue 14), and nothing else is.

- a URL names one content: a changed file gets another URL, so the immutable cache header is safe;
- the files are in git (a clean clone finds them; nothing is generated);
- under the prefix only those exact names answer: the unversioned name, an old hash, sub-paths and
  every encoding of `..` are 404, a body is refused at the edge, another site's page cannot read them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from annotator.ui import assets
from annotator.ui.assets import FILES, IMMUTABLE, STATIC_DIR, STATIC_ROUTE, load, versioned_name

ROOT = Path(__file__).resolve().parent.parent


def test_a_changed_file_gets_a_new_url(tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(STATIC_DIR / name, tmp_path / name)
    before = load(tmp_path)
    assert before == load(tmp_path)  # the same bytes, the same URL
    (tmp_path / "annotate.js").write_bytes((STATIC_DIR / "annotate.js").read_bytes() + b"\n// changed\n")
    after = load(tmp_path)
    assert after["annotate.js"].url != before["annotate.js"].url
    assert after["annotate.css"].url == before["annotate.css"].url
    assert versioned_name("annotate.js", b"x") != versioned_name("annotate.js", b"y")
    assert versioned_name("annotate.js", b"x").startswith("annotate.") and versioned_name("a.css", b"").endswith(".css")
    for asset in after.values():
        assert asset.url.startswith(STATIC_ROUTE + "/") and asset.url.count("/") == 2


def test_the_files_are_in_git_not_generated() -> None:
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "annotator/ui/static"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert sorted(tracked) == sorted(f"annotator/ui/static/{name}" for name in FILES)


def test_the_page_refers_to_the_versioned_files_and_keeps_its_config_inert() -> None:
    from annotator.task import Label, classification_task
    from annotator.ui.annotate import page_script

    task = classification_task("t", (Label("</script><script>alert(1)</script>", "1"),), question="q")
    head = page_script(task)
    assert assets.url("annotate.js") in head and assets.url("annotate.css") in head
    assert '<script type="application/json" id="ann-config">' in head
    assert head.count("</script>") == 2 and "alert(1)" in head  # the label stays inside the JSON, escaped


@pytest.fixture(scope="module")
def client():
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from annotator.ui.edge import Edge

    app = FastAPI()
    assets.add_static_routes(app)
    app.add_middleware(Edge)
    with TestClient(app, base_url="http://space.test") as c:
        yield c


def test_each_file_is_served_with_an_immutable_cache_header(client) -> None:
    for name, kind in (("annotate.js", "text/javascript"), ("annotate.css", "text/css")):
        r = client.get(assets.url(name), headers={"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors"})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
        assert r.headers["content-type"].startswith(kind) and r.headers["x-content-type-options"] == "nosniff"
        assert r.content == (STATIC_DIR / name).read_bytes()
        assert client.head(assets.url(name)).status_code == 200


@pytest.mark.parametrize("path", [
    "/ann-static/annotate.js", "/ann-static/annotate.css", "/ann-static/", "/ann-static",
    "/ann-static/annotate.000000000000.js", "/ann-static/sub/{js}", "/ann-static/{js}/x",
    "/ann-static/%2e%2e/annotator/config.py", "/ann-static/..%2fconfig.py", "/ann-static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/ann-static/..%5c..%5cetc%5cpasswd", "/ann-static/static/annotate.js", "/ann-static/annotate.py",
    "/ann-static/{js}%00.py", "/ann-static/{js}.map",
])
def test_nothing_else_under_the_prefix_is_served(client, path) -> None:
    path = path.format(js=assets.url("annotate.js").rsplit("/", 1)[1])
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert "cache-control" in r.headers and "immutable" not in r.headers["cache-control"]
    assert b"annotSt" not in r.content and b"import" not in r.content


def test_a_body_or_another_sites_read_is_refused(client) -> None:
    url = assets.url("annotate.js")
    r = client.post(url, content=b"x" * 10)
    assert r.status_code == 413
    r = client.get(url, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                                 "Origin": "https://evil.example"})
    assert r.status_code == 403
    from annotator.ui.edge import Surface

    rule = Surface().rule(url)
    assert rule.path == "/ann-static/*" and rule.who == "anyone" and rule.max_body == 0 and not rule.navigate
